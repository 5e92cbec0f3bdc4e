package crypt

import (
	"bytes"
	"errors"
	"testing"

	"filippo.io/age"
)

func TestRewrap(t *testing.T) {
	for _, kind := range []string{KindX25519, KindHybrid} {
		t.Run(kind, func(t *testing.T) {
			oldID, oldRec := genID(t, kind)
			newID, newRec := genID(t, kind)
			keepID, keepRec := genID(t, kind)
			plain := bytes.Repeat([]byte("payload that must not be re-encrypted "), 5000)
			sealed, err := Seal(plain, []age.Recipient{oldRec, keepRec})
			if err != nil {
				t.Fatal(err)
			}
			out, err := Rewrap(sealed, []age.Identity{oldID}, []age.Recipient{newRec, keepRec})
			if err != nil {
				t.Fatal(err)
			}
			// The payload bytes are untouched.
			oldHdr, _ := age.ExtractHeader(bytes.NewReader(sealed))
			newHdr, _ := age.ExtractHeader(bytes.NewReader(out))
			if !bytes.Equal(sealed[len(oldHdr):], out[len(newHdr):]) {
				t.Fatal("rewrap changed the payload")
			}
			for name, id := range map[string]age.Identity{"new": newID, "kept": keepID} {
				got, err := Open(out, 1<<30, []age.Identity{id})
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("%s recipient after rewrap: %v", name, err)
				}
			}
			if _, err := Open(out, 1<<30, []age.Identity{oldID}); !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("removed recipient after rewrap: %v, want ErrNoIdentity", err)
			}
			if _, err := Rewrap(sealed, []age.Identity{newID}, []age.Recipient{newRec}); !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("rewrap with an identity that does not open it: %v", err)
			}
		})
	}
}

func genID(t *testing.T, kind string) (age.Identity, age.Recipient) {
	t.Helper()
	id, rec, err := GenerateIdentity(kind)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRecipient(rec)
	if err != nil {
		t.Fatal(err)
	}
	return id, r
}
