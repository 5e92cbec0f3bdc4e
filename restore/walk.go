package restore

import (
	"context"
	"errors"
	"path"

	"vaultbak/crypt"
	"vaultbak/repo"
)

// Walk calls fn for every entry below the tree root in depth-first name
// order, with its slash-separated absolute path in the snapshot. A node
// whose path is returned by fn as SkipDir is not descended into.
func Walk(ctx context.Context, r *repo.Repository, root crypt.ID, fn func(p string, n *repo.Node) error) error {
	return walk(ctx, r, "/", root, fn)
}

// SkipDir, returned by a Walk callback for a directory, skips its entries.
var SkipDir = errSkipDir{}

type errSkipDir struct{}

func (errSkipDir) Error() string { return "skip this directory" }

func walk(ctx context.Context, r *repo.Repository, dir string, id crypt.ID, fn func(string, *repo.Node) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := r.LoadTree(ctx, id)
	if err != nil {
		return err
	}
	for i := range t.Nodes {
		n := &t.Nodes[i]
		p := path.Join(dir, string(n.Name))
		err := fn(p, n)
		if err == SkipDir {
			continue
		}
		if err != nil {
			return err
		}
		if n.Type == repo.NodeDir {
			if err := walk(ctx, r, p, *n.Subtree, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// Find returns the node at absolute path p in the snapshot tree root.
func Find(ctx context.Context, r *repo.Repository, root crypt.ID, p string) (*repo.Node, error) {
	p = path.Clean("/" + p)
	if p == "/" {
		return &repo.Node{Name: []byte("/"), Type: repo.NodeDir, Subtree: &root}, nil
	}
	var found *repo.Node
	err := Walk(ctx, r, root, func(q string, n *repo.Node) error {
		switch {
		case q == p:
			found = n
			return errStop
		case n.Type == repo.NodeDir && len(p) > len(q) && p[:len(q)+1] == q+"/":
			return nil
		}
		return SkipDir
	})
	if err != nil && err != errStop {
		return nil, err
	}
	if found == nil {
		return nil, ErrNotInSnapshot
	}
	return found, nil
}

var errStop = errors.New("stop walking")

// ErrNotInSnapshot is returned by Find for a path the snapshot does not hold.
var ErrNotInSnapshot = errors.New("no such path in the snapshot")

// StreamName returns the file name of a stream snapshot (one made from
// standard input or a command): its root holds exactly one regular file.
func StreamName(ctx context.Context, r *repo.Repository, snap *repo.Snapshot) (string, error) {
	t, err := r.LoadTree(ctx, snap.Tree)
	if err != nil {
		return "", err
	}
	if len(t.Nodes) != 1 || t.Nodes[0].Type != repo.NodeFile {
		return "", errors.New("not a stream snapshot (its root holds more than one file)")
	}
	return "/" + string(t.Nodes[0].Name), nil
}
