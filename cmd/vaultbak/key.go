package main

import (
	"context"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key list | add-recovery R | remove-recovery R",
		Short: "List and rotate the repository's recovery recipients",
		Long: `List and rotate the recovery recipients. add-recovery and remove-recovery
need the recovery identity: every pack's age header is rewrapped to the new
set of recipients (the data itself is copied, never re-encrypted), the index
and the repository secrets are sealed anew, and the old copies are deleted.
After remove-recovery, the removed identity opens nothing that is stored.
Run them while no backup runs.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the recovery recipients",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.open(cmd.Context(), needNone)
			if err != nil {
				return err
			}
			defer s.Close()
			for _, r := range s.repo.Config().Recovery {
				if g.json {
					g.out.emit(map[string]any{"type": "recovery_recipient", "recipient": r})
				} else {
					g.out.textf("%s\n", r)
				}
			}
			if g.json {
				g.out.emit(map[string]any{"type": "summary", "recovery_recipients": len(s.repo.Config().Recovery), "kind": s.repo.Config().KeyKind})
			}
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "add-recovery RECIPIENT",
		Short: "Add a recovery recipient (rewraps every pack header)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeyChange(cmd.Context(), g, args[0], true)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "remove-recovery RECIPIENT",
		Short: "Remove a recovery recipient (rewraps every pack header)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKeyChange(cmd.Context(), g, args[0], false)
		},
	})
	return cmd
}

func runKeyChange(ctx context.Context, g *globals, recipient string, add bool) error {
	recipient = strings.TrimSpace(recipient)
	s, err := g.open(ctx, needRecovery)
	if err != nil {
		return err
	}
	defer s.Close()
	cur := s.repo.Config().Recovery
	var next []string
	switch {
	case add && slices.Contains(cur, recipient):
		return usagef("%s is already a recovery recipient", recipient)
	case add:
		next = append(slices.Clone(cur), recipient)
	case !slices.Contains(cur, recipient):
		return withHint(usagef("%s is not a recovery recipient of this repository", recipient), "list them with 'vaultbak key list'")
	case len(cur) == 1:
		return withHint(usagef("refusing to remove the last recovery recipient: nothing could be restored"), "add the new one first with 'vaultbak key add-recovery'")
	default:
		next = slices.DeleteFunc(slices.Clone(cur), func(r string) bool { return r == recipient })
	}
	stop := g.out.progress(func() string { return "rewrapping pack headers…" })
	err = s.repo.SetRecovery(ctx, next, nil)
	stop()
	if err != nil {
		return err
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "recovery_recipients": next})
		return nil
	}
	verb := "added"
	if !add {
		verb = "removed"
	}
	g.out.textf("%s recovery recipient; the repository now has %d: every pack header was rewrapped\n", verb, len(next))
	return nil
}
