package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// damageLargestPack flips one byte in the middle of the largest pack of
// region and returns the pack's object name (data/XX/<hash>).
func damageLargestPack(t *testing.T, region string) string {
	t.Helper()
	p, size := largestObject(t, objects(t, region, "data"))
	flipByte(t, p, size/2)
	rel, err := filepath.Rel(region, p)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(rel)
}

// damageSource writes a small tree whose biggest part is random data, so
// that the middle of the largest pack is file content.
func damageSource(t *testing.T, dir string) (src string, files map[string][]byte) {
	t.Helper()
	src = filepath.Join(dir, "src")
	files = map[string][]byte{
		"data/random.bin": randomBytes(77, 3<<20),
		"data/notes.txt":  textBytes(78, 64<<10),
		"other/small":     []byte("small file\n"),
	}
	for rel, data := range files {
		writeFile(t, filepath.Join(src, rel), data, 0o644)
	}
	return src, files
}

// requireNoTornFiles checks that every regular file restored below root
// under its final name has its source content, and that no temporary
// file is left behind.
func requireNoTornFiles(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".vaultbak-restore-") {
			t.Errorf("failed restore left a temporary file: %s", p)
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		want, ok := files[filepath.ToSlash(rel)]
		got, _ := os.ReadFile(p)
		if ok && !bytes.Equal(got, want) {
			t.Errorf("failed restore left %s under its final name with wrong content", p)
		}
		return nil
	})
}

// TestDamageFailsOverToHealthyRegion flips one byte of a pack in region
// one: check (with no key at all, and with the host credential) and check
// --read-data exit 4 naming the object and the region; restore still
// succeeds, reading the damaged object from region two.
func TestDamageFailsOverToHealthyRegion(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "one", "two")
	src, files := damageSource(t, e.dir)
	e.ok("backup", src)
	e.ok("check")
	e.ok(e.withID("check", "--read-data")...)

	obj := damageLargestPack(t, e.regions[0])
	noKeys := runOpts{env: []string{"VAULTBAK_HOST_KEY=" + filepath.Join(e.dir, "no-such-host.key")}}
	for _, c := range []struct {
		name string
		o    runOpts
		args []string
	}{
		{"check without any key", noKeys, []string{"check"}},
		{"check with the host credential", runOpts{}, []string{"check"}},
		{"check --read-data", runOpts{}, e.withID("check", "--read-data")},
	} {
		r := e.runWith(c.o, c.args...)
		if r.code != exitIntegrity {
			t.Errorf("%s after damage in region one: want exit %d\n%s", c.name, exitIntegrity, r)
			continue
		}
		out := r.stdout + r.stderr
		if !strings.Contains(out, obj) || !strings.Contains(out, "region one") {
			t.Errorf("%s does not name the damaged object %s and region one\n%s", c.name, obj, r)
		}
		if strings.Contains(out, "region two:") {
			t.Errorf("%s blames region two, which is intact\n%s", c.name, r)
		}
	}

	target := filepath.Join(e.dir, "restore")
	r := e.run(e.withID("restore", "latest", "--target", target)...)
	if r.code != exitOK {
		t.Fatalf("restore with region one damaged and region two intact: want exit 0 (failover)\n%s", r)
	}
	for rel, want := range files {
		got, err := os.ReadFile(filepath.Join(restoredPath(target, src), rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: restored content differs (%v)", rel, err)
		}
	}
	d := e.ok(e.withID("dump", "latest", filepath.Join(src, "data/random.bin"))...)
	if !bytes.Equal([]byte(d.stdout), files["data/random.bin"]) {
		t.Errorf("dump with region one damaged: content differs")
	}
}

// TestDamageSingleRegion flips one byte of a pack in a repository with one
// region: check and check --read-data exit 4, and restore fails with exit
// 4 without leaving a file that looks complete but is not.
func TestDamageSingleRegion(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "solo")
	src, files := damageSource(t, e.dir)
	e.ok("backup", src)

	obj := damageLargestPack(t, e.regions[0])
	r := e.expect(exitIntegrity, "check")
	requireContains(t, "check", r.stderr, obj)
	requireContains(t, "check", r.stderr, "region solo")
	r = e.expect(exitIntegrity, e.withID("check", "--read-data")...)
	requireContains(t, "check --read-data", r.stderr, obj)

	target := filepath.Join(e.dir, "restore")
	r = e.run(e.withID("restore", "latest", "--target", target)...)
	if r.code != exitIntegrity {
		t.Errorf("restore from the only, damaged region: want exit %d\n%s", exitIntegrity, r)
	}
	requireNoTornFiles(t, restoredPath(target, src), files)

	r = e.run(e.withID("dump", "latest", filepath.Join(src, "data/random.bin"))...)
	if r.code != exitIntegrity {
		t.Errorf("dump from the only, damaged region: want exit %d\n%s", exitIntegrity, r)
	}

	// Undo the damage, then damage other places of the pack: the age
	// header, the first payload byte, the last byte (the final MAC).
	pack := filepath.Join(e.regions[0], filepath.FromSlash(obj))
	fi, err := os.Stat(pack)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, pack, fi.Size()/2)
	e.ok(e.withID("check", "--read-data")...)
	for _, off := range []int64{20, 2000, fi.Size() - 1} {
		flipByte(t, pack, off)
		r := e.run(e.withID("check", "--read-data")...)
		if r.code != exitIntegrity || !strings.Contains(r.stderr, obj) {
			t.Errorf("check --read-data with byte %d of %d flipped: want exit %d naming %s\n%s", off, fi.Size(), exitIntegrity, obj, r)
		}
		if r := e.run(e.withID("restore", "latest", "--target", filepath.Join(e.dir, "again"))...); r.code != exitIntegrity {
			t.Errorf("restore with byte %d of %d flipped: want exit %d\n%s", off, fi.Size(), exitIntegrity, r)
		}
		flipByte(t, pack, off)
	}
	e.ok(e.withID("check", "--read-data")...)
}

// removeLargestPack deletes the largest pack of region and returns its
// object name.
func removeLargestPack(t *testing.T, region string) string {
	t.Helper()
	p, _ := largestObject(t, objects(t, region, "data"))
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(region, p)
	return filepath.ToSlash(rel)
}

// TestMissingPackInOneRegion deletes a pack from region one only: restore
// fetches it from region two, and check reports region one as lagging.
// check's help: "Damage exits 4 naming the object and region; a region
// that merely lacks objects another holds exits 3" — whichever key check
// runs with, since the repository is the same.
func TestMissingPackInOneRegion(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "one", "two")
	src, files := damageSource(t, e.dir)
	e.ok("backup", src)
	obj := removeLargestPack(t, e.regions[0])

	target := filepath.Join(e.dir, "restore")
	e.ok(e.withID("restore", "latest", "--target", target)...)
	for rel, want := range files {
		if got, err := os.ReadFile(filepath.Join(restoredPath(target, src), rel)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: restored content differs (%v)", rel, err)
		}
	}

	noKeys := runOpts{env: []string{"VAULTBAK_HOST_KEY=" + filepath.Join(e.dir, "no-such-host.key")}}
	for _, c := range []struct {
		name string
		o    runOpts
		args []string
	}{
		{"check without any key", noKeys, []string{"check"}},
		{"check with the host credential", runOpts{}, []string{"check"}},
		{"check --read-data", runOpts{}, e.withID("check", "--read-data")},
	} {
		r := e.runWith(c.o, c.args...)
		if r.code != exitWarnings {
			t.Errorf("%s with %s missing from region one only (region two holds it): exit %d, want %d (a region that merely lacks objects another holds)\n%s", c.name, obj, r.code, exitWarnings, r)
		}
		if !strings.Contains(r.stderr, "region one") {
			t.Errorf("%s does not name region one\n%s", c.name, r)
		}
	}
}

// TestMissingPackEverywhere deletes a pack that a snapshot needs from the
// only region: the snapshot cannot be restored, which is an integrity
// failure (exit 4, like a damaged pack), not a generic error (exit 1).
func TestMissingPackEverywhere(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "solo")
	src, _ := damageSource(t, e.dir)
	e.ok("backup", src)
	obj := removeLargestPack(t, e.regions[0])

	r := e.expect(exitIntegrity, "check")
	requireContains(t, "check", r.stderr, obj)
	r = e.run(e.withID("restore", "latest", "--target", filepath.Join(e.dir, "out"))...)
	if r.code != exitIntegrity {
		t.Errorf("restore of a snapshot whose pack %s is gone from every region: exit %d, want %d\n%s", obj, r.code, exitIntegrity, r)
	}
	r = e.run(e.withID("dump", "latest", filepath.Join(src, "data/random.bin"))...)
	if r.code != exitIntegrity {
		t.Errorf("dump of a file whose pack %s is gone from every region: exit %d, want %d\n%s", obj, r.code, exitIntegrity, r)
	}
}

// TestDamageRestoreGoesOn damages, in both regions, the pack that alone
// holds one file's chunk and the pack that alone holds one directory's
// listing (each backed up by an earlier run, which the last snapshot
// reuses). restore goes on past them: every other file comes back
// byte-identical, the damaged file and the directory are not there (nor
// any temporary file), each is named on its own error line, and the
// summary counts them; exit 4. --json gives an object per failure and
// counts them in the summary. dump of the damaged file stays
// all-or-nothing (exit 4), and a drill of every file exits 4 naming the
// damage. Before, restore stopped at the damaged file and
// the files after it in the walk were never restored.
func TestDamageRestoreGoesOn(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "one", "two")
	src := filepath.Join(e.dir, "src")
	files := map[string][]byte{
		"a/first.txt":  textBytes(80, 4<<10),
		"b/bad.bin":    randomBytes(81, 1<<20),
		"b/keep.txt":   []byte("beside the damaged file\n"),
		"lost/x.txt":   []byte("in the directory whose listing is damaged\n"),
		"lost/y/z.txt": []byte("below it\n"),
	}
	for i := range 40 {
		files[fmt.Sprintf("z/%02d.bin", i)] = randomBytes(uint64(100+i), 16<<10)
	}
	for rel, data := range files {
		writeFile(t, filepath.Join(src, rel), data, 0o644)
	}
	newPacks := func(before []string) []string {
		var out []string
		for _, p := range objects(t, e.regions[0], "data") {
			if !slices.Contains(before, p) {
				out = append(out, p)
			}
		}
		return out
	}
	e.ok("backup", filepath.Join(src, "b/bad.bin"))
	filePacks := newPacks(nil)
	e.ok("backup", filepath.Join(src, "lost"))
	dirPacks := newPacks(filePacks)
	if len(filePacks) != 1 || len(dirPacks) != 1 {
		t.Fatalf("the first two backups added packs %q and %q, want one each", filePacks, dirPacks)
	}
	e.ok("backup", src)
	var objs []string
	for _, pack := range []string{filePacks[0], dirPacks[0]} {
		rel, _ := filepath.Rel(e.regions[0], pack)
		objs = append(objs, filepath.ToSlash(rel))
	}
	for _, region := range e.regions {
		p := filepath.Join(region, filepath.FromSlash(objs[0]))
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// Inside bad.bin's chunk: the rest of its pack still reads.
		flipByte(t, p, fi.Size()/2)
		// The age header: nothing of the pack reads.
		flipByte(t, filepath.Join(region, filepath.FromSlash(objs[1])), 20)
	}

	badPath := filepath.Join(src, "b/bad.bin")
	lostPath := filepath.Join(src, "lost")
	target := filepath.Join(e.dir, "restore")
	r := e.run(e.withID("restore", "latest", "--target", target)...)
	if r.code != exitIntegrity {
		t.Fatalf("restore with a file's chunk and a directory's listing damaged in every region: exit %d, want %d\n%s", r.code, exitIntegrity, r)
	}
	root := restoredPath(target, src)
	for rel, want := range files {
		got, err := os.ReadFile(filepath.Join(root, rel))
		switch {
		case rel == "b/bad.bin" || strings.HasPrefix(rel, "lost/"):
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s, which could not be verified, is in the target (%v)", rel, err)
			}
		case err != nil || !bytes.Equal(got, want):
			t.Errorf("%s: not restored as backed up (%v)", rel, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "lost")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the directory whose listing is damaged is in the target (%v)", err)
	}
	requireNoTornFiles(t, root, files)
	lines := strings.Split(r.stderr, "\n")
	for _, c := range []struct{ path, obj string }{{badPath, objs[0]}, {lostPath, objs[1]}} {
		if !slices.ContainsFunc(lines, func(l string) bool {
			return strings.Contains(l, c.path) && strings.Contains(l, c.obj) && strings.Contains(l, "region one") && strings.Contains(l, "region two")
		}) {
			t.Errorf("no error line names %s, its damaged object %s and both regions\n%s", c.path, c.obj, r)
		}
	}
	requireContains(t, "restore", r.stderr, fmt.Sprintf("restored %d files; 2 could not be verified", len(files)-3))
	requireContains(t, "restore", r.stderr, "hint: ")
	requireContains(t, "restore", r.stderr, "check --read-data")

	r = e.run(e.withID("--json", "restore", "latest", "--target", filepath.Join(e.dir, "again"))...)
	if r.code != exitIntegrity {
		t.Fatalf("restore --json: exit %d, want %d\n%s", r.code, exitIntegrity, r)
	}
	objsJSON := jsonLines(t, r.stdout)
	var failed []string
	for _, o := range objsJSON {
		if o["type"] == "failed" {
			failed = append(failed, fmt.Sprint(o["path"], " directory=", o["directory"]))
		}
	}
	wantFailed := []string{badPath + " directory=false", lostPath + " directory=true"}
	if !slices.Equal(failed, wantFailed) {
		t.Errorf("restore --json failures %q, want %q\n%s", failed, wantFailed, r)
	}
	sum := requireSummary(t, objsJSON, r)
	if num(t, sum, "failed") != 2 || sum["verified"] != false || num(t, sum, "files") != float64(len(files)-3) {
		t.Errorf("restore --json summary %v: want failed 2, verified false, files %d", sum, len(files)-3)
	}

	r = e.run(e.withID("dump", "latest", badPath)...)
	if r.code != exitIntegrity {
		t.Errorf("dump of the damaged file: exit %d, want %d\n%s", r.code, exitIntegrity, r)
	}
	d := e.ok(e.withID("dump", "latest", filepath.Join(src, "b/keep.txt"))...)
	if d.stdout != string(files["b/keep.txt"]) {
		t.Errorf("dump of an intact file beside the damaged one: %q", d.stdout)
	}

	// A drill of every file still fails, naming the damage.
	r = e.run(e.withID("drill", "--sample", "100")...)
	if r.code != exitIntegrity {
		t.Errorf("drill --sample 100: exit %d, want %d\n%s", r.code, exitIntegrity, r)
	}
	if out := r.stdout + r.stderr; !strings.Contains(out, objs[0]) && !strings.Contains(out, objs[1]) {
		t.Errorf("drill --sample 100 names neither damaged pack %s nor %s\n%s", objs[0], objs[1], r)
	}
	// Both regions hold the damage: the hint does not send the user to
	// heal one from the other.
	requireContains(t, "drill with damage in every region", r.stderr, "no copy can heal another")
}
