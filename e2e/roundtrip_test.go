package e2e

import (
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sparseRegion is data written into a file that is otherwise a hole.
type sparseRegion struct {
	off  int64
	size int
}

// writeSparseFile creates a file of size bytes that is a hole except for
// regions, filled with random data from seed.
func writeSparseFile(t *testing.T, p string, size int64, seed uint64, regions []sparseRegion) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i, r := range regions {
		if _, err := f.WriteAt(randomBytes(seed+uint64(i), r.size), r.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	requireSparse(t, p)
}

// requireSparse fails unless p occupies fewer bytes on disk than its size.
func requireSparse(t *testing.T, p string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 >= st.Size {
		t.Errorf("%s is not sparse: %d bytes allocated for size %d", p, st.Blocks*512, st.Size)
	}
}

// setTime sets the modification (and access) time of p, not following a
// symlink.
func setTime(t *testing.T, p string, ns int64) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("set time of %s: %v", p, err)
	}
}

// buildEveryCase creates below src a tree with every kind of entry the
// design promises to round-trip. It returns the relative paths of the
// sparse files.
func buildEveryCase(t *testing.T, src string, hugeSize int64) (sparse []string) {
	t.Helper()
	root := os.Geteuid() == 0
	p := func(rel string) string { return filepath.Join(src, rel) }
	mkdirs(t, src)

	// Regular files, with every permission shape.
	writeFile(t, p("regular.txt"), textBytes(1, 200<<10), 0o644)
	writeFile(t, p("random.bin"), randomBytes(2, 3<<20+17), 0o640)
	writeFile(t, p("empty"), nil, 0o644)
	writeFile(t, p("private"), []byte("only mine\n"), 0o600)
	writeFile(t, p("readonly"), []byte("read only\n"), 0o444)
	writeFile(t, p("no-permissions"), []byte("mode 0000\n"), 0o000)
	writeFile(t, p("setuid-bin"), []byte("#!/bin/sh\necho setuid\n"), 0o755|os.ModeSetuid)
	writeFile(t, p("setgid-bin"), []byte("#!/bin/sh\necho setgid\n"), 0o2755)
	if err := os.Chmod(p("setgid-bin"), 0o755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p("setuid-bin"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}

	// Directories: nested, empty, setgid, sticky.
	writeFile(t, p("nested/a/b/c/deep.txt"), []byte("deep down\n"), 0o644)
	mkdirs(t, p("nested/empty-dir"))
	mkdirs(t, p("nested/a/empty-too"))
	writeFile(t, p("setgid-dir/inside"), []byte("x\n"), 0o644)
	if err := os.Chmod(p("setgid-dir"), 0o2775|os.ModeDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p("setgid-dir"), 0o775|os.ModeDir|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	mkdirs(t, p("sticky-dir"))
	if err := os.Chmod(p("sticky-dir"), 0o777|os.ModeDir|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("read-only-dir/inside.txt"), []byte("in a read-only directory\n"), 0o644)
	if err := os.Chmod(p("read-only-dir"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(p("read-only-dir"), 0o755) })
	mkdirs(t, p("private-dir"))
	writeFile(t, p("private-dir/secret"), []byte("s\n"), 0o600)
	if err := os.Chmod(p("private-dir"), 0o700); err != nil {
		t.Fatal(err)
	}

	// Symlinks: relative, to a directory, dangling, absolute, and with a
	// non-UTF-8 target.
	for name, target := range map[string]string{
		"link-rel":      "regular.txt",
		"link-dir":      "nested/a",
		"link-dangling": "does/not/exist",
		"link-abs":      "/etc/hostname",
		"link-nonutf8":  "\xff\xfe-name",
	} {
		if err := os.Symlink(target, p(name)); err != nil {
			t.Fatal(err)
		}
	}

	// Hard links: a group of three across directories, a pair, and a file
	// with the same content as the group that is not linked to it.
	writeFile(t, p("hard-a"), []byte("linked content\n"), 0o644)
	for _, l := range []string{"hard-c", "nested/hard-b"} {
		if err := os.Link(p("hard-a"), p(l)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, p("pair-1"), randomBytes(3, 100<<10), 0o600)
	if err := os.Link(p("pair-1"), p("pair-2")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("same-content-not-linked"), []byte("linked content\n"), 0o644)

	// Names: non-UTF-8, spaces, newline, tab, two normalisations of one
	// word, the longest name Linux allows, a non-UTF-8 directory.
	for _, name := range []string{"\xff\xfe-name", "with space", "new\nline", "tab\there", " leading and trailing ", "caf\u00e9", "cafe\u0301", strings.Repeat("L", 255)} {
		writeFile(t, p(name), []byte("name: "+name+"\n"), 0o644)
	}
	writeFile(t, p("dir-\xfe\xed/file-\x01\x7f"), []byte("odd bytes\n"), 0o644)

	// Special files: recorded, never opened.
	if err := syscall.Mkfifo(p("fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p("socket"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if root {
		// Same numbers as /dev/null.
		if err := mknod(p("null-dev"), unix.S_IFCHR|0o640, unix.Mkdev(1, 3)); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Log("not root: the character device sub-case is skipped")
	}

	// A 64 MiB sparse file with three small data regions, the last at the
	// very end.
	writeSparseFile(t, p("sparse-64m"), 64<<20, 10, []sparseRegion{{1 << 20, 5000}, {30<<20 + 123, 70000}, {64<<20 - 4096, 4096}})
	sparse = append(sparse, "sparse-64m")
	// A huge sparse file (2 GiB+ unless -short) with data scattered through
	// it, across the 1 GiB and 2 GiB marks, and at its end.
	var regions []sparseRegion
	for _, off := range []int64{0, hugeSize / 3, 1<<30 - 777, 1<<31 - 4000, hugeSize - 12345} {
		if off >= 0 && off+70000 <= hugeSize {
			regions = append(regions, sparseRegion{off, 70000})
		} else if off >= 0 && off < hugeSize {
			regions = append(regions, sparseRegion{off, int(hugeSize - off)})
		}
	}
	writeSparseFile(t, p("huge-sparse"), hugeSize, 20, regions)
	sparse = append(sparse, "huge-sparse")

	// Owners other than the runner's.
	if root {
		for rel, ids := range map[string][2]int{
			"regular.txt":    {1234, 5678},
			"setgid-dir":     {4321, 8765},
			"nested/a/b":     {65534, 65534},
			"fifo":           {2000, 2001},
			"no-permissions": {0, 4242},
		} {
			if err := os.Lchown(p(rel), ids[0], ids[1]); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Lchown(p("link-rel"), 777, 778); err != nil {
			t.Fatal(err)
		}
		// chown clears setuid/setgid: set them again.
		if err := os.Chmod(p("setgid-dir"), 0o775|os.ModeDir|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
	}

	// Modification times with nanoseconds, each different, set last and
	// children before parents.
	all := listTree(t, src)
	rels := sortedKeys(all)
	base := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC).UnixNano()
	for i := len(rels) - 1; i >= 0; i-- {
		setTime(t, filepath.Join(src, rels[i]), base+int64(i)*1_000_003_001+123_456_789)
	}
	return sparse
}

// TestRoundTripEveryCase backs up a tree holding every kind of entry and
// restores it, comparing content and metadata byte for byte.
func TestRoundTripEveryCase(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	hugeSize := int64(2<<30 + 300<<20 + 12345)
	if testing.Short() {
		hugeSize = 300<<20 + 12345
	}
	sparse := buildEveryCase(t, src, hugeSize)
	srcEntries := scanTree(t, src)

	// A writer waits on the FIFO: if backup opened it for reading, the
	// writer's open would return. (Without a writer, a blocking open for
	// reading would hang the backup: the timeout turns that into a failure.)
	fifo := filepath.Join(src, "fifo")
	opened := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		opened <- err
	}()
	start := time.Now()
	r := e.runWith(runOpts{timeout: 3 * time.Minute}, "backup", src)
	if r.code != exitOK {
		t.Fatalf("backup of every case: want exit 0\n%s", r)
	}
	select {
	case <-opened:
		t.Errorf("backup opened the FIFO %s", fifo)
	default:
	}
	// Release the writer.
	if rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
		select {
		case <-opened:
		case <-time.After(10 * time.Second):
			t.Error("FIFO writer still blocked")
		}
		rd.Close()
	}
	t.Logf("backup of %d entries (%s huge sparse file) took %v", len(srcEntries), mib(hugeSize), time.Since(start).Round(time.Millisecond))

	target := filepath.Join(e.dir, "restore")
	start = time.Now()
	e.ok(e.withID("restore", "latest", "--target", target)...)
	t.Logf("restore took %v", time.Since(start).Round(time.Millisecond))
	restored := restoredPath(target, src)
	got := compareTrees(t, srcEntries, restored)
	for _, rel := range sparse {
		requireSparse(t, filepath.Join(restored, rel))
	}
	if os.Geteuid() == 0 {
		if g, ok := got["null-dev"]; !ok || g.typ&os.ModeCharDevice == 0 {
			t.Errorf("character device not restored as one: %+v", g)
		}
	}
	if g, ok := got["socket"]; ok {
		t.Logf("socket restored as %v", g.typ)
	} else {
		t.Logf("socket recorded but not restored (restore leaves sockets out)")
	}

	// ls shows every entry, in text and in JSON.
	ls := e.ok(e.withID("ls", "latest")...)
	for _, rel := range sortedKeys(srcEntries) {
		want := src
		if rel != "." {
			want = src + "/" + rel
		}
		if !strings.Contains(ls.stdout, want+"\n") {
			t.Errorf("ls does not list %q", want)
		}
	}
	lsj := e.ok(e.withID("--json", "ls", "latest")...)
	objs := jsonLines(t, lsj.stdout)
	sum := requireSummary(t, objs, lsj)
	nodes := map[string]map[string]any{}
	for _, o := range objs[:len(objs)-1] {
		if o["type"] != "node" {
			t.Fatalf("ls --json: unexpected object %v", o)
		}
		path, _ := o["path"].(string)
		if pb, ok := o["path_bytes"].(string); ok {
			raw, err := base64.StdEncoding.DecodeString(pb)
			if err != nil {
				t.Fatalf("ls --json: path_bytes %q: %v", pb, err)
			}
			path = string(raw)
		}
		nodes[path] = o
	}
	if int(num(t, sum, "entries")) != len(objs)-1 {
		t.Errorf("ls --json summary says %v entries, printed %d", sum["entries"], len(objs)-1)
	}
	wantTypes := map[string]string{"fifo": "fifo", "socket": "socket", "link-dangling": "symlink", "nested/empty-dir": "dir", "empty": "file", "\xff\xfe-name": "file", "new\nline": "file"}
	if os.Geteuid() == 0 {
		wantTypes["null-dev"] = "chardev"
	}
	for _, rel := range sortedKeys(srcEntries) {
		want := src
		if rel != "." {
			want = src + "/" + rel
		}
		n, ok := nodes[want]
		if !ok {
			t.Errorf("ls --json does not list %q", want)
			continue
		}
		if typ, ok := wantTypes[rel]; ok && n["node_type"] != typ {
			t.Errorf("ls --json: %q has node_type %v, want %s", rel, n["node_type"], typ)
		}
		if w := srcEntries[rel]; w.typ == 0 && int64(num(t, n, "size")) != w.size {
			t.Errorf("ls --json: %q has size %v, want %d", rel, n["size"], w.size)
		}
	}
	if n := nodes[src+"/link-abs"]; n == nil || n["link_target"] != "/etc/hostname" {
		t.Errorf("ls --json: link-abs target %v, want /etc/hostname", n)
	}
}

// TestRoundTripAfterChanges backs up every case and a second path, changes
// only metadata (mode, owner, time, a new hard link) and some content, and
// backs up again, mostly from the file cache. Both snapshots restore to
// exactly the state they were taken of.
func TestRoundTripAfterChanges(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	buildEveryCase(t, src, 8<<20+12345)
	second := filepath.Join(e.dir, "second root")
	writeFile(t, filepath.Join(second, "x.txt"), []byte("x\n"), 0o644)
	want1, want1b := scanTree(t, src), scanTree(t, second)
	first, _ := e.backupJSON(exitOK, src, second)

	p := func(rel string) string { return filepath.Join(src, rel) }
	if err := os.Chmod(p("regular.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(p("random.bin"), 3333, 4444); err != nil {
			t.Fatal(err)
		}
	}
	setTime(t, p("private"), time.Date(2000, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano())
	if err := os.Link(p("pair-1"), p("nested/pair-3")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("nested/a/b/c/deep.txt"), []byte("changed content, same name\n"), 0o644)
	if err := os.Remove(p("link-rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("random.bin", p("link-rel")); err != nil {
		t.Fatal(err)
	}
	want2, want2b := scanTree(t, src), scanTree(t, second)
	sum2, _ := e.backupJSON(exitOK, src, second)
	if num(t, sum2, "skipped_files") == 0 {
		t.Errorf("second backup skipped no unchanged file: %v", sum2)
	}

	target := filepath.Join(e.dir, "restore-2")
	e.ok(e.withID("restore", "latest", "--target", target)...)
	compareTrees(t, want2, restoredPath(target, src))
	compareTrees(t, want2b, restoredPath(target, second))

	target = filepath.Join(e.dir, "restore-1")
	e.ok(e.withID("restore", first["snapshot"].(string)[:10], "--target", target)...)
	compareTrees(t, want1, restoredPath(target, src))
	compareTrees(t, want1b, restoredPath(target, second))

	// ls PATH lists below PATH only.
	ls := e.ok(e.withID("ls", "latest", filepath.Join(src, "nested"))...)
	for _, line := range strings.Split(strings.TrimSpace(ls.stdout), "\n") {
		if !strings.HasPrefix(line, filepath.Join(src, "nested")) {
			t.Errorf("ls latest %s/nested lists %q", src, line)
		}
	}
	requireContains(t, "ls of nested", ls.stdout, filepath.Join(src, "nested/pair-3")+"\n")
}
