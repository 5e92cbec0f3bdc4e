package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKillDuringBackup SIGKILLs a backup of a single region once it has
// uploaded several packs and flushed an index file, then checks the
// promise: the repository stays usable, the next backup completes and
// reuses what was uploaded, check and check --read-data pass, and the
// snapshot restores exactly.
func TestKillDuringBackup(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "solo")
	region := e.regions[0]
	src := filepath.Join(e.dir, "src")
	const fileSize = 30 << 20
	nfiles := 10 // 300 MiB: about 19 packs of 16 MiB; an index is flushed every 8
	for i := range nfiles {
		writeRandomFile(t, filepath.Join(src, fmt.Sprintf("dir-%d/file-%d.bin", i%3, i)), uint64(900+i), fileSize)
	}
	total := int64(nfiles * fileSize)

	cmd := exec.Command(vbBin, "backup", src)
	cmd.Dir = e.dir
	cmd.Env = e.env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Wait for at least 2 packs and 1 index file, then kill.
	var packs, indexes int
	deadline := time.After(2 * time.Minute)
poll:
	for {
		select {
		case err := <-exited:
			t.Fatalf("backup finished (%v) before it could be killed: %d packs, %d index files seen\n%s", err, packs, indexes, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("backup wrote %d packs and %d index files in 2 minutes", packs, indexes)
		case <-time.After(time.Millisecond):
		}
		indexes = len(objects(t, region, "index"))
		if indexes >= 1 {
			packs = len(objects(t, region, "data"))
			if packs >= 2 {
				break poll
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-exited
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("backup was not killed by SIGKILL: %v", err)
	}
	packs = len(objects(t, region, "data"))
	indexes = len(objects(t, region, "index"))
	packBytes := dirSize(t, filepath.Join(region, "data"))
	tmpFiles := 0
	filepath.WalkDir(region, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			tmpFiles++
		}
		return nil
	})
	t.Logf("killed after %d packs (%s incl. temporary files) and %d index files of a %s backup; %d temporary files left", packs, mib(packBytes), indexes, mib(total), tmpFiles)

	// Nothing was committed and the repository is usable.
	if n := len(e.snapshots()); n != 0 {
		t.Fatalf("an interrupted backup left %d snapshots", n)
	}
	e.ok("check")

	sum, _ := e.backupJSON(exitOK, src)
	added := int64(num(t, sum, "added_bytes"))
	reused := total - added
	t.Logf("backup after the kill: added %s of %s (%.1f%%): %s (%.1f%%) that the killed run had uploaded (%s in %d packs, %d index files) was reused",
		mib(added), mib(total), 100*float64(added)/float64(total), mib(reused), 100*float64(reused)/float64(total), mib(packBytes), packs, indexes)
	// Every index file describes 8 packs of ~16 MiB that need not be
	// uploaded again.
	if want := int64(indexes) * 8 * 15 << 20; reused < want {
		t.Errorf("the backup after the kill reused %s, want at least %s (the %d index files flushed before the kill)", mib(reused), mib(want), indexes)
	}
	e.ok("check")
	e.ok(e.withID("check", "--read-data")...)

	target := filepath.Join(e.dir, "restore")
	e.ok(e.withID("restore", "latest", "--target", target)...)
	want := scanTree(t, src)
	compareTrees(t, want, restoredPath(target, src))
}

// TestInterruptDuringBackup sends SIGINT to a running backup: it stops with
// exit 130 and no snapshot, and the next backup completes.
func TestInterruptDuringBackup(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "solo")
	src := filepath.Join(e.dir, "src")
	for i := range 4 {
		writeRandomFile(t, filepath.Join(src, fmt.Sprintf("f%d.bin", i)), uint64(950+i), 40<<20)
	}
	cmd, exited, stderr := startBackupUntilPack(t, e, src)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-exited:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("backup did not stop within a minute of SIGINT")
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 130 {
		t.Errorf("backup interrupted with SIGINT: exit %d (%v), want 130\n%s", code, err, stderr.String())
	}
	if n := len(e.snapshots()); n != 0 {
		t.Errorf("an interrupted backup left %d snapshots", n)
	}
	e.ok("backup", src)
	e.ok(e.withID("check", "--read-data")...)
}

// startBackupUntilPack starts a backup of src and returns once the first
// region holds a pack: the running command, its exit and its stderr.
func startBackupUntilPack(t *testing.T, e *repoEnv, src string) (*exec.Cmd, <-chan error, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(vbBin, "backup", src)
	cmd.Dir = e.dir
	cmd.Env = e.env()
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	for len(objects(t, e.regions[0], "data")) == 0 {
		select {
		case err := <-exited:
			t.Fatalf("backup finished (%v) before it could be stopped\n%s", err, stderr.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatal("no pack uploaded in 2 minutes")
		case <-time.After(time.Millisecond):
		}
	}
	return cmd, exited, stderr
}

// tempFiles returns the temporary files anywhere in a region's directory.
func tempFiles(t *testing.T, region string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(region, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKilledBackupTempFilesSwept SIGKILLs a backup of a local region while
// it stages a pack. check reports the staged file it left (a warning that
// leaves the exit code 0: it may as well be a running backup's pack), and
// says once the file is a day old that the next backup removes it; the
// next backup does, and the repository checks clean.
func TestKilledBackupTempFilesSwept(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "solo")
	region := e.regions[0]
	src := filepath.Join(e.dir, "src")
	for i := range 4 {
		writeRandomFile(t, filepath.Join(src, fmt.Sprintf("f%d.bin", i)), uint64(970+i), 24<<20)
	}
	// Once a pack is committed, the writer stages the next one.
	cmd, exited, _ := startBackupUntilPack(t, e, src)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil {
		t.Fatal("backup finished before SIGKILL took")
	}
	left := tempFiles(t, region)
	if len(left) == 0 {
		t.Fatal("the killed backup left no temporary file: nothing to test")
	}
	var leftBytes int64
	for _, p := range left {
		if fi, err := os.Lstat(p); err == nil {
			leftBytes += fi.Size()
		}
	}
	t.Logf("the killed backup left %d temporary file(s), %s", len(left), mib(leftBytes))

	r := e.ok("check")
	requireContains(t, "check's stderr", r.stderr, fmt.Sprintf("warning: region solo: %d temporary file", len(left)))
	requireContains(t, "check's stderr", r.stderr, "once unchanged for 24h")
	r = e.ok("--json", "check")
	var warned bool
	for _, o := range jsonLines(t, r.stdout) {
		if o["type"] == "warning" && o["region"] == "solo" {
			warned = true
			if num(t, o, "temporary_files") != float64(len(left)) || num(t, o, "stale_files") != 0 {
				t.Errorf("check --json warning = %v, want %d temporary files, none stale", o, len(left))
			}
		}
	}
	if !warned {
		t.Errorf("check --json reported no temporary files\n%s", r)
	}
	if s := requireSummary(t, jsonLines(t, r.stdout), r); num(t, s, "warnings") != 0 {
		t.Errorf("check --json summary counts the temporary files as warnings: %v", s)
	}

	old := time.Now().Add(-25 * time.Hour)
	for _, p := range left {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	r = e.ok("check")
	requireContains(t, "check's stderr", r.stderr, "unchanged for over 24h")
	requireContains(t, "check's stderr", r.stderr, "removed by the next backup")

	e.ok("backup", src)
	for _, p := range left {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the backup after the kill left %s: %v", p, err)
		}
	}
	if rest := tempFiles(t, region); len(rest) != 0 {
		t.Errorf("temporary files after a completed backup: %q", rest)
	}
	r = e.ok("check")
	if strings.Contains(r.stderr, "temporary") {
		t.Errorf("check still reports temporary files\n%s", r)
	}
	e.ok(e.withID("check", "--read-data")...)
}
