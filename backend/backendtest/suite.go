package backendtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"vaultbak/backend"
)

// Run runs the conformance suite, one subtest per property. newBackend must
// return a new, empty backend on each call; Run closes it when the subtest
// ends.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, backend.Backend)
	}{
		{"Location", testLocation},
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"Stat", testStat},
		{"OpenReadAt", testOpenReadAt},
		{"ConcurrentReadAt", testConcurrentReadAt},
		{"ReadAtPastEnd", testReadAtPastEnd},
		{"OpenSized", testOpenSized},
		{"Stream", testStream},
		{"NotFound", testNotFound},
		{"InvalidNames", testInvalidNames},
		{"PutDoesNotRetainData", testPutDoesNotRetain},
		{"Delete", testDelete},
		{"CanceledContext", testCanceledContext},
		{"ListPrefixes", testListPrefixes},
		{"ListMany", testListMany},
		{"ListCallbackError", testListCallbackError},
		{"ListDeleteInCallback", testListDeleteInCallback},
		{"ConcurrentPut", testConcurrentPut},
		{"AtomicReplace", testAtomicReplace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, b)
		})
	}
}

// randBytes returns n pseudo-random bytes, the same for the same seed.
func randBytes(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	data := make([]byte, n)
	rand.NewChaCha8(key).Read(data)
	return data
}

func put(t *testing.T, b backend.Backend, name string, data []byte) {
	t.Helper()
	if err := b.Put(t.Context(), name, data); err != nil {
		t.Fatalf("Put(%q): %v", name, err)
	}
}

func get(t *testing.T, b backend.Backend, name string) []byte {
	t.Helper()
	rc, err := b.Get(t.Context(), name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q): read: %v", name, err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Get(%q): Close: %v", name, err)
	}
	return data
}

// checkData fails the test when got differs from want, without printing
// megabytes of either.
func checkData(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Errorf("%s: got %d bytes, want %d", what, len(got), len(want))
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s: %d bytes, first difference at offset %d", what, len(got), i)
			return
		}
	}
}

// list returns the names and sizes List reports for prefix, failing the
// test when a name is reported twice.
func list(t *testing.T, b backend.Backend, prefix string) map[string]int64 {
	t.Helper()
	got := make(map[string]int64)
	err := b.List(t.Context(), prefix, func(info backend.Info) error {
		if _, dup := got[info.Name]; dup {
			t.Errorf("List(%q): %q reported twice", prefix, info.Name)
		}
		got[info.Name] = info.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return got
}

func checkList(t *testing.T, b backend.Backend, prefix string, want map[string]int64) {
	t.Helper()
	got := list(t, b, prefix)
	if maps.Equal(got, want) {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if size, ok := got[name]; !ok {
			t.Errorf("List(%q): missing %q", prefix, name)
		} else if size != want[name] {
			t.Errorf("List(%q): %q has size %d, want %d", prefix, name, size, want[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[name]; !ok {
			t.Errorf("List(%q): unexpected %q", prefix, name)
		}
	}
}

func checkNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("%s: got error %v, want one wrapping backend.ErrNotFound", what, err)
	}
}
