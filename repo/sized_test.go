package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vaultbak/backend"
	"vaultbak/backend/mem"
)

// lazyMem serves a mem region the way the S3 backend does: it opens an
// object of known size without a stat (backend.SizedOpener), objects
// stream (backend.Streamer), and the first read reports a missing object
// or one of another size. failReads fails every read as a network would.
type lazyMem struct {
	*mem.Mem
	opens     atomic.Int64 // Open calls (with their stat)
	failReads atomic.Bool
}

var _ backend.SizedOpener = (*lazyMem)(nil)

func (m *lazyMem) Open(ctx context.Context, name string) (backend.Object, error) {
	m.opens.Add(1)
	return m.Mem.Open(ctx, name)
}

func (m *lazyMem) OpenSized(ctx context.Context, name string, size int64) (backend.Object, error) {
	return &lazyObject{m: m, name: name, size: size}, nil
}

type lazyObject struct {
	m    *lazyMem
	name string
	size int64
}

var _ backend.Streamer = (*lazyObject)(nil)

func (o *lazyObject) Size() int64  { return o.size }
func (o *lazyObject) Close() error { return nil }

// load reads the object and checks its size, as each S3 response does.
func (o *lazyObject) load() ([]byte, error) {
	if o.m.failReads.Load() {
		return nil, errors.New("lazymem: connection reset by peer")
	}
	data, err := backend.ReadAll(context.Background(), o.m.Mem, o.name, 1<<30)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != o.size {
		return nil, fmt.Errorf("lazymem: %s: %w", o.name, backend.ErrWrongSize)
	}
	return data, nil
}

func (o *lazyObject) ReadAt(p []byte, off int64) (int, error) {
	data, err := o.load()
	if err != nil {
		return 0, err
	}
	return bytes.NewReader(data).ReadAt(p, off)
}

func (o *lazyObject) Stream(off, end int64) (io.ReadCloser, error) {
	data, err := o.load()
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(data[off:end])), nil
}

// lazyRegions puts lazyMem in front of every region of e.
func lazyRegions(e *env) []*lazyMem {
	var out []*lazyMem
	for i, m := range e.mems {
		l := &lazyMem{Mem: m}
		e.regions[i].Backend = l
		out = append(out, l)
	}
	return out
}

// TestLoadBlobSizedOpen reads packs opened without a stat: every blob
// loads, and no Open (no stat) is made.
func TestLoadBlobSizedOpen(t *testing.T) {
	e, blobs, ids := twoRegionRepo(t)
	lazy := lazyRegions(e)
	r := e.open(e.keysRecovery())
	for i, id := range ids {
		got, err := r.LoadBlob(t.Context(), id, nil)
		if err != nil || !bytes.Equal(got, blobs[i]) {
			t.Fatalf("LoadBlob(%d): %v", i, err)
		}
	}
	if n := lazy[0].opens.Load(); n != 0 {
		t.Errorf("%d packs opened with a stat", n)
	}
}

// A pack missing in a region, opened without a stat, is still a missing
// object there: the next region serves the blob, the region is not marked
// down, and when every region misses the pack the error says so.
func TestLoadBlobSizedOpenMissing(t *testing.T) {
	e, blobs, ids := twoRegionRepo(t)
	lazyRegions(e)
	r := e.open(e.keysRecovery())
	pack := e.packOf(t, r, ids[1])
	if err := e.mems[0].Delete(t.Context(), pack); err != nil {
		t.Fatal(err)
	}
	got, err := r.LoadBlob(t.Context(), ids[1], nil)
	if err != nil || !bytes.Equal(got, blobs[1]) {
		t.Fatalf("LoadBlob with the pack missing in r1: %v", err)
	}
	if down := r.Down(); len(down) != 0 {
		t.Errorf("a missing pack marked regions down: %v", down)
	}
	_, failures := r.Served()
	if len(failures) != 1 || !strings.Contains(failures[0], backend.ErrNotFound.Error()) || strings.Contains(failures[0], "integrity") {
		t.Errorf("failover reasons %q, want one that the pack was not found", failures)
	}

	if err := e.mems[1].Delete(t.Context(), pack); err != nil {
		t.Fatal(err)
	}
	r2 := e.open(e.keysRecovery())
	_, err = r2.LoadBlob(t.Context(), ids[1], nil)
	if !isIntegrity(err) || !strings.Contains(err.Error(), "missing in every region") {
		t.Fatalf("LoadBlob with the pack missing everywhere: %v", err)
	}
	if down := r2.Down(); len(down) != 0 {
		t.Errorf("a missing pack marked regions down: %v", down)
	}
}

// A copy of a pack whose stored size is not the index's is damaged in
// its region: the next region serves the blob; damaged everywhere, the
// load is an integrity failure.
func TestLoadBlobSizedOpenWrongSize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"longer", func(s []byte) []byte { return append(append([]byte(nil), s...), 0) }},
		{"shorter", func(s []byte) []byte { return s[:len(s)-1] }},
		{"a header only", func(s []byte) []byte { return s[:200] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, blobs, ids := twoRegionRepo(t)
			lazyRegions(e)
			r := e.open(e.keysRecovery())
			pack := e.packOf(t, r, ids[0])
			raw, _ := e.mems[0].Raw(pack)
			e.mems[0].SetRaw(pack, tc.damage(raw))
			got, err := r.LoadBlob(t.Context(), ids[0], nil)
			if err != nil || !bytes.Equal(got, blobs[0]) {
				t.Fatalf("LoadBlob with a damaged copy in r1: %v", err)
			}
			_, failures := r.Served()
			if len(failures) != 1 || !strings.Contains(failures[0], "integrity: region r1") || !strings.Contains(failures[0], backend.ErrWrongSize.Error()) {
				t.Errorf("failover reasons %q, want r1's copy of another size", failures)
			}
			if down := r.Down(); len(down) != 0 {
				t.Errorf("a damaged copy marked regions down: %v", down)
			}

			e.mems[1].SetRaw(pack, tc.damage(raw))
			r2 := e.open(e.keysRecovery())
			if _, err := r2.LoadBlob(t.Context(), ids[0], nil); !isIntegrity(err) {
				t.Fatalf("LoadBlob with both copies damaged: %v, want an integrity error", err)
			}
		})
	}
}

// A region that fails to serve a pack's reads (a network failure) is a
// region error, not damage: the region is marked down and the next one
// serves the blob.
func TestLoadBlobSizedOpenReadFailure(t *testing.T) {
	e, blobs, ids := twoRegionRepo(t)
	lazy := lazyRegions(e)
	r := e.open(e.keysRecovery())
	lazy[0].failReads.Store(true)
	got, err := r.LoadBlob(t.Context(), ids[2], nil)
	if err != nil || !bytes.Equal(got, blobs[2]) {
		t.Fatalf("LoadBlob with r1 failing: %v", err)
	}
	if _, down := r.Down()["r1"]; !down {
		t.Errorf("r1 not marked down after failing reads: %v", r.Down())
	}
	_, failures := r.Served()
	if len(failures) != 1 || !strings.Contains(failures[0], "region r1") || strings.Contains(failures[0], "integrity") {
		t.Errorf("failover reasons %q, want r1's region error", failures)
	}

	// Failing in every region, the load fails as a region error.
	lazy[1].failReads.Store(true)
	r2 := e.open(e.keysRecovery())
	_, err = r2.LoadBlob(t.Context(), ids[2], nil)
	var re *RegionError
	if err == nil || isIntegrity(err) || !errors.As(err, &re) {
		t.Fatalf("LoadBlob with every region failing: %v, want region errors", err)
	}
}

// Prefetch opens a pack ahead of its read, once.
func TestPrefetch(t *testing.T) {
	e, blobs, ids := twoRegionRepo(t)
	r := e.open(e.keysRecovery())
	r.Prefetch(t.Context(), ids[0])
	loc, _ := r.Index().Lookup(ids[0])
	k := packKey{"r1", loc.Pack}
	for {
		r.readers.mu.Lock()
		_, open := r.readers.open[k]
		busy := r.readers.prefetching
		r.readers.mu.Unlock()
		if open && busy == 0 {
			break
		}
		if !open && busy == 0 {
			t.Fatal("Prefetch did not open the pack")
		}
		time.Sleep(time.Millisecond)
	}
	got, err := r.LoadBlob(t.Context(), ids[0], nil)
	if err != nil || !bytes.Equal(got, blobs[0]) {
		t.Fatalf("LoadBlob after Prefetch: %v", err)
	}
}

// A pack opened after the repository closed (by a prefetch that outlived
// its caller) serves its read and is not kept open.
func TestPackCacheClosed(t *testing.T) {
	e, blobs, ids := twoRegionRepo(t)
	r := e.open(e.keysRecovery())
	r.readers.close()
	got, err := r.LoadBlob(t.Context(), ids[0], nil)
	if err != nil || !bytes.Equal(got, blobs[0]) {
		t.Fatalf("LoadBlob after close: %v", err)
	}
	r.Prefetch(t.Context(), ids[1])
	r.readers.mu.Lock()
	defer r.readers.mu.Unlock()
	if n, busy := r.readers.lru.Len(), r.readers.prefetching; n != 0 || busy != 0 {
		t.Errorf("after close: %d packs kept open, %d prefetches", n, busy)
	}
}
