package restore

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"

	"vaultbak/crypt"
	"vaultbak/repo"
)

// Walk calls fn for every entry below the tree root in depth-first name
// order, with its slash-separated absolute path in the snapshot. A node
// whose path is returned by fn as SkipDir is not descended into.
func Walk(ctx context.Context, r *repo.Repository, root crypt.ID, fn func(p string, n *repo.Node) error) error {
	return walk(ctx, r, root, fn, nil)
}

// SkipDir, returned by a Walk callback for a directory, skips its entries.
var SkipDir = errSkipDir{}

type errSkipDir struct{}

func (errSkipDir) Error() string { return "skip this directory" }

// walk is Walk, and with treeErr, a directory below the root whose listing
// cannot be loaded is passed to treeErr (its path, its node, the error),
// after fn was called for it and did not skip it: when it returns
// nil, the walk goes on without the directory's entries. The root's
// listing failing is an error all the same.
func walk(ctx context.Context, r *repo.Repository, root crypt.ID, fn func(string, *repo.Node) error, treeErr func(p string, n *repo.Node, err error) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := r.LoadTree(ctx, root)
	if err != nil {
		return err
	}
	return walkTree(ctx, r, "/", t, fn, treeErr)
}

func walkTree(ctx context.Context, r *repo.Repository, dir string, t *repo.Tree, fn func(string, *repo.Node) error, treeErr func(string, *repo.Node, error) error) error {
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
		if n.Type != repo.NodeDir {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		sub, err := r.LoadTree(ctx, *n.Subtree)
		if err != nil && treeErr != nil {
			if err = treeErr(p, n, err); err == nil {
				continue
			}
		}
		if err != nil {
			return err
		}
		if err := walkTree(ctx, r, p, sub, fn, treeErr); err != nil {
			return err
		}
	}
	return nil
}

// Find returns the node at absolute path p in the snapshot tree root. A
// relative p is read from the snapshot's root ("etc" is "/etc"). A path the
// snapshot does not hold is a *NotFoundError.
func Find(ctx context.Context, r *repo.Repository, root crypt.ID, p string) (*repo.Node, error) {
	p = path.Clean("/" + p)
	if p == "/" {
		return &repo.Node{Name: []byte("/"), Type: repo.NodeDir, Subtree: &root}, nil
	}
	var found *repo.Node
	nearest := "/"
	err := Walk(ctx, r, root, func(q string, n *repo.Node) error {
		switch {
		case q == p:
			found = n
			return errStop
		case n.Type == repo.NodeDir && strings.HasPrefix(p, q+"/"):
			nearest = q
			return nil
		}
		return SkipDir
	})
	if err != nil && err != errStop {
		return nil, err
	}
	if found == nil {
		return nil, &NotFoundError{Paths: []string{p}, Nearest: nearest}
	}
	return found, nil
}

var errStop = errors.New("stop walking")

// ErrNotInSnapshot is what a *NotFoundError unwraps to.
var ErrNotInSnapshot = errors.New("no such path in the snapshot")

// NotFoundError names paths asked for (to Find, Dump, or Run as includes)
// that the snapshot does not hold.
type NotFoundError struct {
	Paths []string // absolute and cleaned, in the order asked, each once
	// Nearest is the deepest directory the snapshot holds on the way to
	// Paths[0] ("/" at worst): where to look for what was meant.
	Nearest string
}

func (e *NotFoundError) Error() string {
	if len(e.Paths) == 1 {
		return e.Paths[0] + ": " + ErrNotInSnapshot.Error()
	}
	return strings.Join(e.Paths, ", ") + ": no such paths in the snapshot"
}

func (e *NotFoundError) Unwrap() error { return ErrNotInSnapshot }

// findAll checks that the snapshot tree root holds every path of ps and
// returns them cleaned (as Find reads them), each once; the paths it lacks
// are a *NotFoundError.
func findAll(ctx context.Context, r *repo.Repository, root crypt.ID, ps []string) ([]string, error) {
	var clean []string
	var missing *NotFoundError
	for _, p := range ps {
		p = path.Clean("/" + p)
		if slices.Contains(clean, p) {
			continue
		}
		clean = append(clean, p)
		_, err := Find(ctx, r, root, p)
		var nf *NotFoundError
		switch {
		case errors.As(err, &nf) && missing == nil:
			missing = nf
		case errors.As(err, &nf):
			missing.Paths = append(missing.Paths, p)
		case err != nil:
			return nil, err
		}
	}
	if missing != nil {
		return nil, missing
	}
	return clean, nil
}

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
