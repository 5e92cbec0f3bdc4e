package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"vaultbak/backend"
)

// tmpPrefix starts the name of every temporary file Put writes.
const tmpPrefix = ".tmp-"

// Local is a backend.Backend storing each object as a file under a directory.
type Local struct {
	dir string // absolute and clean
}

var _ backend.Backend = (*Local)(nil)

// New returns a Local storing objects under dir, creating dir (mode 0700)
// when it does not exist.
func New(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return &Local{dir: abs}, nil
}

// Location returns the absolute path of the directory.
func (l *Local) Location() string { return l.dir }

// Close does nothing; a Local holds no resources.
func (l *Local) Close() error { return nil }

func (l *Local) path(name string) string {
	return filepath.Join(l.dir, filepath.FromSlash(name))
}

// checkPut refuses what no object may be put under: an invalid name, a
// name reserved for temporary files, or a done ctx.
func checkPut(ctx context.Context, name string) error {
	if err := check(ctx, name); err != nil {
		return fmt.Errorf("local: put: %w", err)
	}
	if base := name[strings.LastIndexByte(name, '/')+1:]; strings.HasPrefix(base, tmpPrefix) {
		return fmt.Errorf("local: put %s: names starting with %q are reserved", name, tmpPrefix)
	}
	return nil
}

// Put writes data atomically and durably under name.
func (l *Local) Put(ctx context.Context, name string, data []byte) error {
	if err := checkPut(ctx, name); err != nil {
		return err
	}
	dir, err := l.mkdirs(name)
	if err != nil {
		return fmt.Errorf("local: put %s: %w", name, err)
	}
	if err := writeFile(dir, l.path(name), data); err != nil {
		return fmt.Errorf("local: put %s: %w", name, err)
	}
	return nil
}

var _ backend.Stager = (*Local)(nil)

// CanStage is true: a Local stages objects in temporary files.
func (l *Local) CanStage() bool { return true }

// Stage starts an object in a temporary file in the region's directory;
// Commit fsyncs it and renames it into place as Put does.
func (l *Local) Stage(ctx context.Context) (backend.Staged, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local: stage: %w", err)
	}
	f, err := os.CreateTemp(l.dir, tmpPrefix+"*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("local: stage: %w", err)
	}
	s := &staged{l: l, f: f}
	s.keepFresh()
	return s, nil
}

type staged struct {
	l    *Local
	f    *os.File
	done bool // committed or aborted

	mu    sync.Mutex  // guards touch against the end of the object
	ended bool        // on mu: Commit or Abort began; touch no more
	touch *time.Timer // refreshes f's mtime while the object is open
}

// keepFresh sets the file's modification time to now every touchStaged
// for as long as the object is open, so that Sweep (in this process or on
// another host sharing the directory) never takes it for a killed
// writer's leftover, however rarely its writer writes: a writer stages
// its first pack before it reads anything, and a backup whose input is
// all deduplicated, or a stream that stalls, adds nothing to it for hours.
func (s *staged) keepFresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	every := touchStaged
	s.touch = time.AfterFunc(every, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.ended {
			return
		}
		now := time.Now()
		os.Chtimes(s.f.Name(), now, now) // best effort: a failure shows at Commit
		s.touch.Reset(every)
	})
}

// end stops keepFresh before the file is renamed or removed.
func (s *staged) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	s.touch.Stop()
}

func (s *staged) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	if err != nil {
		return n, fmt.Errorf("local: write: %w", err)
	}
	return n, nil
}

func (s *staged) Commit(ctx context.Context, name string) error {
	if err := checkPut(ctx, name); err != nil {
		return err
	}
	s.end()
	dir, err := s.l.mkdirs(name)
	if err == nil {
		err = install(s.f, dir, s.l.path(name))
	}
	if err != nil {
		return fmt.Errorf("local: put %s: %w", name, err)
	}
	s.done = true
	return nil
}

func (s *staged) Abort() {
	if !s.done {
		s.done = true
		s.end()
		s.f.Close()
		os.Remove(s.f.Name())
	}
}

// mkdirs creates the missing parent directories of name, one level at a
// time, and fsyncs the parent of each directory it creates so that the new
// entry is as durable as the file that will be put in it. It returns the
// directory that holds name.
func (l *Local) mkdirs(name string) (string, error) {
	dir := l.dir
	elems := strings.Split(name, "/")
	for _, elem := range elems[:len(elems)-1] {
		sub := filepath.Join(dir, elem)
		err := os.Mkdir(sub, 0o700)
		switch {
		case err == nil:
			if err := syncDir(dir); err != nil {
				return "", err
			}
		case !errors.Is(err, fs.ErrExist):
			return "", err
		}
		dir = sub
	}
	return dir, nil
}

// writeFile writes data to a temporary file in dir, fsyncs it and renames it
// to path, then fsyncs dir. On failure it removes the temporary file.
func writeFile(dir, path string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return install(f, dir, path)
}

// install makes the temporary file f in dir, written whole, durable under
// path: fsync, close, rename, fsync of dir.
func install(f *os.File, dir, path string) error {
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// Open opens the object for reading at any offset.
func (l *Local) Open(ctx context.Context, name string) (backend.Object, error) {
	f, size, err := l.open(ctx, "open", name)
	if err != nil {
		return nil, err
	}
	return &object{f: f, size: size}, nil
}

// Get returns the object's content as the open *os.File.
func (l *Local) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	f, _, err := l.open(ctx, "get", name)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// open opens the regular file holding name; op names the calling method in
// errors.
func (l *Local) open(ctx context.Context, op, name string) (*os.File, int64, error) {
	if err := check(ctx, name); err != nil {
		return nil, 0, fmt.Errorf("local: %s: %w", op, err)
	}
	f, err := os.Open(l.path(name))
	if err != nil {
		return nil, 0, wrapErr(op, name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, wrapErr(op, name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("local: %s %s: %w", op, name, backend.ErrNotFound)
	}
	return f, fi.Size(), nil
}

// Stat returns the object's size.
func (l *Local) Stat(ctx context.Context, name string) (backend.Info, error) {
	if err := check(ctx, name); err != nil {
		return backend.Info{}, fmt.Errorf("local: stat: %w", err)
	}
	fi, err := os.Stat(l.path(name))
	if err != nil {
		return backend.Info{}, wrapErr("stat", name, err)
	}
	if !fi.Mode().IsRegular() {
		return backend.Info{}, fmt.Errorf("local: stat %s: %w", name, backend.ErrNotFound)
	}
	return backend.Info{Name: name, Size: fi.Size()}, nil
}

// Delete removes the object's file; empty directories are left behind.
func (l *Local) Delete(ctx context.Context, name string) error {
	if err := check(ctx, name); err != nil {
		return fmt.Errorf("local: delete: %w", err)
	}
	path := l.path(name)
	// os.Remove would also remove an empty directory, which is no object.
	fi, err := os.Lstat(path)
	if err != nil {
		return wrapErr("delete", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("local: delete %s: %w", name, backend.ErrNotFound)
	}
	if err := os.Remove(path); err != nil {
		return wrapErr("delete", name, err)
	}
	return nil
}

// check returns an error when ctx is done or name is not a valid object name.
func check(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return backend.ValidName(name)
}

// wrapErr adds context to a file system error, turning "no such file" (also
// when a parent is a file, not a directory) into backend.ErrNotFound.
func wrapErr(op, name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("local: %s %s: %w", op, name, backend.ErrNotFound)
	}
	return fmt.Errorf("local: %s %s: %w", op, name, err)
}

// object is an open file; os.File.ReadAt is safe for concurrent use.
type object struct {
	f    *os.File
	size int64
}

func (o *object) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }
func (o *object) Size() int64                             { return o.size }
func (o *object) Close() error                            { return o.f.Close() }
