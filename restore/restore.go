package restore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"vaultbak/crypt"
	"vaultbak/repo"
)

// Options configure a restore.
type Options struct {
	Target string // directory to restore into; created when missing
	// Includes are the snapshot paths to restore, with what is below them
	// (read as Find reads them); empty: all. One the snapshot lacks is a
	// *NotFoundError, and then nothing is written.
	Includes []string
	Workers  int // files restored concurrently; 0: 2
	// Warn is told about entries that could not be restored exactly
	// (a device node without root); nil ignores them. Sockets are not
	// recreated (a socket belongs to the process that listened on it).
	Warn func(path string, err error)
}

// Progress counts work done; read with Load.
type Progress struct {
	Files atomic.Uint64
	Dirs  atomic.Uint64
	Bytes atomic.Uint64
}

// Result sums up a restore.
type Result struct {
	Files, Dirs, Others uint64
	Bytes               uint64
	Warnings            int
}

// Failure is a file, or a directory's listing, that the repository could
// not give back verified (see IncompleteError).
type Failure struct {
	Path string // in the snapshot, slash-separated and absolute
	// Dir: Path is a directory whose listing could not be read, so
	// nothing below it was restored.
	Dir bool
	Err error // why, naming the regions and objects; unwraps to repo.ErrIntegrity
}

// IncompleteError is what Run returns when it restored and verified
// everything it could but some files or directories could not be verified
// (their chunks or listings damaged or missing in every region, or their
// content not matching its hash). None of those is left at its final name:
// a failed file is not written there (a file the target already held at
// that path stays as it was, and its error says so), a failed directory
// holds nothing it did not hold before. It unwraps to every failure's error, so
// errors.Is(err, repo.ErrIntegrity) holds.
type IncompleteError struct {
	Failed []Failure // in the order the snapshot's walk met them
}

func (e *IncompleteError) Error() string {
	if len(e.Failed) == 1 {
		f := e.Failed[0]
		return fmt.Sprintf("restore: %s could not be verified: %v", f.Path, f.Err)
	}
	return fmt.Sprintf("restore: %d files or directories could not be verified, the first %s: %v", len(e.Failed), e.Failed[0].Path, e.Failed[0].Err)
}

func (e *IncompleteError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f.Err
	}
	return errs
}

type restorer struct {
	r        *repo.Repository
	opts     Options
	target   string
	progress *Progress
	res      Result
	warnings atomic.Int64
	root     bool // running as root: restore owners and devices
	content  *crypt.Key

	links   map[[2]uint64]*linkState // hard link groups by (dev, inode)
	linksMu sync.Mutex

	failed   []failure // files and directories not restored, see dataFailure
	failedMu sync.Mutex
}

type failure struct {
	seq int // its place in the walk (entries visited up to it): the report's order
	Failure
}

type linkState struct {
	done chan struct{}
	path string // final path of the first restored link; "" if it failed
}

type fileJob struct {
	dst  string // final path
	path string // in the snapshot
	seq  int    // see failure
	node *repo.Node
	link *linkState // non-nil: this job creates the group's first link
}

// Run restores snapshot snap into opts.Target. progress may be nil.
//
// A file or directory listing that cannot be verified (see dataFailure)
// does not stop it: it restores everything else and then returns the
// Result with an *IncompleteError naming each. Any other error stops it and
// comes without a Result.
func Run(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, opts Options, progress *Progress) (*Result, error) {
	if !r.CanRead() {
		return nil, repo.ErrNeedRecovery
	}
	if opts.Target == "" {
		return nil, errors.New("restore: no target directory")
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if progress == nil {
		progress = &Progress{}
	}
	target, err := filepath.Abs(opts.Target)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	// An include the snapshot lacks is an error before anything is
	// written: restoring the rest would pass for a complete restore.
	includes, err := findAll(ctx, r, snap.Tree, opts.Includes)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return nil, fmt.Errorf("restore: target: %w", err)
	}
	rs := &restorer{
		r: r, opts: opts, target: target, progress: progress,
		root:    os.Geteuid() == 0,
		content: r.Secrets().ContentKey(),
		links:   map[[2]uint64]*linkState{},
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan fileJob, 4*opts.Workers)
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				if ctx.Err() != nil {
					rs.finishLink(job.link, "")
					continue
				}
				err := rs.restoreFile(ctx, job)
				switch {
				case err == nil:
				case dataFailure(ctx, err):
					if _, statErr := os.Lstat(job.dst); statErr == nil {
						// The target held a file there before: it stays
						// as it was, and must not pass for the snapshot's.
						err = fmt.Errorf("%w (the file already at %s was left as it was, not replaced)", err, job.dst)
					}
					rs.fail(job.seq, job.path, false, err)
				default:
					cancel(err)
				}
			}
		}()
	}

	var dirs []dirMeta
	seq := 0
	visit := func(p string, n *repo.Node) error {
		if !selected(p, n, includes) {
			return SkipDir
		}
		seq++
		dst := filepath.Join(target, filepath.FromSlash(p))
		switch n.Type {
		case repo.NodeDir:
			created, err := rs.mkdir(dst)
			if err != nil {
				return err
			}
			dirs = append(dirs, dirMeta{dst, n, created})
			rs.res.Dirs++
			progress.Dirs.Add(1)
			return nil
		case repo.NodeFile:
			if len(n.Content) > 0 {
				// Queued files wait for a worker: open their first
				// pack meanwhile.
				r.Prefetch(ctx, n.Content[0])
			}
			job := fileJob{dst: dst, path: p, seq: seq, node: n}
			if n.Links > 1 {
				first, ls := rs.linkGroup(n)
				if !first {
					// Restored once the group's first file is in place.
					<-ls.done
					if ls.path != "" {
						return rs.hardlink(ls.path, dst, p)
					}
				} else {
					job.link = ls
				}
			}
			select {
			case jobs <- job:
			case <-ctx.Done():
				rs.finishLink(job.link, "")
				return context.Cause(ctx)
			}
			return nil
		default:
			rs.res.Others++
			return rs.restoreSpecial(dst, p, n)
		}
	}
	// A directory whose listing cannot be verified is reported like a
	// file that cannot be, and the walk goes on without it. visit has
	// just made it (the last of dirs): it goes again when it was made
	// here, so that it does not pass for restored.
	treeErr := func(p string, n *repo.Node, err error) error {
		dst := filepath.Join(target, filepath.FromSlash(p))
		if !dataFailure(ctx, err) {
			return fmt.Errorf("restore: directory %s: %w", dst, err)
		}
		rs.fail(seq, p, true, fmt.Errorf("restore: directory %s (nothing below it restored): %w", dst, err))
		if d := dirs[len(dirs)-1]; d.created && d.node == n && os.Remove(d.path) == nil {
			dirs = dirs[:len(dirs)-1]
			rs.res.Dirs--
			progress.Dirs.Add(^uint64(0))
		}
		return nil
	}
	walkErr := walk(ctx, r, snap.Tree, visit, treeErr)
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	if walkErr != nil {
		return nil, walkErr
	}
	// Deepest first, so a read-only or re-timed directory is final last.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := rs.setMeta(dirs[i].path, dirs[i].node, false); err != nil {
			return nil, err
		}
	}
	rs.res.Files = progress.Files.Load()
	rs.res.Bytes = progress.Bytes.Load()
	rs.res.Warnings = int(rs.warnings.Load())
	if len(rs.failed) > 0 {
		slices.SortFunc(rs.failed, func(a, b failure) int { return a.seq - b.seq })
		ie := &IncompleteError{}
		for _, f := range rs.failed {
			ie.Failed = append(ie.Failed, f.Failure)
		}
		return &rs.res, ie
	}
	return &rs.res, nil
}

type dirMeta struct {
	path    string
	node    *repo.Node
	created bool // by this restore
}

// dataFailure reports whether err, from restoring one file or reading one
// directory's listing, is about that entry's data in the repository: its
// chunks or listing damaged or missing in every region (even when a region
// that could not be reached at all is one of them), or its content not
// matching its hash. Such an entry is reported and the restore goes on
// with the rest. Anything else stops the restore: the target failing (a
// full disk, a permission), no region reachable, a wrong key, a cancelled
// run.
func dataFailure(ctx context.Context, err error) bool {
	return ctx.Err() == nil && errors.Is(err, repo.ErrIntegrity)
}

// fail records that the entry at snapshot path p (seq as in failure) was
// not restored because of err, a dataFailure.
func (rs *restorer) fail(seq int, p string, dir bool, err error) {
	rs.failedMu.Lock()
	defer rs.failedMu.Unlock()
	rs.failed = append(rs.failed, failure{seq, Failure{Path: p, Dir: dir, Err: err}})
}

// selected reports whether the entry at snapshot path p is restored (or, for
// a directory, descended into) given the include list.
func selected(p string, n *repo.Node, includes []string) bool {
	if len(includes) == 0 {
		return true
	}
	for _, inc := range includes {
		if p == inc || strings.HasPrefix(p, inc+"/") || inc == "/" {
			return true
		}
		if n.Type == repo.NodeDir && strings.HasPrefix(inc, p+"/") {
			return true
		}
	}
	return false
}

func (rs *restorer) warn(p string, err error) {
	rs.warnings.Add(1)
	if rs.opts.Warn != nil {
		rs.opts.Warn(p, err)
	}
}

// mkdir creates dst as a directory, accepting an existing real directory
// but never a symlink or anything else in its place; created tells whether
// it made it.
func (rs *restorer) mkdir(dst string) (created bool, err error) {
	err = os.Mkdir(dst, 0o700)
	if err == nil {
		return true, nil
	}
	fi, lerr := os.Lstat(dst)
	if lerr == nil && fi.IsDir() {
		return false, nil
	}
	if lerr == nil {
		return false, fmt.Errorf("restore: %s exists and is not a directory (%s); refusing to follow or replace it", dst, fi.Mode().Type())
	}
	return false, fmt.Errorf("restore: %w", err)
}

func (rs *restorer) linkGroup(n *repo.Node) (first bool, ls *linkState) {
	key := [2]uint64{n.DevID, n.Inode}
	rs.linksMu.Lock()
	defer rs.linksMu.Unlock()
	if ls, ok := rs.links[key]; ok {
		return false, ls
	}
	ls = &linkState{done: make(chan struct{})}
	rs.links[key] = ls
	return true, ls
}

func (rs *restorer) finishLink(ls *linkState, final string) {
	if ls != nil {
		ls.path = final
		close(ls.done)
	}
}

func (rs *restorer) hardlink(existing, dst, p string) error {
	tmp := tempName(dst)
	if err := os.Link(existing, tmp); err != nil {
		return fmt.Errorf("restore: hard link %s: %w", p, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %s: %w", p, err)
	}
	rs.progress.Files.Add(1)
	return nil
}

func tempName(dst string) string {
	var b [6]byte
	rand.Read(b[:])
	return filepath.Join(filepath.Dir(dst), ".vaultbak-restore-"+hex.EncodeToString(b[:]))
}

// restoreFile writes one file under a temporary name, verifies it and
// renames it into place.
func (rs *restorer) restoreFile(ctx context.Context, job fileJob) (err error) {
	final := ""
	defer func() { rs.finishLink(job.link, final) }()
	n := job.node
	tmp := tempName(job.dst)
	// unix.Open and os.NewFile rather than os.OpenFile, which would try to
	// register the regular file with the network poller (an epoll_ctl and
	// four fcntl calls that fail or undo each other, per file).
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("restore: %s: %w", job.dst, &os.PathError{Op: "open", Path: tmp, Err: err})
	}
	f := os.NewFile(uintptr(fd), tmp)
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	h := rs.content.New()
	defer rs.content.Release(h)
	var off int64
	write := f.WriteAt
	if n.Sparse {
		write = func(b []byte, at int64) (int, error) { return writeSparse(f, b, at) }
	}
	// Each chunk is written at its offset by the goroutine that loaded it,
	// so that a large file's writes run beside the hashing below; the
	// content hash still sees the chunks in order.
	place := func(data []byte, at int64) error {
		if _, err := write(data, at); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return nil
	}
	err = loadInOrder(ctx, rs.r, n.Content, place, func(data []byte) error {
		h.Write(data)
		off += int64(len(data))
		rs.progress.Bytes.Add(uint64(len(data)))
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: %s: %w", job.dst, err)
	}
	if n.Sparse { // a hole at the end is not written
		if err := f.Truncate(off); err != nil {
			return fmt.Errorf("restore: write %s: %w", job.dst, err)
		}
	}
	var sum crypt.ID
	h.Sum(sum[:0])
	if uint64(off) != n.Size || (n.Hash != nil && sum != *n.Hash) {
		return &repo.IntegrityError{Object: job.dst, Reason: fmt.Sprintf("restored content does not match the snapshot (size %d, want %d)", off, n.Size)}
	}
	if err := rs.setFileMeta(f, job.dst, n); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("restore: write %s: %w", job.dst, err)
	}
	ok = true
	// unix.Renameat rather than os.Rename, which lstat's the destination
	// first; renaming a file over a directory fails all the same.
	if err := unix.Renameat(unix.AT_FDCWD, tmp, unix.AT_FDCWD, job.dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %s: %w", job.dst, &os.LinkError{Op: "rename", Old: tmp, New: job.dst, Err: err})
	}
	final = job.dst
	rs.progress.Files.Add(1)
	return nil
}

// sparseBlock is the granularity at which restore leaves holes.
const sparseBlock = 4096

// writeSparse writes b at off, skipping all-zero blocks so that they stay
// holes (the file is truncated to its full size at the end).
func writeSparse(f *os.File, b []byte, off int64) (int, error) {
	for start := 0; start < len(b); {
		end := min(start+sparseBlock, len(b))
		if allZero(b[start:end]) {
			start = end
			continue
		}
		// Extend the run over the following non-zero blocks.
		for end < len(b) && !allZero(b[end:min(end+sparseBlock, len(b))]) {
			end = min(end+sparseBlock, len(b))
		}
		if _, err := f.WriteAt(b[start:end], off+int64(start)); err != nil {
			return start, err
		}
		start = end
	}
	return len(b), nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	return bytes.Count(b, []byte{0}) == len(b)
}

// restoreSpecial creates a symlink, FIFO or device node.
func (rs *restorer) restoreSpecial(dst, p string, n *repo.Node) error {
	tmp := tempName(dst)
	var err error
	switch n.Type {
	case repo.NodeSymlink:
		err = os.Symlink(string(n.LinkTarget), tmp)
	case repo.NodeFIFO:
		err = unix.Mkfifo(tmp, 0o600)
	case repo.NodeChar, repo.NodeBlock:
		if !rs.root {
			rs.warn(p, errors.New("device node not restored: needs root"))
			return nil
		}
		mode := uint32(unix.S_IFCHR)
		if n.Type == repo.NodeBlock {
			mode = unix.S_IFBLK
		}
		err = mknod(tmp, mode|0o600, n.Rdev)
	case repo.NodeSocket:
		// A socket belongs to the process that listened on it; there is
		// nothing to restore but its name, which the listing keeps.
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore: %s: %w", dst, err)
	}
	if err := rs.setMeta(tmp, n, n.Type == repo.NodeSymlink); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %s: %w", dst, err)
	}
	return nil
}

// setFileMeta is setMeta for a regular file being restored, through its
// open descriptor f (dst names it in errors); its times are set last, by
// name, once nothing more is written.
func (rs *restorer) setFileMeta(f *os.File, dst string, n *repo.Node) error {
	if rs.root {
		if err := f.Chown(int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("restore: chown %s: %w", dst, err)
		}
	}
	if err := unix.Fchmod(int(f.Fd()), n.Mode&0o7777); err != nil {
		return fmt.Errorf("restore: chmod %s: %w", dst, err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(n.MTime), unix.NsecToTimespec(n.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, f.Name(), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("restore: set times of %s: %w", dst, err)
	}
	return nil
}

// setMeta restores owner (as root), mode and modification time.
func (rs *restorer) setMeta(p string, n *repo.Node, symlink bool) error {
	if rs.root {
		if err := os.Lchown(p, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("restore: chown %s: %w", p, err)
		}
	}
	if !symlink {
		if err := unix.Chmod(p, n.Mode&0o7777); err != nil {
			return fmt.Errorf("restore: chmod %s: %w", p, err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(n.MTime), unix.NsecToTimespec(n.MTime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("restore: set times of %s: %w", p, err)
	}
	return nil
}

// Dump writes the content of the file at snapshot path p to w, verifying
// every chunk before it is written and the whole content at the end; a
// failed verification is an error after which w holds a prefix. A path the
// snapshot lacks is a *NotFoundError.
func Dump(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, p string, w io.Writer) error {
	if !r.CanRead() {
		return repo.ErrNeedRecovery
	}
	n, err := Find(ctx, r, snap.Tree, p)
	if errors.Is(err, ErrNotInSnapshot) {
		return fmt.Errorf("restore: %w", err) // names p
	}
	if err != nil {
		return fmt.Errorf("restore: %s: %w", p, err)
	}
	if n.Type != repo.NodeFile {
		return fmt.Errorf("%s is a %s, %w", p, n.Type, ErrNotFile)
	}
	return Content(ctx, r, p, n, w)
}

// ErrNotFile is returned (wrapped) by Dump for a path that is not a
// regular file in the snapshot.
var ErrNotFile = errors.New("not a file")

// Content writes the content of file node n (at snapshot path p, which
// errors name) to w, verifying every chunk before it is written and the
// whole content's size and keyed hash at the end; a failed verification is
// an error after which w holds a prefix.
func Content(ctx context.Context, r *repo.Repository, p string, n *repo.Node, w io.Writer) error {
	if !r.CanRead() {
		return repo.ErrNeedRecovery
	}
	h := r.Secrets().ContentKey().New()
	defer r.Secrets().ContentKey().Release(h)
	var size uint64
	err := loadInOrder(ctx, r, n.Content, nil, func(data []byte) error {
		h.Write(data)
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		size += uint64(len(data))
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: %s: %w", p, err)
	}
	var sum crypt.ID
	h.Sum(sum[:0])
	if size != n.Size || (n.Hash != nil && sum != *n.Hash) {
		return &repo.IntegrityError{Object: p, Reason: "content does not match the snapshot"}
	}
	return nil
}

// loadAhead is how many chunks of one file are loaded concurrently, ahead
// of the one being written; memory: loadAhead × chunk Max. More in flight
// measured slower here (each load decrypts and decompresses on its own
// goroutine: 16 on 2 cores doubled the system time and the peak RSS).
const loadAhead = 4

// prefetchAhead is how many chunks ahead of the ones being loaded a file's
// next pack is opened (see repo.Repository.Prefetch), so that its opening
// round trips overlap the reading of the current one.
const prefetchAhead = 2 * loadAhead

// loadInOrder loads the chunks ids concurrently (at most loadAhead in
// flight, so memory stays bounded by that many chunks) and calls fn with
// each, in order, on the caller's goroutine. With place, each chunk is also
// passed to place on the goroutine that loaded it, with its offset in the
// stream (the lengths of the chunks before it, as loaded), before fn sees
// it. A chunk passed to place or fn is valid only during the call.
func loadInOrder(ctx context.Context, r *repo.Repository, ids []crypt.ID, place func(data []byte, off int64) error, fn func([]byte) error) error {
	type load struct {
		buf  *[]byte // from chunkBufs; holds data after the load
		data []byte
		err  error
		done chan struct{}
		// end is the offset after this chunk, set before ended is closed;
		// -1 when this chunk or one before it did not load, and then
		// neither it nor any chunk after it is placed.
		end   int64
		ended chan struct{}
	}
	outer := ctx // prefetches outlive the file
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue := make(chan *load, loadAhead)
	go func() {
		defer close(queue)
		prev := &load{ended: make(chan struct{})} // offset 0
		close(prev.ended)
		for i, id := range ids {
			if i+prefetchAhead < len(ids) {
				r.Prefetch(outer, ids[i+prefetchAhead])
			}
			l := &load{done: make(chan struct{}), ended: make(chan struct{})}
			select {
			case queue <- l:
			case <-ctx.Done():
				return
			}
			before := prev
			go func() {
				defer close(l.done)
				l.buf = chunkBufs.Get().(*[]byte)
				l.data, l.err = r.LoadBlob(ctx, id, (*l.buf)[:0])
				<-before.ended
				if l.err != nil || before.end < 0 {
					l.end = -1
				} else {
					l.end = before.end + int64(len(l.data))
				}
				close(l.ended)
				if place != nil && l.end >= 0 {
					l.err = place(l.data, before.end)
				}
			}()
			prev = l
		}
	}()
	var err error
	for l := range queue {
		<-l.done
		if err == nil {
			err = l.err
			if err == nil {
				err = fn(l.data)
			}
			if err != nil {
				cancel()
			}
		}
		// The data (the buffer, grown, or a new slice the load made and
		// nothing else holds) serves the next load.
		if l.data != nil {
			*l.buf = l.data[:0]
		}
		chunkBufs.Put(l.buf)
	}
	return err
}

// chunkBufs holds the buffers chunks are loaded into, reused from chunk to
// chunk and file to file (of *[]byte).
var chunkBufs = sync.Pool{New: func() any { return new([]byte) }}
