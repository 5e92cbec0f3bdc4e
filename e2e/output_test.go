package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestJSONOutput checks that --json prints one JSON object per line on
// stdout, ending with a summary, for keygen, init, backup, snapshots, ls,
// restore and check.
func TestJSONOutput(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "a.txt"), textBytes(1, 10<<10), 0o644)
	writeFile(t, filepath.Join(src, "b/c.bin"), randomBytes(2, 100<<10), 0o644)

	jsonRun := func(args ...string) map[string]any {
		t.Helper()
		r := e.ok(append([]string{"--json"}, args...)...)
		return requireSummary(t, jsonLines(t, r.stdout), r)
	}

	k := jsonRun("keygen", "--out", filepath.Join(e.dir, "another.key"))
	if r, _ := k["recipient"].(string); !strings.HasPrefix(r, "age1") {
		t.Errorf("keygen --json summary has no recipient: %v", k)
	}

	b := jsonRun("backup", src)
	for _, key := range []string{"files", "dirs", "bytes", "added_bytes", "skipped_files", "warnings"} {
		num(t, b, key)
	}
	if id, _ := b["snapshot"].(string); len(id) != 64 {
		t.Errorf("backup --json summary snapshot %v, want a 64-digit ID", b["snapshot"])
	}
	if num(t, b, "files") != 2 || num(t, b, "warnings") != 0 {
		t.Errorf("backup --json summary: %v", b)
	}
	b2 := jsonRun("backup", src)
	if num(t, b2, "skipped_files") != 2 {
		t.Errorf("second backup --json: skipped_files %v, want 2", b2["skipped_files"])
	}

	r := e.ok("--json", "snapshots")
	objs := jsonLines(t, r.stdout)
	s := requireSummary(t, objs, r)
	if num(t, s, "snapshots") != 2 || len(objs) != 3 {
		t.Errorf("snapshots --json: %d objects, summary %v; want 2 snapshots and a summary", len(objs), s)
	}
	for _, o := range objs[:len(objs)-1] {
		if o["type"] != "snapshot" || o["host"] != "e2e-host" {
			t.Errorf("snapshots --json object: %v", o)
		}
	}
	if objs[1]["id"] != b2["snapshot"] {
		t.Errorf("snapshots --json: the newest is %v, want %v", objs[1]["id"], b2["snapshot"])
	}

	rs := jsonRun(e.withID("restore", "latest", "--target", filepath.Join(e.dir, "out"))...)
	if num(t, rs, "files") != 2 || rs["verified"] != true || rs["snapshot"] != b2["snapshot"] {
		t.Errorf("restore --json summary: %v", rs)
	}
	jsonRun(e.withID("ls", "latest")...)
	c := jsonRun(e.withID("check", "--read-data")...)
	if num(t, c, "problems") != 0 {
		t.Errorf("check --json: %v", c)
	}
	// Nothing but JSON on stdout means nothing decorative on stderr either
	// when all is well.
	if r := e.ok("--json", "backup", src); r.stderr != "" {
		t.Errorf("backup --json wrote to stderr:\n%s", r)
	}
}

// TestCheckReadDataSample: check --read-data=PERCENT (with or without "%")
// decrypts ceil(PERCENT% of the packs), at least one, and says how many of
// how many; on a one-pack repository 10% used to decrypt none and pass.
// "--read-data 50" (no "=") is refused saying how to write it.
func TestCheckReadDataSample(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "a.txt"), textBytes(1, 10<<10), 0o644)
	e.ok("backup", src)
	for _, arg := range []string{"--read-data=10%", "--read-data=10", "--read-data=0.5", "--read-data"} {
		r := e.ok(e.withID("--json", "check", arg)...)
		c := requireSummary(t, jsonLines(t, r.stdout), r)
		if num(t, c, "packs_read") != 1 || num(t, c, "packs_indexed") != 1 || num(t, c, "blobs") < 2 || num(t, c, "problems") != 0 {
			t.Errorf("check %s on one pack: want it read and verified\n%s", arg, r)
		}
		r = e.ok(e.withID("check", arg)...)
		requireContains(t, "check "+arg, r.stdout, " in 1 of 1 packs decrypted and verified")
	}
	r := e.run(e.withID("check", "--read-data", "50")...)
	if r.code != exitUsage || !strings.Contains(r.stderr, "--read-data=50") {
		t.Errorf("check --read-data 50: want exit %d saying --read-data=50\n%s", exitUsage, r)
	}
	// A share is picked at random each run, with the seed printed; --seed
	// picks it again.
	r = e.ok(e.withID("check", "--read-data=10%")...)
	requireContains(t, "check of a share", r.stdout, "(sample seed ")
	r = e.ok(e.withID("--json", "check", "--read-data=10%", "--seed", "nightly-7")...)
	if c := requireSummary(t, jsonLines(t, r.stdout), r); c["seed"] != "nightly-7" {
		t.Errorf("check --seed nightly-7: summary seed %v", c["seed"])
	}
	e.expect(exitUsage, e.withID("check", "--read-data", "--seed", "x")...)
}

// TestJSONWarningsEndWithSummary: a backup that completes with warnings
// (exit 3) is a finished run whose --json output must still end with its
// summary object.
func TestJSONWarningsEndWithSummary(t *testing.T) {
	t.Parallel()
	e, src, o, _, _ := unreadableSetup(t)
	r := e.runWith(o, "--json", "backup", src)
	if r.code != exitWarnings {
		t.Fatalf("want exit %d\n%s", exitWarnings, r)
	}
	requireSummary(t, jsonLines(t, r.stdout), r)
}

// TestQuiet: a successful run with --quiet prints nothing at all.
func TestQuiet(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "a.txt"), textBytes(1, 10<<10), 0o644)
	for _, args := range [][]string{
		{"--quiet", "backup", src},
		{"-q", "backup", src},
		{"backup", "--quiet", src},
		{"--quiet", "snapshots"},
		e.withID("--quiet", "restore", "latest", "--target", filepath.Join(e.dir, "out")),
		e.withID("--quiet", "check", "--read-data"),
	} {
		r := e.ok(args...)
		if r.stdout != "" || r.stderr != "" {
			t.Errorf("%q printed something:\n%s", args, r)
		}
	}
	// Without --quiet a backup says what it did.
	if r := e.ok("backup", src); !strings.Contains(r.stdout, "snapshot") {
		t.Errorf("backup without --quiet printed no summary line:\n%s", r)
	}
}
