package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRecoveryRotationAndSecondHost drives key rotation and a second host
// through the binary: a host enrolled by the recovery holder backs up the
// same data and adds almost nothing (the hosts deduplicate against each
// other); after add-recovery NEW and remove-recovery OLD, the old identity
// opens nothing while the new one restores byte for byte; the audit trail
// still verifies (the retired operator key's records stay valid) and names
// every step.
func TestRecoveryRotationAndSecondHost(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "one", "two")
	src := filepath.Join(e.dir, "src")
	writeRandomFile(t, filepath.Join(src, "a.bin"), 31, 3<<20)
	writeFile(t, filepath.Join(src, "b.txt"), textBytes(32, 200<<10), 0o644)
	want := scanTree(t, src)
	e.ok("backup", src)

	key2 := filepath.Join(e.dir, "second.key")
	e.ok(e.withID("host", "enroll", "second", "--out", key2)...)
	requireMode(t, key2, 0o600)
	sum, _ := e.backupJSON(exitOK, "--host-key", key2, src)
	if added := num(t, sum, "added_bytes"); added > 64<<10 {
		t.Errorf("the second host stored %.0f new bytes for data the first already holds", added)
	}

	newKey := filepath.Join(e.dir, "new-recovery.key")
	newRecipient := strings.TrimSpace(e.ok("keygen", "--out", newKey).stdout)
	oldRecipient := strings.TrimSpace(e.ok("keygen", "--out", filepath.Join(e.dir, "scratch.key")).stdout)
	for _, line := range strings.Split(e.ok(e.withID("key", "list")...).stdout, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[len(f)-1], "age1") {
			oldRecipient = f[len(f)-1]
		}
	}
	e.ok(e.withID("key", "add-recovery", newRecipient)...)
	e.ok("--identity", newKey, "key", "remove-recovery", oldRecipient)
	list := e.ok("--identity", newKey, "key", "list").stdout
	if strings.Contains(list, oldRecipient) || !strings.Contains(list, newRecipient) {
		t.Fatalf("after rotation key list shows:\n%s", list)
	}

	old := e.run(e.withID("restore", "latest", "--target", filepath.Join(e.dir, "old"))...)
	if old.code == exitOK {
		t.Fatalf("the removed recovery identity still restores:\n%s", old)
	}
	t.Logf("removed identity: exit %d: %s", old.code, strings.TrimSpace(old.stderr))
	target := filepath.Join(e.dir, "new")
	e.ok("--identity", newKey, "restore", "latest", "--host", "e2e-host", "--target", target)
	compareTrees(t, want, restoredPath(target, src))
	e.ok("--identity", newKey, "check", "--read-data")

	e.ok("audit", "verify")
	trail := e.ok("--json", "audit").stdout
	for _, op := range []string{"host enroll", "key add-recovery", "key remove-recovery", "restore"} {
		if !strings.Contains(trail, `"op":"`+op+`"`) {
			t.Errorf("the audit trail has no %q record:\n%s", op, trail)
		}
	}
	if !strings.Contains(trail, `"signer":"host second"`) {
		t.Errorf("the audit trail has no record signed by the second host:\n%s", trail)
	}
}
