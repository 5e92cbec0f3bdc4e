package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"vaultbak/repo"
)

// damagePack flips a byte of pack's age header, so that no blob of it can
// be read.
func damagePack(t *testing.T, pack string) {
	t.Helper()
	b, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 0xff
	if err := os.WriteFile(pack, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunGoesOnPastDamage: a file whose chunk (and a hard link to it) and
// a directory whose listing are damaged in the only region are reported, in walk order, in
// an *IncompleteError (an integrity failure) returned with the Result;
// everything else is restored and verified, the damaged file is not there
// under any name, and the directory made for the damaged listing is gone.
// Before, Run stopped at the damaged file, and files after it in the walk
// were not restored.
func TestRunGoesOnPastDamage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	rnd := rand.New(rand.NewPCG(1, 2))
	bad := make([]byte, 256<<10)
	for i := range bad {
		bad[i] = byte(rnd.Uint32())
	}
	files := map[string][]byte{
		"a.txt":        []byte("first\n"),
		"bad/bad.bin":  bad,
		"bad/keep.txt": []byte("beside the damaged file\n"),
		"lost/x.txt":   []byte("in a damaged directory\n"),
	}
	for i := range 30 {
		files[fmt.Sprintf("z/%02d.txt", i)] = fmt.Appendf(nil, "after the damage %d\n", i)
	}
	writeTree(t, src, files)
	// A hard link to the damaged file: the group's first link failing
	// leaves the other to be tried (and reported) on its own.
	if err := os.Link(filepath.Join(src, "bad/bad.bin"), filepath.Join(src, "bad/link.bin")); err != nil {
		t.Fatal(err)
	}
	// bad.bin's chunk, then lost's listing, each in a pack of its own
	// earlier run; the last snapshot reuses them.
	r, snaps, packs := backupRuns(t, src, []string{"bad/bad.bin"}, []string{"lost"}, []string{"."})
	if len(packs[0]) != 1 || len(packs[1]) != 1 {
		t.Fatalf("packs added by the first two runs: %q, want one each", packs[:2])
	}
	damagePack(t, packs[0][0])
	damagePack(t, packs[1][0])

	target := t.TempDir()
	res, err := Run(context.Background(), r, snaps[2], Options{Target: target}, nil)
	var ie *IncompleteError
	if !errors.As(err, &ie) || !errors.Is(err, repo.ErrIntegrity) || res == nil {
		t.Fatalf("Run: %v, %v; want a Result and an *IncompleteError", res, err)
	}
	var got []string
	for _, f := range ie.Failed {
		got = append(got, fmt.Sprintf("%s dir=%v", f.Path, f.Dir))
		if !errors.Is(f.Err, repo.ErrIntegrity) || !strings.Contains(f.Err.Error(), filepath.Base(packs[0][0])) && !strings.Contains(f.Err.Error(), filepath.Base(packs[1][0])) {
			t.Errorf("failure of %s: %v; want an integrity error naming the damaged pack", f.Path, f.Err)
		}
	}
	want := []string{src + "/bad/bad.bin dir=false", src + "/bad/link.bin dir=false", src + "/lost dir=true"}
	if !slices.Equal(got, want) {
		t.Errorf("failed %q, want %q", got, want)
	}
	if res.Files != uint64(len(files)-2) {
		t.Errorf("Result.Files %d, want %d", res.Files, len(files)-2)
	}
	if _, err := os.Lstat(filepath.Join(target, src, "bad/link.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the hard link to the damaged file is there (%v)", err)
	}
	root := filepath.Join(target, src)
	for rel, data := range files {
		b, err := os.ReadFile(filepath.Join(root, rel))
		switch {
		case rel == "bad/bad.bin" || strings.HasPrefix(rel, "lost/"):
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s, which could not be verified, is there (%v)", rel, err)
			}
		case err != nil || string(b) != string(data):
			t.Errorf("%s: restored %d bytes, %v; want its content", rel, len(b), err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "lost")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the directory whose listing is damaged was left (%v)", err)
	}
	filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".vaultbak-restore-") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})

	// Into a target that already holds a file where the damaged one goes,
	// that file stays as it was, and the failure says so.
	again := t.TempDir()
	old := filepath.Join(again, src, "bad/bad.bin")
	if err := os.MkdirAll(filepath.Dir(old), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old, []byte("an older version\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), r, snaps[2], Options{Target: again}, nil)
	if !errors.As(err, &ie) || !strings.Contains(ie.Failed[0].Err.Error(), "the file already at "+old+" was left as it was") {
		t.Errorf("restore over an older bad.bin: %v; want its failure to say the old file was left", err)
	}
	if b, _ := os.ReadFile(old); string(b) != "an older version\n" {
		t.Errorf("the older bad.bin now holds %q", b)
	}

	// Dump stays all-or-nothing.
	if err := Dump(context.Background(), r, snaps[2], src+"/bad/bad.bin", discard{}); !errors.Is(err, repo.ErrIntegrity) {
		t.Errorf("Dump of the damaged file: %v, want an integrity failure", err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestDataFailure: only an integrity failure of the entry's own data lets
// a restore go on; the target's errors (a full disk), a region that
// cannot be reached and a cancelled run stop it.
func TestDataFailure(t *testing.T) {
	damaged := &repo.IntegrityError{Region: "one", Object: "data/ab/abc", Reason: "content does not match its hash"}
	unreachable := &repo.RegionError{Region: "two", Err: errors.New("connection refused")}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"damaged in every region", context.Background(), fmt.Errorf("restore: /t/f: %w", errors.Join(damaged, damaged)), true},
		{"damaged in one region, the other unreachable", context.Background(), errors.Join(damaged, unreachable), true},
		{"content hash mismatch", context.Background(), &repo.IntegrityError{Object: "/t/f", Reason: "restored content does not match the snapshot"}, true},
		{"every region unreachable", context.Background(), errors.Join(unreachable, unreachable), false},
		{"disk full", context.Background(), fmt.Errorf("restore: /t/f: write: %w", &fs.PathError{Op: "write", Path: "/t/f", Err: syscall.ENOSPC}), false},
		{"wrong key", context.Background(), repo.ErrNeedRecovery, false},
		{"cancelled", cancelled, context.Canceled, false},
		{"damage seen while cancelled", cancelled, damaged, false},
	} {
		if got := dataFailure(c.ctx, c.err); got != c.want {
			t.Errorf("%s: dataFailure = %v, want %v", c.name, got, c.want)
		}
	}
}
