package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"github.com/spf13/cobra"

	"vaultbak/drill"
	"vaultbak/repo"
	"vaultbak/restore"
)

type drillFlags struct {
	set, region     string
	sample          string
	maxRPO, maxRTO  string
	report, metrics string
	seed, scratch   string
	notify          string
}

func newDrillCmd(g *globals) *cobra.Command {
	var f drillFlags
	cmd := &cobra.Command{
		Use:   "drill [--set NAME] [--region R] [--sample PERCENT] [--max-rpo DURATION] [--max-rto DURATION] [--report FILE] [--metrics FILE]",
		Short: "Prove every region can restore the newest snapshots; measure RPO and RTO (needs the recovery identity)",
		Long: `Drill a disaster recovery, region by region (or in the one --region names),
for the newest snapshot of every host and backup set (or --set NAME): open
the repository in that region alone; verify manifests, signatures, chains,
that the region's heads match the repository's and that every pack the
snapshot needs is there with its size; restore a sample of its files
(weighted by size, chosen by --seed; default 5% of its bytes; --sample 100
restores everything) into scratch space that is removed afterwards, every
byte verified against the signed manifest; measure RPO (the newest
snapshot's age) and RTO (time to first byte plus the snapshot's size at
the measured throughput of that region).

Objectives come from the flags, else the set's objectives in the config,
else its drill section (max_rpo, max_rto, sample, scratch_dir). Durations
are like 90m, 26h or 7d.

Exit codes: 0 every objective met; 5 an objective missed (including a
region that cannot serve a restore, or a set without any snapshot); 4 an
integrity failure (naming region, host, snapshot and object); 1 the drill
could not run. --json prints the report as the summary object; --report
FILE writes it too; each figure sits beside the previous drill's (the
previous report is kept in the state directory).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			start := time.Now()
			rep, cfg, err := runDrill(ctx, g, f)
			code := exitCode(ctx, err)
			if f.metrics != "" {
				if merr := writeDrillMetrics(f.metrics, rep, code, time.Since(start)); merr != nil {
					g.out.warn(f.metrics, fmt.Errorf("metrics not written: %w", merr))
					if err == nil {
						err = &warningsError{fmt.Sprintf("drill met every objective, but its metrics textfile was not written: %v", merr)}
						code = exitWarnings
					}
				}
			}
			summary := map[string]any{"type": "summary", "command": "drill", "exit_code": code}
			if rep != nil {
				printDrill(g, rep, code)
				summary = drillSummary(rep, code)
			}
			if err != nil {
				summary["error"] = err.Error()
			}
			notify(ctx, g, notifyCommand(f.notify, cfg), cfg, summary, code)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.set, "set", "", "drill only this backup set")
	fl.StringVar(&f.region, "region", "", "drill only this region")
	fl.StringVar(&f.sample, "sample", "", "percent of each snapshot's bytes to restore (default: the objectives', else 5; 100: everything)")
	fl.StringVar(&f.maxRPO, "max-rpo", "", "objective: the newest snapshot at most this old in every region (e.g. 26h)")
	fl.StringVar(&f.maxRTO, "max-rto", "", "objective: restorable from every region within this time (e.g. 4h)")
	fl.StringVar(&f.report, "report", "", "write the report (one JSON document) to FILE")
	fl.StringVar(&f.metrics, "metrics", "", "write a Prometheus textfile (node_exporter textfile collector) to FILE")
	fl.StringVar(&f.seed, "seed", "", "choose the sample with this seed (default: random, reported)")
	fl.StringVar(&f.scratch, "scratch-dir", "", "restore the sample below this directory (default: drill.scratch_dir, else the system temporary directory)")
	fl.StringVar(&f.notify, "notify-command", "", "run this shell command afterwards with the JSON summary on stdin and VAULTBAK_EXIT_CODE set (default: notify_command in the config)")
	cmd.RegisterFlagCompletionFunc("set", completeSets(g))
	cmd.RegisterFlagCompletionFunc("region", completeRegions(g))
	return cmd
}

// objectives parses the objective flags; zero fields are unset.
func (f drillFlags) objectives() (drill.Objectives, error) {
	var o drill.Objectives
	var err error
	if f.sample != "" {
		o.Sample, err = strconv.ParseFloat(strings.TrimSuffix(f.sample, "%"), 64)
		if err != nil || o.Sample <= 0 || o.Sample > 100 {
			return o, usagef("--sample %s: want a percentage in (0, 100]", f.sample)
		}
	}
	if f.maxRPO != "" {
		if o.MaxRPO, err = parseDuration(f.maxRPO); err != nil {
			return o, usagef("--max-rpo: %v", err)
		}
	}
	if f.maxRTO != "" {
		if o.MaxRTO, err = parseDuration(f.maxRTO); err != nil {
			return o, usagef("--max-rto: %v", err)
		}
	}
	return o, nil
}

func runDrill(ctx context.Context, g *globals, f drillFlags) (*drill.Report, *fileConfig, error) {
	flags, err := f.objectives()
	if err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, nil, err
	}
	var regions []string
	for _, r := range cfg.Regions {
		if f.region == "" || r.Name == f.region {
			regions = append(regions, r.Name)
		}
	}
	if len(regions) == 0 {
		return nil, cfg, usagef("--region %s: no such region in the config file %s", f.region, cfg.path)
	}
	s, err := g.openConfig(ctx, cfg, needRecovery)
	if err != nil {
		return nil, cfg, err
	}
	snaps, err := s.snapshots(ctx)
	if err != nil {
		return nil, cfg, err
	}
	statePath := ""
	if base, err := stateBase(cfg); err == nil {
		statePath = filepath.Join(base, s.repo.Config().ID, "drill-report.json")
	}
	prev := readDrillReport(g, statePath)

	var sets []string
	for _, sc := range cfg.Sets {
		sets = append(sets, sc.Name)
	}
	scratch := f.scratch
	if scratch == "" {
		scratch = cfg.resolve(cfg.Drill.ScratchDir)
	}
	progress, opened := &restore.Progress{}, &regionRepos{}
	stop := g.out.meter("drill", drillGauges(regions, progress, opened)...)
	rep, err := drill.Run(ctx, drill.Options{
		Regions: regions,
		Open: func(ctx context.Context, region string) (*repo.Repository, error) {
			if err, down := s.repo.Down()[region]; down {
				// It failed to answer (after its retries) moments ago,
				// while the repository was read over all regions.
				return nil, err
			}
			rs, err := g.openConfig(ctx, cfg.only([]string{region}), needRecovery)
			g.auditSession = s // the audit record goes to every region
			if err != nil {
				return nil, err
			}
			opened.add(region, rs.repo)
			return rs.repo, nil
		},
		Snapshots: snaps,
		Set:       f.set,
		Sets:      sets,
		SetRegions: func(set string) []string {
			if sc, err := cfg.set(set); err == nil {
				return sc.Regions
			}
			return nil
		},
		Objectives: func(set string) drill.Objectives {
			o := flags
			var own objectives
			if sc, err := cfg.set(set); err == nil {
				own = sc.Objectives
			}
			for _, c := range []objectives{own, cfg.Drill} {
				if o.MaxRPO == 0 {
					o.MaxRPO = time.Duration(c.MaxRPO)
				}
				if o.MaxRTO == 0 {
					o.MaxRTO = time.Duration(c.MaxRTO)
				}
				if o.Sample == 0 {
					o.Sample = c.Sample
				}
			}
			return o
		},
		Seed:       f.seed,
		ScratchDir: scratch,
		Previous:   prev,
		Progress:   progress,
	})
	stop(err)
	if err != nil {
		return nil, cfg, err
	}
	data, _ := json.MarshalIndent(rep, "", "  ")
	data = append(data, '\n')
	if statePath != "" {
		if err := renameio.WriteFile(statePath, data, 0o600); err != nil {
			g.out.warn(statePath, fmt.Errorf("drill report not kept for the next drill: %w", err))
		}
	}
	if f.report != "" {
		if err := renameio.WriteFile(f.report, data, 0o644); err != nil {
			return rep, cfg, fmt.Errorf("drill report: %w", err)
		}
	}
	return rep, cfg, drillError(rep, len(cfg.Regions))
}

// readDrillReport reads the previous drill's report; a damaged one only
// costs the comparison.
func readDrillReport(g *globals, path string) *drill.Report {
	if path == "" {
		return nil
	}
	var rep drill.Report
	found, err := readStateFile(path, &rep)
	if err != nil {
		g.out.warn("drill", fmt.Errorf("previous report not read (only the comparison is lost): %w", err))
	}
	if !found || err != nil {
		return nil
	}
	return &rep
}

// drillSummary is the report as the --json summary object.
func drillSummary(rep *drill.Report, code int) map[string]any {
	var m map[string]any
	data, _ := json.Marshal(rep)
	json.Unmarshal(data, &m)
	m["type"] = "summary"
	m["command"] = "drill"
	m["exit_code"] = code
	return m
}

// drillError maps what the drill found to its exit: integrity failures
// first (4), then objectives missed (5). regions is how many the config
// names (a drill of one region cannot tell whether another could heal it).
func drillError(rep *drill.Report, regions int) error {
	if len(rep.Problems) > 0 {
		msgs := make([]string, len(rep.Problems))
		for i, p := range rep.Problems {
			msgs[i] = p.String()
		}
		hint := "the region named holds damaged data: heal it with 'vaultbak replicate sync' from a healthy region, then run 'vaultbak check --read-data'"
		damaged := map[string]bool{}
		for _, p := range rep.Problems {
			damaged[p.Region] = true
		}
		if len(damaged) >= regions {
			hint = "every region drilled holds damaged data, so no copy can heal another: run 'vaultbak check --read-data' to see what is lost; a restore recovers every file that still verifies"
		}
		return withHint(fmt.Errorf("drill: %w: %s", repo.ErrIntegrity, strings.Join(msgs, "; ")), hint)
	}
	if len(rep.Missed) > 0 {
		return withHint(&objectivesError{fmt.Sprintf("drill: %d objective(s) missed: %s", len(rep.Missed), strings.Join(rep.Missed, "; "))}, "see the report above; a region that cannot serve a restore needs attention before it is needed")
	}
	return nil
}

// printDrill shows the report of a drill ending with exit code code: as
// the summary object under --json, else as text for a person.
func printDrill(g *globals, rep *drill.Report, code int) {
	if g.json {
		g.out.emit(drillSummary(rep, code))
		return
	}
	g.out.textf("drill of %d region(s) in %.1fs (sample seed %s)\n", len(rep.Regions), rep.Duration, rep.Seed)
	for _, rr := range rep.Regions {
		if !rr.Up {
			g.out.textf("region %s: CANNOT SERVE A RESTORE: %s\n", rr.Region, rr.Error)
			continue
		}
		g.out.textf("region %s: opened in %.1fs, %d snapshot(s)\n", rr.Region, rr.OpenSeconds, rr.Snapshots)
		for _, e := range rr.Sets {
			name := "host " + e.Host
			if e.Set != "" {
				name = fmt.Sprintf("set %s of host %s", e.Set, e.Host)
			}
			if e.Snapshot == "" || e.Error != "" && !e.Verified {
				g.out.textf("  %s: %s\n", name, e.Error)
				continue
			}
			line := fmt.Sprintf("  %s: snapshot %s verified (%d of %d files, %s of %s)", name, repo.ShortID(e.Snapshot), e.SampledFiles, e.SnapshotFiles, humanBytes(e.VerifiedBytes), humanBytes(e.SnapshotBytes))
			line += fmt.Sprintf("; RPO %s%s, RTO %s%s", secs(e.RPO), mark(e.RPOMet), secs(e.RTO), mark(e.RTOMet))
			if p := e.Previous; p != nil {
				line += fmt.Sprintf(" (previous: RPO %s, RTO %s)", secs(p.RPO), secs(p.RTO))
			}
			if e.Lagging {
				line += fmt.Sprintf("; LAGS: the newest is %s", repo.ShortID(e.Newest))
			}
			g.out.textf("%s\n", line)
		}
	}
	for _, p := range rep.Problems {
		g.out.textf("INTEGRITY: %s\n", p)
	}
	for _, m := range rep.Missed {
		g.out.textf("MISSED: %s\n", m)
	}
	if rep.Success {
		g.out.textf("every objective met\n")
	}
}

func secs(p *float64) string {
	if p == nil {
		return "unknown"
	}
	return time.Duration(*p * float64(time.Second)).Round(time.Millisecond).String()
}

func mark(met bool) string {
	if met {
		return ""
	}
	return " (MISSED)"
}
