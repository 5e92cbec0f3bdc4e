package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"vaultbak/repo"
	"vaultbak/restore"
)

func newDumpCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dump SNAPSHOT|latest PATH",
		Short: "Write one file of a snapshot to standard output, verified",
		Long: `Write one file of a snapshot to standard output. Every chunk is verified
before it is written and the whole content at the end; a failed
verification exits 4. A reader at the other end of a pipe sees only an
early end of input, though: to load a stream into a database use
'restore --to-command', which stops the loader when verification fails.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDump(cmd.Context(), g, args[0], args[1])
		},
	}
	cmd.ValidArgsFunction = completeSnapshot(g)
	return cmd
}

func runDump(ctx context.Context, g *globals, ref, p string) error {
	s, snap, err := g.openSnapshot(ctx, ref, repo.Filter{})
	if err != nil {
		return err
	}
	defer s.Close()
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	if err := restore.Dump(ctx, s.repo, snap, p, w); err != nil {
		w.Flush()
		if errors.Is(err, restore.ErrNotFile) {
			id := repo.ShortID(snap.ID)
			return withHint(usagef("dump: snapshot %s: %v: dump writes one file's content", id, err), fmt.Sprintf("restore it with 'vaultbak restore %s --include %s --target DIR', or list it with 'vaultbak ls %s %s'", id, p, id, p))
		}
		return notInSnapshot(err, "dump", snap, []string{p}, "")
	}
	return w.Flush()
}
