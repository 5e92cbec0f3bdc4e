package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"

	"vaultbak/replicate"
	"vaultbak/repo"
)

func newReplicateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replicate status | sync",
		Short: "Compare the regions, and heal the ones that lag (no key needed)",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show what each region lacks and each region's newest snapshot per host",
		Long: `Compare every region with the union of all regions: objects a region lacks,
objects whose size differs, and each host's newest snapshot in each region.
Exits 0 only when all regions agree, 3 when some region lags or does not
answer, 4 when a manifest fails verification.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplicate(cmd.Context(), g, false)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "sync",
		Short: "Copy to every region what it lacks, verified, from a region that holds it",
		Long: `Copy to every region the objects it lacks from a region holding an intact
copy (packs, index and key files verified by hash, manifests by hash and
signature), in commit order. Needs no key: it moves ciphertext only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplicate(cmd.Context(), g, true)
		},
	})
	return cmd
}

func runReplicate(ctx context.Context, g *globals, sync bool) error {
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	regions, err := cfg.openRegions(ctx, false)
	if err != nil {
		return err
	}
	st, err := replicate.Inspect(ctx, regions)
	if err != nil {
		return err
	}
	if sync {
		copied := make(map[string]*atomic.Int64, len(regions))
		var gauges []gauge
		for _, rs := range st.Regions {
			n, total := &atomic.Int64{}, rs.MissingBytes
			copied[rs.Name] = n
			if rs.Err == nil && total > 0 {
				gauges = append(gauges, gauge{name: rs.Name, region: true, done: n.Load, total: func() int64 { return total }})
			}
		}
		if len(gauges) > 0 {
			gauges = append([]gauge{{name: "replicate sync", done: func() int64 {
				var sum int64
				for _, n := range copied {
					sum += n.Load()
				}
				return sum
			}, total: func() int64 {
				var sum int64
				for _, rs := range st.Regions {
					if rs.Err == nil {
						sum += rs.MissingBytes
					}
				}
				return sum
			}}}, gauges...)
		}
		stop := g.out.meter("replicate sync", gauges...)
		res, err := replicate.Sync(ctx, regions, st, func(region string, n int64) { copied[region].Add(n) })
		stop(err)
		if err != nil {
			return err
		}
		for _, p := range res.Problems {
			g.out.errorLine(p, "")
		}
		if g.json {
			g.out.emit(map[string]any{"type": "sync", "copied": res.Copied, "bytes": res.Bytes, "problems": len(res.Problems)})
		} else {
			g.out.textf("copied %d object(s), %s\n", res.Copied, humanBytes(uint64(res.Bytes)))
		}
		if len(res.Problems) > 0 {
			return fmt.Errorf("%d object(s) could not be healed: %w", len(res.Problems), repo.ErrIntegrity)
		}
		if st, err = replicate.Inspect(ctx, regions); err != nil {
			return err
		}
	}
	return reportStatus(g, st)
}

func reportStatus(g *globals, st *replicate.Status) error {
	hosts := make([]string, 0, len(st.Heads))
	for h := range st.Heads {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, rs := range st.Regions {
		state := "in sync"
		switch {
		case rs.Err != nil:
			state = "did not answer: " + rs.Err.Error()
		case len(rs.Missing) > 0 || len(rs.SizeMismatch) > 0:
			state = fmt.Sprintf("lags: lacks %d object(s) (%s)", len(rs.Missing), humanBytes(uint64(rs.MissingBytes)))
			if len(rs.SizeMismatch) > 0 {
				state += fmt.Sprintf(", %d object(s) differ in size", len(rs.SizeMismatch))
			}
		}
		var heads []string
		for _, h := range hosts {
			mark := ""
			if rs.Heads[h] < st.Heads[h] {
				mark = fmt.Sprintf(" (behind #%d)", st.Heads[h])
			}
			heads = append(heads, fmt.Sprintf("%s #%d%s", h, rs.Heads[h], mark))
		}
		if g.json {
			m := map[string]any{"type": "region", "region": rs.Name, "objects": rs.Objects, "bytes": rs.Bytes, "missing": len(rs.Missing), "missing_bytes": rs.MissingBytes, "size_mismatch": len(rs.SizeMismatch), "heads": rs.Heads, "in_sync": rs.Err == nil && len(rs.Missing) == 0 && len(rs.SizeMismatch) == 0}
			if rs.Err != nil {
				m["error"] = rs.Err.Error()
			}
			g.out.emit(m)
			continue
		}
		g.out.textf("region %s: %d objects, %s; %s; heads: %s\n", rs.Name, rs.Objects, humanBytes(uint64(rs.Bytes)), state, strings.Join(heads, ", "))
	}
	for _, p := range st.Problems {
		g.out.errorLine(p, "")
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "in_sync": st.InSync(), "heads": st.Heads, "problems": len(st.Problems)})
	}
	switch {
	case len(st.Problems) > 0:
		return fmt.Errorf("%d manifest(s) fail verification: %w", len(st.Problems), repo.ErrIntegrity)
	case !st.InSync():
		return withHint(&warningsError{"regions disagree: some region lags or did not answer"}, "run 'vaultbak replicate sync' to copy what lagging regions lack")
	}
	return nil
}
