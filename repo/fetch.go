package repo

import (
	"io"
	"sync"
)

// fetchWindow is the least a pack reader asks its region for at once.
const fetchWindow = 1 << 20

// windowReader reads a sealed pack in windows of at least fetchWindow bytes
// and keeps the last two. age decrypts a sealed object 64 KiB chunk by
// chunk, each chunk one ReadAt of its source: on S3 that would be one
// ranged GET per 64 KiB, paying the request's latency and the server's
// per-request work sixteen times per MiB. Two windows, so that loaders
// reading neighbouring blobs of one pack concurrently do not evict each
// other's. Reads of one pack are serialized (one fetch at a time);
// different packs are read in parallel. drop releases the windows (called
// when no reader uses the pack), so the memory held is two windows per
// pack being read, not per pack kept open.
type windowReader struct {
	src  io.ReaderAt
	size int64

	mu   sync.Mutex
	wins [2]window // wins[0] most recently used
}

type window struct {
	off  int64
	data []byte
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
	defer w.mu.Unlock()
	for i, win := range w.wins {
		if win.data != nil && off >= win.off && off+want <= win.off+int64(len(win.data)) {
			n := copy(p, win.data[off-win.off:])
			w.wins[0], w.wins[i] = w.wins[i], w.wins[0]
			return w.result(n, len(p), off)
		}
	}
	// Fetch into the least recently used window's buffer.
	end := min(off+max(want, fetchWindow), w.size)
	buf := w.wins[1].data
	if int64(cap(buf)) < end-off {
		buf = make([]byte, end-off)
	}
	buf = buf[:end-off]
	n, err := w.src.ReadAt(buf, off)
	if n < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	w.wins[1] = w.wins[0]
	w.wins[0] = window{off, buf}
	return w.result(copy(p, buf), len(p), off)
}

// result is what ReadAt returns after copying n of the want bytes at off.
func (w *windowReader) result(n, want int, off int64) (int, error) {
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// drop releases the windows, unless a read is under way (it is called
// under the pack cache's lock, which must never wait for a fetch).
func (w *windowReader) drop() {
	if w.mu.TryLock() {
		w.wins = [2]window{}
		w.mu.Unlock()
	}
}
