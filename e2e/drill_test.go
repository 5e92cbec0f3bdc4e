package e2e

// Drills on real S3: one test starts three MinIO servers, backs up a set
// and drills it the way a scheduled job does: healthy (exit 0, RPO and RTO
// for every region in the JSON report and the Prometheus textfile, which
// must parse with Prometheus's own parser), a full drill verifying every
// byte, an RPO objective missed (exit 5 naming the set), a pack damaged in
// one region (exit 4 naming the region and the pack), and one region
// stopped (exit 5 naming it).

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"vaultbak/backend"
)

// exitObjectives is drill's exit code for objectives not met.
const exitObjectives = 5

// drillReport runs drill with --json and --report, requires exit code, and
// returns the report (checking that the file and the summary agree).
func drillReport(t *testing.T, e *repoEnv, code int, args ...string) (map[string]any, result) {
	t.Helper()
	report := filepath.Join(e.dir, fmt.Sprintf("report-%d.json", time.Now().UnixNano()))
	r := e.expect(code, e.withID(append([]string{"--json", "drill", "--report", report}, args...)...)...)
	sum := requireSummary(t, jsonLines(t, r.stdout), r)
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("--report wrote nothing: %v\n%s", err, r)
	}
	var rep map[string]any
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("--report is not one JSON document: %v", err)
	}
	if fmt.Sprint(rep["regions"]) != fmt.Sprint(sum["regions"]) {
		t.Errorf("the --report file and the --json summary disagree")
	}
	return sum, r
}

// drillEntries returns the report's entries by region name.
func drillEntries(t *testing.T, rep map[string]any) map[string][]map[string]any {
	t.Helper()
	regions, ok := rep["regions"].([]any)
	if !ok {
		t.Fatalf("report has no regions: %v", rep)
	}
	out := map[string][]map[string]any{}
	for _, x := range regions {
		rr := x.(map[string]any)
		name := rr["region"].(string)
		sets, _ := rr["sets"].([]any)
		out[name] = []map[string]any{}
		for _, s := range sets {
			out[name] = append(out[name], s.(map[string]any))
		}
	}
	return out
}

// parseTextfile parses a Prometheus textfile with Prometheus's own parser
// and returns, per metric, its samples as "label=value,…" → value.
func parseTextfile(t *testing.T, path string) map[string]map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("metrics textfile: %v", err)
	}
	defer f.Close()
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("the metrics textfile does not parse with Prometheus's text parser: %v", err)
	}
	out := map[string]map[string]float64{}
	for name, mf := range families {
		out[name] = map[string]float64{}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			sort.Strings(labels)
			out[name][strings.Join(labels, ",")] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestDrillRegions(t *testing.T) {
	t.Parallel()
	regs := startThree(t)
	e := newS3Repo(t, 2, regs...)
	src := filepath.Join(e.dir, "src")
	mixedTree(t, src, 300, 6<<20)
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, e.config, append(cfg, []byte("sets:\n  - name: docs\n    paths: [./src]\ndrill:\n  max_rto: 1h\n")...), 0o644)
	sum, _ := e.backupJSON(exitOK, "--set", "docs")
	snap := sum["snapshot"].(string)
	bytes := num(t, sum, "bytes")

	metricsFile := filepath.Join(e.dir, "drill.prom")
	t.Run("healthy", func(t *testing.T) {
		rep, r := drillReport(t, e, exitOK, "--metrics", metricsFile)
		if rep["success"] != true {
			t.Errorf("healthy drill does not report success\n%s", r)
		}
		entries := drillEntries(t, rep)
		for _, reg := range regs {
			es := entries[reg.name]
			if len(es) != 1 {
				t.Fatalf("region %s: %d entries, want 1 (set docs)\n%s", reg.name, len(es), r)
			}
			en := es[0]
			if en["set"] != "docs" || en["snapshot"] != snap || en["verified"] != true {
				t.Errorf("region %s: %v, want snapshot %s of set docs verified", reg.name, en, snap)
			}
			if rpo, ok := en["rpo_seconds"].(float64); !ok || rpo < 0 || rpo > 600 {
				t.Errorf("region %s: rpo_seconds %v", reg.name, en["rpo_seconds"])
			}
			if rto, ok := en["rto_seconds"].(float64); !ok || rto <= 0 || rto > 600 {
				t.Errorf("region %s: rto_seconds %v", reg.name, en["rto_seconds"])
			}
			if v := num(t, en, "verified_bytes"); v <= 0 || v > bytes {
				t.Errorf("region %s: a 5%% sample verified %v of %v bytes", reg.name, v, bytes)
			}
		}
		m := parseTextfile(t, metricsFile)
		for _, name := range []string{"vaultbak_drill_rpo_seconds", "vaultbak_drill_rto_seconds", "vaultbak_drill_success"} {
			for _, reg := range regs {
				key := fmt.Sprintf("host=e2e-host,region=%s,set=docs", reg.name)
				v, ok := m[name][key]
				if !ok || math.IsInf(v, 0) || v < 0 {
					t.Errorf("textfile: %s{%s} = %v (present %v)", name, key, v, ok)
				}
			}
		}
		for _, reg := range regs {
			if m["vaultbak_drill_region_up"]["region="+reg.name] != 1 {
				t.Errorf("textfile: vaultbak_drill_region_up{region=%s} is not 1: %v", reg.name, m["vaultbak_drill_region_up"])
			}
		}
		if m["vaultbak_drill_exit_code"][""] != 0 || m["vaultbak_drill_last_success_timestamp_seconds"][""] == 0 {
			t.Errorf("textfile: exit code %v, last success %v", m["vaultbak_drill_exit_code"], m["vaultbak_drill_last_success_timestamp_seconds"])
		}
	})

	t.Run("full", func(t *testing.T) {
		rep, r := drillReport(t, e, exitOK, "--sample", "100")
		for name, es := range drillEntries(t, rep) {
			for _, en := range es {
				if num(t, en, "verified_bytes") < bytes || num(t, en, "sample_percent") != 100 {
					t.Errorf("region %s: --sample 100 verified %v of %v bytes (%v of %v files)\n%s", name, en["verified_bytes"], bytes, en["sampled_files"], en["snapshot_files"], r)
				}
				if en["previous"] == nil {
					t.Errorf("region %s: the previous drill's figures are not beside this one's", name)
				}
			}
		}
	})

	t.Run("rpo missed", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond) // the snapshot ages past 1s
		rep, r := drillReport(t, e, exitObjectives, "--max-rpo", "1s")
		requireContains(t, "drill's error", r.stderr, "set docs")
		requireContains(t, "drill's error", r.stderr, "RPO")
		if rep["success"] != false || len(rep["missed"].([]any)) != len(regs) {
			t.Errorf("report: success %v, missed %v: want one per region", rep["success"], rep["missed"])
		}
	})

	t.Run("damaged pack", func(t *testing.T) {
		reg := regs[1]
		var pack string
		var size int64
		for name, n := range reg.list(t, "data/") {
			if n > size {
				pack, size = name, n
			}
		}
		intact, err := backend.ReadAll(context.Background(), reg.backend(t), pack, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		reg.flipObjectByte(t, pack)
		rep, r := drillReport(t, e, exitIntegrity, "--sample", "100")
		requireContains(t, "drill's error", r.stderr, "region "+reg.name)
		requireContains(t, "drill's error", r.stderr, pack)
		problems, _ := rep["problems"].([]any)
		if len(problems) == 0 {
			t.Fatalf("report lists no problem\n%s", r)
		}
		for _, p := range problems {
			pm := p.(map[string]any)
			if pm["region"] != reg.name || pm["object"] != pack || pm["snapshot"] != snap || pm["host"] != "e2e-host" {
				t.Errorf("problem %v: want region %s, object %s, snapshot %s, host e2e-host", pm, reg.name, pack, snap)
			}
		}
		if err := reg.backend(t).Put(context.Background(), pack, intact); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("region stopped", func(t *testing.T) {
		down := regs[2]
		down.srv.Stop()
		defer down.srv.Restart(t)
		var rep map[string]any
		var r result
		timed(t, "drill with r3 stopped", func() { rep, r = drillReport(t, e, exitObjectives, "--metrics", metricsFile) })
		requireContains(t, "drill's error", r.stderr, "region "+down.name+" cannot serve a restore")
		for name, es := range drillEntries(t, rep) {
			if name == down.name {
				continue
			}
			if len(es) != 1 || es[0]["verified"] != true {
				t.Errorf("region %s: %v: want the snapshot verified there while %s is down", name, es, down.name)
			}
		}
		m := parseTextfile(t, metricsFile)
		if v, ok := m["vaultbak_drill_region_up"]["region="+down.name]; !ok || v != 0 {
			t.Errorf("textfile: vaultbak_drill_region_up{region=%s} = %v, want 0", down.name, v)
		}
		if v := m["vaultbak_drill_rpo_seconds"]["host=e2e-host,region="+down.name+",set=docs"]; !math.IsInf(v, 1) {
			t.Errorf("textfile: the stopped region's RPO is %v, want +Inf", v)
		}
		if m["vaultbak_drill_exit_code"][""] != exitObjectives || m["vaultbak_drill_last_success_timestamp_seconds"][""] == 0 {
			t.Errorf("textfile: exit code %v, last success %v (a failed drill must keep the last success)", m["vaultbak_drill_exit_code"], m["vaultbak_drill_last_success_timestamp_seconds"])
		}
	})
}
