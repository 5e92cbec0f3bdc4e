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
	var verify bool
	status := &cobra.Command{
		Use:   "status [--verify]",
		Short: "Show what each region lacks or holds damaged, and each region's newest snapshot per host",
		Long: `Compare every region with the union of all regions: objects a region lacks,
copies that are damaged, and each host's newest snapshot in each region.
When copies of an object differ in size, every copy is read and verified
without keys (packs, index and key files by their SHA-256, manifests and
audit records by their signature and ID): the region whose copy fails is
the damaged one. With --verify every copy of every object in every region
is read and verified, which finds damage that leaves the size unchanged.
Exits 0 only when all regions agree, 3 when some region lags or does not
answer, 4 when a copy is damaged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplicate(cmd.Context(), g, false, verify)
		},
	}
	status.Flags().BoolVar(&verify, "verify", false, "read and verify every object in every region (keyless; finds damage that keeps the size)")
	cmd.AddCommand(status)
	sync := &cobra.Command{
		Use:   "sync [--verify]",
		Short: "Copy to every region what it lacks or holds damaged, verified, from a region that holds it intact",
		Long: `Copy to every region the objects it lacks, and replace every damaged copy
that status finds, from a region whose copy verifies (packs, index and key
files by hash, manifests and audit records by hash and signature), in
commit order. A copy that verifies is never overwritten. With --verify,
every copy in every region is read first, as by 'status --verify'. When
no region holds an intact copy of an object, sync names it and exits 4.
Needs no key: it moves ciphertext only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplicate(cmd.Context(), g, true, verify)
		},
	}
	sync.Flags().BoolVar(&verify, "verify", false, "read and verify every object in every region before copying (keyless)")
	cmd.AddCommand(sync)
	return cmd
}

func runReplicate(ctx context.Context, g *globals, sync, verify bool) error {
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	regions, err := cfg.openRegions(ctx, createNothing)
	if err != nil {
		return err
	}
	var done, total atomic.Int64
	stop := g.out.progress(func() string {
		return fmt.Sprintf("replicate: verified %d of %d object copies…", done.Load(), total.Load())
	})
	st, err := replicate.Inspect(ctx, regions, replicate.Options{Verify: verify, Progress: func(d, t int) {
		done.Store(int64(d))
		total.Store(int64(t))
	}})
	stop()
	if err != nil {
		return err
	}
	if sync {
		copied := make(map[string]*atomic.Int64, len(regions))
		var gauges []gauge
		for _, rs := range st.Regions {
			n, total := &atomic.Int64{}, rs.MissingBytes+rs.DamagedBytes
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
						sum += rs.MissingBytes + rs.DamagedBytes
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
			g.out.emit(map[string]any{"type": "sync", "copied": res.Copied + res.Replaced, "replaced": res.Replaced, "bytes": res.Bytes, "problems": len(res.Problems)})
		} else {
			replaced := ""
			if res.Replaced > 0 {
				replaced = fmt.Sprintf(" (%d of them in place of damaged copies)", res.Replaced)
			}
			g.out.textf("copied %d object(s), %s%s\n", res.Copied+res.Replaced, humanBytes(uint64(res.Bytes)), replaced)
		}
		if len(res.Problems) > 0 {
			return fmt.Errorf("%d object(s) could not be healed: %w", len(res.Problems), repo.ErrIntegrity)
		}
		// Listing again confirms that every region now holds every object
		// with the size of an intact copy; the copies written were verified
		// before they were written, so they are not read again.
		if st, err = replicate.Inspect(ctx, regions, replicate.Options{}); err != nil {
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
		case len(rs.Missing) > 0 || len(rs.Damaged) > 0:
			var parts []string
			if len(rs.Missing) > 0 {
				parts = append(parts, fmt.Sprintf("lags: lacks %d object(s) (%s)", len(rs.Missing), humanBytes(uint64(rs.MissingBytes))))
			}
			if len(rs.Damaged) > 0 {
				parts = append(parts, fmt.Sprintf("damaged: %d object(s) fail verification", len(rs.Damaged)))
			}
			state = strings.Join(parts, ", ")
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
			m := map[string]any{"type": "region", "region": rs.Name, "objects": rs.Objects, "bytes": rs.Bytes, "missing": len(rs.Missing), "missing_bytes": rs.MissingBytes, "damaged": len(rs.Damaged), "size_mismatch": len(rs.SizeMismatch), "heads": rs.Heads, "in_sync": rs.Err == nil && len(rs.Missing) == 0 && len(rs.Damaged) == 0}
			if rs.Err != nil {
				m["error"] = rs.Err.Error()
				delete(m, "heads") // what it holds is unknown, not nothing
			}
			g.out.emit(m)
			continue
		}
		if rs.Err != nil {
			// A region that did not answer holds what it holds: no counts
			// or heads of zero as though it were empty.
			g.out.textf("region %s: %s\n", rs.Name, state)
			continue
		}
		g.out.textf("region %s: %d objects, %s; %s; heads: %s\n", rs.Name, rs.Objects, humanBytes(uint64(rs.Bytes)), state, strings.Join(heads, ", "))
	}
	for _, d := range st.Damage {
		g.out.errorLine(d, "")
	}
	for _, p := range st.Problems {
		g.out.errorLine(p, "")
	}
	if g.json {
		damaged := 0
		for _, rs := range st.Regions {
			damaged += len(rs.Damaged)
		}
		g.out.emit(map[string]any{"type": "summary", "in_sync": st.InSync(), "heads": st.Heads, "damaged": damaged, "problems": len(st.Problems)})
	}
	switch {
	case len(st.Problems) > 0:
		return fmt.Errorf("%d object(s) damaged in every region that holds them: %w", len(st.Problems), repo.ErrIntegrity)
	case len(st.Damage) > 0:
		return withHint(fmt.Errorf("%d damaged copy(ies) that another region holds intact: %w", len(st.Damage), repo.ErrIntegrity), "run 'vaultbak replicate sync' to replace them with the copies that verify")
	case !st.InSync():
		return withHint(&warningsError{"regions disagree: some region lags or did not answer"}, "run 'vaultbak replicate sync' to copy what lagging regions lack")
	}
	return nil
}
