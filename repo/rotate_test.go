package repo

import (
	"context"
	"errors"
	"testing"

	"filippo.io/age"

	"vaultbak/crypt"
)

// Rotating the recovery key: after the old identity is replaced, the new
// one restores everything and the old one opens nothing stored; the hosts
// keep backing up and deduplicating.
func TestSetRecoveryRotates(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, crypt.KindX25519)
	data := [][]byte{randomBlob(11, 70000), textBlob(12, 50000), randomBlob(13, 3000)}
	w := newWriter(t, e.repo)
	ids := saveAll(t, w, data)
	snap := commitTree(t, e.repo, w, "f", ids, testTime)

	oldIDs := e.keysRecovery().Recovery
	newID, newRec, err := crypt.GenerateIdentity(crypt.KindX25519)
	if err != nil {
		t.Fatal(err)
	}
	admin := e.open(e.keysRecovery())
	if err := admin.SetRecovery(ctx, []string{newRec}, nil); err != nil {
		t.Fatal(err)
	}
	// The new identity restores everything.
	r, err := Open(ctx, e.regions, Keys{Recovery: []age.Identity{newID}})
	if err != nil {
		t.Fatalf("new recovery identity: %v", err)
	}
	checkBlobs(t, r, ids, data)
	if _, err := r.Body(ctx, snap); err != nil {
		t.Errorf("new identity reads the snapshot body: %v", err)
	}
	res, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(res.Problems) > 0 || len(res.Warnings) > 0 {
		t.Fatalf("check after rotation: %v %v %v", err, res.Problems, res.Warnings)
	}
	// The old identity opens nothing stored, in any region.
	if _, err := Open(ctx, e.regions, Keys{Recovery: oldIDs}); !errors.Is(err, crypt.ErrNoIdentity) {
		t.Errorf("old identity opens the repository: %v", err)
	}
	for i := range e.mems {
		for _, prefix := range []string{"data/", "index/", "keys/"} {
			for _, name := range e.names(i, prefix) {
				raw, _ := e.mems[i].Raw(name)
				if _, err := crypt.Open(raw, 1<<30, oldIDs); !errors.Is(err, crypt.ErrNoIdentity) {
					t.Errorf("region %d: the old identity opens %s (%v)", i+1, name, err)
				}
			}
		}
	}
	// The host goes on, and deduplicates against the rewrapped packs.
	hr, err := Open(ctx, e.regions, e.keysHost())
	if err != nil {
		t.Fatalf("host after rotation: %v", err)
	}
	hw := newWriter(t, hr)
	saveAll(t, hw, data)
	if hw.NewBlobs() != 0 {
		t.Errorf("host stored %d blobs again after rotation", hw.NewBlobs())
	}
	// Mixing kinds is refused.
	_, hybrid, _ := crypt.GenerateIdentity(crypt.KindHybrid)
	if err := r.SetRecovery(ctx, []string{hybrid}, nil); err == nil {
		t.Error("rotated an x25519 repository to a hybrid recipient")
	}
}
