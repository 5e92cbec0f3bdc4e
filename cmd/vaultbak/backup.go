package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
			return runBackup(cmd.Context(), g, args, f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.tags, "tag", nil, "tag the snapshot (repeatable)")
	fl.StringArrayVar(&f.excludes, "exclude", nil, "leave out matching paths (repeatable)")
	fl.StringVar(&f.set, "set", "", "name of the backup set the snapshot belongs to")
	fl.BoolVar(&f.strict, "strict", false, "fail instead of warning on an unreadable file")
	fl.BoolVar(&f.stdin, "stdin", false, "back up standard input as one file named --stdin-filename")
	fl.StringVar(&f.stdinName, "stdin-filename", "", "file name for a --stdin or --stdin-from-command backup")
	fl.BoolVar(&f.fromCommand, "stdin-from-command", false, "back up the standard output of the command after --; its failure commits nothing")
	return cmd
}

func runBackup(ctx context.Context, g *globals, paths []string, f backupFlags) error {
	if f.stdin || f.fromCommand {
		return runBackupStdin(ctx, g, paths, f)
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
	b, err := beginBackup(ctx, g)
	if err != nil {
		return err
	}
	defer b.end()
	s, r, dir, head, headID := b.s, b.s.repo, b.dir, b.head, b.headID
	cachePath := cacheFile(dir, absPaths, f.set)
	start := time.Now()
	progress := &backup.Progress{}
	excludes := append(append([]string(nil), s.cfg.Excludes...), f.excludes...)
	stop := func(error) {}
	if g.out.progressShown() {
		mctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop = g.out.meter("backup", backupGauges(mctx, r, absPaths, excludes, progress)...)
	}
	res, err := backup.Run(ctx, r, backup.Options{
		Paths:    absPaths,
		Excludes: excludes,
		Tags:     f.tags,
		Set:      f.set,
		Cache:    readFileCache(cachePath),
		Strict:   f.strict,
		Warn:     g.out.warn,
		Quorum:   s.cfg.quorum(),
		HeadSeq:  head,
		HeadID:   headID,
	}, progress)
	stop(err)
	if err != nil {
		return err
	}
	return finishBackup(g, dir, res, cachePath, progress, time.Since(start))
}

// backupRun is what every backup sets up before it reads anything: the
// open repository, this host's state directory and lock, and the chain
// head the new snapshot follows (checked against the high-water mark).
type backupRun struct {
	s      *session
	dir    string
	head   uint64
	headID string
	unlock func()
}

func beginBackup(ctx context.Context, g *globals) (*backupRun, error) {
	s, err := g.open(ctx, needHost)
	if err != nil {
		return nil, err
	}
	b := &backupRun{s: s, unlock: func() {}}
	host := s.repo.Host().Host
	if b.dir, err = stateDir(s.cfg, s.repo.Config().ID, host); err == nil {
		b.unlock, err = lockHost(b.dir, host)
	}
	if err == nil {
		var snaps []*repo.Snapshot
		if snaps, err = s.repo.Snapshots(ctx); err == nil {
			var hw highWater
			if hw, err = readHighWater(b.dir); err == nil {
				b.head, b.headID, err = chainHead(snaps, host, hw)
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

func finishBackup(g *globals, dir string, res *backup.Result, cachePath string, progress *backup.Progress, took time.Duration) error {
	snap := res.Snapshot
	g.auditTarget = snap.ID
	if err := writeHighWater(dir, highWater{Seq: snap.Seq, ID: snap.ID}); err != nil {
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
	if g.json {
		g.out.emit(map[string]any{
			"type": "summary", "snapshot": snap.ID, "host": snap.Host, "time": snap.Time, "seq": snap.Seq,
			"files": st.Files, "dirs": st.Dirs, "bytes": st.Bytes, "read_bytes": progress.ReadBytes.Load(),
			"skipped_files": progress.Skipped.Load(), "added_bytes": st.AddedBytes, "new_blobs": st.NewBlobs,
			"warnings": res.Warnings, "duration_seconds": took.Seconds(), "lagging_regions": lagging,
		})
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

func runBackupStdin(ctx context.Context, g *globals, args []string, f backupFlags) error {
	if f.stdin && f.fromCommand {
		return usagef("--stdin and --stdin-from-command exclude each other")
	}
	if f.stdin && len(args) > 0 {
		return usagef("backup --stdin takes no PATH arguments")
	}
	if f.stdinName == "" {
		return usagef("a stream backup needs --stdin-filename NAME")
	}
	b, err := beginBackup(ctx, g)
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
		stop = g.out.meter("backup", streamGauges(r, f.stdinName, progress)...)
	}
	res, err := backup.Stream(ctx, r, f.stdinName, src, backup.Options{Tags: f.tags, Set: f.set, Quorum: s.cfg.quorum(), HeadSeq: head, HeadID: headID}, progress)
	stop(err)
	if cmdSrc != nil {
		cmdSrc.abort()
	}
	if err != nil {
		return err
	}
	return finishBackup(g, dir, res, "", progress, time.Since(start))
}
