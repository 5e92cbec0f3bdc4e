package local_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vaultbak/backend"
	"vaultbak/backend/backendtest"
	"vaultbak/backend/local"
)

func newLocal(t *testing.T, dir string) *local.Local {
	t.Helper()
	l, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return newLocal(t, t.TempDir()) })
}

// walk returns every path below dir, relative and slash-separated, with its mode.
func walk(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	modes := make(map[string]fs.FileMode)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		modes[filepath.ToSlash(rel)] = fi.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return modes
}

func TestLayoutAndPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "region", "repo") // New creates missing parents
	l := newLocal(t, dir)
	for _, name := range []string{"config", "keys/k1", "data/ab/ab12", "data/ab/ab34", "snapshots/s1"} {
		if err := l.Put(t.Context(), name, []byte(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Put(t.Context(), "config", []byte("again")); err != nil {
		t.Fatal(err)
	}
	want := map[string]fs.FileMode{
		".":            fs.ModeDir | 0o700,
		"config":       0o600,
		"keys":         fs.ModeDir | 0o700,
		"keys/k1":      0o600,
		"data":         fs.ModeDir | 0o700,
		"data/ab":      fs.ModeDir | 0o700,
		"data/ab/ab12": 0o600,
		"data/ab/ab34": 0o600,
		"snapshots":    fs.ModeDir | 0o700,
		"snapshots/s1": 0o600,
	}
	got := walk(t, dir)
	for path, mode := range got {
		if strings.Contains(path, ".tmp-") {
			t.Errorf("temporary file %s left behind", path)
		} else if want[path] != mode {
			t.Errorf("%s: mode %v, want %v", path, mode, want[path])
		}
	}
	if len(got) != len(want) {
		t.Errorf("found %d paths, want %d: %v", len(got), len(want), got)
	}
}

func TestListSkipsTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	l := newLocal(t, dir)
	if err := l.Put(t.Context(), "data/ab/ab12", []byte("pack")); err != nil {
		t.Fatal(err)
	}
	// What a Put interrupted by a crash leaves behind.
	if err := os.WriteFile(filepath.Join(dir, "data", "ab", ".tmp-123"), []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	var names []string
	err := l.List(t.Context(), "", func(info backend.Info) error {
		names = append(names, info.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "data/ab/ab12" {
		t.Errorf("List = %q, want [data/ab/ab12]", names)
	}
	if err := l.Put(t.Context(), "data/ab/.tmp-1", nil); err == nil {
		t.Error("Put of a name that looks like a temporary file succeeded")
	}
}

func TestInvalidNameStaysInside(t *testing.T) {
	parent := t.TempDir()
	l := newLocal(t, filepath.Join(parent, "repo"))
	if err := l.Put(t.Context(), "../escaped", []byte("x")); err == nil {
		t.Fatal("Put(../escaped) succeeded")
	}
	if _, err := os.Stat(filepath.Join(parent, "escaped")); !os.IsNotExist(err) {
		t.Errorf("file written outside the repository: %v", err)
	}
}

func TestErrorMessage(t *testing.T) {
	l := newLocal(t, t.TempDir())
	_, err := l.Open(t.Context(), "snapshots/abc")
	if want := "local: open snapshots/abc: object not found"; err == nil || err.Error() != want {
		t.Errorf("Open error = %v, want %q", err, want)
	}
}

func TestLocationIsAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	l := newLocal(t, "rel")
	if !filepath.IsAbs(l.Location()) {
		t.Errorf("Location() = %q, want an absolute path", l.Location())
	}
}

// A staged object is invisible until Commit, lands under its name with
// Put's mode, and leaves nothing behind when aborted.
func TestStage(t *testing.T) {
	dir := t.TempDir()
	l := newLocal(t, dir)
	listed := func() []string {
		var names []string
		l.List(t.Context(), "", func(info backend.Info) error {
			names = append(names, info.Name)
			return nil
		})
		return names
	}
	s, err := l.Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"sealed ", "pack ", "bytes"} {
		if _, err := s.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if names := listed(); len(names) != 0 {
		t.Errorf("List before Commit = %q, want nothing", names)
	}
	if err := s.Commit(t.Context(), "data/cd/cd34"); err != nil {
		t.Fatal(err)
	}
	s.Abort() // after Commit: nothing
	got, err := os.ReadFile(filepath.Join(dir, "data", "cd", "cd34"))
	if err != nil || string(got) != "sealed pack bytes" {
		t.Fatalf("committed object = %q, %v", got, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "data", "cd", "cd34")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("committed object mode: %v, %v", fi.Mode(), err)
	}

	s, err = l.Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("torn"))
	if err := s.Commit(t.Context(), "data/cd/.tmp-9"); err == nil {
		t.Error("Commit under a temporary file's name succeeded")
	}
	s.Abort()
	if err := s.Commit(t.Context(), "../escape"); err == nil {
		t.Error("Commit under an invalid name succeeded")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("aborted stage left %s", e.Name())
		}
	}
	if names := listed(); len(names) != 1 || names[0] != "data/cd/cd34" {
		t.Errorf("List = %q, want [data/cd/cd34]", names)
	}
}

// ageFile sets path's modification time to age ago.
func ageFile(t *testing.T, path string, age time.Duration) {
	t.Helper()
	old := time.Now().Add(-age)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// What killed writers left, at the top level (a staged pack) and beside an
// object (a Put), is removed once it has gone unchanged for a day; a
// younger temporary file may be a live writer's, and a file that merely
// looks like one is not the backend's to remove.
func TestSweep(t *testing.T) {
	dir := t.TempDir()
	l := newLocal(t, dir)
	if err := l.Put(t.Context(), "data/ab/ab12", []byte("pack")); err != nil {
		t.Fatal(err)
	}
	files := map[string]struct {
		age    time.Duration
		remove bool
	}{
		".tmp-1234567890":    {25 * time.Hour, true},  // a staged pack
		"data/ab/.tmp-42":    {25 * time.Hour, true},  // a pack Put
		"snapshots/.tmp-7":   {48 * time.Hour, true},  // a manifest Put
		".tmp-2":             {time.Hour, false},      // maybe a live writer's
		"data/ab/.tmp-3":     {23 * time.Hour, false}, // likewise
		".tmp-old":           {25 * time.Hour, false}, // not a name Put or Stage writes
		".tmp-12345678901":   {25 * time.Hour, false}, // more digits than a uint32 has
		"data/ab/.tmp-":      {25 * time.Hour, false},
		"data/ab/x.tmp-5":    {25 * time.Hour, false},
		"data/ab/ab12.tmp-5": {25 * time.Hour, false},
	}
	var wantBytes int64
	for name, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
		ageFile(t, p, f.age)
		if f.remove {
			wantBytes += int64(len(name))
		}
	}

	before, err := l.Strays(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if before.Files != 5 || before.Stale != 3 || before.StaleBytes != wantBytes || before.StaleAfter != 24*time.Hour {
		t.Errorf("Strays = %+v, want 5 files, 3 stale of %d bytes, stale after 24h", before, wantBytes)
	}
	swept, err := l.Sweep(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if swept.Files != 3 || swept.Bytes != wantBytes {
		t.Errorf("Sweep removed %+v, want 3 files of %d bytes", swept, wantBytes)
	}
	for name, f := range files {
		_, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(name)))
		if f.remove && !os.IsNotExist(err) {
			t.Errorf("%s (%v old) is still there: %v", name, f.age, err)
		} else if !f.remove && err != nil {
			t.Errorf("%s (%v old) was removed: %v", name, f.age, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "data", "ab", "ab12")); err != nil || string(got) != "pack" {
		t.Errorf("the object beside the temporary file: %q, %v", got, err)
	}
	after, err := l.Strays(t.Context())
	if err != nil || after.Files != 2 || after.Stale != 0 {
		t.Errorf("Strays after Sweep = %+v, %v; want the 2 fresh files", after, err)
	}
}

// Sweep never follows a symbolic link: not one named like a temporary file
// (neither it nor its day-old target is removed), nor one to a directory
// that holds day-old temporary files.
func TestSweepSkipsSymlinks(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	l := newLocal(t, dir)
	target := filepath.Join(outside, ".tmp-1")
	if err := os.WriteFile(target, []byte("not the region's"), 0o600); err != nil {
		t.Fatal(err)
	}
	ageFile(t, target, 48*time.Hour)
	link := filepath.Join(dir, ".tmp-2")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dirLink := filepath.Join(dir, "data")
	if err := os.Symlink(outside, dirLink); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	for _, p := range []string{link, dirLink} {
		if err := os.Chtimes(p, old, old); err != nil { // follows: ages the target again
			t.Fatal(err)
		}
	}
	st, err := l.Strays(t.Context())
	if err != nil || st.Files != 0 {
		t.Errorf("Strays = %+v, %v; want nothing (symbolic links are not temporary files)", st, err)
	}
	swept, err := l.Sweep(t.Context())
	if err != nil || swept.Files != 0 {
		t.Errorf("Sweep = %+v, %v; want nothing removed", swept, err)
	}
	for _, p := range []string{link, dirLink, target} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// An open staged object keeps its file's modification time fresh, so that
// a writer that adds nothing to its pack for a day (its input all
// deduplicated, a stalled stream) does not lose it to another's Sweep.
func TestStagedStaysFresh(t *testing.T) {
	local.SetTouchStaged(t.Cleanup, 10*time.Millisecond)
	dir := t.TempDir()
	l := newLocal(t, dir)
	s, err := l.Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	if _, err := s.Write([]byte("age header")); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("ReadDir = %v, %v; want the staged file", entries, err)
	}
	path := filepath.Join(dir, entries[0].Name())
	ageFile(t, path, 25*time.Hour) // as if idle for a day
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(fi.ModTime()) < time.Hour {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the staged file's mtime stayed %v", fi.ModTime())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if swept, err := l.Sweep(t.Context()); err != nil || swept.Files != 0 {
		t.Errorf("Sweep = %+v, %v; want the open staged object kept", swept, err)
	}
	if err := s.Commit(t.Context(), "data/ab/ab12"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // no touch after Commit recreates anything
	if st, err := l.Strays(t.Context()); err != nil || st.Files != 0 {
		t.Errorf("after Commit: Strays = %+v, %v; want none", st, err)
	}
}
