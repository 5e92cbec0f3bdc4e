package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"vaultbak/repo"
)

func newSnapshotsCmd(g *globals) *cobra.Command {
	var host, set string
	var tags []string
	cmd := &cobra.Command{
		Use:   "snapshots [--host H] [--tag T]",
		Short: "List snapshots, verified, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshots(cmd.Context(), g, repo.Filter{Host: host, Tags: tags, Set: set})
		},
	}
	cmd.Flags().StringVar(&host, "host", "", "only snapshots of this host")
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "only snapshots with this tag (repeatable: all must match)")
	cmd.Flags().StringVar(&set, "set", "", "only snapshots of this backup set")
	cmd.RegisterFlagCompletionFunc("set", completeSets(g))
	return cmd
}

func runSnapshots(ctx context.Context, g *globals, f repo.Filter) error {
	s, err := g.open(ctx, needNone)
	if err != nil {
		return err
	}
	defer s.Close()
	all, err := s.snapshots(ctx)
	if err != nil {
		return err
	}
	// File counts and sizes are sealed: shown only with the identity.
	if err := s.repo.LoadContentStats(ctx, all...); err != nil {
		return err
	}
	var tw *tabwriter.Writer
	if !g.json && !g.quiet {
		tw = tabwriter.NewWriter(g.out.w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTIME\tHOST\tSET\tTAGS\tFILES\tSIZE")
	}
	n := 0
	for _, snap := range all {
		if !f.Match(snap) {
			continue
		}
		n++
		if g.json {
			g.out.emit(map[string]any{"type": "snapshot", "id": snap.ID, "time": snap.Time, "host": snap.Host, "set": snap.Set, "tags": snap.Tags, "seq": snap.Seq, "prev": snap.Prev, "stats": snap.Stats})
			continue
		}
		if tw != nil {
			files, size := "-", "-"
			if snap.StatsKnown {
				files, size = fmt.Sprint(snap.Stats.Files), humanBytes(snap.Stats.Bytes)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", repo.ShortID(snap.ID), snap.Time.Local().Format("2006-01-02 15:04:05"), snap.Host, snap.Set, strings.Join(snap.Tags, ","), files, size)
		}
	}
	if tw != nil {
		tw.Flush()
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "snapshots": n})
	}
	return nil
}
