package main

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vaultbak/repo"
	"vaultbak/restore"
)

type restoreFlags struct {
	target    string
	at        string
	host      string
	set       string
	tags      []string
	includes  []string
	toCommand bool
}

func newRestoreCmd(g *globals) *cobra.Command {
	var f restoreFlags
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT|latest (--target DIR [--include PATH]... | --to-command -- CMD ARG...) [--at TIME]",
		Short: "Restore a snapshot into a directory, verified (needs the recovery identity)",
		Long: `Restore a snapshot into --target. Paths are restored below the target as
they were on the host (/home/a/x becomes DIR/home/a/x). Every chunk is
verified against its keyed ID and every file against its content hash
before it takes its final name.

A file that no region can give back verified (its chunks damaged or
missing everywhere) is left out, and so is a directory whose listing
cannot be verified, with all below it: the restore goes on with the rest,
names each one left out, and exits 4. Any other error (the target not
writable or full, no region reachable, an interrupt) stops it.

--include PATH restores PATH and what is below it; snapshot paths are
absolute, as on the host ("etc/nginx" is read as "/etc/nginx"). An
--include the snapshot does not hold exits 2 naming it, and nothing is
restored.

--at TIME (RFC 3339, or "2006-01-02 15:04") with "latest" picks the newest
snapshot at or before TIME, among --host/--set/--tag when given.

--to-command -- CMD ARG... feeds a stream snapshot (made with --stdin or
--stdin-from-command) into CMD's standard input, each chunk verified before
it is written. When verification fails the command is stopped and vaultbak
exits 4: make the command atomic where it can be (psql --single-transaction,
pg_restore --single-transaction), so a stopped restore leaves nothing half done.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if f.toCommand {
				if dash != 1 || len(args) < 2 {
					return usagef("--to-command needs the command after --, e.g. restore latest --to-command -- psql -d mydb")
				}
				return runRestoreToCommand(cmd.Context(), g, args[0], args[1:], f)
			}
			if len(args) != 1 {
				return usagef("restore takes one SNAPSHOT (got %d arguments)", len(args))
			}
			return runRestore(cmd.Context(), g, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.target, "target", "", "directory to restore into")
	fl.StringVar(&f.at, "at", "", "with latest: the newest snapshot at or before this time")
	fl.StringVar(&f.host, "host", "", "with latest: only snapshots of this host")
	fl.StringVar(&f.set, "set", "", "with latest: only snapshots of this backup set")
	fl.StringArrayVar(&f.tags, "tag", nil, "with latest: only snapshots with this tag")
	fl.StringArrayVar(&f.includes, "include", nil, "restore only this snapshot path and what is below it (repeatable)")
	fl.BoolVar(&f.toCommand, "to-command", false, "feed a stream snapshot (backup --stdin…) into the standard input of the command after --")
	cmd.ValidArgsFunction = completeSnapshot(g)
	cmd.RegisterFlagCompletionFunc("set", completeSets(g))
	return cmd
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse time %q (use RFC 3339, e.g. 2026-11-23T10:00:00Z, or \"2026-11-23 10:00\")", s)
}

func (f restoreFlags) filter() (repo.Filter, error) {
	flt := repo.Filter{Host: f.host, Set: f.set, Tags: f.tags}
	if f.at != "" {
		t, err := parseTime(f.at)
		if err != nil {
			return flt, usagef("--at: %v", err)
		}
		flt.At = t
	}
	return flt, nil
}

func runRestore(ctx context.Context, g *globals, ref string, f restoreFlags) error {
	if f.target == "" {
		return usagef("restore needs --target DIR")
	}
	flt, err := f.filter()
	if err != nil {
		return err
	}
	s, snap, err := g.openSnapshot(ctx, ref, flt)
	if err != nil {
		return err
	}
	defer s.Close()
	start := time.Now()
	progress := &restore.Progress{}
	total := snap.Stats.Bytes
	if len(f.includes) > 0 {
		total = 0 // a part of the snapshot, of unknown size
	}
	stop := g.out.meter("restore", restoreGauges(s.repo, "restore "+repo.ShortID(snap.ID), progress, total)...)
	res, err := restore.Run(ctx, s.repo, snap, restore.Options{Target: f.target, Includes: f.includes, Warn: g.out.warn}, progress)
	stop(err)
	var nf *restore.NotFoundError
	if errors.As(err, &nf) {
		note := "nothing was restored"
		if len(nf.Paths) < distinctPaths(f.includes) {
			note += " (the other --include paths are there)"
		}
		return notInSnapshot(err, "restore --include", snap, f.includes, note)
	}
	// Files (or directories) that cannot be verified did not stop the
	// restore: each is named here, then the summary counts them.
	var incomplete *restore.IncompleteError
	if errors.As(err, &incomplete) {
		for _, fl := range incomplete.Failed {
			if g.json {
				g.out.emit(map[string]any{"type": "failed", "path": fl.Path, "directory": fl.Dir, "message": fl.Err.Error()})
			} else {
				g.out.errorLine(fl.Err, "")
			}
		}
	} else if err != nil {
		return fmt.Errorf("snapshot %s: %w", repo.ShortID(snap.ID), err)
	}
	took := time.Since(start)
	served, failures := s.repo.Served()
	failovers := uint64(0)
	for _, st := range served {
		failovers += st.Failovers
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "snapshot": snap.ID, "target": f.target, "files": res.Files, "dirs": res.Dirs, "others": res.Others, "bytes": res.Bytes, "warnings": res.Warnings, "duration_seconds": took.Seconds(), "verified": incomplete == nil,
			"failed": failedCount(incomplete), "regions": served, "failovers": failovers, "failover_errors": failures})
	} else {
		g.out.textf("restored snapshot %s to %s: %d files, %d dirs, %s verified in %.1fs\n", repo.ShortID(snap.ID), f.target, res.Files, res.Dirs, humanBytes(res.Bytes), took.Seconds())
		if failovers > 0 {
			g.out.textf("%d chunk(s) came from another region because the preferred region lacked them or held them damaged\n", failovers)
		}
	}
	if incomplete != nil {
		return withHint(fmt.Errorf("restore of snapshot %s: restored %d files; %d could not be verified and were not restored into %s: %s: %w",
			repo.ShortID(snap.ID), res.Files, len(incomplete.Failed), f.target, failedPaths(incomplete.Failed), repo.ErrIntegrity),
			"what was restored is verified; run 'vaultbak check --read-data' to see all damage and 'vaultbak replicate status' for the state of each region")
	}
	if res.Warnings > 0 {
		return &warningsError{fmt.Sprintf("restore completed with %d warning(s)", res.Warnings)}
	}
	return nil
}

func failedCount(e *restore.IncompleteError) int {
	if e == nil {
		return 0
	}
	return len(e.Failed)
}

// failedPaths lists the paths of fs for a summary line: the first few, then
// how many more (each has its own line above).
func failedPaths(fs []restore.Failure) string {
	const shown = 5
	var b strings.Builder
	for i, f := range fs {
		if i == shown {
			fmt.Fprintf(&b, " and %d more", len(fs)-shown)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Path)
		if f.Dir {
			b.WriteString("/ (directory, nothing below it)")
		}
	}
	return b.String()
}

// distinctPaths counts the snapshot paths ps name, as restore reads them.
func distinctPaths(ps []string) int {
	seen := map[string]bool{}
	for _, p := range ps {
		seen[path.Clean("/"+p)] = true
	}
	return len(seen)
}

func runRestoreToCommand(ctx context.Context, g *globals, ref string, args []string, f restoreFlags) error {
	if f.target != "" || len(f.includes) > 0 {
		return usagef("--to-command excludes --target and --include")
	}
	flt, err := f.filter()
	if err != nil {
		return err
	}
	s, snap, err := g.openSnapshot(ctx, ref, flt)
	if err != nil {
		return err
	}
	defer s.Close()
	name, err := restore.StreamName(ctx, s.repo, snap)
	if err != nil {
		return withHint(usagef("snapshot %s: %v", repo.ShortID(snap.ID), err), "for a file snapshot use 'vaultbak dump SNAPSHOT PATH | CMD' or restore --target")
	}
	sink, err := startCommandSink(ctx, args, g.json)
	if err != nil {
		return err
	}
	start := time.Now()
	out := &countingWriter{w: sink}
	stop := g.out.meter("restore", append([]gauge{{
		name:  "restore " + repo.ShortID(snap.ID),
		done:  out.n.Load,
		total: func() int64 { return int64(snap.Stats.Bytes) },
	}}, servedGauges(s.repo)...)...)
	err = restore.Dump(ctx, s.repo, snap, name, out)
	stop(err)
	if err := sink.finish(err); err != nil {
		return fmt.Errorf("restore of snapshot %s into %s: %w", repo.ShortID(snap.ID), sink.name, err)
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "snapshot": snap.ID, "stream": name, "bytes": snap.Stats.Bytes, "duration_seconds": time.Since(start).Seconds(), "verified": true})
	}
	return nil
}
