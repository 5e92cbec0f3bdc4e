// Package e2e drives the built vaultbak binary the way a user does: each
// test gets its own directory with a config file, a recovery identity, a
// host credential, local directory regions and a cache directory, runs
// commands through exec, and compares what comes back with what went in.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// vbBin is the vaultbak binary built once by TestMain.
var vbBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "vaultbak-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Some tests run the binary as an unprivileged user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	vbBin = filepath.Join(dir, "vaultbak")
	build := exec.Command("go", "build", "-o", vbBin, "./cmd/vaultbak")
	build.Dir = ".." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/vaultbak: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// Exit codes from DESIGN.md.
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitWarnings  = 3
	exitIntegrity = 4
)

// result is one finished command.
type result struct {
	args   []string
	stdout string
	stderr string
	code   int
}

func (r result) String() string {
	return fmt.Sprintf("vaultbak %q: exit %d\n--- stdout:\n%s\n--- stderr:\n%s", r.args, r.code, clip(r.stdout), clip(r.stderr))
}

func clip(s string) string {
	if len(s) > 4000 {
		return s[:2000] + "\n[…]\n" + s[len(s)-2000:]
	}
	return s
}

// runOpts are the less common ways of running a command.
type runOpts struct {
	stdin   io.Reader
	env     []string            // extra KEY=VALUE, after the defaults
	cred    *syscall.Credential // run as another user
	timeout time.Duration       // 0: 3 minutes; a command still running then fails the test
	dir     string              // working directory; "" for the repo's
	noEnv   bool                // do not set VAULTBAK_CONFIG / VAULTBAK_CACHE_DIR
}

// baseEnv is the test process environment without any VAULTBAK_ variable,
// so that nothing of the developer's setup leaks into a test.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULTBAK_") {
			out = append(out, kv)
		}
	}
	return out
}

// vaultbak runs the binary in dir with env and returns what it did.
func vaultbak(t *testing.T, dir string, env []string, o runOpts, args ...string) result {
	t.Helper()
	timeout := o.timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, vbBin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = o.stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if o.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	}
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("vaultbak %q did not finish within %v (hung?)\n%s", args, timeout, r)
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("vaultbak %q: %v", args, err)
	}
	return r
}

// repoEnv is one test's repository: its directory holds vaultbak.yaml,
// recovery.key, host.key, the region directories and the cache.
type repoEnv struct {
	t        *testing.T
	dir      string
	config   string
	recovery string   // recovery identity (keygen)
	hostKey  string   // host credential (init)
	cache    string   // VAULTBAK_CACHE_DIR
	regions  []string // region directories, in config order
	names    []string // region names
}

// newRepo writes a config with the named local regions, creates a recovery
// identity and initialises the repository. With no names: regions one and two.
func newRepo(t *testing.T, regionNames ...string) *repoEnv {
	t.Helper()
	return newRepoIn(t, t.TempDir(), regionNames...)
}

func newRepoIn(t *testing.T, dir string, regionNames ...string) *repoEnv {
	t.Helper()
	if len(regionNames) == 0 {
		regionNames = []string{"one", "two"}
	}
	e := repoEnvIn(t, dir)
	e.names = regionNames
	var cfg strings.Builder
	cfg.WriteString("regions:\n")
	for _, n := range regionNames {
		fmt.Fprintf(&cfg, "  - name: %s\n    url: ./region-%s\n", n, n)
		e.regions = append(e.regions, filepath.Join(dir, "region-"+n))
	}
	writeFile(t, e.config, []byte(cfg.String()), 0o644)

	r := e.ok("keygen", "--out", e.recovery)
	if !strings.HasPrefix(strings.TrimSpace(r.stdout), "age1") {
		t.Fatalf("keygen printed no recipient:\n%s", r)
	}
	requireMode(t, e.recovery, 0o600)
	e.ok("init", "--recovery-recipient-file", e.recovery, "--host", "e2e-host")
	requireMode(t, e.hostKey, 0o600)
	return e
}

// repoEnvIn lays out a repository environment in dir: the config, the
// keys and the cache; the caller adds the regions.
func repoEnvIn(t *testing.T, dir string) *repoEnv {
	return &repoEnv{
		t:        t,
		dir:      dir,
		config:   filepath.Join(dir, "vaultbak.yaml"),
		recovery: filepath.Join(dir, "recovery.key"),
		hostKey:  filepath.Join(dir, "host.key"),
		cache:    filepath.Join(dir, "cache"),
	}
}

func requireMode(t *testing.T, p string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Fatalf("%s has mode %04o, want %04o", p, fi.Mode().Perm(), want)
	}
}

func (e *repoEnv) env(extra ...string) []string {
	return append(append(baseEnv(), "VAULTBAK_CONFIG="+e.config, "VAULTBAK_CACHE_DIR="+e.cache), extra...)
}

// runWith runs a command against this repository.
func (e *repoEnv) runWith(o runOpts, args ...string) result {
	e.t.Helper()
	env := e.env(o.env...)
	if o.noEnv {
		env = append(baseEnv(), o.env...)
	}
	dir := o.dir
	if dir == "" {
		dir = e.dir
	}
	return vaultbak(e.t, dir, env, o, args...)
}

func (e *repoEnv) run(args ...string) result {
	e.t.Helper()
	return e.runWith(runOpts{}, args...)
}

// expect runs a command and fails the test unless it exits with code.
func (e *repoEnv) expect(code int, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != code {
		e.t.Fatalf("want exit %d\n%s", code, r)
	}
	return r
}

func (e *repoEnv) ok(args ...string) result {
	e.t.Helper()
	return e.expect(exitOK, args...)
}

// id returns the flags that pass the recovery identity.
func (e *repoEnv) id() []string { return []string{"--identity", e.recovery} }

// withID prepends the recovery identity flags to args.
func (e *repoEnv) withID(args ...string) []string { return append(e.id(), args...) }

// snapshots returns the snapshot objects of `snapshots --json`, oldest first.
func (e *repoEnv) snapshots() []map[string]any {
	e.t.Helper()
	r := e.ok("--json", "snapshots")
	var out []map[string]any
	for _, obj := range jsonLines(e.t, r.stdout) {
		if obj["type"] == "snapshot" {
			out = append(out, obj)
		}
	}
	return out
}

// backupJSON runs `backup --json args...`, requires exit code, and returns
// the summary object.
func (e *repoEnv) backupJSON(code int, args ...string) (map[string]any, result) {
	e.t.Helper()
	r := e.expect(code, append([]string{"--json", "backup"}, args...)...)
	objs := jsonLines(e.t, r.stdout)
	return requireSummary(e.t, objs, r), r
}

// jsonLines parses stdout as one JSON object per line.
func jsonLines(t *testing.T, stdout string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("--json output line is not a JSON object: %v\nline: %q\nall:\n%s", err, line, clip(stdout))
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func requireSummary(t *testing.T, objs []map[string]any, r result) map[string]any {
	t.Helper()
	sum := findSummary(t, objs, r)
	if last := objs[len(objs)-1]; last["type"] != "summary" {
		t.Errorf("--json: the last object is %v, want the summary (one JSON object per line, ending with a summary)\n%s", last, r)
	}
	return sum
}

// findSummary returns the one summary object of a --json run, wherever it is.
func findSummary(t *testing.T, objs []map[string]any, r result) map[string]any {
	t.Helper()
	var sums []map[string]any
	for _, o := range objs {
		if o["type"] == "summary" {
			sums = append(sums, o)
		}
	}
	if len(sums) != 1 {
		t.Fatalf("--json printed %d summary objects, want 1\n%s", len(sums), r)
	}
	return sums[0]
}

func num(t *testing.T, m map[string]any, key string) float64 {
	t.Helper()
	v, ok := m[key].(float64)
	if !ok {
		t.Fatalf("JSON object has no number %q: %v", key, m)
	}
	return v
}

func writeFile(t *testing.T, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask
		t.Fatal(err)
	}
}

func mkdirs(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

// rng returns a deterministic random source for test data.
func rng(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

// randomBytes returns n random bytes from seed.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rng(seed).Read(b)
	return b
}

// writeRandomFile writes size random bytes (from seed) to p.
func writeRandomFile(t *testing.T, p string, seed uint64, size int64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rng(seed), size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// textBytes returns n bytes of compressible, text-like data.
func textBytes(seed uint64, n int) []byte {
	words := []string{"backup", "region", "restore", "snapshot", "chunk", "pack", "index", "verify", "the", "of", "and", "a", "to", "in", "is", "replica"}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// fileSHA256 hashes a file by streaming it.
func fileSHA256(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// dirSize returns the total size of the regular files below dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// objects returns the object files of one region below prefix ("data",
// "index", "snapshots", "" for all), skipping temporary files.
func objects(t *testing.T, region, prefix string) []string {
	t.Helper()
	var out []string
	root := filepath.Join(region, prefix)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".tmp-") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// restoredPath is where restore puts source path src below target.
func restoredPath(target, src string) string {
	return filepath.Join(target, src)
}

// flipByte inverts one byte of file p at offset off.
func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// largestObject returns the largest file in paths.
func largestObject(t *testing.T, paths []string) (string, int64) {
	t.Helper()
	best, size := "", int64(-1)
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > size {
			best, size = p, fi.Size()
		}
	}
	if best == "" {
		t.Fatal("no objects")
	}
	return best, size
}

func requireContains(t *testing.T, what, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%s does not mention %q:\n%s", what, sub, clip(s))
	}
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// entry is what the tests compare of one file system entry.
type entry struct {
	typ      fs.FileMode // type bits only
	perm     uint32      // permission and setuid/setgid/sticky bits
	uid, gid uint32
	mtime    int64 // ns
	size     int64
	blocks   int64
	rdev     uint64
	ino      uint64
	nlink    uint64
	target   string   // symlink
	sum      [32]byte // regular file content
}

// scanTree returns every entry below root (and root itself as "."), keyed
// by the path relative to root. Names are bytes, so non-UTF-8 names are
// keys like any other.
func scanTree(t *testing.T, root string) map[string]*entry {
	t.Helper()
	return scan(t, root, true)
}

// listTree is scanTree without reading content.
func listTree(t *testing.T, root string) map[string]*entry {
	t.Helper()
	return scan(t, root, false)
}

func scan(t *testing.T, root string, hash bool) map[string]*entry {
	t.Helper()
	out := map[string]*entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		// unix.Stat_t names the times Mtim on every system (syscall's is
		// Mtimespec on macOS and FreeBSD); the widths still differ.
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := &entry{
			typ: fi.Mode().Type(), perm: uint32(st.Mode) & 0o7777, uid: st.Uid, gid: st.Gid,
			mtime: st.Mtim.Nano(), size: st.Size, blocks: st.Blocks,
			rdev: uint64(st.Rdev), ino: st.Ino, nlink: uint64(st.Nlink),
		}
		switch {
		case fi.Mode().IsRegular() && hash:
			e.sum = fileSHA256(t, p)
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees checks that restored holds exactly what want (scanTree of
// the source) held: types,
// modes, owners, modification times, sizes, content, symlink targets,
// device numbers and hard link identity. Sockets are the one kind restore
// may leave out (there is nothing to restore but the name, which ls shows);
// when present they must be sockets. It returns the restored entries.
func compareTrees(t *testing.T, want map[string]*entry, restored string) map[string]*entry {
	t.Helper()
	got := scanTree(t, restored)
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, rel := range sortedKeys(want) {
		w := want[rel]
		g, ok := got[rel]
		if !ok {
			if w.typ == fs.ModeSocket {
				continue
			}
			bad("%q (%v) missing from the restore", rel, w.typ)
			continue
		}
		if g.typ != w.typ {
			bad("%q: type %v, want %v", rel, g.typ, w.typ)
			continue
		}
		if g.perm != w.perm && w.typ != fs.ModeSymlink {
			bad("%q: mode %04o, want %04o", rel, g.perm, w.perm)
		}
		if g.uid != w.uid || g.gid != w.gid {
			bad("%q: owner %d:%d, want %d:%d", rel, g.uid, g.gid, w.uid, w.gid)
		}
		if g.mtime != w.mtime {
			bad("%q: mtime %s, want %s", rel, time.Unix(0, g.mtime).UTC().Format(time.RFC3339Nano), time.Unix(0, w.mtime).UTC().Format(time.RFC3339Nano))
		}
		switch w.typ {
		case 0: // regular
			if g.size != w.size {
				bad("%q: size %d, want %d", rel, g.size, w.size)
			} else if g.sum != w.sum {
				bad("%q: content differs (sha256 %x, want %x)", rel, g.sum[:8], w.sum[:8])
			}
		case fs.ModeSymlink:
			if g.target != w.target {
				bad("%q: symlink target %q, want %q", rel, g.target, w.target)
			}
		case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
			if g.rdev != w.rdev {
				bad("%q: device %#x, want %#x", rel, g.rdev, w.rdev)
			}
		}
	}
	for _, rel := range sortedKeys(got) {
		if _, ok := want[rel]; !ok {
			bad("%q: in the restore but not in the source", rel)
		}
	}
	// Hard links: paths sharing an inode in the source share one in the
	// restore, and paths that do not, do not.
	groups := map[uint64][]string{}
	for rel, w := range want {
		if w.typ == 0 {
			groups[w.ino] = append(groups[w.ino], rel)
		}
	}
	restoredOwner := map[uint64]uint64{} // restored inode -> source inode
	for ino, rels := range groups {
		sort.Strings(rels)
		var first uint64
		for i, rel := range rels {
			g, ok := got[rel]
			if !ok || g.typ != 0 {
				continue
			}
			if i == 0 {
				first = g.ino
			} else if g.ino != first {
				bad("hard links %q and %q are separate files in the restore", rels[0], rel)
			}
			if prev, seen := restoredOwner[g.ino]; seen && prev != ino {
				bad("%q shares an inode in the restore with a file it was not linked to", rel)
			}
			restoredOwner[g.ino] = ino
			if g.nlink != want[rel].nlink {
				bad("%q: %d links, want %d", rel, g.nlink, want[rel].nlink)
			}
		}
	}
	if len(problems) > 0 {
		t.Errorf("restore in %s differs from the source:\n  %s", restored, strings.Join(problems, "\n  "))
	}
	return got
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
