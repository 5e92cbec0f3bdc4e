package restore

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"vaultbak/backend/local"
	"vaultbak/backup"
	"vaultbak/crypt"
	"vaultbak/repo"
)

// testSnapshot backs up files (relative name → content) from a source
// directory into a repository on one local region. It returns the
// repository opened with the recovery identity, the snapshot and the
// source directory (its absolute path is the files' path in the snapshot).
func testSnapshot(t *testing.T, files map[string]string) (*repo.Repository, *repo.Snapshot, string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, files)
	r, snaps, _ := backupRuns(t, src, []string{"."})
	return r, snaps[0], src
}

// writeTree writes files (relative name → content) below dir.
func writeTree[T string | []byte](t *testing.T, dir string, files map[string]T) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// backupRuns backs up each of runs (paths below src) as its own snapshot
// into a repository on one local region, and returns the repository opened
// with the recovery identity, the snapshots and, for each run, the packs it
// added (their files in the region).
func backupRuns(t *testing.T, src string, runs ...[]string) (*repo.Repository, []*repo.Snapshot, [][]string) {
	t.Helper()
	ctx := context.Background()
	region := filepath.Join(t.TempDir(), "region")
	be, err := local.New(region)
	if err != nil {
		t.Fatal(err)
	}
	regions := []*repo.Region{{Name: "region", Backend: be}}
	id, rec, err := crypt.GenerateIdentity(crypt.KindX25519)
	if err != nil {
		t.Fatal(err)
	}
	w, host, err := repo.Init(ctx, regions, repo.InitOptions{Recovery: []string{rec}, Host: "test", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	var snaps []*repo.Snapshot
	var added [][]string
	seen := map[string]bool{}
	for _, paths := range runs {
		w, err := repo.Open(ctx, regions, repo.Keys{Host: host})
		if err != nil {
			t.Fatal(err)
		}
		var abs []string
		for _, p := range paths {
			abs = append(abs, filepath.Join(src, p))
		}
		res, err := backup.Run(ctx, w, backup.Options{Paths: abs}, nil)
		w.Close()
		if err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, res.Snapshot)
		var packs []string
		filepath.WalkDir(filepath.Join(region, "data"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && !seen[p] {
				seen[p] = true
				packs = append(packs, p)
			}
			return nil
		})
		added = append(added, packs)
	}
	r, err := repo.Open(ctx, regions, repo.Keys{Recovery: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, snaps, added
}

// TestRunIncludeNotInSnapshot: an include the snapshot lacks is a
// *NotFoundError naming every such include (once, cleaned) and the deepest
// directory held on the way to the first, and nothing is written, not even
// the target directory; before, the rest was restored (or nothing at all)
// and the restore passed for a complete one.
func TestRunIncludeNotInSnapshot(t *testing.T) {
	r, snap, src := testSnapshot(t, map[string]string{"keep/a.txt": "a\n", "top.txt": "top\n"})
	for _, c := range []struct {
		name     string
		includes []string
		missing  []string
		nearest  string
	}{
		{"an absolute path", []string{"/no/such"}, []string{"/no/such"}, "/"},
		{"a path below a directory held", []string{src + "/keep/gone.txt"}, []string{src + "/keep/gone.txt"}, src + "/keep"},
		{"a path below a file", []string{src + "/top.txt/x"}, []string{src + "/top.txt/x"}, src},
		{"a relative path, read from the root", []string{"keep"}, []string{"/keep"}, "/"},
		{"some of several", []string{src + "/keep", "/x", src + "/top.txt", src + "/y/"}, []string{"/x", src + "/y"}, "/"},
		{"one path twice", []string{"/x", "/x/", "x"}, []string{"/x"}, "/"},
	} {
		target := filepath.Join(t.TempDir(), "out")
		res, err := Run(context.Background(), r, snap, Options{Target: target, Includes: c.includes}, nil)
		var nf *NotFoundError
		if !errors.As(err, &nf) || !errors.Is(err, ErrNotInSnapshot) {
			t.Errorf("%s: Run returned %v, %v; want a *NotFoundError", c.name, res, err)
			continue
		}
		if !slices.Equal(nf.Paths, c.missing) || nf.Nearest != c.nearest {
			t.Errorf("%s: NotFoundError{%q, %q}, want {%q, %q}", c.name, nf.Paths, nf.Nearest, c.missing, c.nearest)
		}
		for _, p := range c.missing {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%s: %q does not name %s", c.name, err, p)
			}
		}
		if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the target was created (%v)", c.name, err)
		}
	}
}

// TestRunIncludeForms: an include names a snapshot path and what is below
// it, written absolute, relative (read from the root) or with a trailing
// slash; "/" is everything.
func TestRunIncludeForms(t *testing.T) {
	files := map[string]string{"keep/a.txt": "a\n", "keep/sub/b.txt": "b\n", "keep-not/c.txt": "c\n", "top.txt": "top\n"}
	r, snap, src := testSnapshot(t, files)
	rel := strings.TrimPrefix(src, "/")
	for _, c := range []struct {
		includes []string
		want     []string
	}{
		{[]string{src + "/keep"}, []string{"keep/a.txt", "keep/sub/b.txt"}},
		{[]string{rel + "/keep/"}, []string{"keep/a.txt", "keep/sub/b.txt"}},
		{[]string{src + "/top.txt", rel + "/keep/sub"}, []string{"keep/sub/b.txt", "top.txt"}},
		{[]string{"/"}, []string{"keep/a.txt", "keep/sub/b.txt", "keep-not/c.txt", "top.txt"}}, // WalkDir order
	} {
		target := t.TempDir()
		if _, err := Run(context.Background(), r, snap, Options{Target: target, Includes: c.includes}, nil); err != nil {
			t.Errorf("include %q: %v", c.includes, err)
			continue
		}
		var got []string
		root := filepath.Join(target, src)
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				rp, _ := filepath.Rel(root, p)
				got = append(got, filepath.ToSlash(rp))
				if b, _ := os.ReadFile(p); string(b) != files[filepath.ToSlash(rp)] {
					t.Errorf("include %q: %s restored as %q", c.includes, rp, b)
				}
			}
			return nil
		})
		if !slices.Equal(got, c.want) {
			t.Errorf("include %q restored %q, want %q", c.includes, got, c.want)
		}
	}
}

// TestDumpNotInSnapshot: Dump and Find of a path the snapshot lacks return
// a *NotFoundError naming it once, and Dump writes nothing.
func TestDumpNotInSnapshot(t *testing.T) {
	r, snap, src := testSnapshot(t, map[string]string{"a.txt": "a\n"})
	var out bytes.Buffer
	err := Dump(context.Background(), r, snap, src+"/b.txt", &out)
	var nf *NotFoundError
	if !errors.As(err, &nf) || nf.Nearest != src || out.Len() != 0 {
		t.Fatalf("Dump of a missing file: %v (%d bytes written)", err, out.Len())
	}
	if strings.Count(err.Error(), src+"/b.txt") != 1 {
		t.Errorf("%q should name the path once", err)
	}
	if _, err := Find(context.Background(), r, snap.Tree, "/nowhere"); !errors.Is(err, ErrNotInSnapshot) {
		t.Errorf("Find of a missing path: %v", err)
	}
	if err := Dump(context.Background(), r, snap, src+"/a.txt", &out); err != nil || out.String() != "a\n" {
		t.Errorf("Dump of a.txt: %q, %v", out.String(), err)
	}
}
