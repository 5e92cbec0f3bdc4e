package crypt

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// secretOf returns the secret text form of an identity.
func secretOf(id age.Identity) string { return id.(fmt.Stringer).String() }

func TestGenerateIdentityKinds(t *testing.T) {
	for _, tc := range []struct {
		kind, prefix, secretPrefix string
	}{
		{KindHybrid, "age1pq1", "AGE-SECRET-KEY-PQ-1"},
		{"", "age1pq1", "AGE-SECRET-KEY-PQ-1"}, // the default is post-quantum
		{KindX25519, "age1", "AGE-SECRET-KEY-1"},
	} {
		id, rec, err := GenerateIdentity(tc.kind)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(rec, tc.prefix) || (tc.prefix == "age1" && strings.HasPrefix(rec, "age1pq1")) {
			t.Errorf("kind %q: recipient %.12s…, want prefix %s", tc.kind, rec, tc.prefix)
		}
		if !strings.HasPrefix(secretOf(id), tc.secretPrefix) {
			t.Errorf("kind %q: identity %.20s…, want prefix %s", tc.kind, secretOf(id), tc.secretPrefix)
		}
		if got, ok := IdentityRecipient(id); !ok || got != rec {
			t.Errorf("kind %q: IdentityRecipient = %.12s…, %v", tc.kind, got, ok)
		}
	}
	if _, _, err := GenerateIdentity("rsa"); err == nil {
		t.Error("GenerateIdentity(rsa) succeeded")
	}
	if _, ok := IdentityRecipient(NewInjectedFileKeyIdentityForTest()); ok {
		t.Error("IdentityRecipient of a non-native identity reported ok")
	}
}

// NewInjectedFileKeyIdentityForTest returns an identity that is neither
// hybrid nor X25519.
func NewInjectedFileKeyIdentityForTest() age.Identity {
	return age.NewInjectedFileKeyIdentity(make([]byte, 16))
}

func TestIdentityFileRoundTrip(t *testing.T) {
	for _, kind := range kinds {
		id, rec, err := GenerateIdentity(kind)
		if err != nil {
			t.Fatal(err)
		}
		file := IdentityFile(id, rec, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		if !strings.Contains(string(file), "# public key: "+rec+"\n") || !strings.Contains(string(file), "# created: 2026-01-02T03:04:05Z\n") {
			t.Errorf("%s: identity file lacks its comments:\n%s", kind, file)
		}
		ids, err := ParseIdentities(file)
		if err != nil || len(ids) != 1 {
			t.Fatalf("%s: ParseIdentities = %d, %v", kind, len(ids), err)
		}
		if secretOf(ids[0]) != secretOf(id) {
			t.Fatalf("%s: identity changed in the round trip", kind)
		}
		// age's own parser reads it too.
		if _, err := age.ParseIdentities(strings.NewReader(string(file))); err != nil {
			t.Fatalf("%s: age cannot read the file: %v", kind, err)
		}
	}
}

func TestParseIdentitiesErrorsDoNotQuoteSecrets(t *testing.T) {
	for _, kind := range kinds {
		id, _, err := GenerateIdentity(kind)
		if err != nil {
			t.Fatal(err)
		}
		secret := secretOf(id)
		for name, file := range map[string]string{
			"bad checksum":  secret[:len(secret)-1] + flipChar(secret[len(secret)-1]) + "\n",
			"truncated":     secret[:len(secret)-5] + "\n",
			"trailing junk": secret + " extra\n",
			"lower case":    strings.ToLower(secret[:20]) + secret[20:] + "\n",
			"second line":   secret + "\n" + secret[:30] + "\n",
		} {
			_, err := ParseIdentities([]byte(file))
			if err == nil {
				t.Errorf("%s %s: parsed", kind, name)
				continue
			}
			assertNoSecret(t, kind+" "+name, err, secret)
		}
	}
	if _, err := ParseIdentities(nil); err == nil {
		t.Error("an empty identity file parsed")
	}
}

func flipChar(c byte) string {
	if c == 'Q' {
		return "P"
	}
	return "Q"
}

// assertNoSecret fails when err's message contains secret or any 12-character
// piece of its payload (after the human-readable prefix).
func assertNoSecret(t *testing.T, what string, err error, secrets ...string) {
	t.Helper()
	msg := err.Error()
	up := strings.ToUpper(msg)
	for _, secret := range secrets {
		payload := secret
		if i := strings.LastIndexAny(secret, "1-"); i >= 0 && len(secret)-i > 20 {
			payload = secret[i+1:]
		}
		for i := 0; i+12 <= len(payload); i++ {
			piece := payload[i : i+12]
			if strings.Contains(msg, piece) || strings.Contains(up, strings.ToUpper(piece)) {
				t.Errorf("%s: error quotes secret material: %q", what, msg)
				return
			}
		}
	}
}

func TestParseRecipient(t *testing.T) {
	for _, kind := range kinds {
		id, rec, err := GenerateIdentity(kind)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{rec, " " + rec + "\n", "\t" + rec} {
			r, err := ParseRecipient(s)
			if err != nil {
				t.Fatalf("ParseRecipient(%.15q…): %v", s, err)
			}
			sealed, err := Seal([]byte("hi"), []age.Recipient{r})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := Open(sealed, 10, []age.Identity{id}); err != nil || string(got) != "hi" {
				t.Fatalf("sealed to the parsed recipient: %q, %v", got, err)
			}
		}
		if k := RecipientKind(" " + rec); k != kind {
			t.Errorf("RecipientKind = %s, want %s", k, kind)
		}
		for _, bad := range []string{rec[:len(rec)-1], rec + "q", strings.ToUpper(rec[:6]) + rec[6:], "", "age1", "ssh-ed25519 AAAA", rec[:len(rec)-2] + "zz"} {
			if _, err := ParseRecipient(bad); err == nil {
				t.Errorf("%s: ParseRecipient(%.20q…) succeeded", kind, bad)
			}
		}
	}
}

// A secret identity passed where a recipient belongs is refused, and the
// error never repeats it (it would land in logs and terminal scrollback).
func TestParseRecipientRefusesSecrets(t *testing.T) {
	var secrets []string
	for _, kind := range kinds {
		id, _, err := GenerateIdentity(kind)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, secretOf(id))
	}
	sk := GenerateSigningKey().text()
	secrets = append(secrets, sk)
	for _, secret := range secrets {
		for _, s := range []string{secret, "  " + secret + "\n", strings.ToLower(secret)} {
			_, err := ParseRecipient(s)
			if err == nil {
				t.Fatalf("ParseRecipient accepted a secret key (%.20s…)", s)
			}
			assertNoSecret(t, fmt.Sprintf("ParseRecipient(%.22s…)", s), err, secret)
			_, _, err = ParseRecipients([]string{s})
			if err == nil {
				t.Fatalf("ParseRecipients accepted a secret key")
			}
			assertNoSecret(t, fmt.Sprintf("ParseRecipients(%.22s…)", s), err, secret)
		}
	}
}

func TestParseRecipientsKinds(t *testing.T) {
	_, h1, _ := GenerateIdentity(KindHybrid)
	_, h2, _ := GenerateIdentity(KindHybrid)
	_, x1, _ := GenerateIdentity(KindX25519)
	_, x2, _ := GenerateIdentity(KindX25519)
	for _, tc := range []struct {
		in   []string
		kind string
		ok   bool
	}{
		{[]string{h1}, KindHybrid, true},
		{[]string{h1, h2}, KindHybrid, true},
		{[]string{x1, x2}, KindX25519, true},
		{nil, "", true},
		{[]string{h1, x1}, "", false},
		{[]string{x1, h1}, "", false},
		{[]string{x1, x2, h2}, "", false},
		{[]string{x1, "age1nope"}, "", false},
	} {
		rs, kind, err := ParseRecipients(tc.in)
		if tc.ok != (err == nil) {
			t.Errorf("ParseRecipients(%d recipients): err %v, want ok=%v", len(tc.in), err, tc.ok)
			continue
		}
		if !tc.ok {
			if len(tc.in) == 2 || len(tc.in) == 3 {
				if tc.in[1] != "age1nope" && !strings.Contains(err.Error(), "mix") {
					t.Errorf("mixed kinds: error %q does not say so", err)
				}
			}
			continue
		}
		if kind != tc.kind || len(rs) != len(tc.in) {
			t.Errorf("ParseRecipients = %d recipients of kind %q, want %d of %q", len(rs), kind, len(tc.in), tc.kind)
		}
	}
}
