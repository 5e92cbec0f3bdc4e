package backendtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"vaultbak/backend"
)

func testLocation(t *testing.T, b backend.Backend) {
	if b.Location() == "" {
		t.Error("Location() is empty")
	}
}

func testPutGet(t *testing.T, b backend.Backend) {
	for _, size := range []int{0, 1, 4097, 20 << 20} {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			name := fmt.Sprintf("data/ab/object-%d", size)
			data := randBytes(uint64(size), size)
			put(t, b, name, data)
			checkData(t, "Get", get(t, b, name), data)

			got, err := backend.ReadAll(t.Context(), b, name, int64(size))
			if err != nil {
				t.Fatalf("ReadAll with limit = size: %v", err)
			}
			checkData(t, "ReadAll", got, data)
			if size > 0 {
				if _, err := backend.ReadAll(t.Context(), b, name, int64(size-1)); err == nil {
					t.Error("ReadAll with limit = size-1 succeeded")
				}
			}
		})
	}
}

func testOverwrite(t *testing.T, b backend.Backend) {
	first, second := randBytes(1, 1000), randBytes(2, 10)
	put(t, b, "config", first)
	put(t, b, "config", second)
	checkData(t, "Get after overwrite", get(t, b, "config"), second)
	info, err := b.Stat(t.Context(), "config")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(second)) {
		t.Errorf("Stat after overwrite: size %d, want %d", info.Size, len(second))
	}
	checkList(t, b, "", map[string]int64{"config": int64(len(second))})
}

func testStat(t *testing.T, b backend.Backend) {
	for name, size := range map[string]int{"config": 0, "keys/k1": 1, "data/ab/ab12": 12345} {
		put(t, b, name, randBytes(3, size))
		info, err := b.Stat(t.Context(), name)
		if err != nil {
			t.Fatalf("Stat(%q): %v", name, err)
		}
		if want := (backend.Info{Name: name, Size: int64(size)}); info != want {
			t.Errorf("Stat(%q) = %+v, want %+v", name, info, want)
		}
	}
}

// open puts size random bytes under a fixed name and opens them.
func open(t *testing.T, b backend.Backend, size int) ([]byte, backend.Object) {
	t.Helper()
	const name = "data/cd/opened"
	data := randBytes(4, size)
	put(t, b, name, data)
	obj, err := b.Open(t.Context(), name)
	if err != nil {
		t.Fatalf("Open(%q): %v", name, err)
	}
	t.Cleanup(func() {
		if err := obj.Close(); err != nil {
			t.Errorf("Object.Close: %v", err)
		}
	})
	if obj.Size() != int64(size) {
		t.Fatalf("Object.Size() = %d, want %d", obj.Size(), size)
	}
	return data, obj
}

func testOpenReadAt(t *testing.T, b backend.Backend) {
	const size = 1<<20 + 123
	data, obj := open(t, b, size)
	for _, tc := range []struct{ off, n int }{
		{0, 1}, {0, 4096}, {1000, 1}, {size / 2, 65536}, {size - 4096, 4096}, {size - 1, 1}, {0, size},
	} {
		buf := make([]byte, tc.n)
		n, err := obj.ReadAt(buf, int64(tc.off))
		if n != tc.n || (err != nil && !(err == io.EOF && tc.off+tc.n == size)) {
			t.Errorf("ReadAt(%d bytes, off %d) = %d, %v; want %d, nil", tc.n, tc.off, n, err, tc.n)
			continue
		}
		checkData(t, fmt.Sprintf("ReadAt(%d bytes, off %d)", tc.n, tc.off), buf, data[tc.off:tc.off+tc.n])
	}
}

func testReadAtPastEnd(t *testing.T, b backend.Backend) {
	const size = 1000
	data, obj := open(t, b, size)
	for _, tc := range []struct {
		off, n, wantN int
	}{
		{950, 100, 50}, // spans the end
		{size, 10, 0},  // starts at the end
		{5000, 10, 0},  // starts beyond the end
	} {
		buf := make([]byte, tc.n)
		n, err := obj.ReadAt(buf, int64(tc.off))
		if n != tc.wantN || err != io.EOF {
			t.Errorf("ReadAt(%d bytes, off %d) = %d, %v; want %d, io.EOF", tc.n, tc.off, n, err, tc.wantN)
			continue
		}
		if n > 0 {
			checkData(t, fmt.Sprintf("ReadAt(%d bytes, off %d)", tc.n, tc.off), buf[:n], data[tc.off:tc.off+n])
		}
	}

	put(t, b, "empty", nil)
	empty, err := b.Open(t.Context(), "empty")
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if n, err := empty.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF {
		t.Errorf("ReadAt on an empty object = %d, %v; want 0, io.EOF", n, err)
	}
}

func testNotFound(t *testing.T, b backend.Backend) {
	put(t, b, "config", []byte("c"))
	put(t, b, "data/ab/ab12", []byte("d"))
	// "config/x" lies below an object, "data" and "data/ab" are prefixes of
	// one: none of them is an object.
	for _, name := range []string{"missing", "snapshots/missing", "config/x", "data/ab", "data"} {
		_, err := b.Open(t.Context(), name)
		checkNotFound(t, fmt.Sprintf("Open(%q)", name), err)
		if err != nil && !strings.Contains(err.Error(), name) {
			t.Errorf("Open(%q): error %q does not name the object", name, err)
		}
		_, err = b.Get(t.Context(), name)
		checkNotFound(t, fmt.Sprintf("Get(%q)", name), err)
		_, err = b.Stat(t.Context(), name)
		checkNotFound(t, fmt.Sprintf("Stat(%q)", name), err)
		err = b.Delete(t.Context(), name)
		checkNotFound(t, fmt.Sprintf("Delete(%q)", name), err)
	}
	checkList(t, b, "", map[string]int64{"config": 1, "data/ab/ab12": 1})
}

func testInvalidNames(t *testing.T, b backend.Backend) {
	put(t, b, "a/b", []byte("x"))
	for _, name := range []string{
		"", "../x", "a/../b", "/abs", "a//b", "a/./b", ".", "..", "a/", "a\\b", "a\x00b",
	} {
		if err := b.Put(t.Context(), name, []byte("x")); err == nil {
			t.Errorf("Put(%q) succeeded", name)
		} else if errors.Is(err, backend.ErrNotFound) {
			t.Errorf("Put(%q) = %v, want an invalid-name error", name, err)
		}
		if _, err := b.Open(t.Context(), name); err == nil {
			t.Errorf("Open(%q) succeeded", name)
		}
		if _, err := b.Get(t.Context(), name); err == nil {
			t.Errorf("Get(%q) succeeded", name)
		}
		if _, err := b.Stat(t.Context(), name); err == nil {
			t.Errorf("Stat(%q) succeeded", name)
		}
		if err := b.Delete(t.Context(), name); err == nil {
			t.Errorf("Delete(%q) succeeded", name)
		}
	}
	checkList(t, b, "", map[string]int64{"a/b": 1})
}

func testPutDoesNotRetain(t *testing.T, b backend.Backend) {
	data := randBytes(5, 100_000)
	orig := append([]byte(nil), data...)
	put(t, b, "index/i1", data)
	for i := range data {
		data[i] ^= 0xff
	}
	checkData(t, "Get after changing the slice given to Put", get(t, b, "index/i1"), orig)
}

func testDelete(t *testing.T, b backend.Backend) {
	put(t, b, "snapshots/s1", []byte("one"))
	put(t, b, "snapshots/s2", []byte("two"))
	if err := b.Delete(t.Context(), "snapshots/s1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := b.Stat(t.Context(), "snapshots/s1")
	checkNotFound(t, "Stat after Delete", err)
	_, err = b.Get(t.Context(), "snapshots/s1")
	checkNotFound(t, "Get after Delete", err)
	checkNotFound(t, "second Delete", b.Delete(t.Context(), "snapshots/s1"))
	checkList(t, b, "", map[string]int64{"snapshots/s2": 3})
	checkData(t, "Get of the other object", get(t, b, "snapshots/s2"), []byte("two"))
}

func testCanceledContext(t *testing.T, b backend.Backend) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := b.Put(ctx, "config", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context = %v, want context.Canceled", err)
	}
	_, err := b.Stat(t.Context(), "config")
	checkNotFound(t, "Stat after a canceled Put", err)
	err = b.List(ctx, "", func(backend.Info) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("List with a canceled context = %v, want context.Canceled", err)
	}
}
