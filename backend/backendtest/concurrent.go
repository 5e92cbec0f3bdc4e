package backendtest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"vaultbak/backend"
)

func testConcurrentReadAt(t *testing.T, b backend.Backend) {
	const size = 4<<20 + 7
	data, obj := open(t, b, size)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			buf := make([]byte, 64<<10)
			for range 50 {
				off := rng.IntN(size)
				n := min(rng.IntN(len(buf))+1, size-off)
				got, err := obj.ReadAt(buf[:n], int64(off))
				if got != n || (err != nil && off+n != size) {
					t.Errorf("ReadAt(%d bytes, off %d) = %d, %v", n, off, got, err)
					return
				}
				if !bytes.Equal(buf[:n], data[off:off+n]) {
					t.Errorf("ReadAt(%d bytes, off %d) returned wrong data", n, off)
					return
				}
			}
		})
	}
	wg.Wait()
}

func testConcurrentPut(t *testing.T, b backend.Backend) {
	const workers, perWorker = 16, 8
	name := func(w, i int) string { return fmt.Sprintf("data/%02x/w%d-%d", (w*perWorker+i)%5, w, i) }
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				if err := b.Put(t.Context(), name(w, i), randBytes(uint64(w*perWorker+i), 1000+i)); err != nil {
					t.Errorf("Put(%q): %v", name(w, i), err)
				}
			}
		})
	}
	wg.Wait()
	want := make(map[string]int64)
	for w := range workers {
		for i := range perWorker {
			n := name(w, i)
			checkData(t, "Get("+n+")", get(t, b, n), randBytes(uint64(w*perWorker+i), 1000+i))
			want[n] = int64(1000 + i)
		}
	}
	checkList(t, b, "", want)
}

// testAtomicReplace overwrites an object again and again while reading it:
// every read must return one whole version, never a mix or a prefix.
func testAtomicReplace(t *testing.T, b backend.Backend) {
	const name = "snapshots/replaced"
	versions := [][]byte{randBytes(7, 256<<10), randBytes(8, 256<<10), randBytes(9, 100<<10)}
	put(t, b, name, versions[0])

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range 30 {
			if err := b.Put(t.Context(), name, versions[i%len(versions)]); err != nil {
				t.Errorf("Put: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			got, err := backend.ReadAll(t.Context(), b, name, 1<<20)
			if err != nil {
				t.Errorf("ReadAll during overwrites: %v", err)
				return
			}
			if !bytes.Equal(got, versions[0]) && !bytes.Equal(got, versions[1]) && !bytes.Equal(got, versions[2]) {
				t.Errorf("read %d bytes that match no version that was put", len(got))
				return
			}
		}
	})
	wg.Wait()
}
