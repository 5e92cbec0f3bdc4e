package e2e

// The operations examples in examples/ as an administrator installs them:
// the systemd units pass systemd-analyze verify (against the built binary
// and the generated man pages), their timers fire nightly and weekly, the
// alert rules pass promtool check rules and their own unit tests, and the
// commands the units and the cron file run succeed quietly against a real
// repository and write the metrics the alerts read. The tools come from
// scripts/ops-tools.sh; a missing one fails the test.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// examplesDir is examples/ in the module root.
var examplesDir = filepath.Join("..", "examples")

// requireTool returns the path of a tool the test needs, failing without it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is missing: run scripts/ops-tools.sh install (%v)", name, err)
	}
	return p
}

func runTool(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(requireTool(t, name), args...)
	if env != nil {
		cmd.Env = env
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unitFiles are the systemd units of examples/systemd.
func unitFiles(t *testing.T) []string {
	t.Helper()
	units, err := filepath.Glob(filepath.Join(examplesDir, "systemd", "vaultbak-*"))
	if err != nil || len(units) != 4 {
		t.Fatalf("examples/systemd: want 4 units, found %v (%v)", units, err)
	}
	return units
}

// TestExamplesSystemdVerify: the units, installed with the built binary
// in ExecStart (and the template instantiated for a set "home"), pass
// systemd-analyze verify without a word, man pages named in
// Documentation= included.
func TestExamplesSystemdVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	units := filepath.Join(dir, "units")
	man := filepath.Join(dir, "man")
	vaultbak(t, dir, baseEnv(), runOpts{}, "man", "--dir", filepath.Join(man, "man1"))
	mkdirs(t, units)
	for _, src := range unitFiles(t) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(data), "/usr/local/bin/vaultbak", vbBin)
		name := strings.Replace(filepath.Base(src), "@.", "@home.", 1)
		writeFile(t, filepath.Join(units, name), []byte(text), 0o644)
	}
	names, _ := filepath.Glob(filepath.Join(units, "*"))
	env := append(baseEnv(), "MANPATH="+man, "SYSTEMD_LOG_LEVEL=notice", "TZ=UTC") // UTC: no DST in the timer spacing
	cmd := exec.Command(requireTool(t, "systemd-analyze"), append([]string{"verify"}, names...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify %v: %v\n%s", names, err, out)
	}

	// The timers: nightly backups, weekly drills, both catching up on
	// runs missed while the machine was off, both spread out.
	for unit, every := range map[string]time.Duration{"vaultbak-backup@.timer": 24 * time.Hour, "vaultbak-drill.timer": 7 * 24 * time.Hour} {
		keys := unitKeys(t, filepath.Join(examplesDir, "systemd", unit))
		if keys["Persistent"] != "true" || keys["RandomizedDelaySec"] == "" {
			t.Errorf("%s: want Persistent=true and a RandomizedDelaySec, got %v", unit, keys)
		}
		out := runTool(t, env, "systemd-analyze", "calendar", "--iterations=3", keys["OnCalendar"])
		times := calendarTimes(t, out)
		for i := 1; i < len(times); i++ {
			if d := times[i].Sub(times[i-1]); d != every {
				t.Errorf("%s: OnCalendar=%s elapses %v apart, want %v\n%s", unit, keys["OnCalendar"], d, every, out)
			}
		}
	}
}

// unitKeys reads the Key=Value lines of a unit file (the last of a key wins).
func unitKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return keys
}

var calendarLine = regexp.MustCompile(`(?m)(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)`)

func calendarTimes(t *testing.T, out string) []time.Time {
	t.Helper()
	var times []time.Time
	for _, m := range calendarLine.FindAllStringSubmatch(out, -1) {
		tm, err := time.Parse(time.DateTime, m[1])
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, tm)
	}
	if len(times) != 3 {
		t.Fatalf("systemd-analyze calendar: want 3 elapse times:\n%s", out)
	}
	return times
}

// TestExamplesAlertRules: the alert rules pass promtool check rules and
// their unit tests (promtool test rules).
func TestExamplesAlertRules(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(examplesDir, "prometheus")
	out := runTool(t, nil, "promtool", "check", "rules", filepath.Join(dir, "vaultbak-alerts.yml"))
	requireContains(t, "promtool check rules", out, "SUCCESS")
	out = runTool(t, nil, "promtool", "test", "rules", filepath.Join(dir, "vaultbak-alerts.test.yml"))
	requireContains(t, "promtool test rules", out, "SUCCESS")
}

// install maps the paths the examples name to a test's own.
type install struct {
	repl *strings.Replacer
	env  []string // the bare environment of cron or systemd
}

func newInstall(t *testing.T, e *repoEnv, textfiles, state, creds string) install {
	t.Helper()
	return install{
		repl: strings.NewReplacer(
			"/usr/local/bin/vaultbak", vbBin,
			"/etc/vaultbak/vaultbak.yaml", e.config,
			"/etc/vaultbak/recovery.key", e.recovery,
			"/etc/vaultbak/host.key", e.hostKey,
			"/var/cache/vaultbak", e.cache,
			"/var/lib/node_exporter/textfile_collector", textfiles,
			"/var/lib/vaultbak", state,
			"%d/", creds+"/",
		),
		env: []string{"PATH=" + filepath.Dir(vbBin) + ":/usr/bin:/bin", "HOME=" + e.dir, "LANG=C.UTF-8"},
	}
}

// run runs a command line of an example with sh, in its environment
// (KEY=VALUE assignments) and no terminal, and requires exit 0 and no
// output at all.
func (in install) run(t *testing.T, what string, env []string, line string) {
	t.Helper()
	line = in.repl.Replace(line)
	if strings.Contains(line, "%") {
		t.Fatalf("%s: a specifier is left in %q", what, line)
	}
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.Dir = "/"
	for _, kv := range env {
		cmd.Env = append(cmd.Env, in.repl.Replace(kv))
	}
	cmd.Env = append(cmd.Env, in.env...)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("%s: %s\nwant exit 0 and no output, got %v:\n%s", what, line, err, out)
	}
}

// TestExamplesRunQuietly runs what the units and the cron file run, as
// they run it (their environment, no terminal), against a repository with
// a backup set "home": each succeeds without printing anything, and the
// textfiles they write hold every metric the alert rules read.
func TestExamplesRunQuietly(t *testing.T) {
	t.Parallel()
	e := newRepo(t)
	src := filepath.Join(e.dir, "src")
	writeRandomFile(t, filepath.Join(src, "photo.jpg"), 7, 3<<20)
	writeFile(t, filepath.Join(src, "notes.txt"), textBytes(8, 256<<10), 0o644)
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.config, append(cfg, []byte("sets:\n  - name: home\n    paths: [./src]\n  - name: etc\n    paths: [./src/notes.txt]\ndrill:\n  max_rpo: 26h\n  max_rto: 1h\n")...), 0o644)
	textfiles, state, creds := filepath.Join(e.dir, "textfiles"), filepath.Join(e.dir, "state"), filepath.Join(e.dir, "credentials")
	mkdirs(t, textfiles)
	mkdirs(t, state)
	mkdirs(t, creds)
	// systemd's LoadCredential: a private copy, mode 0400.
	for name, from := range map[string]string{"host.key": e.hostKey, "recovery.key": e.recovery} {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(creds, name), data, 0o400)
	}
	in := newInstall(t, e, textfiles, state, creds)

	// systemd: the backup service of two sets, then the drill service.
	for _, unit := range []string{"vaultbak-backup@home.service", "vaultbak-backup@etc.service", "vaultbak-drill.service"} {
		template, instance, _ := strings.Cut(unit, "@")
		if instance != "" {
			template += "@.service"
			instance = strings.TrimSuffix(instance, ".service")
		}
		path := filepath.Join(examplesDir, "systemd", template)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var env []string
		var exec string
		for _, line := range strings.Split(string(data), "\n") {
			switch k, v, _ := strings.Cut(line, "="); k {
			case "Environment":
				env = append(env, v)
			case "ExecStart":
				exec = v
			}
		}
		i := strings.NewReplacer("%i", instance)
		for k := range env {
			env[k] = i.Replace(env[k])
		}
		in.run(t, unit, env, i.Replace(exec))
	}
	requireFiles(t, textfiles, "vaultbak-backup-home.prom", "vaultbak-backup-etc.prom", "vaultbak-drill.prom")
	requireFiles(t, state, "drill-report.json")

	// cron: every job line, with the file's variables.
	cron := filepath.Join(examplesDir, "cron", "vaultbak")
	f, err := os.Open(cron)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var env []string
	jobs := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case len(fields) == 1 && strings.Contains(line, "="):
			env = append(env, line)
		case len(fields) > 6:
			// m h dom mon dow user command...
			in.run(t, "cron job", env, strings.Join(fields[6:], " "))
			jobs++
		default:
			t.Fatalf("%s: cannot read line %q", cron, line)
		}
	}
	if jobs != 2 {
		t.Fatalf("%s: %d jobs, want a backup and a drill", cron, jobs)
	}

	// The textfiles, together, are what node_exporter's collector serves:
	// each one lints clean, no series repeats across them, and a metric
	// has one HELP and TYPE (else the collector drops or errors).
	written := textfileCollector(t, textfiles)

	// Every vaultbak metric an alert reads is in the textfiles.
	rules, err := os.ReadFile(filepath.Join(examplesDir, "prometheus", "vaultbak-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, m := range regexp.MustCompile(`vaultbak_\w+`).FindAllString(string(rules), -1) {
		if !written[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the alert rules read %v, which no textfile holds (written: %v)", missing, sortedKeys(written))
	}
}

func requireFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s was not written: %v", n, err)
		}
	}
}

var (
	promComment = regexp.MustCompile(`^# (HELP|TYPE) (\w+) (.*)$`)
	promSample  = regexp.MustCompile(`^(\w+)(\{.*\})? \S+$`)
	promLabel   = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)
)

// textfileCollector reads every *.prom file of dir as node_exporter's
// textfile collector would: promtool check metrics on each, then the
// checks of merging them (one HELP and TYPE per metric, no series twice).
// It returns the metric names.
func textfileCollector(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.prom"))
	meta := map[string]string{}   // "HELP name" → text, and TYPE
	series := map[string]string{} // name{sorted labels} → file
	names := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lint := exec.Command(requireTool(t, "promtool"), "check", "metrics")
		lint.Stdin = strings.NewReader(string(data))
		if out, err := lint.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics < %s: %v\n%s", filepath.Base(f), err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if m := promComment.FindStringSubmatch(line); m != nil {
				key := m[1] + " " + m[2]
				if prev, ok := meta[key]; ok && prev != m[3] {
					t.Errorf("%s: %s is %q here and %q in another textfile", filepath.Base(f), key, m[3], prev)
				}
				meta[key] = m[3]
				continue
			}
			m := promSample.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("%s: cannot read line %q", filepath.Base(f), line)
			}
			var labels []string
			for _, l := range promLabel.FindAllStringSubmatch(m[2], -1) {
				if l[2] != "" { // an empty label is no label
					labels = append(labels, l[1]+"="+l[2])
				}
			}
			sort.Strings(labels)
			key := m[1] + "{" + strings.Join(labels, ",") + "}"
			if prev, ok := series[key]; ok {
				t.Errorf("series %s is in both %s and %s", key, prev, filepath.Base(f))
			}
			series[key] = filepath.Base(f)
			names[m[1]] = true
		}
	}
	return names
}
