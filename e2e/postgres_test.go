package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A real PostgreSQL, started by scripts/postgres.sh, dumped through
// backup --stdin-from-command and restored through restore --to-command;
// and a multi-GiB stream whose peak memory must not grow with its size.
// Neither test skips: without PostgreSQL the test fails.

// pgCluster is a throwaway cluster: loopback only, trust authentication,
// superuser "postgres", stopped when the test ends.
type pgCluster struct {
	dir              string
	host, port, user string
	bin              string // directory of pg_dump, psql, pg_restore
}

// startPostgres installs PostgreSQL when it is missing and starts a
// cluster in a temporary directory.
func startPostgres(t *testing.T) *pgCluster {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "scripts", "postgres.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgScript(script, 10*time.Minute, "install"); err != nil {
		t.Fatalf("PostgreSQL is needed and could not be installed: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "pg")
	// The cluster runs as the postgres user when the tests run as root:
	// let it through the test's private temporary directory.
	if os.Geteuid() == 0 {
		if err := os.Chmod(filepath.Dir(filepath.Dir(dir)), 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if _, err := pgScript(script, time.Minute, "stop", dir); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	out, err := pgScript(script, 3*time.Minute, "start", dir)
	if err != nil {
		t.Fatalf("PostgreSQL is needed and could not be started: %v", err)
	}
	c := &pgCluster{dir: dir}
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "PGHOST":
			c.host = v
		case "PGPORT":
			c.port = v
		case "PGUSER":
			c.user = v
		case "PGBIN":
			c.bin = v
		}
	}
	if c.host == "" || c.port == "" || c.user == "" || c.bin == "" {
		t.Fatalf("postgres.sh start printed no PGHOST/PGPORT/PGUSER/PGBIN:\n%s", out)
	}
	return c
}

// pgScript runs scripts/postgres.sh and returns its stdout.
func pgScript(script string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, args...)
	cmd.Env = baseEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("postgres.sh %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// tool is the path of a PostgreSQL program.
func (c *pgCluster) tool(name string) string { return filepath.Join(c.bin, name) }

// conn is the connection arguments every client takes.
func (c *pgCluster) conn() []string { return []string{"-h", c.host, "-p", c.port, "-U", c.user} }

// cmd is a PostgreSQL client command line for vaultbak to run: the tool,
// the connection, then args.
func (c *pgCluster) cmd(name string, args ...string) []string {
	return append(append([]string{c.tool(name)}, c.conn()...), args...)
}

// psql runs one SQL command in db and returns its unaligned output.
func (c *pgCluster) psql(t *testing.T, db, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(c.conn(), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql)
	cmd := exec.CommandContext(ctx, c.tool("psql"), args...)
	cmd.Env = baseEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("psql -d %s -c %q: %v\n%s", db, sql, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

func (c *pgCluster) createDB(t *testing.T, name string) {
	t.Helper()
	c.psql(t, "postgres", "CREATE DATABASE "+name)
}

// loadTable creates table t in db with rows rows of hex text, about 170
// bytes per row in a plain dump. Hex compresses less than 2:1, so what the
// repository stores is mostly the data, not the compressor's luck.
func (c *pgCluster) loadTable(t *testing.T, db string, rows int) {
	t.Helper()
	c.psql(t, db, fmt.Sprintf(`CREATE TABLE t AS SELECT g AS id, md5(g::text) AS a,
		md5(g::text || 'b1') || md5(g::text || 'b2') || md5(g::text || 'b3') || md5(g::text || 'b4') AS b
		FROM generate_series(1, %d) g`, rows))
}

// tableSum is the row count and a checksum of table t in id order.
func (c *pgCluster) tableSum(t *testing.T, db string) string {
	t.Helper()
	return c.psql(t, db, `SELECT count(*) || ' rows, md5 ' || md5(string_agg(md5(id::text || '|' || a || '|' || b), '' ORDER BY id)) FROM t`)
}

// heapBlock is the heap page that holds the row with id.
func (c *pgCluster) heapBlock(t *testing.T, db string, id int) int {
	t.Helper()
	s := c.psql(t, db, fmt.Sprintf("SELECT (ctid::text::point)[0]::bigint FROM t WHERE id = %d", id))
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("heap block of id %d: %q", id, s)
	}
	return n
}

// psqlLoad is the command that loads a plain dump into db, all or nothing.
func (c *pgCluster) psqlLoad(db string) []string {
	return c.cmd("psql", "-X", "-q", "-o", "/dev/null", "--single-transaction", "-v", "ON_ERROR_STOP=1", "-d", db)
}

// restoreTo is the arguments of restore latest [filter...] --to-command --
// command, with the recovery identity.
func restoreTo(e *repoEnv, filter, command []string) []string {
	args := append(append([]string{"restore", "latest"}, filter...), "--to-command", "--")
	return e.withID(append(args, command...)...)
}

// newRepoChunkSize is newRepo with one region and init --chunk-size.
func newRepoChunkSize(t *testing.T, chunkSize string) *repoEnv {
	t.Helper()
	dir := t.TempDir()
	e := repoEnvIn(t, dir)
	e.regions, e.names = []string{filepath.Join(dir, "region-one")}, []string{"one"}
	writeFile(t, e.config, []byte("regions:\n  - name: one\n    url: ./region-one\n"), 0o644)
	e.ok("keygen", "--out", e.recovery)
	e.ok("init", "--recovery-recipient-file", e.recovery, "--host", "e2e-host", "--chunk-size", chunkSize)
	return e
}

// streamBackup backs up the output of command as the stream name and
// returns the summary.
func (e *repoEnv) streamBackup(name string, command []string, extra ...string) map[string]any {
	e.t.Helper()
	args := append(append([]string{"--stdin-filename", name}, extra...), "--stdin-from-command", "--")
	sum, _ := e.backupJSON(exitOK, append(args, command...)...)
	return sum
}

// TestPostgres dumps a real database of a few hundred MB through vaultbak
// and restores it into fresh databases with psql and pg_restore, checks
// that a failing pg_dump commits nothing and that a damaged repository
// stops psql before it commits, and measures how much an updated
// database's next dump adds at three chunk sizes. The subtests run in
// order on one cluster; the last one changes the source table.
func TestPostgres(t *testing.T) {
	t.Parallel()
	start := time.Now()
	pg := startPostgres(t)
	// A plain dump of about 300 MB, also under -short: a smaller dump
	// would measure chunk boundaries, not deduplication, at 1 MiB chunks.
	const rows = 1_800_000
	pg.createDB(t, "src")
	pg.loadTable(t, "src", rows)
	want := pg.tableSum(t, "src")
	t.Logf("PostgreSQL on %s:%s, table of %d rows (%s), started and loaded in %.1fs", pg.host, pg.port, rows, want, time.Since(start).Seconds())

	t.Run("PlainAndCustomRoundTrip", func(t *testing.T) {
		e := newRepo(t, "one")
		step := time.Now()
		plain := e.streamBackup("src.sql", pg.cmd("pg_dump", "-d", "src"), "--tag", "plain")
		t.Logf("pg_dump plain: %.0f bytes, %.0f added, backup %.1fs", num(t, plain, "bytes"), num(t, plain, "added_bytes"), time.Since(step).Seconds())
		if num(t, plain, "bytes") < float64(rows)*150 {
			t.Fatalf("the plain dump of %d rows is %.0f bytes: not the table", rows, num(t, plain, "bytes"))
		}

		step = time.Now()
		custom := e.streamBackup("src.dump", pg.cmd("pg_dump", "-Fc", "-Z0", "-d", "src"), "--tag", "custom")
		t.Logf("pg_dump -Fc -Z0: %.0f bytes, %.0f added, backup %.1fs", num(t, custom, "bytes"), num(t, custom, "added_bytes"), time.Since(step).Seconds())

		if ls := e.ok(e.withID("ls", "latest")...); strings.TrimSpace(ls.stdout) != "/src.dump" {
			t.Errorf("ls of the custom dump snapshot: %q, want /src.dump", ls.stdout)
		}

		step = time.Now()
		pg.createDB(t, "plain_restore")
		e.ok(restoreTo(e, []string{"--tag", "plain"}, pg.psqlLoad("plain_restore"))...)
		if got := pg.tableSum(t, "plain_restore"); got != want {
			t.Errorf("restored through psql: %s, want %s", got, want)
		}
		t.Logf("restore --to-command psql --single-transaction: %.1fs", time.Since(step).Seconds())

		step = time.Now()
		pg.createDB(t, "custom_restore")
		e.ok(restoreTo(e, []string{"--tag", "custom"}, pg.cmd("pg_restore", "--single-transaction", "--exit-on-error", "-d", "custom_restore"))...)
		if got := pg.tableSum(t, "custom_restore"); got != want {
			t.Errorf("restored through pg_restore: %s, want %s", got, want)
		}
		t.Logf("restore --to-command pg_restore --single-transaction: %.1fs", time.Since(step).Seconds())
	})

	t.Run("FailingDumpCommitsNothing", func(t *testing.T) {
		e := newRepo(t, "one")
		e.streamBackup("src.sql", pg.cmd("pg_dump", "-d", "src"))
		before := len(e.snapshots())
		r := e.expect(exitFailure, append([]string{"backup", "--stdin-filename", "gone.sql", "--stdin-from-command", "--"},
			pg.cmd("pg_dump", "-d", "no_such_db")...)...)
		requireContains(t, "stderr of a failing pg_dump backup", r.stderr, "pg_dump")
		requireContains(t, "stderr of a failing pg_dump backup", r.stderr, "exit status 1")
		requireContains(t, "stderr of a failing pg_dump backup (pg_dump's own message)", r.stderr, `"no_such_db" does not exist`)
		t.Logf("a failing pg_dump: exit %d, stderr:\n%s", r.code, r.stderr)
		if after := len(e.snapshots()); after != before {
			t.Errorf("a failing pg_dump left %d snapshots, want %d\n%s", after, before, r)
		}
	})

	t.Run("DamagedRestoreCommitsNothing", func(t *testing.T) {
		e := newRepo(t, "one")
		sum := e.streamBackup("src.sql", pg.cmd("pg_dump", "-d", "src"))
		// Damage the pack written in the middle of the backup: it holds
		// chunks from the middle of the dump, so psql has been fed
		// thousands of rows by the time the restore reaches it.
		packs := objects(t, e.regions[0], "data")
		sort.Slice(packs, func(i, j int) bool { return modTime(t, packs[i]).Before(modTime(t, packs[j])) })
		if len(packs) < 3 {
			t.Fatalf("%d packs for a dump of %d rows", len(packs), rows)
		}
		victim := packs[len(packs)/2]
		fi, err := os.Stat(victim)
		if err != nil {
			t.Fatal(err)
		}
		flipByte(t, victim, fi.Size()/2)

		pg.createDB(t, "damaged_restore")
		lsn := pg.psql(t, "postgres", "SELECT pg_current_wal_lsn()")
		r := e.expect(exitIntegrity, restoreTo(e, nil, pg.psqlLoad("damaged_restore"))...)
		requireContains(t, "stderr of a damaged restore", r.stderr, "psql")
		// The WAL written meanwhile is how much of the dump psql had
		// loaded (and then rolled back) when vaultbak stopped it.
		wal, err := strconv.ParseFloat(pg.psql(t, "postgres", fmt.Sprintf("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '%s')", lsn)), 64)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("damaged pack %d of %d (by write time): restore exited %d after psql had loaded %s (WAL) of the %s dump; stderr:\n%s",
			len(packs)/2+1, len(packs), r.code, mib(int64(wal)), mib(int64(num(t, sum, "bytes"))), r.stderr)
		if wal < 8<<20 {
			t.Errorf("psql wrote only %s of WAL before the damaged chunk: the restore did not stop mid-stream, so this test proves little", mib(int64(wal)))
		}
		if got := pg.psql(t, "damaged_restore", "SELECT coalesce(to_regclass('public.t')::text, 'none')"); got != "none" {
			t.Errorf("a restore stopped by damage left table %s in the database: psql committed a partial stream\n%s", got, r)
		}
	})

	t.Run("DedupAfterUpdate", func(t *testing.T) {
		sizes := []string{"256K", "512K", "1M"}
		type measure struct {
			e              *repoEnv
			bytes1, added1 float64
			region1        int64
			bytes2, added2 float64
			growth         int64
			first, second  time.Duration
		}
		ms := make([]*measure, len(sizes))
		for i, cs := range sizes {
			m := &measure{e: newRepoChunkSize(t, cs)}
			step := time.Now()
			s := m.e.streamBackup("src.sql", pg.cmd("pg_dump", "-d", "src"))
			m.first = time.Since(step)
			m.bytes1, m.added1 = num(t, s, "bytes"), num(t, s, "added_bytes")
			m.region1 = dirSize(t, m.e.regions[0])
			ms[i] = m
		}

		// A contiguous 1% of the rows, by id, changes. PostgreSQL writes
		// the new row versions where there is room: the table's pages are
		// full (fillfactor 100), so they go to new pages at the end of the
		// heap. pg_dump copies in heap order, so the next dump is the old
		// one with 1% cut out of its middle and 1% of new rows appended:
		// two edits, not one. The test checks that this is so.
		lo, n := rows/2, rows/100
		lastBlock := pg.heapBlock(t, "src", rows)
		if got := pg.psql(t, "src", fmt.Sprintf("WITH u AS (UPDATE t SET a = md5(a), b = md5(b) || substr(b, 33) WHERE id > %d AND id <= %d RETURNING 1) SELECT count(*) FROM u", lo, lo+n)); got != strconv.Itoa(n) {
			t.Fatalf("UPDATE changed %s rows, want %d", got, n)
		}
		if b := pg.heapBlock(t, "src", lo+1); b <= lastBlock {
			t.Errorf("the first updated row is in heap block %d, not after the old last block %d: the dump does not move it to the end", b, lastBlock)
		}
		updated := pg.tableSum(t, "src")

		var report strings.Builder
		fmt.Fprintf(&report, "dedup after a contiguous 1%% UPDATE (%d of %d rows, moved to the heap's end):\n", n, rows)
		fmt.Fprintf(&report, "  chunk   dump bytes  first added  second added (of dump)  region growth (of first)  backup 1st/2nd\n")
		for i, m := range ms {
			step := time.Now()
			s := m.e.streamBackup("src.sql", pg.cmd("pg_dump", "-d", "src"))
			m.second = time.Since(step)
			m.bytes2, m.added2 = num(t, s, "bytes"), num(t, s, "added_bytes")
			m.growth = dirSize(t, m.e.regions[0]) - m.region1
			addedPct := 100 * m.added2 / m.bytes2
			growthPct := 100 * float64(m.growth) / float64(m.region1)
			fmt.Fprintf(&report, "  %-5s %11.0f %12.0f %13.0f (%5.2f%%) %14d (%5.2f%%)      %.1fs/%.1fs\n",
				sizes[i], m.bytes2, m.added1, m.added2, addedPct, m.growth, growthPct, m.first.Seconds(), m.second.Seconds())
			if addedPct >= 10 {
				t.Errorf("chunk size %s: the dump after a 1%% update added %.0f bytes, %.2f%% of its %.0f, want < 10%%", sizes[i], m.added2, addedPct, m.bytes2)
			}
			// What the repository stores is compressed: measure the
			// growth against what the first dump took, too.
			if growthPct >= 10 {
				t.Errorf("chunk size %s: the dump after a 1%% update grew the region by %d bytes, %.2f%% of the %d the first dump took, want < 10%%", sizes[i], m.growth, growthPct, m.region1)
			}
		}
		t.Log(report.String())

		// The deduplicated snapshot restores to the updated table.
		pg.createDB(t, "updated_restore")
		e := ms[1].e
		e.ok(restoreTo(e, nil, pg.psqlLoad("updated_restore"))...)
		if got := pg.tableSum(t, "updated_restore"); got != updated {
			t.Errorf("restore of the dump after the update: %s, want %s", got, updated)
		}
	})
	t.Logf("TestPostgres took %.1fs", time.Since(start).Seconds())
}

func modTime(t *testing.T, p string) time.Time {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// streamEnv makes the test binary a generator: with E2E_GENERATE_STREAM
// set to SEED:SIZE it writes SIZE deterministic random bytes from SEED (the
// rng helper) to stdout and exits, before any test runs. TestStreamMemory
// runs it under backup --stdin-from-command, so the stream is as
// incompressible as /dev/urandom and still known to the test.
const streamEnv = "E2E_GENERATE_STREAM"

func init() {
	spec := os.Getenv(streamEnv)
	if spec == "" {
		return
	}
	var seed uint64
	var size int64
	if _, err := fmt.Sscanf(spec, "%d:%d", &seed, &size); err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", streamEnv, spec, err)
		os.Exit(2)
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	_, err := io.CopyN(w, rng(seed), size)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "generate stream:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// peakRun is one command run for its peak memory.
type peakRun struct {
	stdout, stderr string
	maxRSS         int64 // bytes: the larger of vaultbak's and its children's
	took           time.Duration
}

// runPeak runs vaultbak against e with stdout going to out (captured when
// nil) and reports its peak resident set size.
func (e *repoEnv) runPeak(out io.Writer, env []string, args ...string) peakRun {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vbBin, args...)
	cmd.Dir = e.dir
	cmd.Env = e.env(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	if out != nil {
		cmd.Stdout = out
	}
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := peakRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ctx.Err() != nil {
		e.t.Fatalf("vaultbak %q did not finish within 10 minutes (hung?)\n%s", args, clip(r.stderr))
	}
	if err != nil {
		e.t.Fatalf("vaultbak %q: %v\n--- stdout:\n%s\n--- stderr:\n%s", args, err, clip(r.stdout), clip(r.stderr))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		e.t.Fatal("no rusage for the finished command")
	}
	r.maxRSS = ru.Maxrss << 10 // KiB on Linux
	return r
}

// TestStreamMemory backs up a 512 MiB and a 3 GiB incompressible stream
// from a command, each into its own repository, and dumps them back: peak
// RSS stays under 400 MB and does not grow with the stream, and the dumps
// are byte for byte what was generated.
func TestStreamMemory(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	small, big := int64(512<<20), int64(3<<30)
	if testing.Short() {
		small, big = 128<<20, 768<<20
	}
	const limit = 400 << 20
	const maxGrowth = 64 << 20
	type run struct {
		size             int64
		backup, dump     peakRun
		added            float64
		backupMB, dumpMB float64
	}
	var runs []run
	for i, size := range []int64{small, big} {
		seed := uint64(7000 + i)
		e := newRepo(t, "one")
		bk := e.runPeak(nil, []string{fmt.Sprintf("%s=%d:%d", streamEnv, seed, size)},
			"--json", "backup", "--stdin-filename", "stream.bin", "--stdin-from-command", "--", self)
		sum := findSummary(t, jsonLines(t, bk.stdout), result{args: []string{"backup"}, stdout: bk.stdout, stderr: bk.stderr})
		if got := num(t, sum, "bytes"); got != float64(size) {
			t.Fatalf("backup of a %s stream stored %.0f bytes", mib(size), got)
		}
		h := sha256.New()
		dm := e.runPeak(h, nil, e.withID("dump", "latest", "/stream.bin")...)
		want := sha256.New()
		if _, err := io.CopyN(want, rng(seed), size); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
			t.Errorf("dump of the %s stream differs from what was generated", mib(size))
		}
		runs = append(runs, run{size: size, backup: bk, dump: dm, added: num(t, sum, "added_bytes"),
			backupMB: float64(size) / 1e6 / bk.took.Seconds(), dumpMB: float64(size) / 1e6 / dm.took.Seconds()})
	}
	for _, r := range runs {
		t.Logf("stream %s: backup peak RSS %s in %.1fs (%.0f MB/s, %.0f bytes added); dump peak RSS %s in %.1fs (%.0f MB/s)",
			mib(r.size), mib(r.backup.maxRSS), r.backup.took.Seconds(), r.backupMB, r.added, mib(r.dump.maxRSS), r.dump.took.Seconds(), r.dumpMB)
		if r.backup.maxRSS > limit {
			t.Errorf("backup of a %s stream peaked at %s RSS, want < %s", mib(r.size), mib(r.backup.maxRSS), mib(limit))
		}
		if r.dump.maxRSS > limit {
			t.Errorf("dump of a %s stream peaked at %s RSS, want < %s", mib(r.size), mib(r.dump.maxRSS), mib(limit))
		}
	}
	s, b := runs[0], runs[1]
	if g := b.backup.maxRSS - s.backup.maxRSS; g > maxGrowth {
		t.Errorf("backup peak RSS grew by %s from a %s to a %s stream (%s → %s), want < %s: memory grows with the stream",
			mib(g), mib(s.size), mib(b.size), mib(s.backup.maxRSS), mib(b.backup.maxRSS), mib(maxGrowth))
	}
	if g := b.dump.maxRSS - s.dump.maxRSS; g > maxGrowth {
		t.Errorf("dump peak RSS grew by %s from a %s to a %s stream (%s → %s), want < %s: memory grows with the stream",
			mib(g), mib(s.size), mib(b.size), mib(s.dump.maxRSS), mib(b.dump.maxRSS), mib(maxGrowth))
	}
}
