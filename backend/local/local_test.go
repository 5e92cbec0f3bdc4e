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

// What a writer killed mid-pack left at the top level is removed by the
// next writer once it is a day old; a younger one may be another writer's.
func TestStageSweepsStaleObjects(t *testing.T) {
	dir := t.TempDir()
	stale, fresh := filepath.Join(dir, ".tmp-1"), filepath.Join(dir, ".tmp-2")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("torn pack"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-25 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	s, err := newLocal(t, dir).Stage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a day-old staged object is still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh staged object was removed: %v", err)
	}
}
