package main

import (
	"math"
	"time"

	"vaultbak/drill"
	"vaultbak/metrics"
)

// The metrics vaultbak writes with --metrics FILE (a node_exporter
// textfile; README "Drills, backup sets and metrics" lists them). Every
// run replaces the file; a last-success time carries over from the
// previous file, so a failed run never erases when the last one succeeded.
// Backup gauges carry host and set labels, so that the textfiles of several
// backup jobs in one collector directory never repeat a series.
const (
	mBackupLastSuccess = "vaultbak_backup_last_success_timestamp_seconds"
	mDrillLastSuccess  = "vaultbak_drill_last_success_timestamp_seconds"
)

// backupOutcome is what a backup run leaves for its metrics and notify
// command.
type backupOutcome struct {
	cfg     *fileConfig // nil when the config did not load
	host    string      // "" when no host credential was loaded
	set     string
	regions []string       // the regions the backup wrote to
	summary map[string]any // the JSON summary, when a snapshot committed
	lagging []string
}

// writeBackupMetrics writes the textfile of one backup run that ended with
// exit code code.
func writeBackupMetrics(path string, o *backupOutcome, code int, took time.Duration) error {
	t := metrics.New()
	now := time.Now()
	committed := o.summary != nil
	if o.host == "" {
		o.host = previousHost(path, o.set)
	}
	l := metrics.Labels{"host": o.host, "set": o.set}
	if err := carryOver(t, path, mBackupLastSuccess, "Time of the newest backup that committed a snapshot.", l, committed); err != nil {
		return err
	}
	if committed {
		t.Set(mBackupLastSuccess, "Time of the newest backup that committed a snapshot.", l, float64(now.Unix()))
	}
	t.Set("vaultbak_backup_last_run_timestamp_seconds", "Time the last backup ended, whatever its outcome.", l, float64(now.Unix()))
	t.Set("vaultbak_backup_success", "1 when the last backup committed a snapshot (exit 0 or 3), else 0.", l, b2f(committed))
	t.Set("vaultbak_backup_exit_code", "Exit code of the last backup.", l, float64(code))
	t.Set("vaultbak_backup_duration_seconds", "Duration of the last backup.", l, took.Seconds())
	if committed {
		t.Set("vaultbak_backup_added_bytes", "Bytes of new packs the last backup stored.", l, num(o.summary["added_bytes"]))
		t.Set("vaultbak_backup_bytes", "Content bytes of the last snapshot.", l, num(o.summary["bytes"]))
		t.Set("vaultbak_backup_files", "Files in the last snapshot.", l, num(o.summary["files"]))
		t.Set("vaultbak_backup_warnings", "Warnings of the last backup (unreadable files).", l, num(o.summary["warnings"]))
		lag := map[string]bool{}
		for _, r := range o.lagging {
			lag[r] = true
		}
		for _, r := range o.regions {
			t.Set("vaultbak_region_up", "1 when the region took every write of the last backup, 0 when it lags.", metrics.Labels{"host": o.host, "set": o.set, "region": r}, b2f(!lag[r]))
		}
	}
	return t.Write(path)
}

// writeDrillMetrics writes the textfile of one drill; rep is nil when the
// drill could not run.
func writeDrillMetrics(path string, rep *drill.Report, code int, took time.Duration) error {
	t := metrics.New()
	now := time.Now()
	ok := code == exitOK
	if err := carryOver(t, path, mDrillLastSuccess, "Time of the newest drill that met every objective.", nil, ok); err != nil {
		return err
	}
	if ok {
		t.Set(mDrillLastSuccess, "Time of the newest drill that met every objective.", nil, float64(now.Unix()))
	}
	t.Set("vaultbak_drill_last_run_timestamp_seconds", "Time the last drill ended.", nil, float64(now.Unix()))
	t.Set("vaultbak_drill_exit_code", "Exit code of the last drill: 0 ok, 4 integrity failure, 5 objectives missed, 1 error.", nil, float64(code))
	t.Set("vaultbak_drill_duration_seconds", "Duration of the last drill.", nil, took.Seconds())
	if rep != nil {
		t.Set("vaultbak_drill_integrity_problems", "Integrity failures the last drill found.", nil, float64(len(rep.Problems)))
		t.Set("vaultbak_drill_objectives_missed", "Objectives the last drill found missed (a region down counts).", nil, float64(len(rep.Missed)))
		for _, rr := range rep.Regions {
			t.Set("vaultbak_drill_region_up", "1 when the repository opened in the region alone for the last drill, else 0.", metrics.Labels{"region": rr.Region}, b2f(rr.Up))
			for _, e := range rr.Sets {
				l := metrics.Labels{"region": rr.Region, "host": e.Host, "set": e.Set}
				t.Set("vaultbak_drill_rpo_seconds", "Age of the newest snapshot of the host and set in the region (+Inf: none restorable).", l, orInf(e.RPO))
				t.Set("vaultbak_drill_rto_seconds", "Time to first byte plus the snapshot's size at the measured restore throughput (+Inf: not measured).", l, orInf(e.RTO))
				t.Set("vaultbak_drill_success", "1 when the snapshot verified in the region and met its RPO and RTO objectives.", l, b2f(e.Verified && e.RPOMet && e.RTOMet))
				t.Set("vaultbak_drill_verified_bytes", "Bytes the drill restored and verified.", l, float64(e.VerifiedBytes))
				t.Set("vaultbak_drill_throughput_bytes_per_second", "Restore throughput measured from the region.", l, e.Throughput)
				t.Set("vaultbak_drill_ttfb_seconds", "Time to the first restored byte from the region.", l, e.TTFB)
			}
		}
	}
	return t.Write(path)
}

// carryOver copies gauge name from the previous textfile at path into t:
// every sample but the one labelled l when replace is set (it is about to
// be set anew). A previous file that does not parse is an error: replacing
// it would lose the time it holds.
func carryOver(t *metrics.Textfile, path, name, help string, l metrics.Labels, replace bool) error {
	prev, err := metrics.Read(path, name)
	if err != nil {
		return err
	}
	for _, s := range prev {
		// Prometheus's parser may drop a label whose value is empty:
		// a missing label of l is "".
		labels := metrics.Labels{}
		for k := range l {
			labels[k] = s.Labels[k]
		}
		if len(s.Labels) > len(l) {
			continue // another layout: not one of ours
		}
		same := true
		for k, v := range l {
			same = same && labels[k] == v
		}
		if same && replace {
			continue
		}
		t.Set(name, help, labels, s.Value)
	}
	return nil
}

// previousHost returns the host label of set's last success in the
// previous textfile, for a run that failed before it knew its host.
func previousHost(path, set string) string {
	prev, _ := metrics.Read(path, mBackupLastSuccess)
	for _, s := range prev {
		if s.Labels["set"] == set {
			return s.Labels["host"]
		}
	}
	return ""
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func orInf(p *float64) float64 {
	if p == nil {
		return math.Inf(1)
	}
	return *p
}

// num returns a JSON summary's number.
func num(v any) float64 {
	switch n := v.(type) {
	case uint64:
		return float64(n)
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case float64:
		return n
	}
	return 0
}
