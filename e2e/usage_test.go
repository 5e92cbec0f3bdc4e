package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsageErrors: mistakes in how vaultbak is called or configured exit 2
// with a message saying what is wrong.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "a.txt"), []byte("a\n"), 0o644)
	e.ok("backup", src)
	empty := t.TempDir()

	for _, c := range []struct {
		name string
		o    runOpts
		args []string
		say  string // in stderr
	}{
		{"no config file in the working directory", runOpts{dir: empty, noEnv: true}, []string{"snapshots"}, "vaultbak.yaml not found"},
		{"--config naming a missing file", runOpts{}, []string{"--config", filepath.Join(empty, "missing.yaml"), "snapshots"}, "missing.yaml not found"},
		{"VAULTBAK_CONFIG naming a missing file", runOpts{env: []string{"VAULTBAK_CONFIG=" + filepath.Join(empty, "gone.yaml")}}, []string{"snapshots"}, "gone.yaml not found"},
		{"unknown flag", runOpts{}, []string{"backup", "--no-such-flag", src}, "unknown flag"},
		{"unknown global flag", runOpts{}, []string{"--frobnicate", "snapshots"}, "unknown flag"},
		{"unknown command", runOpts{}, []string{"frobnicate"}, "unknown command"},
		{"backup without a path", runOpts{}, []string{"backup"}, "PATH"},
		{"restore without --target", runOpts{}, e.withID("restore", "latest"), "--target"},
		{"restore without a snapshot", runOpts{}, e.withID("restore", "--target", "x"), "arg"},
		{"check with a bad percentage", runOpts{}, e.withID("check", "--read-data=150"), "percent"},
		{"check with no percentage", runOpts{}, e.withID("check", "--read-data=NaN"), "percent"},
		{"keygen without --out", runOpts{}, []string{"keygen"}, "out"},
		{"keygen over an existing key", runOpts{}, []string{"keygen", "--out", e.recovery}, "exists"},
		{"a missing identity file", runOpts{}, []string{"--identity", filepath.Join(empty, "nokey"), "ls", "latest"}, "recovery identity"},
	} {
		r := e.runWith(c.o, c.args...)
		if r.code != exitUsage {
			t.Errorf("%s: want exit %d\n%s", c.name, exitUsage, r)
			continue
		}
		if !strings.Contains(r.stderr, c.say) {
			t.Errorf("%s: stderr does not say %q\n%s", c.name, c.say, r)
		}
	}
}

// TestConfigErrors: a config that cannot be used is exit 2, and so is
// init without a recovery recipient.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := append(baseEnv(), "VAULTBAK_CACHE_DIR="+filepath.Join(dir, "cache"))
	run := func(config string, args ...string) result {
		t.Helper()
		p := filepath.Join(dir, "vaultbak.yaml")
		writeFile(t, p, []byte(config), 0o644)
		return vaultbak(t, dir, append(env, "VAULTBAK_CONFIG="+p), runOpts{}, args...)
	}
	good := "regions:\n  - name: one\n    url: ./region-one\n"
	for _, c := range []struct {
		name, config string
		args         []string
		say          string
	}{
		{"a misspelt key", "regionz:\n  - name: one\n    url: ./r\n", []string{"snapshots"}, "regionz"},
		{"no regions", "cache_dir: ./c\n", []string{"snapshots"}, "no regions"},
		{"a region without url", "regions:\n  - name: one\n", []string{"snapshots"}, "no url"},
		{"two regions with one name", "regions:\n  - name: one\n    url: ./a\n  - name: one\n    url: ./b\n", []string{"snapshots"}, "twice"},
		{"quorum above the region count", good + "quorum: 3\n", []string{"snapshots"}, "quorum"},
		{"not YAML", "regions: [\n", []string{"snapshots"}, "config"},
		{"init without a recovery recipient", good, []string{"init"}, "recovery recipient"},
		{"init with a malformed recipient", good, []string{"init", "--recovery-recipient", "age1notarecipient"}, "recipient"},
		{"init with a secret key as recipient", good, []string{"init", "--recovery-recipient", "AGE-SECRET-KEY-1QQQ"}, "secret"},
	} {
		r := run(c.config, c.args...)
		if r.code != exitUsage {
			t.Errorf("%s: want exit %d\n%s", c.name, exitUsage, r)
			continue
		}
		if !strings.Contains(r.stderr, c.say) {
			t.Errorf("%s: stderr does not say %q\n%s", c.name, c.say, r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "host.key")); err == nil {
		t.Errorf("a failed init wrote a host credential")
	}
	if r := run(good, "init"); !strings.Contains(r.stderr, "hint: ") || !strings.Contains(r.stderr, "keygen") {
		t.Errorf("init without a recipient gives no hint about keygen:\n%s", r)
	}
}

// TestKeyFilePermissions: a key file that group or others may read is
// refused (exit 2) with a message saying so, for the recovery identity and
// the host credential alike.
func TestKeyFilePermissions(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "a.txt"), []byte("a\n"), 0o644)
	e.ok("backup", src)

	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		if err := os.Chmod(e.recovery, mode); err != nil {
			t.Fatal(err)
		}
		r := e.run(e.withID("ls", "latest")...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "readable by group or others") {
			t.Errorf("recovery identity with mode %04o: want exit %d saying it is readable by group or others\n%s", mode, exitUsage, r)
		}
		if strings.Contains(r.stdout+r.stderr, "AGE-SECRET-KEY") {
			t.Errorf("the refusal prints the secret key:\n%s", r)
		}
		if err := os.Chmod(e.hostKey, mode); err != nil {
			t.Fatal(err)
		}
		r = e.run("backup", src)
		if r.code != exitUsage || !strings.Contains(r.stderr, "readable by group or others") {
			t.Errorf("host credential with mode %04o: want exit %d saying it is readable by group or others\n%s", mode, exitUsage, r)
		}
		if strings.Contains(r.stdout+r.stderr, "SECRET-KEY") {
			t.Errorf("the refusal prints the secret key:\n%s", r)
		}
	}
	for _, p := range []string{e.recovery, e.hostKey} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.ok("backup", src)
	e.ok(e.withID("ls", "latest")...)
	// A 0400 key is fine too.
	if err := os.Chmod(e.recovery, 0o400); err != nil {
		t.Fatal(err)
	}
	e.ok(e.withID("ls", "latest")...)
}

// TestBackupMissingPath: a path that does not exist fails the backup
// (exit 1) with the error and a hint, even with --quiet, and commits
// nothing, though the other path exists.
func TestBackupMissingPath(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeFile(t, filepath.Join(src, "a.txt"), []byte("a\n"), 0o644)
	missing := filepath.Join(e.dir, "no-such-dir")
	r := e.expect(exitFailure, "--quiet", "backup", src, missing)
	requireContains(t, "backup of a missing path", r.stderr, missing+": no such file or directory")
	requireContains(t, "backup of a missing path", r.stderr, "hint: check the path")
	if n := len(e.snapshots()); n != 0 {
		t.Errorf("%d snapshots after a failed backup, want none", n)
	}
}
