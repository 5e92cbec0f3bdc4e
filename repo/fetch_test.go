package repo

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vaultbak/crypt"
)

// countingReaderAt counts the reads of its source and fails the ones
// fail says to.
type countingReaderAt struct {
	src   []byte
	reads atomic.Int64
	fail  func(off int64) bool
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.reads.Add(1)
	if c.fail != nil && c.fail(off) {
		return 0, errors.New("injected read error")
	}
	return bytes.NewReader(c.src).ReadAt(p, off)
}

// TestWindowReader reads an object through a windowReader in every way a
// pack is read (front to back in 64 KiB pieces, at random, concurrently,
// across the end) and compares every byte with the source.
func TestWindowReader(t *testing.T) {
	src := make([]byte, 5*fetchWindow+12345)
	rand.NewChaCha8([32]byte{1}).Read(src)
	for _, tc := range []struct {
		name     string
		reads    func(rng *rand.Rand) (off, n int64)
		parallel int
	}{
		{"front to back", nil, 1},
		{"random", func(rng *rand.Rand) (int64, int64) {
			return rng.Int64N(int64(len(src))), 1 + rng.Int64N(200<<10)
		}, 1},
		{"random, 8 readers", func(rng *rand.Rand) (int64, int64) {
			return rng.Int64N(int64(len(src))), 1 + rng.Int64N(200<<10)
		}, 8},
		{"larger than a window", func(rng *rand.Rand) (int64, int64) {
			return rng.Int64N(int64(len(src))), fetchWindow + rng.Int64N(fetchWindow)
		}, 2},
	} {
		for _, streaming := range []bool{false, true} {
			name := tc.name
			if streaming {
				name += ", streamed"
			}
			t.Run(name, func(t *testing.T) {
				c := &countingReaderAt{src: src}
				var w *windowReader
				if streaming {
					w = newWindowReader(&streamingReaderAt{countingReaderAt: c}, int64(len(src)))
				} else {
					w = newWindowReader(c, int64(len(src)))
				}
				defer w.close()
				var wg sync.WaitGroup
				for g := range tc.parallel {
					wg.Add(1)
					go func() {
						defer wg.Done()
						rng := rand.New(rand.NewPCG(uint64(g), 2))
						for i := 0; i < 120; i++ {
							off, n := int64(i)*64<<10, int64(64<<10)
							if tc.reads != nil {
								off, n = tc.reads(rng)
							} else if off >= int64(len(src)) {
								break
							}
							if i%50 == 0 {
								w.drop()
							}
							p := make([]byte, n)
							k, err := w.ReadAt(p, off)
							want := min(n, int64(len(src))-off)
							if int64(k) != want || (k < len(p) && err != io.EOF) || (k == len(p) && err != nil) {
								t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, k, err, want)
								return
							}
							if !bytes.Equal(p[:k], src[off:off+int64(k)]) {
								t.Errorf("ReadAt(%d bytes at %d): wrong bytes", n, off)
								return
							}
						}
					}()
				}
				wg.Wait()
				if tc.reads == nil {
					// Front to back: about one source read per window, not
					// one per 64 KiB.
					if got, most := c.reads.Load(), int64(len(src)/fetchWindow+8); got > most {
						t.Errorf("%d reads of the source for %d windows", got, len(src)/fetchWindow+1)
					}
				}
			})
		}
	}
}

// TestWindowReaderError checks that a failed fetch fails the reads that
// wait for it and that the next read fetches again.
func TestWindowReaderError(t *testing.T) {
	src := make([]byte, 3*fetchWindow)
	var failing atomic.Bool
	failing.Store(true)
	c := &countingReaderAt{src: src, fail: func(int64) bool { return failing.Load() }}
	w := newWindowReader(c, int64(len(src)))
	p := make([]byte, 100)
	if _, err := w.ReadAt(p, 10); err == nil {
		t.Fatal("ReadAt succeeded over a failing source")
	}
	failing.Store(false)
	if n, err := w.ReadAt(p, 10); err != nil || n != len(p) {
		t.Fatalf("ReadAt after the source recovered = %d, %v", n, err)
	}
	if n, err := w.ReadAt(p, int64(len(src))); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, EOF", n, err)
	}
}

// streamingReaderAt is a countingReaderAt that also streams, as an S3
// object does. Each stream counts as one read of the source; failStream
// fails a stream once it is at or past the given offset.
type streamingReaderAt struct {
	*countingReaderAt
	streams    atomic.Int64 // opened
	open       atomic.Int64 // opened and not closed
	furthest   atomic.Int64 // the end of the furthest byte any stream gave
	failStream func(pos int64) bool
}

func (s *streamingReaderAt) Stream(off, end int64) (io.ReadCloser, error) {
	s.reads.Add(1)
	s.streams.Add(1)
	if s.fail != nil && s.fail(off) {
		return nil, errors.New("injected stream open error")
	}
	s.open.Add(1)
	return &testStream{s: s, pos: off, end: end}, nil
}

type testStream struct {
	s      *streamingReaderAt
	pos    int64
	end    int64
	closed bool
}

func (ts *testStream) Read(p []byte) (int, error) {
	if ts.closed {
		return 0, errors.New("read of a closed stream")
	}
	if ts.s.failStream != nil && ts.s.failStream(ts.pos) {
		return 0, errors.New("injected stream error")
	}
	if ts.pos >= ts.end {
		return 0, io.EOF
	}
	// Deliver in pieces, as a connection does.
	n := copy(p[:min(len(p), 100<<10)], ts.s.src[ts.pos:ts.end])
	ts.pos += int64(n)
	for {
		f := ts.s.furthest.Load()
		if ts.pos <= f || ts.s.furthest.CompareAndSwap(f, ts.pos) {
			break
		}
	}
	return n, nil
}

func (ts *testStream) Close() error {
	if !ts.closed {
		ts.closed = true
		ts.s.open.Add(-1)
	}
	return nil
}

// settle waits until no window of w is being fetched.
func settle(t *testing.T, w *windowReader) {
	t.Helper()
	for {
		w.mu.Lock()
		busy := false
		for _, win := range w.wins {
			busy = busy || !win.fetched
		}
		if w.st != nil {
			busy = busy || w.st.users > 0
		}
		w.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func readBack(t *testing.T, w *windowReader, src []byte, off, n int64) error {
	t.Helper()
	p := make([]byte, n)
	k, err := w.ReadAt(p, off)
	if err != nil && !(err == io.EOF && off+int64(k) == int64(len(src))) {
		return err
	}
	if !bytes.Equal(p[:k], src[off:off+int64(k)]) {
		t.Fatalf("ReadAt(%d bytes at %d): wrong bytes", n, off)
	}
	return nil
}

// TestWindowReaderStreams reads a pack front to back, after its end was
// read at open (as age does), and checks that one stream served the
// windows in order, that the end was a ReadAt of its own, that the stream
// never ran more than the read-ahead beyond the reads, and that closing
// the reader closes the stream.
func TestWindowReaderStreams(t *testing.T) {
	src := make([]byte, 6*fetchWindow+4321)
	rand.NewChaCha8([32]byte{2}).Read(src)
	s := &streamingReaderAt{countingReaderAt: &countingReaderAt{src: src}}
	w := newWindowReader(s, int64(len(src)))
	w.prefetch(int64(len(src)) - crypt.SealedChunkSize)
	if err := readBack(t, w, src, 0, 4096); err != nil {
		t.Fatal(err)
	}
	if err := readBack(t, w, src, int64(len(src))-70000, 70000); err != nil {
		t.Fatal(err)
	}
	for off := int64(4096); off < int64(len(src)); off += 64 << 10 {
		if err := readBack(t, w, src, off, 64<<10); err != nil {
			t.Fatal(err)
		}
		settle(t, w)
		if ahead := s.furthest.Load() - (off + 64<<10); ahead > 2*fetchWindow {
			t.Fatalf("the stream is %d bytes ahead of the reads", ahead)
		}
	}
	if got := s.streams.Load(); got != 1 {
		t.Errorf("%d streams opened, want 1", got)
	}
	if got := s.reads.Load(); got > 3 {
		t.Errorf("%d reads of the source (streams included), want at most 3", got)
	}
	settle(t, w)
	w.close()
	if got := s.open.Load(); got != 0 {
		t.Errorf("%d streams open after close", got)
	}
}

// TestWindowReaderStreamRandom checks that reads behind the stream are
// ReadAt calls that leave the stream where it is, and that a read far
// ahead of it starts a new stream and closes the old one.
func TestWindowReaderStreamRandom(t *testing.T) {
	src := make([]byte, 20*fetchWindow)
	rand.NewChaCha8([32]byte{3}).Read(src)
	s := &streamingReaderAt{countingReaderAt: &countingReaderAt{src: src}}
	w := newWindowReader(s, int64(len(src)))
	defer w.close()
	for _, off := range []int64{0, fetchWindow + 10, 2 * fetchWindow} {
		if err := readBack(t, w, src, off, 1000); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, w)
	w.mu.Lock()
	for _, win := range w.wins {
		win.evictLocked()
	}
	w.wins = nil // forgotten, as after drop, but the stream goes on
	w.mu.Unlock()
	if err := readBack(t, w, src, 100, 1000); err != nil { // behind the stream
		t.Fatal(err)
	}
	if got := s.streams.Load(); got != 1 {
		t.Errorf("a read behind the stream opened a stream (%d)", got)
	}
	if err := readBack(t, w, src, 3*fetchWindow+streamGap+fetchWindow, 1000); err != nil { // far ahead
		t.Fatal(err)
	}
	settle(t, w)
	if got, open := s.streams.Load(), s.open.Load(); got != 2 || open != 1 {
		t.Errorf("after a jump ahead: %d streams opened, %d open; want 2, 1", got, open)
	}
	// A small gap ahead is filled from the stream, not skipped.
	if err := readBack(t, w, src, 3*fetchWindow+streamGap+3*fetchWindow+5, 1000); err != nil {
		t.Fatal(err)
	}
	if err := readBack(t, w, src, 3*fetchWindow+streamGap+2*fetchWindow+5, 1000); err != nil {
		t.Fatal(err)
	}
	if got := s.streams.Load(); got != 2 {
		t.Errorf("a gap within streamGap opened a stream (%d)", got)
	}
}

// TestWindowReaderStreamError checks that a stream failing mid-pack fails
// the reads waiting for it, with the source's error, and that the next
// read starts a new stream.
func TestWindowReaderStreamError(t *testing.T) {
	src := make([]byte, 5*fetchWindow)
	rand.NewChaCha8([32]byte{4}).Read(src)
	var failing atomic.Bool
	failing.Store(true)
	s := &streamingReaderAt{countingReaderAt: &countingReaderAt{src: src}}
	s.failStream = func(pos int64) bool { return failing.Load() && pos >= 2*fetchWindow+300<<10 }
	w := newWindowReader(s, int64(len(src)))
	defer w.close()
	for off := int64(0); off < 2*fetchWindow; off += 64 << 10 {
		if err := readBack(t, w, src, off, 64<<10); err != nil {
			t.Fatalf("read before the failure: %v", err)
		}
	}
	err := readBack(t, w, src, 2*fetchWindow+400<<10, 1000)
	var se *sourceError
	if !errors.As(err, &se) {
		t.Fatalf("read of the failed window = %v, want a sourceError", err)
	}
	settle(t, w)
	failing.Store(false)
	before := s.streams.Load()
	if err := readBack(t, w, src, 2*fetchWindow+400<<10, 1000); err != nil {
		t.Fatalf("read after the failure: %v", err)
	}
	if got := s.streams.Load() - before; got != 1 {
		t.Errorf("the read after the failure opened %d streams, want 1", got)
	}
	settle(t, w)
	if got := s.open.Load(); got != 1 {
		t.Errorf("%d streams open, want 1 (the failed one closed)", got)
	}

	// A stream that cannot open fails its window only.
	s2 := &streamingReaderAt{countingReaderAt: &countingReaderAt{src: src}}
	s2.fail = func(int64) bool { return failing.Load() }
	failing.Store(true)
	w2 := newWindowReader(s2, int64(len(src)))
	defer w2.close()
	if err := readBack(t, w2, src, 0, 1000); !errors.As(err, &se) {
		t.Fatalf("read with a failing open = %v, want a sourceError", err)
	}
	failing.Store(false)
	if err := readBack(t, w2, src, 0, 1000); err != nil {
		t.Fatalf("read after the open recovered: %v", err)
	}
}

// TestWindowReaderEviction checks that a new window replaces one that was
// read through before one that is still being read.
func TestWindowReaderEviction(t *testing.T) {
	src := make([]byte, (maxWindows+2)*fetchWindow)
	rand.NewChaCha8([32]byte{5}).Read(src)
	c := &countingReaderAt{src: src}
	w := newWindowReader(c, int64(len(src)))
	defer w.close()
	// Window 0 is read half, every other one through, front to back.
	if err := readBack(t, w, src, 0, 1000); err != nil {
		t.Fatal(err)
	}
	for off := int64(fetchWindow); off < maxWindows*fetchWindow; off += 64 << 10 {
		if err := readBack(t, w, src, off, 64<<10); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, w)
	if err := readBack(t, w, src, maxWindows*fetchWindow+100, 1000); err != nil {
		t.Fatal(err)
	}
	before := c.reads.Load()
	if err := readBack(t, w, src, 2000, 1000); err != nil {
		t.Fatal(err)
	}
	if c.reads.Load() != before {
		t.Error("the window being read was evicted before one read through")
	}
}
