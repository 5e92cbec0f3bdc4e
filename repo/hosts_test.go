package repo

import (
	"context"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"vaultbak/crypt"
)

// A second host enrolled by the recovery holder backs up into the same
// repository and deduplicates against the first; once revoked it can no
// longer open the repository, its later manifests are rejected and its
// earlier ones stay valid.
func TestEnrollAndRevokeHost(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, crypt.KindX25519)
	data := [][]byte{randomBlob(7, 40000), textBlob(8, 30000)}
	w := newWriter(t, e.repo)
	ids := saveAll(t, w, data)
	commitTree(t, e.repo, w, "a", ids, testTime)

	admin := e.open(e.keysRecovery())
	beta, err := admin.EnrollHost(ctx, "beta", testTime)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.EnrollHost(ctx, "beta", testTime); err == nil {
		t.Error("enrolled the same host name twice")
	}
	br, err := Open(ctx, e.regions, Keys{Host: beta})
	if err != nil {
		t.Fatalf("enrolled host cannot open the repository: %v", err)
	}
	bw := newWriter(t, br)
	saveAll(t, bw, data)
	if n := bw.NewBlobs(); n != 0 {
		t.Errorf("second host stored %d blobs the first had stored", n)
	}
	betaSnap := commitTree(t, br, bw, "b", ids, testTime.Add(time.Minute))

	// The first host still opens the repository (new keys file, re-sealed index).
	if _, err := Open(ctx, e.regions, e.keysHost()); err != nil {
		t.Fatalf("first host after an enrolment: %v", err)
	}

	admin = e.open(e.keysRecovery())
	if err := admin.RevokeHost(ctx, "beta", testTime.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, e.regions, Keys{Host: beta}); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked host opened the repository: %v", err)
	}
	// Its secrets no longer open: the revoked writer was left out.
	for _, name := range e.names(0, "keys/") {
		raw, _ := e.mems[0].Raw(name)
		if _, err := openSecrets(raw, []age.Identity{beta.Writer}); err == nil {
			t.Errorf("revoked host still opens %s", name)
		}
	}
	r := e.open(e.keysRecovery())
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatalf("snapshots after revocation: %v", err)
	}
	found := false
	for _, s := range snaps {
		found = found || s.ID == betaSnap.ID
	}
	if !found {
		t.Error("the revoked host's earlier snapshot is gone")
	}
	res, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(res.Problems) > 0 {
		t.Fatalf("check after enrol and revoke: %v %v", err, res.Problems)
	}
}
