package repo

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
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
		t.Run(tc.name, func(t *testing.T) {
			c := &countingReaderAt{src: src}
			w := newWindowReader(c, int64(len(src)))
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
