package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"vaultbak/backend"
)

// staleTemp is how long a temporary file must go unchanged before Sweep
// takes it for the remains of a write that will never finish. Put writes
// its temporary file in one go (seconds), and a staged object is written
// to as its pack fills and, between writes, touched every touchStaged
// (keepFresh), so a file this old has no live writer: its process was
// killed, lost power or lost the directory. A day leaves room for what
// the age of a file cannot see: hosts sharing the directory (NFS) whose
// clocks disagree by hours, and a writer suspended for a while.
const staleTemp = 24 * time.Hour

// touchStaged is how often an open staged object refreshes its file's
// modification time: a small part of staleTemp, so a live object never
// comes near it.
var touchStaged = time.Hour

var _ backend.Sweeper = (*Local)(nil)

// isTempName reports whether name is one of the temporary file names Put
// and Stage use: tmpPrefix and the decimal number os.CreateTemp puts for
// its "*" (a uint32). Sweep removes nothing else.
func isTempName(name string) bool {
	digits, ok := strings.CutPrefix(name, tmpPrefix)
	if !ok || len(digits) == 0 || len(digits) > 10 {
		return false
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Strays counts the temporary files in the directory and its
// subdirectories (Stage writes at the top, Put beside the object).
func (l *Local) Strays(ctx context.Context) (backend.Strays, error) {
	st := backend.Strays{StaleAfter: staleTemp}
	err := l.walkTemp(ctx, func(path string, fi fs.FileInfo) {
		st.Files++
		st.Bytes += fi.Size()
		if time.Since(fi.ModTime()) > staleTemp {
			st.Stale++
			st.StaleBytes += fi.Size()
		}
	})
	if err != nil {
		return st, fmt.Errorf("local: count temporary files: %w", err)
	}
	return st, nil
}

// Sweep removes the temporary files unchanged for longer than staleTemp.
// A writer calls it when it starts: what a killed writer left is removed
// by the next one, while a file some writer is still writing, here or on
// another host, is left alone.
func (l *Local) Sweep(ctx context.Context) (backend.Strays, error) {
	st := backend.Strays{StaleAfter: staleTemp}
	var errs []error
	err := l.walkTemp(ctx, func(path string, fi fs.FileInfo) {
		if time.Since(fi.ModTime()) <= staleTemp {
			return
		}
		// Remove unlinks the name: even a symbolic link put there since
		// the walk looked would lose only itself.
		if err := os.Remove(path); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			return
		}
		st.Files++
		st.Bytes += fi.Size()
	})
	if err = errors.Join(append([]error{err}, errs...)...); err != nil {
		return st, fmt.Errorf("local: remove stale temporary files: %w", err)
	}
	return st, nil
}

// walkTemp calls fn for every regular file with a temporary file's name
// in the directory tree, with its Lstat information. It never follows a
// symbolic link: it descends only into entries that are directories
// themselves, and reports only regular files. Files and directories that
// vanish while it walks are skipped; a directory it cannot read is
// reported after the rest is walked.
func (l *Local) walkTemp(ctx context.Context, fn func(path string, fi fs.FileInfo)) error {
	var errs []error
	var walk func(dir string) error
	walk = func(dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := os.ReadDir(dir)
		if err != nil && (dir == l.dir || !errors.Is(err, fs.ErrNotExist)) {
			errs = append(errs, err)
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			switch {
			case e.IsDir():
				if err := walk(path); err != nil {
					return err
				}
			case e.Type().IsRegular() && isTempName(e.Name()):
				if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
					fn(path, fi)
				}
			}
		}
		return nil
	}
	if err := walk(l.dir); err != nil {
		return err
	}
	return errors.Join(errs...)
}
