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

// unplug renames region i's directory away, as a disk that is not mounted,
// and returns a function that plugs it back in.
func unplug(t *testing.T, e *repoEnv, i int) (plug func()) {
	t.Helper()
	away := e.regions[i] + ".unplugged"
	if err := os.Rename(e.regions[i], away); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Rename(away, e.regions[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// secondWhileTwoUnplugged backs up src/f.txt into regions one and two,
// then again with region two unplugged (exit 3), and plugs it back in. It
// returns the repository, src and the second backup's summary.
func secondWhileTwoUnplugged(t *testing.T) (*repoEnv, string, map[string]any) {
	t.Helper()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "f.txt"), []byte("one\n"), 0o644)
	e.backupJSON(exitOK, src)
	plugTwo := unplug(t, e, 1)
	writeFile(t, filepath.Join(src, "f.txt"), []byte("two\n"), 0o644)
	second, _ := e.backupJSON(exitWarnings, src)
	plugTwo()
	return e, src, second
}

// TestNewestSnapshotAway: the host's newest snapshot was committed while
// region two was unplugged; now two is back and one is unplugged. What
// answers lags, it was not rolled back: reads list what two holds and warn
// that the newest snapshot is in region one, the next backup continues the
// chain after it (exit 3, one lags), its restore is verified, and with
// both back replicate sync heals them. The audit trail, whose records
// have the same hole, checks as well. A region that answers but lists
// less of the chain than it held is still a rollback.
func TestNewestSnapshotAway(t *testing.T) {
	t.Parallel()
	e, src, second := secondWhileTwoUnplugged(t)
	plugOne := unplug(t, e, 0)

	away := second["snapshot"].(string)[:12]
	r := e.expect(exitWarnings, "replicate", "status")
	requireContains(t, "replicate status with region one unplugged", r.stdout, "region one: did not answer")
	if strings.Contains(r.stdout, "one: 0 objects") || strings.Contains(r.stdout, "#0") {
		t.Errorf("replicate status shows the unplugged region as empty:\n%s", r)
	}
	r = e.expect(exitOK, "snapshots")
	requireContains(t, "snapshots while the newest is away", r.stderr, "#2 ("+away+") is in region(s) one, which did not answer")
	writeFile(t, filepath.Join(src, "f.txt"), []byte("three\n"), 0o644)
	third, r := e.backupJSON(exitWarnings, src)
	requireContains(t, "backup while the newest is away (a --json warning)", r.stdout, "the new snapshot follows it")
	out := filepath.Join(e.dir, "out")
	e.ok(e.withID("restore", "latest", "--target", out)...)
	if got, _ := os.ReadFile(filepath.Join(out, src, "f.txt")); string(got) != "three\n" {
		t.Errorf("restore of the snapshot made while one was unplugged: f.txt = %q", got)
	}

	// The audit trail has the same hole: backup #2's record is in one
	// only. check warns that one did not answer (exit 3), no more.
	r = e.expect(exitWarnings, "check")
	if strings.Contains(r.stderr, "integrity") {
		t.Errorf("check while one is unplugged reports an integrity failure:\n%s", r)
	}
	e.ok("audit")

	plugOne()
	e.ok("replicate", "sync")
	e.ok("check")
	snaps := e.snapshots()
	if len(snaps) != 3 || snaps[2]["id"] != third["snapshot"] || snaps[1]["id"] != second["snapshot"] {
		t.Fatalf("after healing: %d snapshots, want the chain of three ending in %s:\n%v", len(snaps), third["snapshot"], snaps)
	}

	// Region two held #3 when this host committed it: two losing it, while
	// one is unplugged, is a rollback, not lag.
	if err := os.Remove(filepath.Join(e.regions[1], "snapshots", third["snapshot"].(string))); err != nil {
		t.Fatal(err)
	}
	unplug(t, e, 0)
	r = e.expect(exitIntegrity, "snapshots")
	requireContains(t, "snapshots after region two lost #3", r.stderr, "rolled back")
}

// TestAwaySnapshotDeletedLater: as in TestNewestSnapshotAway, snapshot #2
// and its audit record are only in region one, and #3 is committed while
// one is unplugged. A storage operator then deletes #2 and that record
// from one before it is plugged back: the host's mark said one held them,
// and #3 and the next records carry that, so the hole is a deletion
// (exit 4), not lag.
func TestAwaySnapshotDeletedLater(t *testing.T) {
	t.Parallel()
	e, src, second := secondWhileTwoUnplugged(t)
	audits := func(i int) map[string]bool {
		ents, _ := os.ReadDir(filepath.Join(e.regions[i], "audit"))
		out := map[string]bool{}
		for _, d := range ents {
			out[d.Name()] = true
		}
		return out
	}
	var onlyInOne []string // the records region two missed
	for name := range audits(0) {
		if !audits(1)[name] {
			onlyInOne = append(onlyInOne, name)
		}
	}
	if len(onlyInOne) == 0 {
		t.Fatal("no audit record is in region one only")
	}
	plugOne := unplug(t, e, 0)
	writeFile(t, filepath.Join(src, "f.txt"), []byte("three\n"), 0o644)
	e.backupJSON(exitWarnings, src)

	away := e.regions[0] + ".unplugged"
	if err := os.Remove(filepath.Join(away, "snapshots", second["snapshot"].(string))); err != nil {
		t.Fatal(err)
	}
	for _, name := range onlyInOne {
		if err := os.Remove(filepath.Join(away, "audit", name)); err != nil {
			t.Fatal(err)
		}
	}
	plugOne()
	r := e.expect(exitIntegrity, "snapshots")
	requireContains(t, "snapshots after #2 was deleted from the region that alone held it", r.stderr, "#2")
	r = e.expect(exitIntegrity, "check")
	requireContains(t, "check after the audit records only region one held were deleted", r.stderr, "audit")
}
