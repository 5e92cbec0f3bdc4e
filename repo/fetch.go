package repo

import (
	"io"
	"sync"

	"vaultbak/backend"
)

// Reading packs in windows.
const (
	fetchWindow = 1 << 20 // the most a pack reader asks its region for at once, unless streaming
	maxWindows  = 8       // windows kept per pack
	readAhead   = 1       // windows fetched ahead of a read past the middle of one
	// streamGap is how far ahead of its stream a fetch may start and still
	// be filled from it: the windows in between are fetched from the
	// stream too (a file's loaders ask for neighbouring blobs in an order
	// the scheduler picks). A fetch further ahead starts a new stream.
	streamGap = (maxWindows - 2) * fetchWindow
)

// windowReader reads a sealed pack in windows of at most fetchWindow bytes
// and keeps up to maxWindows. age decrypts a sealed object 64 KiB chunk by
// chunk, each chunk one ReadAt of its source: on S3 that would be one
// ranged GET per 64 KiB, paying the request's latency and the server's
// per-request work sixteen times per MiB.
//
// A window is fetched on its own goroutine without holding the lock, so
// loaders reading different parts of one pack fetch in parallel, and a
// loader that needs a window being fetched waits for that fetch instead of
// starting another. A read may span windows; it copies from each. A read in
// the second half of a window starts fetching the next one (read-ahead:
// restores read packs front to back). A file's 4 loaders read 4
// neighbouring blobs of up to a few MiB each at once, so a pack keeps up to
// eight windows, and a new one replaces one that was read through before
// one that a slower loader is still reading (see evictOneLocked): with four
// windows and plain LRU, a 1 GiB restore from MinIO fetched 550 of its
// windows twice, with eight 50. Windows are immutable once fetched and
// never reused, so a reader copies out of one without the lock (their
// buffers are reused once no reader holds them, see recycleLocked). drop
// forgets them (see packCache.trimWindowsLocked), so the memory held is
// bounded by the packs being read, not the packs kept open.
//
// Streams: when the source is a backend.Streamer (S3), windows that follow
// each other are filled from one stream of the pack (one GET to its end)
// instead of one request each. A window is claimed on the stream under the
// lock, in pack order, and filled when the window claimed before it is done
// (see stream). A fetch behind the stream (random access, a window read
// again) or of the pack's end at open (age's final chunk) is a ReadAt; a
// fetch far ahead of it starts a new stream there. The stream reads no
// further than the windows claimed on it: what the region sends beyond
// waits in the connection's buffers.
type windowReader struct {
	src      io.ReaderAt
	streamer backend.Streamer // src as a Streamer, or nil
	size     int64

	mu     sync.Mutex
	wins   []*window // most recently used first
	st     *stream   // where the next window in pack order is filled from; nil: none yet
	closed bool
}

type window struct {
	off   int64
	n     int64
	data  []byte
	err   error
	ready chan struct{} // closed when data or err is set

	// Guarded by the reader's mu: the window's buffer goes back to
	// windowBufs once it is out of wins, fetched, and no reader copies
	// from it.
	readers int
	evicted bool
	fetched bool
	read    []span // the parts copied out, sorted and merged
}

// span is a range [from, to) of a pack.
type span struct{ from, to int64 }

// readThrough reports whether every byte of win was copied out; the caller
// holds the reader's mu.
func (win *window) readThrough() bool {
	return len(win.read) == 1 && win.read[0] == span{win.off, win.off + win.n}
}

// markReadLocked records that [from, to) of win was copied out; the caller
// holds the reader's mu.
func (win *window) markReadLocked(from, to int64) {
	i := 0
	for i < len(win.read) && win.read[i].to < from {
		i++
	}
	j := i
	for j < len(win.read) && win.read[j].from <= to {
		from, to = min(from, win.read[j].from), max(to, win.read[j].to)
		j++
	}
	win.read = append(win.read[:i], append([]span{{from, to}}, win.read[j:]...)...)
}

// stream is one sequential read of a pack from a backend.Streamer. The
// windows claimed on it are filled in the order they were claimed: each
// fetch waits for the one claimed before it (turn), so rc and pos are used
// by one fetch at a time and need no lock.
type stream struct {
	rc     io.ReadCloser // opened by the first fetch; nil before and once closed
	pos    int64         // offset of rc's next byte
	failed bool          // rc failed: the fetches still claimed on it read with ReadAt

	// Guarded by the reader's mu.
	next      int64         // end of the last window claimed
	turn      chan struct{} // closed when the last claimed fetch is done
	users     int           // fetches claimed and not done
	abandoned bool          // no longer the reader's stream: closed when users drops to 0
}

// windowBufs holds window buffers for reuse (of *[]byte), so that reading
// a large restore makes no garbage in proportion to its size.
var windowBufs = sync.Pool{New: func() any { return new([]byte) }}

// recycleLocked returns win's buffer to windowBufs when nothing can use it
// any more; the caller holds the reader's mu.
func (win *window) recycleLocked() {
	if win.evicted && win.fetched && win.readers == 0 && win.data != nil {
		b := win.data[:0]
		win.data = nil
		windowBufs.Put(&b)
	}
}

// evictLocked takes win out of use; the caller holds the reader's mu.
func (win *window) evictLocked() {
	win.evicted = true
	win.recycleLocked()
}

func newWindowReader(src io.ReaderAt, size int64) *windowReader {
	w := &windowReader{src: src, size: size}
	w.streamer, _ = src.(backend.Streamer)
	return w
}

// sourceError is an error of the pack's source (the region could not serve
// the bytes: missing, unreachable, cut off), as opposed to bytes that were
// served and found wrong.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

func (w *windowReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= w.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), w.size-off)
	var held [4]*window
	wins := held[:0]
	w.mu.Lock()
	for pos := off; pos < off+want; {
		win := w.find(pos)
		if win == nil {
			win = w.start(pos, off+want == w.size)
		}
		win.readers++
		wins = append(wins, win)
		pos = win.off + win.n
	}
	if last := wins[len(wins)-1]; off+want-last.off > last.n/2 {
		next := last.off + last.n
		for range readAhead {
			if next >= w.size {
				break
			}
			win := w.find(next)
			if win == nil {
				win = w.start(next, false)
			}
			next = win.off + win.n
		}
	}
	w.mu.Unlock()
	n := 0
	var err error
	for _, win := range wins {
		<-win.ready
		if err == nil {
			err = win.err
		}
		if err == nil {
			n += copy(p[n:want], win.data[off+int64(n)-win.off:])
		}
	}
	w.mu.Lock()
	for _, win := range wins {
		win.readers--
		if err == nil {
			win.markReadLocked(max(off, win.off), min(off+int64(n), win.off+win.n))
		}
		win.recycleLocked()
	}
	w.mu.Unlock()
	switch {
	case err != nil:
		return 0, err
	case n < len(p):
		return n, io.EOF
	}
	return n, nil
}

// prefetch starts fetching the pack from off to its end (at most a window)
// unless a window holds off already.
func (w *windowReader) prefetch(off int64) {
	off = max(off, 0)
	if off >= w.size {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.find(off) == nil {
		w.start(off, off+fetchWindow >= w.size)
	}
}

// find returns the window holding off, moved to the front, or nil; the
// caller holds w.mu.
func (w *windowReader) find(off int64) *window {
	for i, win := range w.wins {
		if off >= win.off && off < win.off+win.n {
			copy(w.wins[1:i+1], w.wins[:i])
			w.wins[0] = win
			return win
		}
	}
	return nil
}

// start begins fetching the window at off (fetchWindow bytes, fewer at the
// end of the pack), and the windows between the stream and off when it is
// filled from the stream, and returns it; atEnd says the read reaches the
// end of the pack. The caller holds w.mu.
func (w *windowReader) start(off int64, atEnd bool) *window {
	s := w.streamFor(off, atEnd)
	if s != nil {
		for s.next < off {
			if win := w.find(s.next); win != nil {
				// Already there: the stream skips it.
				s.next = win.off + win.n
				continue
			}
			w.fetch(s.next, min(fetchWindow, off-s.next), s)
		}
	}
	return w.fetch(off, min(fetchWindow, w.size-off), s)
}

// streamFor returns the stream the window at off is to be filled from, a
// new one if need be, or nil for a ReadAt; the caller holds w.mu.
func (w *windowReader) streamFor(off int64, atEnd bool) *stream {
	if w.streamer == nil || w.closed {
		return nil
	}
	s := w.st
	gap := int64(streamGap)
	if atEnd {
		gap = 0 // the end read at open: the stream is not going there
	}
	switch {
	case s != nil && off >= s.next && off-s.next <= gap:
		return s
	case s != nil && off < s.next, atEnd:
		// Behind the stream, or the end of the pack read at open: a
		// new stream would not be read further.
		return nil
	}
	if s != nil {
		w.abandonLocked(s)
	}
	w.st = &stream{next: off, pos: off}
	return w.st
}

// abandonLocked takes s out of use: it is closed now, or by the last fetch
// claimed on it; the caller holds w.mu.
func (w *windowReader) abandonLocked(s *stream) {
	s.abandoned = true
	if w.st == s {
		w.st = nil
	}
	if s.users == 0 && s.rc != nil {
		s.rc.Close()
		s.rc = nil
	}
}

// fetch begins fetching n bytes at off into a new window at the front,
// from s (claiming the window on it) or, when s is nil, with one ReadAt;
// the caller holds w.mu.
func (w *windowReader) fetch(off, n int64, s *stream) *window {
	win := &window{off: off, n: n, ready: make(chan struct{})}
	if len(w.wins) == maxWindows {
		w.evictOneLocked()
	}
	w.wins = append([]*window{win}, w.wins...)
	var prev, done chan struct{}
	if s != nil {
		prev, done = s.turn, make(chan struct{})
		s.turn = done
		s.next = off + n
		s.users++
	}
	go func() {
		bp := windowBufs.Get().(*[]byte)
		buf := *bp
		if int64(cap(buf)) < win.n {
			buf = make([]byte, win.n)
		}
		buf = buf[:win.n]
		var err error
		ended := false // s can serve no further window
		if s == nil {
			err = w.readAt(buf, off)
		} else {
			if prev != nil {
				<-prev
			}
			err = w.readStream(s, buf, off)
			ended = s.failed || s.pos == w.size
			close(done) // the next window's turn: s.rc, s.pos and s.failed are its
		}
		w.mu.Lock()
		if s != nil {
			s.users--
			if ended || s.abandoned {
				w.abandonLocked(s)
			}
		}
		if err == nil {
			win.data = buf
		} else {
			win.err = err
			w.removeLocked(win) // a failed read is retried by the next reader
			*bp = buf[:0]
			windowBufs.Put(bp)
		}
		win.fetched = true
		win.recycleLocked()
		w.mu.Unlock()
		close(win.ready)
	}()
	return win
}

// evictOneLocked makes room for a window: it evicts the least recently
// used window that was read through, or else the least recently used. A
// pack is read front to back by a file's loaders at once, each blob in 64
// KiB reads: plain LRU would evict the window a slower loader is half way
// through (it reads it between the others' reads) and make it fetch the
// window again, behind the stream. A fetch under way still completes for
// its waiters. The caller holds w.mu.
func (w *windowReader) evictOneLocked() {
	victim := w.wins[len(w.wins)-1]
	for i := len(w.wins) - 1; i >= 0; i-- {
		if win := w.wins[i]; win.readThrough() {
			victim = win
			break
		}
	}
	w.removeLocked(victim)
}

// removeLocked takes win out of wins and evicts it; the caller holds w.mu.
func (w *windowReader) removeLocked(win *window) {
	for i, x := range w.wins {
		if x == win {
			w.wins = append(w.wins[:i], w.wins[i+1:]...)
			break
		}
	}
	win.evictLocked()
}

// readAt fills buf from off with one ReadAt of the source.
func (w *windowReader) readAt(buf []byte, off int64) error {
	k, err := w.src.ReadAt(buf, off)
	switch {
	case k == len(buf):
		return nil
	case err == nil || err == io.EOF:
		return io.ErrUnexpectedEOF
	}
	return &sourceError{err}
}

// readStream fills buf from off out of s, opening it at off if it is not
// yet open and skipping what lies between its position and off. It runs
// on the turn of buf's window; after s failed it reads with ReadAt.
func (w *windowReader) readStream(s *stream, buf []byte, off int64) error {
	if s.failed {
		return w.readAt(buf, off)
	}
	err := func() error {
		if s.rc == nil {
			rc, err := w.streamer.Stream(off, w.size)
			if err != nil {
				return err
			}
			s.rc, s.pos = rc, off
		}
		if gap := off - s.pos; gap > 0 {
			k, err := io.CopyN(io.Discard, s.rc, gap)
			s.pos += k
			if err != nil {
				return err
			}
		}
		k, err := io.ReadFull(s.rc, buf)
		s.pos += int64(k)
		return err
	}()
	if err != nil {
		// Only the windows of this stream that are being fetched fail;
		// the next read starts another.
		s.failed = true
		if s.rc != nil {
			s.rc.Close()
			s.rc = nil
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return &sourceError{err}
	}
	return nil
}

// drop forgets the windows and ends the stream, unless a read is under way
// (it is called under the pack cache's lock, which must never wait).
func (w *windowReader) drop() {
	if w.mu.TryLock() {
		w.dropLocked()
		w.mu.Unlock()
	}
}

func (w *windowReader) dropLocked() {
	for _, win := range w.wins {
		win.evictLocked()
	}
	w.wins = nil
	if w.st != nil {
		w.abandonLocked(w.st)
	}
}

// close ends the reader's use of its source: windows being fetched still
// complete for their waiters, and a stream is closed by its last fetch.
func (w *windowReader) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.dropLocked()
}
