package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"vaultbak/repo"
	"vaultbak/restore"
)

func newLsCmd(g *globals) *cobra.Command {
	var long bool
	cmd := &cobra.Command{
		Use:   "ls SNAPSHOT [PATH]",
		Short: "List the files of a snapshot (needs the recovery identity)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "/"
			if len(args) == 2 {
				p = args[1]
			}
			return runLs(cmd.Context(), g, args[0], p, long)
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show type, mode, size and time")
	cmd.ValidArgsFunction = completeSnapshot(g)
	return cmd
}

func runLs(ctx context.Context, g *globals, ref, under string, long bool) error {
	s, snap, err := g.openSnapshot(ctx, ref, repo.Filter{})
	if err != nil {
		return err
	}
	defer s.Close()
	start, err := restore.Find(ctx, s.repo, snap.Tree, under)
	if err != nil {
		return notInSnapshot(err, "ls", snap, []string{under}, "")
	}
	count := 0
	show := func(p string, n *repo.Node) error {
		count++
		if g.json {
			m := map[string]any{"type": "node", "path": p, "node_type": n.Type, "mode": n.Mode, "size": n.Size, "mtime": time.Unix(0, n.MTime).UTC(), "uid": n.UID, "gid": n.GID}
			if !utf8.ValidString(p) {
				m["path_bytes"] = []byte(p)
			}
			if n.LinkTarget != nil {
				m["link_target"] = string(n.LinkTarget)
			}
			g.out.emit(m)
			return nil
		}
		if long {
			g.out.textf("%s %10d %s %s\n", fs.FileMode(n.Mode&0o777)|typeBits(n.Type), n.Size, time.Unix(0, n.MTime).Local().Format("2006-01-02 15:04:05"), p)
		} else {
			g.out.textf("%s\n", p)
		}
		return nil
	}
	if start.Type != repo.NodeDir {
		show(under, start)
	} else if err := restore.Walk(ctx, s.repo, *start.Subtree, func(p string, n *repo.Node) error {
		if under != "/" {
			p = under + p
		}
		return show(p, n)
	}); err != nil {
		return err
	}
	if g.json {
		g.out.emit(map[string]any{"type": "summary", "snapshot": snap.ID, "entries": count})
	}
	return nil
}

func typeBits(t string) fs.FileMode {
	switch t {
	case repo.NodeDir:
		return fs.ModeDir
	case repo.NodeSymlink:
		return fs.ModeSymlink
	case repo.NodeFIFO:
		return fs.ModeNamedPipe
	case repo.NodeSocket:
		return fs.ModeSocket
	case repo.NodeChar:
		return fs.ModeDevice | fs.ModeCharDevice
	case repo.NodeBlock:
		return fs.ModeDevice
	}
	return 0
}

// notInSnapshot turns paths the snapshot lacks (a *restore.NotFoundError
// in err) into a usage error (exit 2) naming the command, the snapshot and
// the paths, with a hint saying where to look; asked are the paths as the
// user typed them, note (if any) ends the message. Other errors pass
// through.
func notInSnapshot(err error, cmd string, snap *repo.Snapshot, asked []string, note string) error {
	var nf *restore.NotFoundError
	if !errors.As(err, &nf) {
		return err
	}
	id := repo.ShortID(snap.ID)
	hint := fmt.Sprintf("list the paths snapshot %s holds with 'vaultbak ls %s'", id, id)
	if nf.Nearest != "/" {
		hint = fmt.Sprintf("snapshot %s holds %s: list what is below it with 'vaultbak ls %s %s'", id, nf.Nearest, id, nf.Nearest)
	}
	for _, p := range asked {
		if !strings.HasPrefix(p, "/") {
			hint += fmt.Sprintf("; snapshot paths are absolute, as they were on the host (%s is read as %s)", p, path.Clean("/"+p))
			break
		}
	}
	if note != "" {
		note = "; " + note
	}
	return withHint(usagef("%s: snapshot %s: %v%s", cmd, id, nf, note), hint)
}

// openSnapshot opens the repository with the recovery identity and
// resolves a SNAPSHOT argument.
func (g *globals) openSnapshot(ctx context.Context, ref string, f repo.Filter) (*session, *repo.Snapshot, error) {
	s, err := g.open(ctx, needRecovery)
	if err != nil {
		return nil, nil, err
	}
	snap, err := findSnapshot(ctx, s, ref, f)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	g.auditTarget = snap.ID
	if err := s.repo.LoadContentStats(ctx, snap); err != nil {
		return nil, nil, err
	}
	return s, snap, nil
}

// findSnapshot resolves a SNAPSHOT argument with a clear error.
func findSnapshot(ctx context.Context, s *session, ref string, f repo.Filter) (*repo.Snapshot, error) {
	all, err := s.snapshots(ctx)
	if err != nil {
		return nil, err
	}
	snap, err := repo.Pick(all, ref, f)
	if errors.Is(err, repo.ErrSnapshotRef) {
		return nil, withHint(usagef("%v", err), "list snapshots with 'vaultbak snapshots'")
	}
	return snap, err
}
