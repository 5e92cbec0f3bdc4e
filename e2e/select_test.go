package e2e

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func snapTime(t *testing.T, s map[string]any) time.Time {
	t.Helper()
	v, _ := s["time"].(string)
	tm, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		t.Fatalf("snapshot time %q: %v", v, err)
	}
	return tm
}

func readOrEmpty(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// TestRestoreAt takes three snapshots at different times and checks that
// restore latest --at T picks the newest at or before T.
func TestRestoreAt(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	doc := filepath.Join(src, "doc.txt")
	var ids []string
	for v := 1; v <= 3; v++ {
		writeFile(t, doc, []byte(strings.Repeat("version "+string(rune('0'+v))+"\n", 100)), 0o644)
		if v == 3 {
			writeFile(t, filepath.Join(src, "new-in-3.txt"), []byte("new\n"), 0o644)
		}
		sum, _ := e.backupJSON(exitOK, src)
		ids = append(ids, sum["snapshot"].(string))
		time.Sleep(20 * time.Millisecond)
	}
	snaps := e.snapshots()
	if len(snaps) != 3 {
		t.Fatalf("%d snapshots, want 3", len(snaps))
	}
	var times []time.Time
	for i, s := range snaps {
		if s["id"] != ids[i] {
			t.Fatalf("snapshots --json lists %v as number %d, want %s (oldest first)", s["id"], i+1, ids[i])
		}
		times = append(times, snapTime(t, s))
	}

	restoreAt := func(at string) result {
		t.Helper()
		target := filepath.Join(t.TempDir(), "out")
		r := e.run(e.withID("--json", "restore", "latest", "--at", at, "--target", target)...)
		if r.code == exitOK {
			r.stdout = readOrEmpty(restoredPath(target, doc)) + "|" + readOrEmpty(restoredPath(target, filepath.Join(src, "new-in-3.txt")))
		}
		return r
	}
	version := func(v int) string {
		return strings.Repeat("version "+string(rune('0'+v))+"\n", 100)
	}
	for _, c := range []struct {
		name string
		at   time.Time
		want int
	}{
		{"exactly the first snapshot's time", times[0], 1},
		{"between the first and the second", times[0].Add(times[1].Sub(times[0]) / 2), 1},
		{"just after the second", times[1].Add(time.Nanosecond), 2},
		{"between the second and the third", times[1].Add(times[2].Sub(times[1]) / 2), 2},
		{"an hour after the third", times[2].Add(time.Hour), 3},
	} {
		r := restoreAt(c.at.Format(time.RFC3339Nano))
		if r.code != exitOK {
			t.Errorf("--at %s (%s): \n%s", c.at.Format(time.RFC3339Nano), c.name, r)
			continue
		}
		doc, newFile, _ := strings.Cut(r.stdout, "|")
		if doc != version(c.want) {
			t.Errorf("--at %s (%s): restored doc.txt %.20q…, want version %d", c.at.Format(time.RFC3339Nano), c.name, doc, c.want)
		}
		if (c.want == 3) != (newFile == "new\n") {
			t.Errorf("--at %s (%s): new-in-3.txt is %q", c.at.Format(time.RFC3339Nano), c.name, newFile)
		}
	}
	// A time in another zone means the same instant.
	if r := restoreAt(times[1].Add(time.Nanosecond).In(time.FixedZone("X", -7*3600)).Format(time.RFC3339Nano)); r.code != exitOK || !strings.HasPrefix(r.stdout, version(2)) {
		t.Errorf("--at in UTC-7 just after the second snapshot: want version 2\n%s", r)
	}
	// The short local form is accepted.
	if r := restoreAt("2999-01-01 00:00"); r.code != exitOK || !strings.HasPrefix(r.stdout, version(3)) {
		t.Errorf(`--at "2999-01-01 00:00": want version 3`+"\n%s", r)
	}
	// Before every snapshot: nothing to restore, a usage error with a hint.
	r := restoreAt(times[0].Add(-time.Hour).Format(time.RFC3339Nano))
	if r.code != exitUsage || !strings.Contains(r.stdout+r.stderr, "hint") {
		t.Errorf("--at before the first snapshot: want exit %d with a hint\n%s", exitUsage, r)
	}
	if r := restoreAt("yesterday-ish"); r.code != exitUsage {
		t.Errorf("--at with an unparsable time: want exit %d\n%s", exitUsage, r)
	}
}

// TestRestoreInclude restores only the paths given with --include.
func TestRestoreInclude(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	files := map[string]string{
		"keep/a.txt":       "a\n",
		"keep/sub/b.txt":   "b\n",
		"keep-not/c.txt":   "c: a sibling whose name starts like keep\n",
		"drop/d.txt":       "d\n",
		"top.txt":          "top\n",
		"other/sub/e.txt":  "e\n",
		"other/sub2/f.txt": "f\n",
	}
	for rel, data := range files {
		writeFile(t, filepath.Join(src, rel), []byte(data), 0o644)
	}
	e.ok("backup", src)

	check := func(target string, want ...string) {
		t.Helper()
		got := map[string]bool{}
		root := restoredPath(target, src)
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				rel, _ := filepath.Rel(root, p)
				got[rel] = true
				if b, _ := os.ReadFile(p); string(b) != files[rel] {
					t.Errorf("%s: restored %q, want %q", rel, b, files[rel])
				}
			}
			return nil
		})
		for _, w := range want {
			if !got[w] {
				t.Errorf("%s not restored", w)
			}
			delete(got, w)
		}
		for rel := range got {
			t.Errorf("%s restored although not included", rel)
		}
	}
	target := filepath.Join(e.dir, "one")
	e.ok(e.withID("restore", "latest", "--target", target, "--include", filepath.Join(src, "keep"))...)
	check(target, "keep/a.txt", "keep/sub/b.txt")

	target = filepath.Join(e.dir, "two")
	e.ok(e.withID("restore", "latest", "--target", target, "--include", filepath.Join(src, "top.txt"), "--include", filepath.Join(src, "other/sub")+"/")...)
	check(target, "top.txt", "other/sub/e.txt")
}

// oneFileSnapshot backs up a source directory holding the file rel in a
// new repository; it returns the repository, the source directory and the
// snapshot's short ID.
func oneFileSnapshot(t *testing.T, rel string) (*repoEnv, string, string) {
	t.Helper()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, rel), []byte("a\n"), 0o644)
	sum, _ := e.backupJSON(exitOK, src)
	return e, src, sum["snapshot"].(string)[:12]
}

// TestRestoreIncludeNotInSnapshot: an --include the snapshot does not hold
// (absolute, relative, or one of several) is a usage error (exit 2) naming
// the path and the snapshot, with a hint, and nothing is written to the
// target. It used to restore nothing (or the rest) and exit 0.
func TestRestoreIncludeNotInSnapshot(t *testing.T) {
	t.Parallel()
	e, src, short := oneFileSnapshot(t, "keep/a.txt")
	for _, c := range []struct {
		name     string
		includes []string
		say      []string // in stderr
		notSay   string
	}{
		{"an absolute path", []string{"/no/such"}, []string{"/no/such", "hint: ", "vaultbak ls " + short}, ""},
		{"a relative path", []string{"etc/nginx"}, []string{"/etc/nginx", "etc/nginx is read as /etc/nginx", "hint: "}, ""},
		{"a path below a directory held", []string{filepath.Join(src, "keep/b.txt")}, []string{filepath.Join(src, "keep/b.txt"), "vaultbak ls " + short + " " + filepath.Join(src, "keep")}, ""},
		{"one of two", []string{filepath.Join(src, "keep"), "/no/such"}, []string{"/no/such", "the other --include paths are there"}, filepath.Join(src, "keep") + ","},
	} {
		target := filepath.Join(t.TempDir(), "out")
		args := e.withID("restore", "latest", "--target", target)
		for _, inc := range c.includes {
			args = append(args, "--include", inc)
		}
		r := e.run(args...)
		if r.code != exitUsage {
			t.Errorf("%s: want exit %d\n%s", c.name, exitUsage, r)
			continue
		}
		for _, say := range append(c.say, "snapshot "+short, "nothing was restored") {
			requireContains(t, c.name, r.stderr, say)
		}
		if c.notSay != "" && strings.Contains(r.stderr, c.notSay) {
			t.Errorf("%s: names %q, which the snapshot holds\n%s", c.name, c.notSay, r)
		}
		if _, err := os.Lstat(target); !os.IsNotExist(err) {
			t.Errorf("%s: the target was created (%v)", c.name, err)
		}
	}
}

// TestPathNotInSnapshot: ls and dump of a path the snapshot does not hold
// exit 2 like restore --include, naming the command, the snapshot and the
// path, with a hint. dump used to exit 1 blaming "restore".
func TestPathNotInSnapshot(t *testing.T) {
	t.Parallel()
	e, src, short := oneFileSnapshot(t, "a.txt")
	for _, cmd := range []string{"ls", "dump"} {
		for _, c := range []struct{ path, hint string }{
			{"/no/such", "vaultbak ls " + short},
			{filepath.Join(src, "b.txt"), "vaultbak ls " + short + " " + src},
		} {
			r := e.run(e.withID(cmd, "latest", c.path)...)
			if r.code != exitUsage {
				t.Errorf("%s %s: want exit %d\n%s", cmd, c.path, exitUsage, r)
				continue
			}
			for _, say := range []string{cmd + ": snapshot " + short, c.path, "hint: ", c.hint} {
				requireContains(t, cmd+" "+c.path, r.stderr, say)
			}
			if strings.Contains(r.stderr, "restore") {
				t.Errorf("%s %s blames restore\n%s", cmd, c.path, r)
			}
		}
	}
	// dump of a directory is a usage error too, pointing at restore.
	r := e.expect(exitUsage, e.withID("dump", "latest", src)...)
	for _, say := range []string{"dump: snapshot " + short, src + " is a dir, not a file", "hint: restore it with 'vaultbak restore " + short + " --include " + src} {
		requireContains(t, "dump of a directory", r.stderr, say)
	}
}

// TestBackupExclude leaves out what --exclude patterns match: a pattern
// without a slash matches names at any depth, one with a slash an absolute
// path and what is below it.
func TestBackupExclude(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	for _, rel := range []string{
		"keep.txt", "a/keep.log", "a/b/deep.txt",
		"scratch.tmp", "a/b/also.tmp", // *.tmp
		"cache/big.bin", "cache/sub/x", // /…/src/cache
		"a/node_modules/pkg/index.js", "node_modules/y", // node_modules
		"a/cache/kept-because-not-top", // the path pattern is anchored
	} {
		writeFile(t, filepath.Join(src, rel), []byte(rel+"\n"), 0o644)
	}
	e.ok("backup", "--exclude", "*.tmp", "--exclude", filepath.Join(src, "cache"), "--exclude", "node_modules", src)

	lsj := e.ok(e.withID("--json", "ls", "latest")...)
	listed := map[string]bool{}
	for _, o := range jsonLines(t, lsj.stdout) {
		if p, ok := o["path"].(string); ok {
			listed[strings.TrimPrefix(p, src+"/")] = true
		}
	}
	for _, rel := range []string{"keep.txt", "a/keep.log", "a/b/deep.txt", "a/cache/kept-because-not-top"} {
		if !listed[rel] {
			t.Errorf("%s is missing from the snapshot", rel)
		}
	}
	for _, rel := range []string{"scratch.tmp", "a/b/also.tmp", "cache", "cache/big.bin", "cache/sub/x", "a/node_modules", "a/node_modules/pkg/index.js", "node_modules", "node_modules/y"} {
		if listed[rel] {
			t.Errorf("%s is in the snapshot although excluded", rel)
		}
	}
	target := filepath.Join(e.dir, "out")
	e.ok(e.withID("restore", "latest", "--target", target)...)
	if _, err := os.Stat(restoredPath(target, filepath.Join(src, "cache"))); err == nil {
		t.Errorf("excluded directory %s/cache was restored", src)
	}
	if _, err := os.Stat(restoredPath(target, filepath.Join(src, "a/b/deep.txt"))); err != nil {
		t.Errorf("a/b/deep.txt not restored: %v", err)
	}
}

// TestSnapshotIDPrefix resolves snapshots by a unique ID prefix, and
// refuses an unknown, too short or ambiguous one with exit 2 and a hint.
func TestSnapshotIDPrefix(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	f := filepath.Join(src, "f.txt")
	var ids []string
	for _, content := range []string{"first\n", "second\n"} {
		writeFile(t, f, []byte(content), 0o644)
		sum, _ := e.backupJSON(exitOK, src)
		ids = append(ids, sum["snapshot"].(string))
	}
	if len(ids[0]) != 64 {
		t.Fatalf("snapshot ID %q is not 64 hex digits", ids[0])
	}
	// The shortest prefix that tells the two apart, and a few longer ones.
	n := 4
	for ids[0][:n] == ids[1][:n] {
		n++
	}
	for _, p := range []string{ids[0][:n], ids[0][:12], ids[0]} {
		r := e.ok(e.withID("dump", p, f)...)
		if r.stdout != "first\n" {
			t.Errorf("dump %s: %q, want the first snapshot's content", p, r.stdout)
		}
	}
	e.ok(e.withID("ls", ids[1][:8])...)
	if r := e.ok(e.withID("dump", strings.ToUpper(ids[0][:12]), f)...); r.stdout != "first\n" {
		t.Errorf("dump with the prefix in capitals: %q, want the first snapshot's content", r.stdout)
	}

	usage := func(what, ref string) {
		t.Helper()
		r := e.run(e.withID("restore", ref, "--target", filepath.Join(e.dir, "out"))...)
		if r.code != exitUsage {
			t.Errorf("restore with %s %q: want exit %d\n%s", what, ref, exitUsage, r)
			return
		}
		requireContains(t, "restore with "+what, r.stderr, "hint:")
	}
	unknown := "0123abcd"
	for strings.HasPrefix(ids[0], unknown) || strings.HasPrefix(ids[1], unknown) {
		unknown = "f" + unknown[1:]
	}
	usage("an unknown prefix", unknown)
	usage("a too short prefix", ids[0][:2])
	r := e.expect(exitUsage, e.withID("restore", ids[0][:12], "--at", "2030-01-01 00:00", "--target", filepath.Join(e.dir, "out"))...)
	requireContains(t, "restore with an ID and --at", r.stderr, "goes with 'latest'")

	// An ambiguous prefix needs two IDs sharing their first 4 hex digits,
	// which takes ~300 snapshots by chance. Instead, sign a copy of the
	// first manifest with another time until its ID shares the first
	// snapshot's 4-digit prefix: what any holder of the host credential
	// can do (it may add snapshots signed as its host).
	forged := forgeSibling(t, e, ids[0], ids[len(ids)-1], 4)
	t.Logf("forged snapshot %s shares the prefix %s with %s", forged[:12], ids[0][:4], ids[0][:12])
	usage("an ambiguous prefix", ids[0][:4])
	if r := e.run(e.withID("restore", ids[0][:4], "--target", filepath.Join(e.dir, "out"))...); !strings.Contains(r.stderr, "ambiguous") {
		t.Errorf("restore with an ambiguous prefix does not say so:\n%s", r)
	}
	// A longer prefix still picks one.
	if ids[0][:n] != forged[:n] {
		e.ok(e.withID("dump", ids[0][:n], f)...)
	}
}

// forgeSibling writes to every region a validly signed copy of snapshot id,
// continuing the host's chain after head (so the chain stays whole), whose
// time differs and whose ID starts with the same digits digits.
func forgeSibling(t *testing.T, e *repoEnv, id, head string, digits int) string {
	t.Helper()
	stored, err := os.ReadFile(filepath.Join(e.regions[0], "snapshots", id))
	if err != nil {
		t.Fatal(err)
	}
	var sm map[string]json.RawMessage
	if err := json.Unmarshal(stored, &sm); err != nil {
		t.Fatal(err)
	}
	raw := []byte(sm["manifest"])
	if got := sha256.Sum256(raw); hex.EncodeToString(got[:]) != id {
		t.Fatalf("stored manifest does not hash to its ID: the format changed")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var headSeq uint64
	for _, s := range e.snapshots() {
		if s["id"] == head {
			headSeq = uint64(s["seq"].(float64))
		}
	}
	m["seq"], _ = json.Marshal(headSeq + 1)
	m["prev"], _ = json.Marshal(head)
	var t0 time.Time
	if err := json.Unmarshal(m["time"], &t0); err != nil {
		t.Fatal(err)
	}
	var newRaw []byte
	newID := ""
	for i := 1; i < 1<<24; i++ {
		m["time"], _ = json.Marshal(t0.Add(time.Duration(i) * time.Microsecond))
		newRaw, _ = json.Marshal(m)
		sum := sha256.Sum256(newRaw)
		if h := hex.EncodeToString(sum[:]); h[:digits] == id[:digits] {
			newID = h
			break
		}
	}
	if newID == "" {
		t.Fatal("no sibling found")
	}
	seed := ""
	data, err := os.ReadFile(e.hostKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "signing-key: VAULTBAK-ED25519-SECRET-KEY-"); ok {
			seed = strings.TrimSpace(v)
		}
	}
	seedBytes, err := base64.RawURLEncoding.DecodeString(seed)
	if err != nil || len(seedBytes) != ed25519.SeedSize {
		t.Fatalf("host credential signing key: %v", err)
	}
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(seedBytes), append([]byte("vaultbak manifest v1\n"), newRaw...))
	sigJSON, _ := json.Marshal(sig)
	sm["manifest"] = newRaw
	sm["sig"] = sigJSON
	out, err := json.Marshal(sm)
	if err != nil {
		t.Fatal(err)
	}
	for _, reg := range e.regions {
		writeFile(t, filepath.Join(reg, "snapshots", newID), out, 0o600)
	}
	// The forgery is a valid snapshot: listed and verified like any other.
	found := false
	for _, s := range e.snapshots() {
		if s["id"] == newID {
			found = true
		}
	}
	if !found {
		t.Fatalf("forged snapshot %s is not listed: the manifest format changed", newID[:12])
	}
	return newID
}
