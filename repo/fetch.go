package repo

import (
	"io"
	"sync"
)

// Reading packs in windows.
const (
	fetchWindow = 1 << 20 // the least a pack reader asks its region for at once
	maxWindows  = 4       // windows kept per pack
)

// windowReader reads a sealed pack in windows of at least fetchWindow bytes
// and keeps the last maxWindows. age decrypts a sealed object 64 KiB chunk
// by chunk, each chunk one ReadAt of its source: on S3 that would be one
// ranged GET per 64 KiB, paying the request's latency and the server's
// per-request work sixteen times per MiB.
//
// A window is fetched on its own goroutine without holding the lock, so
// loaders reading different parts of one pack fetch in parallel, and a
// loader that needs a window being fetched waits for that fetch instead of
// starting another. A read in the second half of a window starts fetching
// the next one (read-ahead: restores read packs front to back). Four
// windows: a file's 4 loaders read 4 neighbouring blobs of one pack at
// once, and with 2 windows they evicted each other's (1 GiB from MinIO:
// 3.9-4.0 s with 2, 2.6 with 4, 2.3 with 8 at +20 MiB RSS). Growing
// the read-ahead to 8 MiB for sequential reads made a 1 GiB restore from
// MinIO 15% faster here but its peak RSS 110 MiB instead of 73. Windows
// are immutable once fetched and never reused, so a reader copies out of
// one without the lock (their buffers are reused once no reader holds
// them, see recycleLocked). drop forgets them (see packCache.trimWindowsLocked),
// so the memory held is bounded by the packs being read, not the packs
// kept open.
type windowReader struct {
	src  io.ReaderAt
	size int64

	mu   sync.Mutex
	wins []*window // most recently used first
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
	return &windowReader{src: src, size: size}
}

func (w *windowReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= w.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), w.size-off)
	w.mu.Lock()
	win := w.find(off, want)
	if win == nil {
		win = w.start(off, max(want, fetchWindow))
	}
	if next := win.off + win.n; off-win.off >= win.n/2 && next < w.size && w.find(next, 1) == nil {
		w.start(next, fetchWindow)
	}
	win.readers++
	w.mu.Unlock()
	<-win.ready
	err := win.err
	n := 0
	if err == nil {
		n = copy(p, win.data[off-win.off:])
	}
	w.mu.Lock()
	win.readers--
	win.recycleLocked()
	w.mu.Unlock()
	switch {
	case err != nil:
		return 0, err
	case n < len(p):
		return n, io.EOF
	}
	return n, nil
}

// find returns the window holding [off, off+n), moved to the front, or
// nil; the caller holds w.mu.
func (w *windowReader) find(off, n int64) *window {
	for i, win := range w.wins {
		if off >= win.off && off+n <= win.off+win.n {
			copy(w.wins[1:i+1], w.wins[:i])
			w.wins[0] = win
			return win
		}
	}
	return nil
}

// start begins fetching n bytes at off (fewer at the end of the object)
// into a new window at the front; the caller holds w.mu.
func (w *windowReader) start(off, n int64) *window {
	win := &window{off: off, n: min(n, w.size-off), ready: make(chan struct{})}
	if len(w.wins) == maxWindows {
		// A fetch under way still completes for its waiters.
		w.wins[maxWindows-1].evictLocked()
		w.wins = w.wins[:maxWindows-1]
	}
	w.wins = append([]*window{win}, w.wins...)
	go func() {
		bp := windowBufs.Get().(*[]byte)
		buf := *bp
		if int64(cap(buf)) < win.n {
			buf = make([]byte, win.n)
		}
		buf = buf[:win.n]
		k, err := w.src.ReadAt(buf, win.off)
		w.mu.Lock()
		switch {
		case k == len(buf):
			win.data = buf
		case err == nil || err == io.EOF:
			win.err = io.ErrUnexpectedEOF
		default:
			win.err = err
		}
		if win.err != nil {
			for i, x := range w.wins { // a failed read is retried by the next reader
				if x == win {
					w.wins = append(w.wins[:i], w.wins[i+1:]...)
					break
				}
			}
			win.evicted = true
		}
		win.fetched = true
		win.recycleLocked()
		w.mu.Unlock()
		close(win.ready)
	}()
	return win
}

// drop forgets the windows, unless a read is under way (it is called
// under the pack cache's lock, which must never wait).
func (w *windowReader) drop() {
	if w.mu.TryLock() {
		for _, win := range w.wins {
			win.evictLocked()
		}
		w.wins = nil
		w.mu.Unlock()
	}
}
