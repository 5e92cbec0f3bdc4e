package e2e

// Progress, as a user at a terminal and as cron see it: bars with bytes,
// rate and ETA per region on a terminal (under a pseudo-terminal here),
// status objects under --json, and nothing at all from a quiet run
// without a terminal.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// ttyRun is a command run with a pseudo-terminal as its stderr (and, unless
// stdoutPipe, as its stdin and stdout too).
type ttyRun struct {
	tty    string // what the command wrote to the terminal
	stdout string // with stdoutPipe: what it wrote to stdout
	code   int
}

// onTerminal runs vaultbak with the repository's environment on a 120×40
// pseudo-terminal.
func (e *repoEnv) onTerminal(stdoutPipe bool, args ...string) ttyRun {
	e.t.Helper()
	t := e.t
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, vbBin, args...)
	cmd.Dir = e.dir
	cmd.Env = append(e.env(), "TERM=xterm")
	var stdout bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if stdoutPipe {
		cmd.Stdin, cmd.Stdout = nil, &stdout
		cmd.SysProcAttr = nil
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds it now: reads end (EIO) when it exits
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&out, ptmx)
		close(copied)
	}()
	err = cmd.Wait()
	<-copied
	r := ttyRun{tty: out.String(), stdout: stdout.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("vaultbak %q on a terminal did not finish (hung?)\n%s", args, clip(r.tty))
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}

var (
	// a bar line: "  one   [=====>   ] 12.0 MiB / 20.0 MiB  3.1 MiB/s  ETA 3s"
	barLine = regexp.MustCompile(`\[[=> -]+\] [0-9.]+ (B|KiB|MiB|GiB)`)
	rate    = regexp.MustCompile(`[0-9.]+ (B|KiB|MiB|GiB)/s`)
	escape  = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]") // a terminal control sequence
)

// requireBars checks that out drew a bar for the whole job (named job,
// with a total unless the job's size is unknown, as a drill's) and one per
// region, with bytes and a rate.
func requireBars(t *testing.T, what, out, job string, regions []string) map[string]string {
	t.Helper()
	bars := map[string]string{}
	lines := strings.Split(out, "\n")
	find := func(name string) string {
		for i := len(lines) - 1; i >= 0; i-- { // the last frame
			l := strings.TrimRight(escape.ReplaceAllString(lines[i], ""), "\r")
			if strings.HasPrefix(strings.TrimSpace(l), name+" ") && barLine.MatchString(l) {
				return l
			}
		}
		t.Fatalf("%s on a terminal drew no bar for %q:\n%s", what, name, clip(out))
		return ""
	}
	if l := find(job); (job != "drill" && !strings.Contains(l, " / ")) || !rate.MatchString(l) {
		t.Errorf("%s: the bar of %q shows no total or rate: %q", what, job, l)
	}
	for _, reg := range regions {
		bars[reg] = find(reg)
		if !rate.MatchString(bars[reg]) {
			t.Errorf("%s: the bar of region %s shows no rate: %q", what, reg, bars[reg])
		}
	}
	return bars
}

// TestProgressOnTerminal: backup, restore, replicate sync and drill draw
// a bar for the job and one per region on a terminal, and still end with
// their summary.
func TestProgressOnTerminal(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeRandomFile(t, filepath.Join(src, "big"), 1, 24<<20)
	writeFile(t, filepath.Join(src, "notes.txt"), textBytes(2, 1<<20), 0o644)

	r := e.onTerminal(false, "backup", src)
	if r.code != exitOK {
		t.Fatalf("backup on a terminal: exit %d\n%s", r.code, r.tty)
	}
	requireBars(t, "backup", r.tty, "backup", e.names)
	requireContains(t, "backup on a terminal", r.tty, "saved:")

	r = e.onTerminal(false, e.withID("restore", "latest", "--target", filepath.Join(e.dir, "out"))...)
	if r.code != exitOK {
		t.Fatalf("restore on a terminal: exit %d\n%s", r.code, r.tty)
	}
	requireBars(t, "restore", r.tty, "restore", e.names)
	requireContains(t, "restore on a terminal", r.tty, "25.0 MiB / 25.0 MiB")
	compareTrees(t, scanTree(t, src), restoredPath(filepath.Join(e.dir, "out"), src))

	// Region two loses its packs; sync copies them back with a bar.
	if err := os.RemoveAll(filepath.Join(e.regions[1], "data")); err != nil {
		t.Fatal(err)
	}
	r = e.onTerminal(false, "replicate", "sync")
	if r.code != exitOK {
		t.Fatalf("replicate sync on a terminal: exit %d\n%s", r.code, r.tty)
	}
	requireBars(t, "replicate sync", r.tty, "replicate sync", []string{"two"})
	requireContains(t, "replicate sync on a terminal", r.tty, "in sync")

	// A drill restores from each region in turn: each region's bar shows
	// what it served.
	r = e.onTerminal(false, e.withID("drill", "--sample", "100")...)
	if r.code != exitOK {
		t.Fatalf("drill on a terminal: exit %d\n%s", r.code, r.tty)
	}
	for reg, l := range requireBars(t, "drill", r.tty, "drill", e.names) {
		if strings.Contains(l, "] 0 B ") {
			t.Errorf("drill: region %s served nothing: %q", reg, l)
		}
	}
	requireContains(t, "drill on a terminal", r.tty, "every objective met")
}

// TestProgressQuietOnTerminal: --quiet draws nothing even on a terminal,
// and --json on a terminal keeps stderr free of bars.
func TestProgressQuietOnTerminal(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeRandomFile(t, filepath.Join(src, "big"), 3, 8<<20)
	if r := e.onTerminal(false, "--quiet", "backup", src); r.code != exitOK || r.tty != "" {
		t.Errorf("backup --quiet on a terminal: exit %d, printed:\n%q", r.code, r.tty)
	}
	writeRandomFile(t, filepath.Join(src, "more"), 4, 8<<20)
	r := e.onTerminal(true, "--json", "backup", src)
	if r.code != exitOK || r.tty != "" {
		t.Errorf("backup --json with stderr on a terminal: exit %d, stderr:\n%q", r.code, r.tty)
	}
	requireSummary(t, jsonLines(t, r.stdout), result{stdout: r.stdout})
}

// TestProgressJSONStatus: under --json a running backup reports a status
// object every 2 s (bytes so far, and per region), then its summary.
func TestProgressJSONStatus(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	// A dump that writes 2 MiB, pauses, and writes the rest: the backup
	// runs for more than one status interval.
	r := e.ok("--json", "backup", "--stdin-filename", "dump.bin", "--stdin-from-command", "--",
		"sh", "-c", "head -c 2097152 /dev/urandom; sleep 2.6; head -c 1024 /dev/urandom")
	objs := jsonLines(t, r.stdout)
	requireSummary(t, objs, r)
	var statuses []map[string]any
	for _, o := range objs {
		if o["type"] == "status" {
			statuses = append(statuses, o)
		}
	}
	if len(statuses) == 0 {
		t.Fatalf("backup --json running for >2 s printed no status object\n%s", r)
	}
	st := statuses[len(statuses)-1]
	if st["command"] != "backup" || num(t, st, "bytes") < 2<<20 || num(t, st, "elapsed_seconds") < 1.5 {
		t.Errorf("status object %v: want command backup, bytes >= 2 MiB read, elapsed >= 2 s", st)
	}
	regions, _ := st["regions"].([]any)
	if len(regions) != len(e.names) {
		t.Fatalf("status object %v: want one entry per region %v", st, e.names)
	}
	for i, reg := range regions {
		m, _ := reg.(map[string]any)
		if m["region"] != e.names[i] {
			t.Errorf("status region %d is %v, want %s", i, m, e.names[i])
		}
		num(t, m, "bytes")
	}
	if r.stderr != "" {
		t.Errorf("backup --json wrote to stderr:\n%s", r)
	}
}

// TestCronQuiet: a backup run the way cron runs it (no terminal, a bare
// environment, --config and --quiet) prints nothing at all when it
// succeeds, the first time and when nothing changed; and without --quiet,
// off a terminal, only its summary line, nothing on stderr.
func TestCronQuiet(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeRandomFile(t, filepath.Join(src, "a.bin"), 5, 4<<20)
	writeFile(t, filepath.Join(src, "b.txt"), textBytes(6, 64<<10), 0o644)
	cron := runOpts{noEnv: true, dir: "/", env: []string{
		"PATH=/usr/bin:/bin", "SHELL=/bin/sh", "HOME=" + e.dir, "LOGNAME=root",
		"VAULTBAK_CACHE_DIR=" + e.cache,
	}}
	for range 2 {
		r := e.runWith(cron, "--config", e.config, "backup", "--quiet", src)
		if r.code != exitOK || r.stdout != "" || r.stderr != "" {
			t.Fatalf("cron-like backup --quiet: want exit 0 and no output at all\n%s", r)
		}
	}
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d snapshots after two quiet backups, want 2", n)
	}
	r := e.runWith(cron, "--config", e.config, "backup", src)
	if r.code != exitOK || r.stderr != "" || strings.Count(r.stdout, "\n") != 1 || escape.MatchString(r.stdout) {
		t.Errorf("cron-like backup without --quiet: want one summary line on stdout, nothing else\n%s", r)
	}
}
