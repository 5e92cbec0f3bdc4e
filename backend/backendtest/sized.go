package backendtest

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"vaultbak/backend"
)

// testOpenSized checks a backend.SizedOpener: an object opened with its
// size reads as one opened with Open; a missing object and an object of
// another size open, and their first read reports them.
func testOpenSized(t *testing.T, b backend.Backend) {
	so, ok := b.(backend.SizedOpener)
	if !ok {
		t.Skip("not a backend.SizedOpener")
	}
	const name, size = "data/ef/sized", 300<<10 + 7
	data := randBytes(5, size)
	put(t, b, name, data)
	obj, err := so.OpenSized(t.Context(), name, size)
	if err != nil {
		t.Fatalf("OpenSized(%q): %v", name, err)
	}
	defer obj.Close()
	if obj.Size() != size {
		t.Errorf("Size() = %d, want %d", obj.Size(), size)
	}
	buf := make([]byte, 4096)
	if n, err := obj.ReadAt(buf, size-4096); n != len(buf) || (err != nil && err != io.EOF) {
		t.Fatalf("ReadAt at the end = %d, %v", n, err)
	}
	checkData(t, "ReadAt at the end", buf, data[size-4096:])

	missing, err := so.OpenSized(t.Context(), "data/ef/missing", size)
	if err != nil {
		t.Fatalf("OpenSized of a missing object: %v (the first read reports it)", err)
	}
	defer missing.Close()
	_, err = missing.ReadAt(buf, 0)
	checkNotFound(t, "ReadAt of a missing object", err)

	for _, wrong := range []int64{size + 1, size - 1, 2 * size} {
		obj, err := so.OpenSized(t.Context(), name, wrong)
		if err != nil {
			t.Fatalf("OpenSized(%q, %d): %v", name, wrong, err)
		}
		for _, off := range []int64{0, wrong - 10} {
			_, err := obj.ReadAt(buf[:10], off)
			if !errors.Is(err, backend.ErrWrongSize) {
				t.Errorf("ReadAt(10 bytes at %d) of a %d-byte object opened as %d: %v, want ErrWrongSize", off, size, wrong, err)
			}
		}
		obj.Close()
	}
}

// testStream checks a backend.Streamer: a stream of any range gives the
// range's bytes and ends there, and may be closed before its end.
func testStream(t *testing.T, b backend.Backend) {
	const size = 2<<20 + 99
	data, obj := open(t, b, size)
	st, ok := obj.(backend.Streamer)
	if !ok {
		t.Skip("objects are not backend.Streamers")
	}
	for _, tc := range []struct{ off, end int64 }{{0, size}, {1, 2}, {1 << 20, size}, {size - 1, size}, {100, 1<<20 + 5}} {
		rc, err := st.Stream(tc.off, tc.end)
		if err != nil {
			t.Fatalf("Stream(%d, %d): %v", tc.off, tc.end, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("Stream(%d, %d): read: %v", tc.off, tc.end, err)
		}
		checkData(t, fmt.Sprintf("Stream(%d, %d)", tc.off, tc.end), got, data[tc.off:tc.end])
	}
	// Closed early, while another stream and a ReadAt go on.
	first, err := st.Stream(0, size)
	if err != nil {
		t.Fatal(err)
	}
	second, err := st.Stream(size/2, size)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	if _, err := io.ReadFull(first, buf); err != nil {
		t.Fatal(err)
	}
	checkData(t, "first stream", buf, data[:1000])
	if err := first.Close(); err != nil {
		t.Errorf("Close before the end: %v", err)
	}
	if _, err := obj.ReadAt(buf, 5000); err != nil {
		t.Fatal(err)
	}
	checkData(t, "ReadAt beside a stream", buf, data[5000:6000])
	rest, err := io.ReadAll(second)
	second.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkData(t, "second stream", rest, data[size/2:])
	if _, err := st.Stream(10, size+1); err == nil {
		t.Error("Stream past the end succeeded")
	}
}
