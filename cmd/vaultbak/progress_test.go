package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vaultbak/backup"
)

// value is a gauge reading the test sets.
type value struct{ n int64 }

func (v *value) get() int64 { return v.n }

func TestMeterRatesAndETA(t *testing.T) {
	job, jobTotal := &value{}, &value{1000}
	one, two := &value{}, &value{}
	synced, syncTotal := &value{}, &value{100}
	failed := &value{}
	m := &meter{gauges: []gauge{
		{name: "backup", done: job.get, total: jobTotal.get},
		{name: "one", region: true, done: one.get},
		{name: "two", region: true, done: two.get},
		{name: "three", region: true, done: synced.get, total: syncTotal.get},
		{name: "four", region: true, done: failed.get, failed: func() bool { return true }},
	}}
	m.states = make([]gaugeState, len(m.gauges))
	t0 := time.Unix(1_000_000, 0)
	m.sample(t0)
	job.n, one.n, two.n, synced.n = 200, 300, 100, 50
	m.sample(t0.Add(time.Second))

	tests := []struct {
		name        string
		total       int64
		rate        float64
		eta         time.Duration
		description string
	}{
		{"backup", 1000, 200, 4 * time.Second, "200 B / 1000 B  200 B/s  ETA 4s"},
		{"one", 300, 300, -1, "300 B  300 B/s"}, // the leading region: its bar is full
		{"two", 300, 100, -1, "100 B  100 B/s"}, // a third of the leader's
		{"three", 100, 50, time.Second, "50 B / 100 B  50 B/s  ETA 1s"},
		{"four", 300, 0, -1, "0 B  failed, dropped for this run"},
	}
	for i, tc := range tests {
		st := m.states[i]
		if st.total != tc.total || st.rate != tc.rate || st.eta != tc.eta {
			t.Errorf("%s: total %d, rate %v, eta %v; want %d, %v, %v", tc.name, st.total, st.rate, st.eta, tc.total, tc.rate, tc.eta)
		}
		if got := m.describe(i); got != tc.description {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.description)
		}
	}

	// Done past the estimate (files grew): the total follows, ETA 0.
	job.n = 1200
	m.sample(t0.Add(2 * time.Second))
	if st := m.states[0]; st.total != 1200 || st.eta != 0 {
		t.Errorf("done past the total: total %d, eta %v; want 1200, 0", st.total, st.eta)
	}
	// Rates cover the last rateWindow only: a stall shows as a falling rate.
	m.sample(t0.Add(10 * time.Second))
	if st := m.states[0]; st.rate != 0 {
		t.Errorf("rate after a stall of 8 s: %v, want 0", st.rate)
	}
}

func TestMeterJSONStatus(t *testing.T) {
	var stdout bytes.Buffer
	o := &output{json: true, w: &stdout, errw: &stdout}
	job, reg := &value{}, &value{}
	m := &meter{o: o, command: "replicate sync", start: time.Now(), gauges: []gauge{
		{name: "replicate sync", done: job.get, total: func() int64 { return 4096 }},
		{name: "eu", region: true, done: reg.get, total: func() int64 { return 4096 }},
	}}
	m.states = make([]gaugeState, len(m.gauges))
	m.sample(time.Now().Add(-time.Second))
	job.n, reg.n = 1024, 1024
	m.sample(time.Now())
	m.emitStatus()
	var st map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		t.Fatalf("status is not one JSON object: %v\n%s", err, stdout.String())
	}
	if st["type"] != "status" || st["command"] != "replicate sync" || st["bytes"] != 1024.0 || st["total_bytes"] != 4096.0 || st["eta_seconds"] == nil {
		t.Errorf("status %v", st)
	}
	regions, _ := st["regions"].([]any)
	if len(regions) != 1 {
		t.Fatalf("status regions %v, want one", st["regions"])
	}
	if r := regions[0].(map[string]any); r["region"] != "eu" || r["bytes"] != 1024.0 || r["total_bytes"] != 4096.0 {
		t.Errorf("status region %v", r)
	}
}

// TestMeterSilent: with --quiet, or without a terminal (or on a dumb one)
// and --json, a meter prints nothing at all.
func TestMeterSilent(t *testing.T) {
	t.Setenv("TERM", "dumb")
	for _, o := range []*output{
		{quiet: true, tty: true},
		{quiet: true, json: true},
		{tty: false},
		{tty: true}, // TERM=dumb
	} {
		var out, errs bytes.Buffer
		o.w, o.errw = &out, &errs
		stop := o.meter("backup", gauge{name: "backup", done: func() int64 { return 1 }})
		stop(nil)
		if out.Len() > 0 || errs.Len() > 0 || o.progressShown() {
			t.Errorf("quiet %v, json %v, tty %v: printed %q %q", o.quiet, o.json, o.tty, out.String(), errs.String())
		}
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                "0s",
		1400 * time.Millisecond:          "1s",
		59 * time.Second:                 "59s",
		185 * time.Second:                "3m05s",
		2*time.Hour + 10*time.Minute:     "2h10m",
		49*time.Hour + 59*time.Second:    "49h00m",
		time.Hour - 200*time.Millisecond: "1h00m",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestEstimateBytes: the estimate adds the regular files a backup would
// read: excluded names and paths left out, symlinks not followed.
func TestEstimateBytes(t *testing.T) {
	dir := t.TempDir()
	write := func(p string, n int) {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a/keep.txt", 1000)
	write("a/skip.tmp", 500)
	write("cache/big", 7000)
	write("b/c/keep2", 300)
	if err := os.Symlink(filepath.Join(dir, "cache"), filepath.Join(dir, "b", "link")); err != nil {
		t.Fatal(err)
	}
	got, err := estimateBytes(t.Context(), []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "cache")}, []string{"*.tmp", filepath.Join(dir, "cache")})
	if err != nil || got != 1300 {
		t.Errorf("estimateBytes = %d, %v; want 1300", got, err)
	}
}

// TestCachedBytes: an incremental backup takes its estimate from the
// previous snapshot's file cache, but only one made with the same excludes.
func TestCachedBytes(t *testing.T) {
	prev := backup.NewCache("repo")
	prev.Excludes = []string{"*.tmp"}
	prev.Files["/a/x"] = backup.CacheEntry{Size: 1000}
	prev.Files["/a/y"] = backup.CacheEntry{Size: 300}
	for _, tc := range []struct {
		name     string
		prev     *backup.Cache
		excludes []string
		want     int64
		ok       bool
	}{
		{"same excludes", prev, []string{"*.tmp"}, 1300, true},
		{"other excludes", prev, []string{"*.log"}, 0, false},
		{"no cache", nil, nil, 0, false},
		{"empty cache", backup.NewCache("repo"), nil, 0, false},
	} {
		if got, ok := cachedBytes(tc.prev, tc.excludes); got != tc.want || ok != tc.ok {
			t.Errorf("%s: cachedBytes = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestUpTo: an estimate from the previous snapshot holds until the backup
// has done more; then the total is unknown rather than reached.
func TestUpTo(t *testing.T) {
	done := &value{}
	total := upTo(1000, done.get)
	for _, tc := range []struct{ done, want int64 }{{0, 1000}, {1000, 1000}, {1001, 0}} {
		done.n = tc.done
		if got := total(); got != tc.want {
			t.Errorf("done %d: total = %d, want %d", tc.done, got, tc.want)
		}
	}
}
