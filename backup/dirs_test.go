package backup

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"filippo.io/age"

	"vaultbak/backend/local"
	"vaultbak/crypt"
	"vaultbak/repo"
)

// dirEnv is a repository on one local region and a source tree.
type dirEnv struct {
	t    *testing.T
	dir  string
	src  string
	id   age.Identity
	host *crypt.HostCredential
	head *repo.Snapshot
}

func newDirEnv(t *testing.T) *dirEnv {
	t.Helper()
	e := &dirEnv{t: t, dir: t.TempDir()}
	e.src = filepath.Join(e.dir, "src")
	for _, f := range []string{"a/one.txt", "a/sub/two.txt", "b/three.txt", "top.txt"} {
		e.write(f, "content of "+f)
	}
	id, rec, err := crypt.GenerateIdentity(crypt.KindX25519)
	if err != nil {
		t.Fatal(err)
	}
	e.id = id
	r, host, err := repo.Init(context.Background(), e.regions(), repo.InitOptions{Recovery: []string{rec}, Host: "test", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	e.host = host
	return e
}

func (e *dirEnv) regions() []*repo.Region {
	be, err := local.New(filepath.Join(e.dir, "region"))
	if err != nil {
		e.t.Fatal(err)
	}
	return []*repo.Region{{Name: "region", Backend: be}}
}

func (e *dirEnv) write(rel, content string) {
	p := filepath.Join(e.src, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// backup runs a backup of src with cache and excludes; it returns the
// result and how many bytes it read.
func (e *dirEnv) backup(cache *Cache, excludes ...string) (*Result, uint64) {
	e.t.Helper()
	r, err := repo.Open(context.Background(), e.regions(), repo.Keys{Host: e.host})
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	opts := Options{Paths: []string{e.src}, Cache: cache, Excludes: excludes}
	if e.head != nil {
		opts.HeadSeq, opts.HeadID = e.head.Seq, e.head.ID
	}
	var p Progress
	res, err := Run(context.Background(), r, opts, &p)
	if err != nil {
		e.t.Fatal(err)
	}
	e.head = res.Snapshot
	return res, p.ReadBytes.Load()
}

// subtree returns the tree ID of the directory at rel (under src) in snap.
func (e *dirEnv) subtree(snap *repo.Snapshot, rel string) crypt.ID {
	e.t.Helper()
	r, err := repo.Open(context.Background(), e.regions(), repo.Keys{Recovery: []age.Identity{e.id}})
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	id := snap.Tree
	p := filepath.Join(e.src, rel)
	for _, name := range splitPath(p) {
		tree, err := r.LoadTree(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		found := false
		for _, n := range tree.Nodes {
			if string(n.Name) == name && n.Subtree != nil {
				id, found = *n.Subtree, true
			}
		}
		if !found {
			e.t.Fatalf("%s: no directory %s in the snapshot", p, name)
		}
	}
	return id
}

func splitPath(p string) []string {
	var out []string
	for p != "/" && p != "." {
		out = append([]string{filepath.Base(p)}, out...)
		p = filepath.Dir(p)
	}
	return out
}

// TestUnchangedDirectoryReused shows that an unchanged directory's tree is
// taken from the cache (a planted tree ID comes back), and that any change
// below it, a changed exclude list or a file missing from the file cache
// makes the backup build the tree again.
func TestUnchangedDirectoryReused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(e *dirEnv, c *Cache)
		reused  bool
		exclude []string
	}{
		{"nothing changed", func(e *dirEnv, c *Cache) {}, true, nil},
		{"file rewritten below", func(e *dirEnv, c *Cache) { e.write("a/sub/two.txt", "new content") }, false, nil},
		{"file touched to its old mtime", func(e *dirEnv, c *Cache) {
			p := filepath.Join(e.src, "a/one.txt")
			fi, _ := os.Stat(p)
			e.write("a/one.txt", "CONTENT of a/one.txt")
			os.Chtimes(p, fi.ModTime(), fi.ModTime()) // ctime still moves
		}, false, nil},
		{"entry added", func(e *dirEnv, c *Cache) { e.write("a/sub/new.txt", "x") }, false, nil},
		{"mode changed below", func(e *dirEnv, c *Cache) { os.Chmod(filepath.Join(e.src, "a/sub"), 0o700) }, false, nil},
		{"other excludes", func(e *dirEnv, c *Cache) {}, false, []string{"*.tmp"}},
		{"file not in the file cache", func(e *dirEnv, c *Cache) { delete(c.Files, filepath.Join(e.src, "a/one.txt")) }, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newDirEnv(t)
			first, _ := e.backup(nil)
			a := filepath.Join(e.src, "a")
			if _, ok := first.Cache.Dirs[a]; !ok {
				t.Fatalf("directory %s not in the cache after a clean backup", a)
			}
			// Plant b's tree as a's: only a reused entry brings it back
			// (and src, a's parent, is built again to show it).
			planted := first.Cache.Dirs[filepath.Join(e.src, "b")].Tree
			d := first.Cache.Dirs[a]
			d.Tree = planted
			first.Cache.Dirs[a] = d
			delete(first.Cache.Dirs, e.src)
			tc.change(e, first.Cache)
			second, read := e.backup(first.Cache, tc.exclude...)
			got := e.subtree(second.Snapshot, "a")
			if tc.reused != (got == planted) {
				t.Fatalf("tree of a = %s, planted %s: reused = %v, want %v", got, planted, got == planted, tc.reused)
			}
			if tc.reused && read != 0 {
				t.Errorf("read %d bytes of unchanged files", read)
			}
			if !tc.reused && got == e.subtree(first.Snapshot, "b") {
				t.Errorf("a changed directory kept a stale tree")
			}
			if second.Snapshot.Stats.Files != first.Snapshot.Stats.Files+map[bool]uint64{true: 1}[tc.name == "entry added"] {
				t.Errorf("files = %d, first backup %d", second.Snapshot.Stats.Files, first.Snapshot.Stats.Files)
			}
		})
	}
}

// TestListAheadKeepsTree backs up a tree with more directories than
// there are listers (so that some are listed ahead and some by the walk
// itself) and checks that the snapshot holds every entry in order, and that
// a second backup reuses every directory and comes back with the same
// tree for the source.
func TestListAheadKeepsTree(t *testing.T) {
	e := newDirEnv(t)
	for i := range 30 {
		for j := range 3 {
			e.write(fmt.Sprintf("wide/d%02d/s%d/f.txt", i, j), fmt.Sprintf("file %d %d", i, j))
		}
		e.write(fmt.Sprintf("wide/d%02d/g.txt", i), "g")
	}
	deep := "deep"
	for i := range 12 {
		deep = filepath.Join(deep, fmt.Sprintf("l%d", i))
		e.write(filepath.Join(deep, "h.txt"), deep)
	}
	var want []string
	filepath.WalkDir(e.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if p != e.src {
			rel, _ := filepath.Rel(e.src, p)
			want = append(want, rel)
		}
		return nil
	})

	first, _ := e.backup(nil)
	r, err := repo.Open(context.Background(), e.regions(), repo.Keys{Recovery: []age.Identity{e.id}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	var list func(id crypt.ID, rel string)
	list = func(id crypt.ID, rel string) {
		tree, err := r.LoadTree(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tree.Nodes {
			p := filepath.Join(rel, string(n.Name))
			got = append(got, p)
			if n.Subtree != nil {
				list(*n.Subtree, p)
			}
		}
	}
	list(e.subtree(first.Snapshot, ""), "")
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot holds %d entries, the source %d; first differences: %v", len(got), len(want), firstDiff(got, want))
	}

	second, read := e.backup(first.Cache)
	if read != 0 {
		t.Errorf("second backup read %d bytes of unchanged files", read)
	}
	// The source's tree, not the snapshot's root: the directories above
	// the source (the temporary directory's parents) change as other
	// tests run.
	if got, want := e.subtree(second.Snapshot, ""), e.subtree(first.Snapshot, ""); got != want {
		t.Errorf("source tree %s after an unchanged backup, %s before", got, want)
	}
	if len(second.Cache.Dirs) != len(first.Cache.Dirs) {
		t.Errorf("%d directories cached after the second backup, %d after the first", len(second.Cache.Dirs), len(first.Cache.Dirs))
	}
}

func firstDiff(a, b []string) []string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return []string{a[i], b[i]}
		}
	}
	return nil
}
