package e2e

// Regions on real S3: every test here starts three MinIO servers (one
// s3test.Server each, on free 127.0.0.1 ports, data under temp dirs,
// stopped by PID when the test ends) and drives the built binary against
// them: a healthy backup and restore; a region down before, and killed
// during, a backup (degraded commit, then healing with replicate sync);
// two regions down or refusing the manifest (below quorum: nothing commits
// anywhere); objects missing in one region and damaged in another (restore
// fails over per object); a fault-injecting proxy (503 SlowDown,
// connection resets) that the S3 client's retries ride through; and a TLS
// region with and without its CA. A test that cannot start MinIO fails; it
// never skips.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vaultbak/backend"
	"vaultbak/backend/s3"
	"vaultbak/backend/s3/s3test"
)

// s3Region is one region of a test repository on a MinIO server.
type s3Region struct {
	name   string
	srv    *s3test.Server
	bucket string
	prefix string
	url    string // as the config names it (a proxy's address, for one)
	caCert string // ca_cert in the config; "" for none
	keyEnv string // names of the environment variables holding the credentials
	secEnv string

	mu sync.Mutex
	be *s3.S3 // direct to the server, for the test's own inspection
}

// credSeq numbers the credential environment variables, so that tests
// running in parallel never share one.
var credSeq atomic.Int64

// startMinIO starts one MinIO server per options, concurrently, each with
// its own root credentials, and stops them (by PID) when the test ends.
// It fails the test, never skips it, when a server does not come up.
func startMinIO(t *testing.T, opts ...s3test.Options) []*s3test.Server {
	t.Helper()
	servers := make([]*s3test.Server, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		if o.AccessKey == "" {
			n := credSeq.Add(1)
			o.AccessKey = fmt.Sprintf("e2e-user-%d", n)
			o.SecretKey = fmt.Sprintf("e2e-secret-%d-%x", n, rand.Uint64())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Launch, not Start: Start fails the test, which only the
			// test's goroutine may do.
			servers[i], errs[i] = s3test.Launch(o)
		}()
	}
	wg.Wait()
	for _, s := range servers {
		if s == nil {
			continue
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("MinIO at %s, log %s:\n%s", s.Endpoint, s.LogFile, s.LogTail())
			}
			s.Close() // stops it by PID and removes its temp dir
		})
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("MinIO did not start: %v", err)
	}
	return servers
}

// newS3Regions makes region r<i> on bucket<i> of server i, with the
// server's credentials in environment variables of its own.
func newS3Regions(t *testing.T, servers []*s3test.Server) []*s3Region {
	t.Helper()
	return newS3RegionsIn(t, servers, "bucket")
}

// newS3RegionsIn makes region r<i> on bucket <bucketPrefix><i> of server i,
// so that several repositories can share servers.
func newS3RegionsIn(t *testing.T, servers []*s3test.Server, bucketPrefix string) []*s3Region {
	t.Helper()
	var out []*s3Region
	for i, srv := range servers {
		n := credSeq.Add(1)
		r := &s3Region{
			name:   fmt.Sprintf("r%d", i+1),
			srv:    srv,
			bucket: fmt.Sprintf("%s%d", bucketPrefix, i+1),
			prefix: "vb",
			caCert: srv.CACertFile,
			keyEnv: fmt.Sprintf("E2E_S3_ACCESS_KEY_%d", n),
			secEnv: fmt.Sprintf("E2E_S3_SECRET_KEY_%d", n),
		}
		r.url = srv.URL(r.bucket, r.prefix)
		// The binary reads credentials from the variables the config
		// names. Every test's names are unique, so setting them in this
		// process (whose environment every command inherits) is safe for
		// parallel tests; t.Setenv would forbid t.Parallel.
		os.Setenv(r.keyEnv, srv.AccessKey)
		os.Setenv(r.secEnv, srv.SecretKey)
		t.Cleanup(func() {
			os.Unsetenv(r.keyEnv)
			os.Unsetenv(r.secEnv)
			r.mu.Lock()
			if r.be != nil {
				r.be.Close()
			}
			r.mu.Unlock()
		})
		out = append(out, r)
	}
	return out
}

// writeS3Config writes a config listing regions in order, with quorum (0:
// the default) and the cache in ./cache.
func writeS3Config(t *testing.T, path string, quorum int, regions ...*s3Region) {
	t.Helper()
	var b strings.Builder
	b.WriteString("regions:\n")
	for _, r := range regions {
		fmt.Fprintf(&b, "  - name: %s\n    url: %s\n    access_key_id_env: %s\n    secret_access_key_env: %s\n", r.name, r.url, r.keyEnv, r.secEnv)
		if r.caCert != "" {
			fmt.Fprintf(&b, "    ca_cert: %s\n", r.caCert)
		}
	}
	if quorum > 0 {
		fmt.Fprintf(&b, "quorum: %d\n", quorum)
	}
	b.WriteString("cache_dir: ./cache\n")
	writeFile(t, path, []byte(b.String()), 0o644)
}

// newS3Repo writes a config of regions, makes a recovery identity and runs
// init, which creates the buckets.
func newS3Repo(t *testing.T, quorum int, regions ...*s3Region) *repoEnv {
	t.Helper()
	dir := t.TempDir()
	e := repoEnvIn(t, dir)
	for _, r := range regions {
		e.names = append(e.names, r.name)
	}
	writeS3Config(t, e.config, quorum, regions...)
	e.ok("keygen", "--out", e.recovery)
	r := e.ok("init", "--recovery-recipient-file", e.recovery, "--host", "e2e-host")
	requireMode(t, e.hostKey, 0o600)
	for _, reg := range regions {
		if len(reg.list(t, "config")) != 1 {
			t.Fatalf("init did not write the config to region %s (%s)\n%s", reg.name, reg.url, r)
		}
	}
	return e
}

// backend returns a backend straight to the region's server (never
// through a proxy), for the test to look at and damage objects.
func (r *s3Region) backend(t *testing.T) *s3.S3 {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.be == nil {
		cfg := r.srv.Config(r.bucket, r.prefix)
		cfg.MaxRetries = 3
		be, err := s3.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r.be = be
	}
	return r.be
}

// clone returns a copy of the region's settings, to vary them in another
// config.
func (r *s3Region) clone() *s3Region {
	return &s3Region{name: r.name, srv: r.srv, bucket: r.bucket, prefix: r.prefix, url: r.url, caCert: r.caCert, keyEnv: r.keyEnv, secEnv: r.secEnv}
}

// list returns the region's objects below prefix with their sizes.
func (r *s3Region) list(t *testing.T, prefix string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]int64{}
	err := r.backend(t).List(ctx, prefix, func(fi backend.Info) error {
		out[fi.Name] = fi.Size
		return nil
	})
	if err != nil {
		t.Fatalf("list %s in region %s: %v", prefix, r.name, err)
	}
	return out
}

// manifests returns the snapshot IDs whose manifest the region holds.
func (r *s3Region) manifests(t *testing.T) []string {
	t.Helper()
	var ids []string
	for name := range r.list(t, "snapshots/") {
		ids = append(ids, strings.TrimPrefix(name, "snapshots/"))
	}
	sort.Strings(ids)
	return ids
}

// requireManifest checks that the region holds snapshot id's manifest, or
// does not.
func (r *s3Region) requireManifest(t *testing.T, id string, want bool) {
	t.Helper()
	got := r.manifests(t)
	if slices.Contains(got, id) != want {
		t.Fatalf("region %s holds manifests %v: want snapshot %s there: %v", r.name, got, id, want)
	}
}

// flipObjectByte inverts one byte in the middle of an object, keeping its
// size (what a disk or a provider may do).
func (r *s3Region) flipObjectByte(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	data, err := backend.ReadAll(ctx, r.backend(t), name, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	r.putRaw(t, name, data)
}

// putRaw writes as any client with the bucket's credentials can: vaultbak's
// backend would refuse a hash-named object that does not match its name.
func (r *s3Region) putRaw(t *testing.T, name string, data []byte) {
	t.Helper()
	key := name
	if r.prefix != "" {
		key = r.prefix + "/" + name
	}
	if err := r.srv.PutRaw(context.Background(), r.bucket, key, data); err != nil {
		t.Fatal(err)
	}
}

func (r *s3Region) delete(t *testing.T, name string) {
	t.Helper()
	if err := r.backend(t).Delete(context.Background(), name); err != nil {
		t.Fatalf("delete %s in region %s: %v", name, r.name, err)
	}
}

// startThree starts three plain-HTTP MinIO servers and returns regions
// r1..r3 on them.
func startThree(t *testing.T) []*s3Region {
	t.Helper()
	return newS3Regions(t, startMinIO(t, s3test.Options{}, s3test.Options{}, s3test.Options{}))
}

// shrink returns small under -short, else full.
func shrink(full, small int64) int64 {
	if testing.Short() {
		return small
	}
	return full
}

// mixedTree writes a tree of about total bytes below root: large random
// files, text files, many small files of either kind over several
// directories, a copy of a large file (it deduplicates), an empty file, a
// symlink and a hard link.
func mixedTree(t *testing.T, root string, seed uint64, total int64) {
	t.Helper()
	big := total * 45 / 100
	text := total * 30 / 100
	small := total - big - text
	for i := range 3 {
		writeRandomFile(t, filepath.Join(root, "bin", fmt.Sprintf("blob-%d.bin", i)), seed+uint64(i), big/3)
	}
	for i := range 4 {
		writeFile(t, filepath.Join(root, "docs", fmt.Sprintf("part-%d.txt", i)), textBytes(seed+10+uint64(i), int(text/4)), 0o644)
	}
	sizes := rand.New(rand.NewPCG(seed, 7))
	for i, n := 0, int64(0); n < small; i++ {
		size := 1 + sizes.IntN(96<<10)
		p := filepath.Join(root, "small", fmt.Sprintf("d%d", i%6), fmt.Sprintf("f%04d", i))
		if i%2 == 0 {
			writeFile(t, p+".bin", randomBytes(seed+1000+uint64(i), size), 0o644)
		} else {
			writeFile(t, p+".txt", textBytes(seed+1000+uint64(i), size), 0o600)
		}
		n += int64(size)
	}
	dup, err := os.ReadFile(filepath.Join(root, "bin", "blob-0.bin"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "copy", "blob-0-again.bin"), dup, 0o644)
	writeFile(t, filepath.Join(root, "empty"), nil, 0o644)
	if err := os.Symlink("docs/part-0.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "docs", "part-1.txt"), filepath.Join(root, "docs", "hardlink.txt")); err != nil {
		t.Fatal(err)
	}
}

// restoreJSON restores the latest snapshot into a new directory with
// `--json restore` under config (e.config when ""), requires exit 0,
// compares the result with want, and returns the summary.
func restoreJSON(t *testing.T, e *repoEnv, config, src string, want map[string]*entry) map[string]any {
	t.Helper()
	target, err := os.MkdirTemp(e.dir, "restore-")
	if err != nil {
		t.Fatal(err)
	}
	var o runOpts
	if config != "" {
		o.env = []string{"VAULTBAK_CONFIG=" + config}
	}
	r := e.runWith(o, e.withID("--json", "restore", "latest", "--target", target)...)
	if r.code != exitOK {
		t.Fatalf("restore: want exit 0\n%s", r)
	}
	sum := requireSummary(t, jsonLines(t, r.stdout), r)
	if sum["verified"] != true {
		t.Errorf("restore summary does not say verified: %v", sum)
	}
	compareTrees(t, want, restoredPath(target, src))
	return sum
}

// stringList returns a JSON array of strings (null: empty).
func stringList(t *testing.T, m map[string]any, key string) []string {
	t.Helper()
	v, ok := m[key]
	if !ok {
		t.Fatalf("JSON object has no %q: %v", key, m)
	}
	if v == nil {
		return nil
	}
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("JSON %q is not an array: %v", key, v)
	}
	var out []string
	for _, x := range arr {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("JSON %q holds a non-string %v", key, x)
		}
		out = append(out, s)
	}
	return out
}

// regionServed returns restore's per-region counters for region.
func regionServed(t *testing.T, sum map[string]any, region string) (blobs, failovers float64) {
	t.Helper()
	regions, ok := sum["regions"].(map[string]any)
	if !ok {
		t.Fatalf("restore summary has no \"regions\" object: %v", sum)
	}
	st, ok := regions[region].(map[string]any)
	if !ok {
		return 0, 0
	}
	return num(t, st, "blobs"), num(t, st, "failovers")
}

// requireLagNamed checks that a line of a degraded backup's stderr says
// that region lags.
func requireLagNamed(t *testing.T, r result, region string) {
	t.Helper()
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.Contains(line, region) && strings.Contains(line, "lag") {
			return
		}
	}
	t.Errorf("the degraded backup's message does not say that region %s lags:\n%s", region, r)
}

// timed runs fn and logs how long it took.
func timed(t *testing.T, what string, fn func()) {
	t.Helper()
	start := time.Now()
	fn()
	t.Logf("%s: %.1fs", what, time.Since(start).Seconds())
}

// TestRegionsHealthy backs up a mixed tree to three MinIO regions and
// restores it byte for byte; every region holds the snapshot, replicate
// status and both checks pass.
func TestRegionsHealthy(t *testing.T) {
	t.Parallel()
	regs := startThree(t)
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	mixedTree(t, src, 100, shrink(50<<20, 12<<20))
	want := scanTree(t, src)

	var sum map[string]any
	timed(t, "backup to 3 regions", func() { sum, _ = e.backupJSON(exitOK, src) })
	if lag := stringList(t, sum, "lagging_regions"); len(lag) != 0 {
		t.Errorf("healthy backup reports lagging regions %v", lag)
	}
	snap, _ := sum["snapshot"].(string)
	for _, r := range regs {
		r.requireManifest(t, snap, true)
		if len(r.list(t, "data/")) == 0 {
			t.Errorf("region %s holds no pack", r.name)
		}
	}
	if n := len(e.snapshots()); n != 1 {
		t.Errorf("snapshots lists %d snapshots, want 1", n)
	}

	var rs map[string]any
	timed(t, "restore", func() { rs = restoreJSON(t, e, "", src, want) })
	if f := num(t, rs, "failovers"); f != 0 {
		t.Errorf("restore from healthy regions failed over %v times: %v", f, rs["failover_errors"])
	}
	e.ok("replicate", "status")
	e.ok("check")
	timed(t, "check --read-data", func() { e.ok(e.withID("check", "--read-data")...) })
}

// TestRegionDownBeforeBackup stops one region before a backup: the backup
// commits in the other two and exits 3 naming it; once it is back,
// replicate status exits 3 until replicate sync heals it, after which
// everything agrees and the healed region alone restores the snapshot.
func TestRegionDownBeforeBackup(t *testing.T) {
	t.Parallel()
	regs := startThree(t)
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	mixedTree(t, src, 200, shrink(20<<20, 8<<20))
	want := scanTree(t, src)

	down := regs[0] // the first region: reads fall over from it too
	down.srv.Stop()
	var sum map[string]any
	var r result
	timed(t, "backup with r1 stopped", func() { sum, r = e.backupJSON(exitWarnings, src) })
	if lag := stringList(t, sum, "lagging_regions"); !slices.Equal(lag, []string{"r1"}) {
		t.Errorf("lagging_regions = %v, want [r1]\n%s", lag, r)
	}
	requireLagNamed(t, r, "r1")
	snap, _ := sum["snapshot"].(string)
	regs[1].requireManifest(t, snap, true)
	regs[2].requireManifest(t, snap, true)

	down.srv.Restart(t)
	down.requireManifest(t, snap, false)
	st := e.expect(exitWarnings, "replicate", "status")
	requireContains(t, "replicate status", st.stdout, "region r1")
	requireContains(t, "replicate status", st.stdout, "lags")
	timed(t, "replicate sync", func() { e.ok("replicate", "sync") })
	down.requireManifest(t, snap, true)
	e.ok("replicate", "status")
	e.ok("check")
	e.ok(e.withID("check", "--read-data")...)

	// The healed region by itself holds the whole snapshot.
	alone := filepath.Join(e.dir, "r1-only.yaml")
	writeS3Config(t, alone, 0, down)
	sum = restoreJSON(t, e, alone, src, want)
	if blobs, _ := regionServed(t, sum, "r1"); blobs == 0 {
		t.Errorf("restore from r1 alone: r1 served no blob: %v", sum)
	}
}

// TestRegionKilledDuringBackup SIGKILLs one region's server as soon as the
// first pack lands in it during a large backup: the backup carries on with
// the other two, commits there and exits 3 naming the region; replicate
// sync then heals it.
func TestRegionKilledDuringBackup(t *testing.T) {
	t.Parallel()
	regs := startThree(t)
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	fileSize := shrink(30<<20, 16<<20)
	nfiles := 10 // 300 MiB (-short: 160 MiB) of random data: about 19 packs
	if testing.Short() {
		nfiles = 6
	}
	for i := range nfiles {
		writeRandomFile(t, filepath.Join(src, fmt.Sprintf("dir-%d/file-%d.bin", i%3, i)), uint64(300+i), fileSize)
	}
	writeFile(t, filepath.Join(src, "notes.txt"), textBytes(399, 1<<20), 0o644)
	want := scanTree(t, src)

	victim := regs[1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vbBin, "--json", "backup", src)
	cmd.Dir = e.dir
	cmd.Env = e.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Kill the victim once the first pack is in it.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var packs int
wait:
	for {
		select {
		case err := <-exited:
			t.Fatalf("backup finished (%v) before the first pack reached region %s\n%s", err, victim.name, stderr.String())
		case <-ctx.Done():
			t.Fatalf("no pack reached region %s in 3 minutes", victim.name)
		case <-tick.C:
		}
		if packs = len(victim.list(t, "data/")); packs > 0 {
			break wait
		}
	}
	victim.srv.Kill()
	killedAt := time.Since(start)

	var err error
	select {
	case err = <-exited:
	case <-ctx.Done():
		t.Fatalf("backup did not finish within 3 minutes of starting")
	}
	r := result{args: []string{"--json", "backup", src}, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("backup of %s: %s killed after %.1fs (%d pack there), backup exited %d after %.1fs", mib(int64(nfiles)*fileSize), victim.name, killedAt.Seconds(), packs, r.code, time.Since(start).Seconds())
	if r.code != exitWarnings {
		t.Fatalf("backup with a region killed half way: want exit %d (committed in a quorum, a region lags)\n%s", exitWarnings, r)
	}
	sum := requireSummary(t, jsonLines(t, r.stdout), r)
	if lag := stringList(t, sum, "lagging_regions"); !slices.Equal(lag, []string{victim.name}) {
		t.Errorf("lagging_regions = %v, want [%s]", lag, victim.name)
	}
	requireLagNamed(t, r, victim.name)
	snap, _ := sum["snapshot"].(string)
	regs[0].requireManifest(t, snap, true)
	regs[2].requireManifest(t, snap, true)

	e.expect(exitWarnings, "replicate", "status") // the victim does not answer
	victim.srv.Restart(t)
	victim.requireManifest(t, snap, false)
	if have, full := len(victim.list(t, "data/")), len(regs[0].list(t, "data/")); have >= full {
		t.Errorf("region %s holds %d packs after being killed, the others %d: the kill came too late to test anything", victim.name, have, full)
	}
	e.expect(exitWarnings, "replicate", "status")
	timed(t, "replicate sync", func() { e.ok("replicate", "sync") })
	e.ok("replicate", "status")
	victim.requireManifest(t, snap, true)
	timed(t, "check --read-data", func() { e.ok(e.withID("check", "--read-data")...) })

	alone := filepath.Join(e.dir, "victim-only.yaml")
	writeS3Config(t, alone, 0, victim)
	timed(t, "restore from the healed region alone", func() { restoreJSON(t, e, alone, src, want) })
}

// TestRegionsBelowQuorum stops two of three regions (quorum 2): the backup
// exits 1 and no region, not even the healthy one, holds a manifest. With
// the regions back, the next backup commits everywhere.
func TestRegionsBelowQuorum(t *testing.T) {
	t.Parallel()
	regs := startThree(t)
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	mixedTree(t, src, 300, shrink(24<<20, 8<<20))

	regs[0].srv.Stop()
	regs[1].srv.Stop()
	var r result
	timed(t, "backup with r1 and r2 stopped", func() { r = e.expect(exitFailure, "backup", src) })
	requireContains(t, "stderr of the failed backup", r.stderr, "quorum")
	if ids := regs[2].manifests(t); len(ids) != 0 {
		t.Fatalf("the one healthy region holds manifests %v after a backup below quorum", ids)
	}
	regs[0].srv.Restart(t)
	regs[1].srv.Restart(t)
	for _, reg := range regs {
		if ids := reg.manifests(t); len(ids) != 0 {
			t.Errorf("region %s holds manifests %v after a backup below quorum", reg.name, ids)
		}
	}
	if n := len(e.snapshots()); n != 0 {
		t.Errorf("snapshots lists %d snapshots after a backup below quorum", n)
	}

	sum, _ := e.backupJSON(exitOK, src)
	snap, _ := sum["snapshot"].(string)
	for _, reg := range regs {
		reg.requireManifest(t, snap, true)
	}
	// The failed run left packs in r3 alone (no index names them): check
	// may warn that r1 and r2 lack them, but finds no damage.
	if c := e.run("check"); c.code != exitOK && c.code != exitWarnings {
		t.Errorf("check after a failed and a good backup: want exit 0 or 3\n%s", c)
	} else if c.code == exitWarnings {
		t.Logf("check: %s", strings.TrimSpace(c.stderr))
	}
}

// TestRegionsBelowQuorumAtCommit lets every pack and index file reach all
// three regions but refuses the manifest in two of them (403, not
// retried): the backup exits 1, and the manifest that landed in the third
// region is taken back, so no region shows a snapshot the quorum does not
// hold.
func TestRegionsBelowQuorumAtCommit(t *testing.T) {
	t.Parallel()
	regs := startThree(t)
	proxies := []*faultProxy{proxyRegion(t, regs[0]), proxyRegion(t, regs[1])}
	for _, p := range proxies {
		p.periodic.Store(false)
	}
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	mixedTree(t, src, 350, shrink(20<<20, 8<<20))

	for _, p := range proxies {
		p.refuseManifests.Store(true)
	}
	r := e.expect(exitFailure, "backup", src)
	requireContains(t, "stderr of the failed backup", r.stderr, "quorum")
	for i, p := range proxies {
		if p.refused.Load() == 0 {
			t.Fatalf("region %s: the backup never tried to write a manifest there\n%s", regs[i].name, r)
		}
	}
	for _, reg := range regs {
		if len(reg.list(t, "data/")) == 0 {
			t.Errorf("region %s holds no pack: the backup failed before the commit, which tests nothing", reg.name)
		}
		if ids := reg.manifests(t); len(ids) != 0 {
			t.Errorf("region %s holds manifests %v after a commit below quorum", reg.name, ids)
		}
	}
	if n := len(e.snapshots()); n != 0 {
		t.Errorf("snapshots lists %d snapshots after a commit below quorum", n)
	}
}

// TestRegionsRestoreFailover deletes packs and an index file from the
// first region and damages (one byte) a pack in the second that the first
// lacks: restore still comes back byte for byte, says it failed over, and
// names both regions among the reasons.
func TestRegionsRestoreFailover(t *testing.T) {
	t.Parallel()
	regs := startThree(t)
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	mixedTree(t, src, 400, 56<<20) // about 40 MiB stored: 3 packs
	want := scanTree(t, src)
	e.ok("backup", src)

	packs := sortedKeys(regs[0].list(t, "data/"))
	if len(packs) < 3 {
		t.Fatalf("want at least 3 packs (2 to damage, 1 left intact), have %v", packs)
	}
	indexes := sortedKeys(regs[0].list(t, "index/"))
	// packs[0]: missing in r1, damaged in r2, intact in r3 only.
	// packs[1]: missing in r1.
	regs[0].delete(t, packs[0])
	regs[0].delete(t, packs[1])
	regs[0].delete(t, indexes[0])
	regs[1].flipObjectByte(t, packs[0])

	c := e.expect(exitIntegrity, "check")
	requireContains(t, "check output", c.stdout+c.stderr, packs[0])
	requireContains(t, "check output", c.stdout+c.stderr, "region r2")

	sum := restoreJSON(t, e, "", src, want)
	if f := num(t, sum, "failovers"); f == 0 {
		t.Errorf("restore read past missing and damaged packs without a failover: %v", sum)
	}
	reasons := strings.Join(stringList(t, sum, "failover_errors"), "\n")
	for _, name := range []string{"r1", "r2"} {
		if !strings.Contains(reasons, "region "+name) {
			t.Errorf("failover_errors do not name region %s:\n%s", name, reasons)
		}
	}
	if !strings.Contains(reasons, strings.TrimPrefix(packs[0], "data/")[3:]) {
		t.Errorf("failover_errors do not name the damaged pack %s:\n%s", packs[0], reasons)
	}
	if blobs, _ := regionServed(t, sum, "r1"); blobs == 0 {
		t.Errorf("region r1 served no blob, though it holds intact packs: %v", sum["regions"])
	}
	for _, name := range []string{"r2", "r3"} {
		if blobs, failovers := regionServed(t, sum, name); blobs == 0 || failovers == 0 {
			t.Errorf("region %s served %v blobs, %v by failover; want some of each: %v", name, blobs, failovers, sum["regions"])
		}
	}
	t.Logf("restore: %v failovers; per region %v", sum["failovers"], sum["regions"])
}

// faultProxy is a reverse proxy in front of one S3 server. With periodic
// faults on, it answers every 3rd request with 503 SlowDown (an S3 error
// body) and resets the connection of every 7th, as an overloaded provider
// or a flaky network does. A request is never faulted twice in a row (the
// same method, URL and range), so the client's retries always get through:
// what is tested is that vaultbak retries, not how long it persists.
//
// Bucket-location lookups (GET /bucket/?location) get SlowDown but never a
// reset from the periodic schedule: minio-go does not retry a transport
// error (or a 5xx without an S3 error code) on that lookup, which it makes
// before the first request of each process to a region (see
// TestFaultProxyBucketLookup). lookupFault injects exactly such a fault
// into the next lookup.
type faultProxy struct {
	srv      *httptest.Server
	periodic atomic.Bool
	// refuseManifests answers every PUT of a manifest (snapshots/…) with
	// 403 AccessDenied, which is not retried, as a bucket policy that
	// forbids the write would.
	refuseManifests atomic.Bool
	refused         atomic.Int64
	requests        atomic.Int64
	slowdowns       atomic.Int64
	resets          atomic.Int64
	bare5xx         atomic.Int64

	mu          sync.Mutex
	faulted     map[string]bool // request key → its last attempt was faulted
	lookupFault string          // "reset" or "502": for the next location lookup
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	p := &faultProxy{faulted: map[string]bool{}}
	p.periodic.Store(true)
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.Transport = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := p.requests.Add(1)
		key := req.Method + " " + req.URL.RequestURI() + " " + req.Header.Get("Range")
		lookup := req.Method == http.MethodGet && req.URL.Query().Has("location")
		fault := ""
		switch {
		case !p.periodic.Load():
		case n%7 == 0 && !lookup:
			fault = "reset"
		case n%3 == 0:
			fault = "slowdown"
		}
		p.mu.Lock()
		if p.faulted[key] {
			fault = ""
		}
		if lookup && p.lookupFault != "" {
			fault, p.lookupFault = p.lookupFault, ""
		}
		p.faulted[key] = fault != ""
		p.mu.Unlock()
		if p.refuseManifests.Load() && req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/snapshots/") {
			fault = "refuse"
		}
		switch fault {
		case "refuse":
			p.refused.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
				`<Error><Code>AccessDenied</Code><Message>Access Denied.</Message><Resource>%s</Resource><RequestId>refused-%d</RequestId></Error>`,
				req.URL.Path, n)
		case "reset":
			p.resets.Add(1)
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST, not FIN
			}
			conn.Close()
		case "slowdown":
			p.slowdowns.Add(1)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
				`<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><Resource>%s</Resource><RequestId>fault-%d</RequestId></Error>`,
				req.URL.Path, n)
		case "502": // a load balancer's answer: no S3 error body
			p.bare5xx.Add(1)
			http.Error(w, "502 Bad Gateway", http.StatusBadGateway)
		default:
			rp.ServeHTTP(w, req)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// proxyRegion points region r at a new fault proxy in front of its server.
func proxyRegion(t *testing.T, r *s3Region) *faultProxy {
	t.Helper()
	p := newFaultProxy(t, r.srv.Endpoint)
	r.url = "s3+http://" + p.srv.Listener.Addr().String() + "/" + r.bucket + "/" + r.prefix
	return p
}

func (p *faultProxy) faults() int64 { return p.slowdowns.Load() + p.resets.Load() }

// TestFaultProxyRegion puts one region (the first, which restore reads
// from) behind a proxy that injects 503 SlowDown answers and connection
// resets: the backup completes in all three regions (exit 0, nothing
// lagging) through the S3 client's retries, and so does the restore.
func TestFaultProxyRegion(t *testing.T) {
	t.Parallel()
	regs := startThree(t)
	proxied := regs[0]
	proxy := proxyRegion(t, proxied)
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	mixedTree(t, src, 500, shrink(40<<20, 16<<20))
	want := scanTree(t, src)

	before := proxy.faults()
	var sum map[string]any
	timed(t, "backup through the fault proxy", func() { sum, _ = e.backupJSON(exitOK, src) })
	slow, resets := proxy.slowdowns.Load(), proxy.resets.Load()
	t.Logf("backup: %d requests through the proxy, %d SlowDown, %d resets (init: %d faults)", proxy.requests.Load(), slow, resets, before)
	if slow == 0 || resets == 0 || proxy.faults() == before {
		t.Fatalf("the proxy injected %d SlowDown answers and %d resets: a fault that never fired tests nothing", slow, resets)
	}
	if lag := stringList(t, sum, "lagging_regions"); len(lag) != 0 {
		t.Errorf("backup through retryable faults dropped regions %v", lag)
	}
	snap, _ := sum["snapshot"].(string)
	for _, r := range regs {
		r.requireManifest(t, snap, true)
	}

	before = proxy.faults()
	var rs map[string]any
	timed(t, "restore through the fault proxy", func() { rs = restoreJSON(t, e, "", src, want) })
	t.Logf("restore: %d faults injected; per region %v", proxy.faults()-before, rs["regions"])
	if proxy.faults() == before {
		t.Errorf("no fault was injected during the restore")
	}
	if blobs, _ := regionServed(t, rs, proxied.name); blobs == 0 {
		t.Errorf("restore read nothing from the proxied region %s: %v", proxied.name, rs["regions"])
	}
	e.ok("replicate", "status")
}

// TestFaultProxyBucketLookup injects one transient fault, a connection
// reset or a bare 502 (what a load balancer answers), into the first
// request a command makes to a healthy region: the S3 client's
// bucket-location lookup. Like any other 5xx or transport error it must be
// retried with backoff; `replicate status` must still find every region in
// sync (exit 0), not report one that "did not answer".
func TestFaultProxyBucketLookup(t *testing.T) {
	t.Parallel()
	regs := startThree(t)
	proxy := proxyRegion(t, regs[0])
	proxy.periodic.Store(false)
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	mixedTree(t, src, 700, 2<<20)
	e.ok("backup", src)
	e.ok("replicate", "status")

	for _, fault := range []string{"reset", "502"} {
		proxy.mu.Lock()
		proxy.lookupFault = fault
		proxy.mu.Unlock()
		r := e.run("replicate", "status")
		proxy.mu.Lock()
		fired := proxy.lookupFault == ""
		proxy.mu.Unlock()
		if !fired {
			t.Fatalf("%s: replicate status made no bucket-location lookup: the fault never fired\n%s", fault, r)
		}
		if r.code != exitOK {
			t.Errorf("one %s on region r1's bucket-location lookup was not retried: replicate status exit %d, want 0\n%s", fault, r.code, r)
		}
	}
}

// TestTLSRegion serves region r1 over HTTPS with a certificate from a CA
// made for the test: with ca_cert naming that CA the repository works end
// to end; without it (AWS_CA_BUNDLE: the system bundle) init and backup
// are refused within seconds, naming the region and the certificate.
func TestTLSRegion(t *testing.T) {
	t.Parallel()
	regs := newS3Regions(t, startMinIO(t, s3test.Options{TLS: true}, s3test.Options{}, s3test.Options{}))
	tlsReg := regs[0]
	if !strings.HasPrefix(tlsReg.url, "s3://") || tlsReg.caCert == "" {
		t.Fatalf("region r1: url %s, CA %q: want an HTTPS region with a CA", tlsReg.url, tlsReg.caCert)
	}
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	mixedTree(t, src, 600, shrink(16<<20, 6<<20))
	want := scanTree(t, src)
	sum, _ := e.backupJSON(exitOK, src)
	snap, _ := sum["snapshot"].(string)
	tlsReg.requireManifest(t, snap, true)
	alone := filepath.Join(e.dir, "r1-only.yaml")
	writeS3Config(t, alone, 0, tlsReg)
	if blobs, _ := regionServed(t, restoreJSON(t, e, alone, src, want), "r1"); blobs == 0 {
		t.Errorf("restore from the TLS region alone: it served no blob")
	}
	e.ok("check")
	// That restore ran against r1 alone, so its audit record is in r1
	// only: the other regions lag by that record until a sync.
	e.expect(exitWarnings, "replicate", "status")
	e.ok("replicate", "sync")
	e.ok("replicate", "status")

	// The same region without its CA: the system roots do not trust it.
	bundle := os.Getenv("AWS_CA_BUNDLE")
	for _, p := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"} {
		if _, err := os.Stat(p); err == nil {
			bundle = p
			break
		}
	}
	noCA := tlsReg.clone()
	noCA.caCert = ""
	refused := func(what string, o runOpts, code int, args ...string) {
		t.Helper()
		o.env = append(o.env, "AWS_CA_BUNDLE="+bundle)
		start := time.Now()
		r := e.runWith(o, args...)
		took := time.Since(start)
		t.Logf("%s without ca_cert: exit %d in %.1fs: %s", what, r.code, took.Seconds(), firstLine(r.stderr))
		if r.code != code {
			t.Errorf("%s without ca_cert: want exit %d\n%s", what, code, r)
		}
		if took > 15*time.Second {
			t.Errorf("%s without ca_cert took %v: a certificate failure must not be retried", what, took)
		}
		if !strings.Contains(r.stderr, "region r1") || !strings.Contains(r.stderr, "certificate") {
			t.Errorf("%s without ca_cert: stderr does not name region r1 and the certificate\n%s", what, r)
		}
	}

	// init of a new repository on it.
	fresh := filepath.Join(t.TempDir(), "vaultbak.yaml")
	freshReg := noCA.clone()
	freshReg.bucket = "fresh-bucket"
	freshReg.url = tlsReg.srv.URL(freshReg.bucket, freshReg.prefix)
	writeS3Config(t, fresh, 0, freshReg)
	refused("init", runOpts{env: []string{"VAULTBAK_CONFIG=" + fresh}}, exitFailure, "init", "--recovery-recipient-file", e.recovery, "--host", "e2e-host")

	// A backup to the repository with r1 as its only region fails; with r2
	// and r3 beside it, it commits there and r1 lags.
	only := filepath.Join(e.dir, "r1-no-ca.yaml") // beside host.key
	writeS3Config(t, only, 0, noCA)
	refused("backup to r1 alone", runOpts{env: []string{"VAULTBAK_CONFIG=" + only}}, exitFailure, "backup", src)
	three := filepath.Join(e.dir, "three-no-ca.yaml")
	writeS3Config(t, three, 2, noCA, regs[1], regs[2])
	refused("backup to r1 (no CA), r2, r3", runOpts{env: []string{"VAULTBAK_CONFIG=" + three}}, exitWarnings, "backup", src)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
