package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"sync"
	"syscall"

	"vaultbak/chunk"
	"vaultbak/crypt"
	"vaultbak/repo"
)

// maxAttempts is how often a file that changes while it is read is read.
const maxAttempts = 3

// errChanged reports a file that changed while it was read.
var errChanged = errors.New("file changed while it was read")

// errStopped ends the read of a file when the run has failed meanwhile.
var errStopped = errors.New("backup stopped")

// saveFile stores one regular file and returns its node, or nil for a file
// left out with a warning. Its chunks may still be being stored when it
// returns: a chunk that cannot be stored stops the whole backup (see
// saveGroup).
func (b *backuper) saveFile(job fileJob, ch *chunk.Chunker) *repo.Node {
	n := b.baseNode(job.name, job.st)
	n.Size = uint64(job.st.size)
	if job.st.nlink > 1 {
		n.Links, n.Inode, n.DevID = job.st.nlink, job.st.ino, job.st.dev
	}
	n.Sparse = job.st.blocks*512 < job.st.size

	if e, ok := b.unchanged(job); ok {
		n.Content, n.Hash = e.Content, &e.Hash
		b.remember(job.abs, job.st, e.Content, e.Hash)
		b.done(job.st.size, false)
		b.progress.Skipped.Add(1)
		b.progress.SkippedBytes.Add(uint64(job.st.size))
		return &n
	}

	for attempt := 1; ; attempt++ {
		content, hash, st, err := b.readFile(job, ch)
		switch {
		case err == nil:
			n.Content, n.Hash = content, &hash
			n.Size, n.MTime, n.Mode = uint64(st.size), st.mtime, st.perm
			b.remember(job.abs, st, content, hash)
			b.done(st.size, true)
			return &n
		case errors.Is(err, errChanged) && attempt < maxAttempts:
			continue
		case errors.Is(err, errChanged):
			// Store what the last read saw, marked by the warning: never
			// silently torn.
			b.warn(job.abs, fmt.Errorf("%w %d times; stored the last read", err, maxAttempts))
			n.Content, n.Hash = content, &hash
			n.Size, n.MTime = uint64(st.size), st.mtime
			b.done(st.size, true)
			return &n
		case errors.Is(err, errStopped):
			return nil // the run failed; Run reports why
		default:
			b.warn(job.abs, err)
			return nil
		}
	}
}

// readFile reads and stores the content of job's file and returns its chunk
// IDs, its keyed content hash and its metadata after the read. It returns
// errChanged (with the data read) when the file changed during the read.
//
// The file is read to its end through its descriptor with plain system
// calls rather than an os.File, which would try to register it with the
// network poller (an epoll_ctl that fails for a regular file). Its size is
// what the reads returned, never what fstat stated: a file of a pseudo file
// system (/proc, /sys) states 0, and a file that grew or shrank meanwhile is
// caught by the fstat after the read.
func (b *backuper) readFile(job fileJob, ch *chunk.Chunker) ([]crypt.ID, crypt.ID, stat, error) {
	var fd int
	err := retryEINTR(func() (err error) {
		fd, err = syscall.Open(job.abs, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NOCTTY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, crypt.ID{}, stat{}, &fs.PathError{Op: "open", Path: job.abs, Err: err}
	}
	defer syscall.Close(fd)
	before, err := fstat(fd, job)
	if err != nil {
		return nil, crypt.ID{}, stat{}, err
	}
	if before.ino != job.st.ino {
		return nil, crypt.ID{}, stat{}, errReplaced
	}
	h := b.w.Secrets().ContentKey().New()
	defer b.w.Secrets().ContentKey().Release(h)
	var content []crypt.ID
	ch.Reset(&fdReader{fd: fd, path: job.abs})
	var size int64
	for {
		data, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, crypt.ID{}, stat{}, err
		}
		if b.ctx.Err() != nil {
			return nil, crypt.ID{}, stat{}, errStopped
		}
		h.Write(data)
		id := b.w.Secrets().BlobID(data)
		content = append(content, id)
		size += int64(len(data))
		b.progress.ReadBytes.Add(uint64(len(data)))
		if !b.w.Known(id) {
			b.saver.save(b.saves, id, data)
		}
	}
	var sum crypt.ID
	h.Sum(sum[:0])
	after, err := fstat(fd, job)
	if err != nil {
		return nil, crypt.ID{}, stat{}, err
	}
	if after.size != size || after.mtime != before.mtime || after.ctime != before.ctime {
		after.size = size
		return content, sum, after, errChanged
	}
	return content, sum, after, nil
}

// errReplaced reports a path that no longer holds the regular file the walk
// found there.
var errReplaced = errors.New("replaced by another file while backing up")

// fstat returns the metadata of the open file fd, which the walk found to be
// job's regular file; anything else there now is errReplaced.
func fstat(fd int, job fileJob) (stat, error) {
	var sys syscall.Stat_t
	if err := retryEINTR(func() error { return syscall.Fstat(fd, &sys) }); err != nil {
		return stat{}, &fs.PathError{Op: "stat", Path: job.abs, Err: err}
	}
	if sys.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return stat{}, errReplaced
	}
	return statOfSys(regularMode(uint32(sys.Mode)), &sys), nil
}

// fdReader reads an open file to its end.
type fdReader struct {
	fd   int
	path string
}

var _ io.Reader = (*fdReader)(nil)

func (r *fdReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	err := retryEINTR(func() (err error) {
		n, err = syscall.Read(r.fd, p)
		return err
	})
	switch {
	case err != nil:
		return 0, &fs.PathError{Op: "read", Path: r.path, Err: err}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// retryEINTR retries a system call interrupted by a signal.
func retryEINTR(call func() error) error {
	for {
		if err := call(); err != syscall.EINTR {
			return err
		}
	}
}

// saveGroup tracks chunk saves: those of one stream, or of a whole tree
// backup, whose workers go on to the next file while the chunks of the
// last one are stored (waiting for them, a worker reading small files
// left its core idle for each hand-over).
type saveGroup struct {
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
	// fail, if set, is called with the first error, as it happens: it
	// stops the run.
	fail func(error)
}

// record keeps err if it is the group's first and passes it to fail.
func (s *saveGroup) record(err error) {
	s.mu.Lock()
	first := s.err == nil
	if first {
		s.err = err
	}
	s.mu.Unlock()
	if first && s.fail != nil {
		s.fail(err)
	}
}

func (s *saveGroup) wait() error {
	s.wg.Wait()
	return s.err
}

// chunkSaver stores chunks on other goroutines, so that compressing the
// chunks of one large file or stream uses every core while the reader goes
// on. slots bounds the chunks in flight, and so the memory: slots × chunk
// Max, in copies reused through bufs (a free list of slots buffers: a
// sync.Pool would drop them at every GC, and the memory limit makes GCs
// frequent).
type chunkSaver struct {
	ctx   context.Context
	w     *repo.Writer
	slots chan struct{}
	bufs  chan *[]byte
}

func newChunkSaver(ctx context.Context, w *repo.Writer) *chunkSaver {
	c := &chunkSaver{ctx: ctx, w: w, slots: make(chan struct{}, 2*runtime.GOMAXPROCS(0))}
	c.bufs = make(chan *[]byte, cap(c.slots))
	return c
}

// save stores a copy of data as blob id; s.wait reports the first error.
func (c *chunkSaver) save(s *saveGroup, id crypt.ID, data []byte) {
	select {
	case c.slots <- struct{}{}:
	case <-c.ctx.Done():
		s.record(context.Cause(c.ctx))
		return
	}
	var buf *[]byte
	select {
	case buf = <-c.bufs:
	default:
		buf = new([]byte)
	}
	*buf = append((*buf)[:0], data...)
	s.wg.Add(1)
	go func() {
		defer func() {
			c.bufs <- buf // never blocks: one buffer per slot
			<-c.slots
			s.wg.Done()
		}()
		if err := c.w.SaveBlobID(c.ctx, repo.DataBlob, id, *buf); err != nil {
			s.record(err)
		}
	}()
}

// unchanged returns the previous snapshot's entry for a file whose metadata
// match and whose chunks are all still in the repository.
func (b *backuper) unchanged(job fileJob) (CacheEntry, bool) {
	if b.prev == nil {
		return CacheEntry{}, false
	}
	e, ok := b.prev.Files[job.abs]
	if !ok || e.Size != job.st.size || e.MTime != job.st.mtime || e.CTime != job.st.ctime || e.Inode != job.st.ino || e.Dev != job.st.dev {
		return CacheEntry{}, false
	}
	for _, id := range e.Content {
		if !b.w.Known(id) {
			return CacheEntry{}, false
		}
	}
	return e, true
}

func (b *backuper) remember(abs string, st stat, content []crypt.ID, hash crypt.ID) {
	b.nextMu.Lock()
	b.next.Files[abs] = CacheEntry{Size: st.size, MTime: st.mtime, CTime: st.ctime, Inode: st.ino, Dev: st.dev, Content: content, Hash: hash}
	b.nextMu.Unlock()
}

func (b *backuper) done(size int64, read bool) {
	b.stats.files.Add(1)
	b.stats.bytes.Add(uint64(size))
	b.progress.Files.Add(1)
	b.progress.Bytes.Add(uint64(size))
	_ = read
}
