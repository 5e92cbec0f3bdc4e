package s3_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"vaultbak/backend"
)

// A hash-named object goes up with its hash, which the server checks: bytes
// that do not match the name are refused and nothing is stored, over plain
// HTTP (no streaming signature) as over HTTPS.
func TestPutChecksNamedHash(t *testing.T) {
	for _, sh := range []*sharedServer{plainServer, tlsServer} {
		srv := sh.get(t)
		b := newS3(t, srv, unique("named-hash"), "repo", nil)
		defer b.Close()
		ctx := t.Context()
		data := []byte("sealed pack bytes")
		sum := sha256.Sum256(data)
		h := hex.EncodeToString(sum[:])
		if err := b.Put(ctx, "data/"+h[:2]+"/"+h, data); err != nil {
			t.Fatalf("%s: Put under its own hash: %v", srv.Endpoint, err)
		}
		other := sha256.Sum256([]byte("other bytes"))
		wrong := "index/" + hex.EncodeToString(other[:])
		if err := b.Put(ctx, wrong, data); err == nil {
			t.Errorf("%s: Put under another object's hash succeeded", srv.Endpoint)
		}
		if _, err := b.Stat(ctx, wrong); !errors.Is(err, backend.ErrNotFound) {
			t.Errorf("%s: after the refused Put, Stat = %v, want not found", srv.Endpoint, err)
		}
	}
}
