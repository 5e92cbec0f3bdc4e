package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vaultbak/backup"
	"vaultbak/repo"
)

type backupFlags struct {
	tags, excludes []string
	set            string
	strict         bool
	stdin          bool
	stdinName      string
	fromCommand    bool
	metrics        string
	notify         string
}

func newBackupCmd(g *globals) *cobra.Command {
	var f backupFlags
	cmd := &cobra.Command{
		Use:   "backup PATH... | --stdin --stdin-filename NAME | --stdin-filename NAME --stdin-from-command -- CMD ARG...",
		Short: "Back up files and directories into a new snapshot",
		Long: `Back up files and directories into a new snapshot, signed by this host.
Needs only the host credential. Unchanged files are skipped by their
metadata. An unreadable file is a warning (exit 3) unless --strict.

Exclude patterns: a pattern without a slash matches an entry's name at any
depth ("*.tmp"); one with a slash matches an absolute path and everything
below it ("/home/*/.cache").`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.fromCommand {
				dash := cmd.ArgsLenAtDash()
				if dash != 0 || len(args) == 0 {
					return usagef("--stdin-from-command needs the command after --, e.g. backup --stdin-filename db.sql --stdin-from-command -- pg_dump mydb")
				}
			}
			ctx, start := cmd.Context(), time.Now()
			out := &backupOutcome{set: f.set}
			err := runBackup(ctx, g, args, f, out)
			return afterBackup(ctx, g, f, out, err, time.Since(start))
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.tags, "tag", nil, "tag the snapshot (repeatable)")
	fl.StringArrayVar(&f.excludes, "exclude", nil, "leave out matching paths (repeatable)")
	fl.StringVar(&f.set, "set", "", "back up this backup set of the config (its paths, excludes, tags and regions), or name the set the snapshot belongs to")
	fl.BoolVar(&f.strict, "strict", false, "fail instead of warning on an unreadable file")
	fl.BoolVar(&f.stdin, "stdin", false, "back up standard input as one file named --stdin-filename")
	fl.StringVar(&f.stdinName, "stdin-filename", "", "file name for a --stdin or --stdin-from-command backup")
	fl.BoolVar(&f.fromCommand, "stdin-from-command", false, "back up the standard output of the command after --; its failure commits nothing")
	fl.StringVar(&f.metrics, "metrics", "", "write a Prometheus textfile (node_exporter textfile collector) to FILE")
	fl.StringVar(&f.notify, "notify-command", "", "run this shell command afterwards with the JSON summary on stdin and VAULTBAK_EXIT_CODE set (default: notify_command in the config)")
	cmd.RegisterFlagCompletionFunc("set", completeSets(g))
	return cmd
}

// afterBackup writes the metrics textfile and runs the notify command of
// a backup that ended with err.
func afterBackup(ctx context.Context, g *globals, f backupFlags, out *backupOutcome, err error, took time.Duration) error {
	code := exitCode(ctx, err)
	if f.metrics != "" {
		if merr := writeBackupMetrics(f.metrics, out, code, took); merr != nil {
			g.out.warn(f.metrics, fmt.Errorf("metrics not written: %w", merr))
			if err == nil {
				err = &warningsError{fmt.Sprintf("the snapshot was saved, but the metrics textfile was not written: %v", merr)}
				code = exitWarnings
			}
		}
	}
	summary := out.summary
	if summary == nil {
		summary = map[string]any{"type": "summary", "host": out.host, "set": out.set}
	}
	summary["command"] = "backup"
	summary["exit_code"] = code
	if err != nil {
		summary["error"] = err.Error()
	}
	notify(ctx, g, notifyCommand(f.notify, out.cfg), out.cfg, summary, code)
	return err
}

// backupConfig loads the config as this backup sees it: with --set NAME of
// a configured set, its regions only, its paths (unless PATHs are given),
// and its excludes and tags added to the flags'.
func backupConfig(g *globals, paths []string, f *backupFlags, out *backupOutcome) (*fileConfig, []string, error) {
	cfg, err := loadConfig(g)
	if err != nil {
		return nil, nil, err
	}
	out.cfg = cfg
	if f.set == "" || len(cfg.Sets) == 0 {
		return cfg, paths, nil
	}
	sc, err := cfg.set(f.set)
	if err != nil {
		return nil, nil, err
	}
	if len(paths) == 0 && !f.stdin && !f.fromCommand {
		if len(sc.Paths) == 0 {
			return nil, nil, usagef("backup set %s lists no paths in the config file %s: give PATHs or add 'paths:'", sc.Name, cfg.path)
		}
		for _, p := range sc.Paths {
			paths = append(paths, cfg.resolve(p))
		}
	}
	f.excludes = append(append([]string(nil), sc.Excludes...), f.excludes...)
	f.tags = append(append([]string(nil), sc.Tags...), f.tags...)
	return cfg.only(sc.Regions), paths, nil
}

func runBackup(ctx context.Context, g *globals, paths []string, f backupFlags, out *backupOutcome) error {
	cfg, paths, err := backupConfig(g, paths, &f, out)
	if err != nil {
		return err
	}
	if f.stdin || f.fromCommand {
		return runBackupStdin(ctx, g, cfg, paths, f, out)
	}
	if len(paths) == 0 {
		return usagef("backup needs at least one PATH (or --stdin)")
	}
	absPaths := make([]string, len(paths))
	for i, p := range paths {
		var err error
		if absPaths[i], err = filepath.Abs(p); err != nil {
			return usagef("%s: %v", p, err)
		}
	}
	b, err := beginBackup(ctx, g, cfg, out)
	if err != nil {
		return err
	}
	defer b.end()
	s, r, dir, head, headID := b.s, b.s.repo, b.dir, b.head, b.headID
	cachePath := cacheFile(dir, absPaths, f.set)
	start := time.Now()
	progress := &backup.Progress{}
	excludes := append(append([]string(nil), s.cfg.Excludes...), f.excludes...)
	prev := readFileCache(cachePath)
	stop := func(error) {}
	if g.out.progressShown() {
		mctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop = g.out.meter("backup", backupGauges(mctx, r, absPaths, excludes, prev, progress)...)
	}
	res, err := backup.Run(ctx, r, backup.Options{
		Paths:    absPaths,
		Excludes: excludes,
		Tags:     f.tags,
		Set:      f.set,
		Cache:    prev,
		Strict:   f.strict,
		Warn:     g.out.warn,
		Quorum:   s.cfg.quorum(),
		HeadSeq:  head,
		HeadID:   headID,
		HeadHeld: b.held,
	}, progress)
	stop(err)
	var pe *fs.PathError
	if errors.As(err, &pe) && errors.Is(err, fs.ErrNotExist) && slices.Contains(absPaths, pe.Path) {
		return withHint(err, "check the path: every path given must exist; nothing was committed")
	}
	if err != nil {
		return err
	}
	return finishBackup(g, dir, res, cachePath, progress, time.Since(start), out)
}

// backupRun is what every backup sets up before it reads anything: the
// open repository, this host's state directory and lock, and the chain
// head the new snapshot follows (checked against the high-water mark).
type backupRun struct {
	s      *session
	dir    string
	head   uint64
	headID string
	held   map[string]uint64 // the high-water mark's, for the new manifest's PrevIn
	unlock func()
}

func beginBackup(ctx context.Context, g *globals, cfg *fileConfig, out *backupOutcome) (*backupRun, error) {
	s, err := g.openConfig(ctx, cfg, needHost)
	if err != nil {
		return nil, err
	}
	b := &backupRun{s: s, unlock: func() {}}
	host := s.repo.Host().Host
	out.host = host
	for _, r := range cfg.Regions {
		out.regions = append(out.regions, r.Name)
	}
	if b.dir, err = stateDir(s.cfg, s.repo.Config().ID, host); err == nil {
		b.unlock, err = lockHost(b.dir, host)
	}
	// A set pinned to some regions writes there only, but the host's
	// chain runs through all its snapshots: its head is read from every
	// region.
	chain := s
	if err == nil && out.cfg != nil && len(cfg.Regions) < len(out.cfg.Regions) {
		chain, err = g.openConfig(ctx, out.cfg, needHost)
	}
	if err == nil {
		var snaps []*repo.Snapshot
		if snaps, err = chain.repo.Snapshots(ctx); err == nil {
			var hw highWater
			var away []string
			if hw, err = readHighWater(b.dir); err == nil {
				b.head, b.headID, away, err = chainHead(snaps, host, hw, chain.repo.Listed())
				b.held = hw.Held
			}
			if err == nil && away != nil {
				g.out.warn("host "+host, awayWarning(hw, away, "the new snapshot follows it"))
			}
		}
	}
	if err != nil {
		b.end()
		return nil, err
	}
	return b, nil
}

func (b *backupRun) end() {
	b.unlock()
	b.s.Close()
}

func finishBackup(g *globals, dir string, res *backup.Result, cachePath string, progress *backup.Progress, took time.Duration, out *backupOutcome) error {
	snap := res.Snapshot
	g.auditTarget = snap.ID
	if err := writeHighWater(dir, markOf(snap)); err != nil {
		return fmt.Errorf("snapshot %s committed, but recording it locally failed: %w", repo.ShortID(snap.ID), err)
	}
	if res.Cache != nil && cachePath != "" {
		if err := writeFileCache(cachePath, res.Cache); err != nil {
			g.out.warn(cachePath, fmt.Errorf("file cache not saved (the next backup reads every file): %w", err))
		}
	}
	st := snap.Stats
	lagging := make([]string, 0, len(res.Lagging))
	for name := range res.Lagging {
		lagging = append(lagging, name)
	}
	sort.Strings(lagging)
	for _, name := range lagging {
		g.out.warn("region "+name, fmt.Errorf("lags: %v", res.Lagging[name]))
	}
	out.lagging = lagging
	out.summary = map[string]any{
		"type": "summary", "snapshot": snap.ID, "host": snap.Host, "set": snap.Set, "time": snap.Time, "seq": snap.Seq,
		"files": st.Files, "dirs": st.Dirs, "bytes": st.Bytes, "read_bytes": progress.ReadBytes.Load(),
		"skipped_files": progress.Skipped.Load(), "added_bytes": st.AddedBytes, "new_blobs": st.NewBlobs,
		"warnings": res.Warnings, "duration_seconds": took.Seconds(), "lagging_regions": lagging,
	}
	if g.json {
		g.out.emit(out.summary)
	} else {
		g.out.textf("snapshot %s saved: %d files, %d dirs, %s; %s added in %.1fs\n", repo.ShortID(snap.ID), st.Files, st.Dirs, humanBytes(st.Bytes), humanBytes(st.AddedBytes), took.Seconds())
	}
	if len(lagging) > 0 {
		return withHint(&warningsError{fmt.Sprintf("snapshot %s committed in a quorum of regions, but region(s) %s lag", repo.ShortID(snap.ID), strings.Join(lagging, ", "))}, "when the region is back, run 'vaultbak replicate sync' to heal it")
	}
	if res.Warnings > 0 {
		return &warningsError{fmt.Sprintf("snapshot %s saved with %d warning(s): see the lines above", repo.ShortID(snap.ID), res.Warnings)}
	}
	return nil
}

func runBackupStdin(ctx context.Context, g *globals, cfg *fileConfig, args []string, f backupFlags, out *backupOutcome) error {
	if f.stdin && f.fromCommand {
		return usagef("--stdin and --stdin-from-command exclude each other")
	}
	if f.stdin && len(args) > 0 {
		return usagef("backup --stdin takes no PATH arguments")
	}
	if f.stdinName == "" {
		return usagef("a stream backup needs --stdin-filename NAME")
	}
	b, err := beginBackup(ctx, g, cfg, out)
	if err != nil {
		return err
	}
	defer b.end()
	s, r, dir, head, headID := b.s, b.s.repo, b.dir, b.head, b.headID
	start := time.Now()
	progress := &backup.Progress{}
	var src io.Reader = os.Stdin
	var cmdSrc *commandSource
	if f.fromCommand {
		if cmdSrc, err = startCommandSource(ctx, args); err != nil {
			return err
		}
		src = cmdSrc
	}
	stop := func(error) {}
	if g.out.progressShown() {
		in := &countingReader{r: src}
		src = in
		stop = g.out.meter("backup", streamGauges(r, f.stdinName, in.n.Load)...)
	}
	res, err := backup.Stream(ctx, r, f.stdinName, src, backup.Options{Tags: f.tags, Set: f.set, Quorum: s.cfg.quorum(), HeadSeq: head, HeadID: headID, HeadHeld: b.held}, progress)
	stop(err)
	if cmdSrc != nil {
		cmdSrc.abort()
	}
	if err != nil {
		return err
	}
	return finishBackup(g, dir, res, "", progress, time.Since(start), out)
}
