package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStdinBackup backs up standard input as one named file and dumps it
// back byte for byte; a second identical dump deduplicates.
func TestStdinBackup(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	var dump bytes.Buffer
	dump.WriteString("-- PostgreSQL database dump\nSET statement_timeout = 0;\n")
	dump.Write(textBytes(31, 3<<20))
	dump.Write(randomBytes(32, 2<<20)) // a bytea column
	dump.WriteString("\n\\.\n-- end\n")
	data := dump.Bytes()
	file := filepath.Join(e.dir, "db.sql")
	writeFile(t, file, data, 0o600)

	stdin := func() *os.File {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	r := e.runWith(runOpts{stdin: stdin()}, "--json", "backup", "--stdin", "--stdin-filename", "db.sql")
	if r.code != exitOK {
		t.Fatalf("backup --stdin:\n%s", r)
	}
	first := requireSummary(t, jsonLines(t, r.stdout), r)
	if num(t, first, "bytes") != float64(len(data)) {
		t.Errorf("backup --stdin summary: %v bytes, want %d", first["bytes"], len(data))
	}

	got := e.ok(e.withID("dump", "latest", "/db.sql")...)
	if !bytes.Equal([]byte(got.stdout), data) {
		t.Fatalf("dump latest /db.sql: %d bytes that differ from the %d backed up", len(got.stdout), len(data))
	}
	if got := e.ok(e.withID("dump", "latest", "db.sql")...); !bytes.Equal([]byte(got.stdout), data) {
		t.Errorf("dump latest db.sql (relative): content differs")
	}
	if ls := e.ok(e.withID("ls", "latest")...); strings.TrimSpace(ls.stdout) != "/db.sql" {
		t.Errorf("ls of a stdin snapshot: %q, want /db.sql", ls.stdout)
	}
	target := filepath.Join(e.dir, "out")
	e.ok(e.withID("restore", "latest", "--target", target)...)
	if b, err := os.ReadFile(filepath.Join(target, "db.sql")); err != nil || !bytes.Equal(b, data) {
		t.Errorf("restore of a stdin snapshot: %v", err)
	}

	// The same dump again adds almost nothing.
	r = e.runWith(runOpts{stdin: stdin()}, "--json", "backup", "--stdin", "--stdin-filename", "db.sql")
	if r.code != exitOK {
		t.Fatalf("second backup --stdin:\n%s", r)
	}
	second := requireSummary(t, jsonLines(t, r.stdout), r)
	if added := num(t, second, "added_bytes"); added > float64(len(data))/100 {
		t.Errorf("an identical second dump added %v bytes of %d", added, len(data))
	}
	t.Logf("stdin backup of %s: first added %.0f bytes, identical second %.0f", mib(int64(len(data))), num(t, first, "added_bytes"), num(t, second, "added_bytes"))

	// An empty stream is a valid, empty file.
	r = e.runWith(runOpts{stdin: strings.NewReader("")}, "backup", "--stdin", "--stdin-filename", "empty.sql")
	if r.code != exitOK {
		t.Fatalf("backup --stdin of nothing:\n%s", r)
	}
	if got := e.ok(e.withID("dump", "latest", "/empty.sql")...); got.stdout != "" {
		t.Errorf("dump of an empty stream: %q", got.stdout)
	}

	// Usage mistakes.
	for _, args := range [][]string{
		{"backup", "--stdin"},
		{"backup", "--stdin", "--stdin-filename", "x.sql", file},
	} {
		r := e.runWith(runOpts{stdin: strings.NewReader("x")}, args...)
		if r.code != exitUsage {
			t.Errorf("%q: want exit %d\n%s", args, exitUsage, r)
		}
	}
}
