package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"vaultbak/backend"
)

// List calls fn for every object whose name starts with prefix. It walks only
// the directory named by prefix up to its last slash ("data/ab/" walks
// dir/data/ab, "snapshots/ab" walks dir/snapshots) and skips subdirectories
// that cannot hold a match. A prefix that no valid name can start with lists
// nothing.
func (l *Local) List(ctx context.Context, prefix string, fn func(backend.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: list %q: %w", prefix, err)
	}
	base := prefix[:strings.LastIndexByte(prefix, '/')+1]
	if base != "" && backend.ValidName(strings.TrimSuffix(base, "/")) != nil {
		return nil
	}

	var fnErr error
	walk := func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // the prefix directory is missing, or vanished while listing
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(l.dir, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			if name == "." {
				return nil
			}
			if name += "/"; !strings.HasPrefix(name, prefix) && !strings.HasPrefix(prefix, name) {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), tmpPrefix) || !strings.HasPrefix(name, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while listing
			}
			return err
		}
		if err := fn(backend.Info{Name: name, Size: fi.Size()}); err != nil {
			fnErr = err
			return fs.SkipAll
		}
		return nil
	}
	if err := filepath.WalkDir(filepath.Join(l.dir, filepath.FromSlash(base)), walk); err != nil {
		return fmt.Errorf("local: list %q: %w", prefix, err)
	}
	return fnErr
}
