package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const nobody = 65534

// sharedTempDir returns a t.TempDir that other users can traverse.
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func chownTree(t *testing.T, root string, uid, gid int) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// unreadableSetup creates a repository and a tree holding a file and a
// directory that backup cannot read. It returns the options that run the
// backup as a user for whom they are unreadable (nobody, when the tests
// run as root).
func unreadableSetup(t *testing.T) (e *repoEnv, src string, o runOpts, locked, closedDir string) {
	t.Helper()
	asRoot := os.Geteuid() == 0
	dir := t.TempDir()
	if asRoot {
		dir = sharedTempDir(t)
	}
	e = newRepoIn(t, dir)
	src = filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "ok-1.txt"), textBytes(5, 50<<10), 0o644)
	writeFile(t, filepath.Join(src, "sub", "ok-2.bin"), randomBytes(6, 300<<10), 0o644)
	locked = filepath.Join(src, "sub", "locked.txt")
	writeFile(t, locked, []byte("you cannot read me\n"), 0o000)
	closedDir = filepath.Join(src, "closed-dir")
	writeFile(t, filepath.Join(closedDir, "inside"), []byte("behind a closed door\n"), 0o644)
	if err := os.Chmod(closedDir, 0o000); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(closedDir, 0o755) })
	if asRoot {
		mkdirs(t, e.cache)
		for _, p := range append([]string{e.cache}, e.regions...) {
			chownTree(t, p, nobody, nobody)
		}
		if err := os.Chown(e.hostKey, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		o.cred = &syscall.Credential{Uid: nobody, Gid: nobody}
	}
	return e, src, o, locked, closedDir
}

// TestUnreadableFileWarns backs up a tree with a file (and a directory) the
// backup cannot read: a warning names each, the exit code is 3, the
// snapshot is saved and holds everything else. --strict fails instead
// (exit 1) and saves nothing.
//
// Root reads anything, so as root the backups run as nobody (uid/gid
// 65534) with the repository, cache and host credential handed to it.
func TestUnreadableFileWarns(t *testing.T) {
	t.Parallel()
	e, src, o, locked, closedDir := unreadableSetup(t)

	r := e.runWith(o, "backup", src)
	if r.code != exitWarnings {
		t.Fatalf("backup with an unreadable file: want exit %d\n%s", exitWarnings, r)
	}
	requireContains(t, "backup warnings", r.stderr, "warning: "+locked)
	requireContains(t, "backup warnings", r.stderr, closedDir)
	requireContains(t, "backup warnings", r.stderr, "permission denied")
	if n := len(e.snapshots()); n != 1 {
		t.Fatalf("after a backup with warnings: %d snapshots, want 1", n)
	}

	// The same in JSON: warning objects naming the paths, a summary counting them.
	r = e.runWith(o, "--json", "backup", src)
	if r.code != exitWarnings {
		t.Fatalf("backup --json with an unreadable file: want exit %d\n%s", exitWarnings, r)
	}
	objs := jsonLines(t, r.stdout)
	sum := findSummary(t, objs, r) // TestJSONWarningsEndWithSummary checks its place
	warned := map[string]bool{}
	for _, obj := range objs {
		if obj["type"] == "warning" {
			p, _ := obj["path"].(string)
			warned[p] = true
		}
	}
	if !warned[locked] || !warned[closedDir] {
		t.Errorf("backup --json warnings name %v, want %s and %s", warned, locked, closedDir)
	}
	if num(t, sum, "warnings") < 2 {
		t.Errorf("backup --json summary counts %v warnings, want 2", sum["warnings"])
	}

	// Everything readable was saved and restores.
	target := filepath.Join(e.dir, "restore")
	e.ok(e.withID("restore", "latest", "--target", target)...)
	for _, rel := range []string{"ok-1.txt", "sub/ok-2.bin"} {
		if fileSHA256(t, filepath.Join(restoredPath(target, src), rel)) != fileSHA256(t, filepath.Join(src, rel)) {
			t.Errorf("%s: restored content differs", rel)
		}
	}
	if _, err := os.Lstat(restoredPath(target, locked)); err == nil {
		t.Errorf("%s restored although it could not be read", locked)
	}

	// --strict: the unreadable file is a failure and no snapshot is saved.
	before := len(e.snapshots())
	r = e.runWith(o, "backup", "--strict", src)
	if r.code != exitFailure {
		t.Fatalf("backup --strict with an unreadable file: want exit %d\n%s", exitFailure, r)
	}
	if !strings.Contains(r.stderr, locked) && !strings.Contains(r.stderr, closedDir) {
		t.Errorf("backup --strict failure does not name the unreadable path:\n%s", r)
	}
	if after := len(e.snapshots()); after != before {
		t.Errorf("backup --strict failed but the snapshot count went from %d to %d", before, after)
	}
}
