package e2e

// Backup sets from the config file, over local directory regions: a set's
// paths, excludes and tags; a set pinned to one region (data residency)
// commits there only and its drill runs there only; restore/snapshots
// --set select it; a backup's metrics textfile keeps the last success
// through a failed run; the notify command gets the JSON summary and the
// exit code, and no credential.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBackupSets(t *testing.T) {
	t.Parallel()
	e := newRepo(t, "one", "two")
	src := filepath.Join(e.dir, "src")
	db := filepath.Join(e.dir, "db")
	writeFile(t, filepath.Join(src, "keep.txt"), textBytes(1, 50<<10), 0o644)
	writeFile(t, filepath.Join(src, "skip.tmp"), textBytes(2, 1<<10), 0o644)
	writeRandomFile(t, filepath.Join(db, "dump.sql"), 3, 300<<10)
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.config, append(cfg, []byte(`sets:
  - name: docs
    paths: [./src]
    excludes: ["*.tmp"]
    tags: [nightly]
  - name: eu
    paths: [./db]
    regions: [two]
    objectives: {max_rpo: 1h, sample: 100}
notify_command: 'cat > notified.json; env > notify-env.txt'
`)...), 0o644)

	// A set's paths, excludes and tags.
	sum, r := e.backupJSON(exitOK, "--set", "docs")
	docs := sum["snapshot"].(string)
	if sum["set"] != "docs" {
		t.Errorf("backup summary set = %v, want docs\n%s", sum["set"], r)
	}
	snaps := e.snapshots()
	if len(snaps) != 1 || snaps[0]["set"] != "docs" || !slices.Equal(stringList(t, snaps[0], "tags"), []string{"nightly"}) {
		t.Fatalf("snapshots: %v, want one of set docs tagged nightly", snaps)
	}
	ls := e.ok(e.withID("ls", docs, src)...)
	requireContains(t, "ls", ls.stdout, "keep.txt")
	if strings.Contains(ls.stdout, "skip.tmp") {
		t.Errorf("the set's exclude *.tmp did not apply:\n%s", ls.stdout)
	}

	// The notify command got the summary and the exit code, no secret.
	var notified map[string]any
	data, err := os.ReadFile(filepath.Join(e.dir, "notified.json"))
	if err != nil {
		t.Fatalf("notify_command did not run: %v", err)
	}
	if err := json.Unmarshal(data, &notified); err != nil || notified["snapshot"] != docs || notified["exit_code"] != float64(0) || notified["command"] != "backup" {
		t.Errorf("notify command read %s (%v), want the summary of snapshot %s with exit_code 0", data, err, docs)
	}

	// Pinned to region two: committed there only, restored from there.
	sum, r = e.backupJSON(exitOK, "--set", "eu", "--notify-command", "env > notify-env.txt; exit 7")
	eu := sum["snapshot"].(string)
	requireContains(t, "backup stderr", r.stderr, "notify command")
	env, _ := os.ReadFile(filepath.Join(e.dir, "notify-env.txt"))
	requireContains(t, "notify command environment", string(env), "VAULTBAK_EXIT_CODE=0")
	for i, name := range e.names {
		has := false
		for _, p := range objects(t, e.regions[i], "snapshots") {
			has = has || filepath.Base(p) == eu
		}
		if has != (name == "two") {
			t.Errorf("region %s holds the manifest of set eu: %v (the set is pinned to region two)", name, has)
		}
	}
	target := filepath.Join(e.dir, "restored")
	e.ok(e.withID("restore", "latest", "--set", "eu", "--target", target)...)
	if fileSHA256(t, filepath.Join(target, db, "dump.sql")) != fileSHA256(t, filepath.Join(db, "dump.sql")) {
		t.Error("restore --set eu latest did not bring back the set's file")
	}

	// Its drill runs in region two only, with the set's objectives.
	rep, r := drillReport(t, e, exitOK, "--set", "eu")
	for region, es := range drillEntries(t, rep) {
		switch {
		case region == "one" && len(es) != 0:
			t.Errorf("region one drilled set eu, which is pinned to region two: %v", es)
		case region == "two" && (len(es) != 1 || es[0]["verified"] != true || es[0]["max_rpo_seconds"] != float64(3600) || es[0]["sample_percent"] != float64(100)):
			t.Errorf("region two: %v, want set eu verified with its objectives (max_rpo 1h, sample 100)\n%s", es, r)
		}
	}

	// The whole drill: both sets, and a secret the environment holds is
	// not passed on to the notify command.
	o := runOpts{env: []string{"AWS_SECRET_ACCESS_KEY=do-not-leak"}}
	r = e.runWith(o, e.withID("drill", "--sample", "100")...)
	if r.code != exitOK {
		t.Fatalf("drill of every set: want exit 0\n%s", r)
	}
	env, _ = os.ReadFile(filepath.Join(e.dir, "notify-env.txt"))
	if strings.Contains(string(env), "do-not-leak") {
		t.Error("the notify command's environment holds AWS_SECRET_ACCESS_KEY")
	}
	requireContains(t, "drill output", r.stdout, "set eu of host e2e-host")

	// Metrics: a failed backup keeps the last success time.
	prom := filepath.Join(e.dir, "backup.prom")
	e.ok("backup", "--set", "docs", "--metrics", prom)
	m := parseTextfile(t, prom)
	key := "host=e2e-host,set=docs"
	last := m["vaultbak_backup_last_success_timestamp_seconds"][key]
	if last == 0 || m["vaultbak_backup_success"][key] != 1 || m["vaultbak_region_up"]["host=e2e-host,region=one,set=docs"] != 1 {
		t.Fatalf("backup textfile: %v", m)
	}
	for _, dir := range e.regions {
		if err := os.Rename(dir, dir+".away"); err != nil {
			t.Fatal(err)
		}
	}
	e.expect(exitFailure, "backup", "--set", "docs", "--metrics", prom)
	for _, dir := range e.regions {
		if err := os.Rename(dir+".away", dir); err != nil {
			t.Fatal(err)
		}
	}
	m = parseTextfile(t, prom)
	if m["vaultbak_backup_last_success_timestamp_seconds"][key] != last || m["vaultbak_backup_success"][key] != 0 || m["vaultbak_backup_exit_code"][key] != exitFailure {
		t.Errorf("after a failed backup: last success %v (want %v kept), success %v, exit code %v", m["vaultbak_backup_last_success_timestamp_seconds"], last, m["vaultbak_backup_success"], m["vaultbak_backup_exit_code"])
	}

	// Mistakes are usage errors naming what is wrong.
	r = e.expect(exitUsage, "backup", "--set", "nope")
	requireContains(t, "backup --set nope", r.stderr, `"nope"`)
	writeFile(t, e.config, append(cfg, []byte("sets:\n  - name: x\n    regions: [mars]\n")...), 0o644)
	r = e.expect(exitUsage, "snapshots")
	requireContains(t, "config with a set in an unknown region", r.stderr, "mars")
}
