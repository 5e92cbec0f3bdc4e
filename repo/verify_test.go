package repo

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"vaultbak/backend"
	"vaultbak/crypt"
)

// VerifyStored tells a damaged copy (an *IntegrityError naming region and
// object) from one that cannot be read (a *RegionError).
func TestVerifyStored(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, crypt.KindX25519)
	r := e.open(e.keysAll())
	w := newWriter(t, r)
	commitTree(t, r, w, "f", saveAll(t, w, [][]byte{randomBlob(1, 4096)}), testTime)
	reg := e.regions[0]
	for _, prefix := range []string{"data/", "index/", "keys/", "snapshots/", "config"} {
		name := e.names(0, prefix)[0]
		if _, err := VerifyStored(ctx, reg, name); err != nil {
			t.Errorf("%s intact: %v", name, err)
		}
		if name == "config" {
			continue
		}
		good, _ := e.mems[0].Raw(name)
		for what, bad := range map[string][]byte{
			"truncated":    good[:len(good)/2],
			"flipped byte": append(append(bytes.Clone(good[:10]), good[10]^1), good[11:]...),
		} {
			e.mems[0].SetRaw(name, bad)
			_, err := VerifyStored(ctx, reg, name)
			var ie *IntegrityError
			if !errors.As(err, &ie) || ie.Region != reg.Name || ie.Object != name {
				t.Errorf("%s %s: %v, want an integrity error naming region %s and the object", name, what, err, reg.Name)
			}
		}
		e.mems[0].SetRaw(name, good)
	}
	manifest := e.names(0, "snapshots/")[0]
	e.mems[0].SetRaw(manifest, make([]byte, maxManifestSize+1))
	if _, err := VerifyStored(ctx, reg, manifest); !isIntegrity(err) {
		t.Errorf("oversized manifest: %v, want an integrity error", err)
	}
	if err := e.mems[0].Delete(ctx, manifest); err != nil {
		t.Fatal(err)
	}
	_, err := VerifyStored(ctx, reg, manifest)
	var re *RegionError
	if !errors.As(err, &re) || !errors.Is(err, backend.ErrNotFound) || isIntegrity(err) {
		t.Errorf("missing manifest: %v, want a region error wrapping ErrNotFound", err)
	}
}

// TestVerifyEnrolled: a manifest or audit record passes against a config
// that enrols its signer's key for its host, and not when signed by
// another key (one a region could forge), as host or as operator.
func TestVerifyEnrolled(t *testing.T) {
	e := newEnv(t, 1, crypt.KindX25519)
	config, _ := e.mems[0].Raw("config")
	cfg := e.repo.Config()
	forger := crypt.GenerateSigningKey()
	for _, key := range []struct {
		what string
		key  crypt.SigningKey
		ok   bool
	}{{"the enrolled host key", e.host.Signing, true}, {"another key", forger, false}} {
		id, data, err := signManifest(&Manifest{Version: FormatVersion, Repository: cfg.ID, Host: "host-a", Seq: 1, Regions: []string{"r1"}}, key.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyEnrolled(config, snapshotName(id), data); (err == nil) != key.ok {
			t.Errorf("manifest signed by %s: %v", key.what, err)
		}
		name, rec, err := signAudit(&AuditRecord{Version: FormatVersion, Repository: cfg.ID, Signer: HostSigner("host-a"), Seq: 1, Op: "backup", Result: "ok", Regions: []string{"r1"}}, key.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyEnrolled(config, name, rec); (err == nil) != key.ok {
			t.Errorf("audit record signed by %s: %v", key.what, err)
		}
	}
	if err := VerifyEnrolled(config, "data/ab/ab12", []byte("anything")); err != nil {
		t.Errorf("a pack: %v; only manifests and records are checked", err)
	}
}
