package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chainOfThree backs up three versions of one file and returns the
// snapshot IDs, oldest first.
func chainOfThree(t *testing.T, e *repoEnv) (src string, ids []string) {
	t.Helper()
	src = filepath.Join(e.dir, "src")
	for _, v := range []string{"one\n", "two\n", "three\n"} {
		writeFile(t, filepath.Join(src, "f.txt"), []byte(v), 0o644)
		sum, _ := e.backupJSON(exitOK, src)
		ids = append(ids, sum["snapshot"].(string))
	}
	return src, ids
}

// deleteSnapshot removes a manifest from every region, as a storage
// operator (or a thief of the disks) can.
func deleteSnapshot(t *testing.T, e *repoEnv, id string) {
	t.Helper()
	for _, reg := range e.regions {
		if err := os.Remove(filepath.Join(reg, "snapshots", id)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRollbackDetectedByBackup: when the host's newest snapshot disappears
// from every region, the host's next backup refuses to continue the chain
// (exit 4) instead of silently forking history.
func TestRollbackDetectedByBackup(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src, ids := chainOfThree(t, e)
	deleteSnapshot(t, e, ids[2])
	r := e.expect(exitIntegrity, "backup", src)
	requireContains(t, "backup after a rollback", r.stderr, "rolled back")
	// Reads on the host see the rollback too: its high-water mark says #3.
	r = e.expect(exitIntegrity, "snapshots")
	requireContains(t, "snapshots after a rollback", r.stderr, "rolled back")
	for _, reg := range e.regions {
		if ents, err := os.ReadDir(filepath.Join(reg, "snapshots")); err != nil || len(ents) != 2 {
			t.Errorf("the refused backup changed the manifests of %s: %d (%v)", reg, len(ents), err)
		}
	}
}

// TestMissingChainLinkDetected: a storage operator deletes a snapshot in
// the middle of a host's chain from every region. DESIGN.md: a storage
// operator cannot "silently delete a snapshot without the restore or drill
// detecting it", and restore verifies "the chain (a missing link, a fork or
// a rollback is reported, not papered over)". So restoring the newest
// snapshot, whose predecessor link is broken, must not succeed silently.
func TestMissingChainLinkDetected(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	_, ids := chainOfThree(t, e)
	deleteSnapshot(t, e, ids[1])

	r := e.run(e.withID("restore", "latest", "--target", filepath.Join(e.dir, "out"))...)
	if r.code != exitIntegrity && r.code != exitWarnings {
		t.Errorf("restore latest with snapshot #2 of the chain deleted from every region: exit %d, want 4 (or at least 3 with a warning about the missing link)\n%s", r.code, r)
	} else if !strings.Contains(r.stderr, ids[1][:12]) && !strings.Contains(r.stderr, "chain") {
		t.Errorf("restore does not say which link of the chain is missing:\n%s", r)
	}
}

// TestSnapshotHiddenInOneRegion: a storage operator deletes a manifest from
// its region only. The manifest names the regions it was committed to, so
// the regions disagree: an integrity failure naming that region, on every
// read; replicate sync copies the manifest back from the other region.
func TestSnapshotHiddenInOneRegion(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	_, ids := chainOfThree(t, e)
	if err := os.Remove(filepath.Join(e.regions[1], "snapshots", ids[1])); err != nil {
		t.Fatal(err)
	}
	r := e.expect(exitIntegrity, "snapshots")
	requireContains(t, "snapshots with a hidden manifest", r.stderr, "region two")
	r = e.expect(exitIntegrity, e.withID("restore", "latest", "--target", filepath.Join(e.dir, "out"))...)
	requireContains(t, "restore with a hidden manifest", r.stderr, ids[1])
	r = e.expect(exitIntegrity, "check")
	requireContains(t, "check with a hidden manifest", r.stderr, "region two")
	e.ok("replicate", "sync")
	e.ok("check")
	e.ok("snapshots")
}
