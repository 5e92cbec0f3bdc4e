package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vaultbak/metrics"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "90m", want: 90 * time.Minute},
		{in: "26h", want: 26 * time.Hour},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "1s", want: time.Second},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "d", bad: true},
		{in: "-1h", bad: true},
		{in: "1.5d", bad: true},
		{in: "soon", bad: true},
	}
	for _, tc := range tests {
		got, err := parseDuration(tc.in)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestConfigSets(t *testing.T) {
	base := "regions:\n  - name: a\n    url: ./a\n  - name: b\n    url: ./b\n"
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"sets and drill", base + "sets:\n  - name: s\n    paths: [x]\n    regions: [b]\n    objectives: {max_rpo: 26h, sample: 10}\ndrill:\n  max_rto: 4h\nnotify_command: 'true'\n", ""},
		{"unknown region", base + "sets:\n  - name: s\n    regions: [c]\n", `region "c"`},
		{"twice", base + "sets:\n  - name: s\n  - name: s\n", "appears twice"},
		{"no name", base + "sets:\n  - paths: [x]\n", "no usable name"},
		{"bad sample", base + "drill:\n  sample: 150\n", "percentage"},
		{"bad duration", base + "drill:\n  max_rpo: soon\n", "duration"},
		{"typo", base + "sets:\n  - name: s\n    path: [x]\n", `line 8: unknown key "path"`},
		{"typo at the top", base + "qourum: 1\n", `line 6: unknown key "qourum"`},
		{"wrong type", base + "quorum: two\n", "cannot unmarshal !!str `two` into int"},
		{"empty", "", "is empty"},
		{"scratch in a set", base + "sets:\n  - name: s\n    objectives: {scratch_dir: /tmp}\n", "drill section"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "vaultbak.yaml")
			writeTestFile(t, p, tc.yaml)
			c, err := loadConfig(&globals{configPath: p})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one saying %q (config %+v)", err, tc.wantErr, c)
			}
			if strings.Contains(err.Error(), "main.") {
				t.Errorf("error %q names vaultbak's Go types", err)
			}
		})
	}

	p := filepath.Join(t.TempDir(), "vaultbak.yaml")
	writeTestFile(t, p, tests[0].yaml+"quorum: 2\n")
	c, err := loadConfig(&globals{configPath: p})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := c.set("s")
	if err != nil || time.Duration(sc.Objectives.MaxRPO) != 26*time.Hour || time.Duration(c.Drill.MaxRTO) != 4*time.Hour {
		t.Fatalf("set s: %+v, %v; drill %+v", sc, err, c.Drill)
	}
	only := c.only(sc.Regions)
	if len(only.Regions) != 1 || only.Regions[0].Name != "b" || only.quorum() != 1 || len(c.Regions) != 2 {
		t.Errorf("the set's view: regions %v, quorum %d (the config keeps %d regions)", only.Regions, only.quorum(), len(c.Regions))
	}
	if _, err := c.set("nope"); err == nil || !strings.Contains(err.Error(), "(it defines s)") {
		t.Errorf("an unknown set: %v", err)
	}
}

func TestNotifyEnv(t *testing.T) {
	cfg := &fileConfig{Regions: []regionConfig{{Name: "eu", AccessKeyIDEnv: "EU_KEY", SecretAccessKeyEnv: "EU_SECRET"}}}
	env := []string{"PATH=/bin", "EU_KEY=k", "EU_SECRET=s", "AWS_SECRET_ACCESS_KEY=x", "AWS_ACCESS_KEY_ID=y", "AWS_SESSION_TOKEN=z", "VAULTBAK_EXIT_CODE=9", "HOME=/root"}
	got := notifyEnv(env, cfg)
	if want := []string{"PATH=/bin", "HOME=/root"}; !slices.Equal(got, want) {
		t.Errorf("notifyEnv = %v, want %v", got, want)
	}
}

func TestBackupMetricsCarryOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "backup.prom")
	ok := &backupOutcome{host: "h", set: "", regions: []string{"a", "b"}, lagging: []string{"b"}, summary: map[string]any{"added_bytes": uint64(10), "bytes": uint64(100), "files": uint64(2), "warnings": 0}}
	if err := writeBackupMetrics(path, ok, exitWarnings, time.Second); err != nil {
		t.Fatal(err)
	}
	other := &backupOutcome{host: "h", set: "db", summary: map[string]any{}}
	if err := writeBackupMetrics(path, other, exitOK, time.Second); err != nil {
		t.Fatal(err)
	}
	failed := &backupOutcome{set: ""} // failed before it knew its host
	if err := writeBackupMetrics(path, failed, exitFailure, time.Second); err != nil {
		t.Fatal(err)
	}
	last, err := metrics.Read(path, mBackupLastSuccess)
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]bool{}
	for _, s := range last {
		if s.Labels["host"] != "h" || s.Value == 0 {
			t.Errorf("last success %v", s)
		}
		sets[s.Labels["set"]] = true
	}
	if !sets[""] || !sets["db"] || len(last) != 2 {
		t.Errorf("after a failed run the last successes are %v, want both sets' kept", last)
	}
	success, _ := metrics.Read(path, "vaultbak_backup_success")
	if len(success) != 1 || success[0].Value != 0 || success[0].Labels["host"] != "h" {
		t.Errorf("vaultbak_backup_success = %v, want 0 for host h (from the previous file)", success)
	}
}

func writeTestFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
