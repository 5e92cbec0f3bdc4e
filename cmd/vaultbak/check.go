package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"vaultbak/repo"
)

func newCheckCmd(g *globals) *cobra.Command {
	var readData, seed string
	cmd := &cobra.Command{
		Use:   "check [--read-data[=PERCENT]] [--seed S]",
		Short: "Verify the repository in every region",
		Long: `Verify the repository in every region. Without any key: the SHA-256 of
every pack and index file and the signature of every manifest. With the
host credential: also that every indexed pack is present with its size in
every region. With --read-data and the recovery identity: also decrypt the
packs (all, or with --read-data=PERCENT that share of them, rounded up: at
least one) and verify every chunk against its keyed ID, and walk every
snapshot's trees. PERCENT is written after "=", with or without "%"
(--read-data=10%, --read-data=10). Each run picks its share at random, so
that scheduled checks of a share cover every pack over time; the seed is
printed, and --seed S picks the same packs again. The audit trail is
verified as by 'audit verify'.

Damage exits 4 naming the object and region; a region that merely lacks
objects another holds exits 3. Temporary files in a local region (left by
an interrupted write, or a running backup's pack in progress) are counted
on a warning line that leaves the exit code as it is: the next backup
removes those unchanged for a day.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && cmd.Flags().Changed("read-data") {
				if _, err := parsePercent(args[0]); err == nil {
					return usagef("check takes no arguments: write the percentage after =, as in --read-data=%s", args[0])
				}
			}
			return cobra.NoArgs(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), g, cmd.Flags().Changed("read-data"), readData, seed)
		},
	}
	cmd.Flags().StringVar(&readData, "read-data", "100", "decrypt and verify data: all packs, or (=PERCENT) that share of them, at least one")
	cmd.Flags().StringVar(&seed, "seed", "", "choose the packs --read-data=PERCENT reads with this seed (default: random, printed)")
	cmd.Flags().Lookup("read-data").NoOptDefVal = "100"
	return cmd
}

func runCheck(ctx context.Context, g *globals, readData bool, pct, seed string) error {
	percent := 100.0
	if readData {
		v, err := parsePercent(pct)
		if err != nil {
			return usagef("--read-data=%s: %v", pct, err)
		}
		percent = v
	}
	sampled := readData && percent < 100
	if seed != "" && !sampled {
		return usagef("--seed chooses the packs of --read-data=PERCENT below 100%%: give one, or leave out --seed")
	}
	if sampled && seed == "" {
		var b [8]byte
		rand.Read(b[:])
		seed = hex.EncodeToString(b[:])
	}
	need := needNone
	if readData {
		need = needRecovery
	}
	s, err := g.open(ctx, need)
	if err != nil {
		return err
	}
	defer s.Close()
	stop := g.out.progress(func() string { return "check: verifying…" })
	res, err := s.repo.Check(ctx, repo.CheckOptions{ReadData: readData, Percent: percent, Seed: seed})
	stop()
	if err != nil {
		return err
	}
	// The audit trail is verified too: a deleted record is damage.
	if _, err := s.auditTrail(ctx); err != nil {
		if !errors.Is(err, repo.ErrIntegrity) {
			return err
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			res.Problems = append(res.Problems, j.Unwrap()...)
		} else {
			res.Problems = append(res.Problems, err)
		}
	}
	for _, p := range res.Problems {
		if g.json {
			g.out.emit(map[string]any{"type": "problem", "message": p.Error()})
		} else {
			g.out.errorLine(p, "")
		}
	}
	for _, w := range res.Warnings {
		g.out.warn("repository", errors.New(w))
	}
	// Temporary files are no warning that counts (exit 3): no snapshot
	// references them, the next backup removes the stale ones, and a
	// fresh one may be the pack of a backup running now, which a check
	// run alongside it must not report as trouble.
	for _, st := range res.Strays {
		if g.json {
			g.out.emit(map[string]any{"type": "warning", "path": "region " + st.Region, "region": st.Region, "message": straysMessage(st),
				"temporary_files": st.Files, "temporary_bytes": st.Bytes, "stale_files": st.Stale, "stale_bytes": st.StaleBytes})
		} else {
			g.out.warn("region "+st.Region, errors.New(straysMessage(st)))
		}
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "packs": res.Packs, "bytes": res.Bytes, "blobs": res.Blobs, "snapshots": res.Snapshots, "problems": len(res.Problems), "warnings": len(res.Warnings), "read_data_percent": map[bool]float64{true: percent, false: 0}[readData],
			"packs_read": res.PacksRead, "packs_indexed": res.PacksIndexed, "seed": seed})
	} else {
		data := fmt.Sprintf("%d chunks decrypted and verified", res.Blobs)
		if readData {
			data = fmt.Sprintf("%d chunks in %d of %d packs decrypted and verified", res.Blobs, res.PacksRead, res.PacksIndexed)
		}
		if sampled {
			data += fmt.Sprintf(" (sample seed %s)", seed)
		}
		g.out.textf("checked %d region(s): %d pack copies (%s read), %d manifest copies, %s; %d problem(s)\n", len(s.repo.Regions()), res.Packs, humanBytes(uint64(res.Bytes)), res.Snapshots, data, len(res.Problems))
		if l := s.repo.Config().ObjectLock; l != nil {
			unlocked := ""
			if un := s.repo.Unlocked(); un != nil {
				unlocked = "; not locked: region(s) " + strings.Join(un, ", ") + " (local directories)"
			}
			g.out.textf("Object Lock: %s, %d day(s) from each write%s\n", l.Mode, l.Days, unlocked)
		}
	}
	if len(res.Problems) > 0 {
		return fmt.Errorf("check found %d problem(s): %w", len(res.Problems), repo.ErrIntegrity)
	}
	if len(res.Warnings) > 0 {
		return &warningsError{fmt.Sprintf("check passed with %d warning(s)", len(res.Warnings))}
	}
	return nil
}

// parsePercent reads the PERCENT of --read-data=PERCENT: a number in
// (0, 100], with or without a trailing "%".
func parsePercent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || !(v > 0 && v <= 100) { // NaN is neither
		return 0, errors.New("want a percentage in (0, 100], e.g. 10 or 10%")
	}
	return v, nil
}

// straysMessage says what the temporary files in a region are and which of
// them the next backup removes.
func straysMessage(st repo.RegionStrays) string {
	after := st.StaleAfter.String()
	if st.StaleAfter%time.Hour == 0 {
		after = fmt.Sprintf("%dh", st.StaleAfter/time.Hour)
	}
	files, them, are := "temporary files", "them", "are"
	if st.Files == 1 {
		files, them, are = "temporary file", "it", "is"
	}
	msg := fmt.Sprintf("%d %s (%s) left by an interrupted write, or being written by a running backup", st.Files, files, humanBytes(uint64(st.Bytes)))
	switch st.Stale {
	case 0:
		return msg + fmt.Sprintf("; a backup removes %s once unchanged for %s", them, after)
	case st.Files:
		return msg + fmt.Sprintf("; unchanged for over %s, %s %s removed by the next backup", after, them, are)
	}
	return msg + fmt.Sprintf("; %d of them (%s), unchanged for over %s, are removed by the next backup", st.Stale, humanBytes(uint64(st.StaleBytes)), after)
}
