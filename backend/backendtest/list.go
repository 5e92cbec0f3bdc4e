package backendtest

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"vaultbak/backend"
)

func testListPrefixes(t *testing.T, b backend.Backend) {
	objects := map[string]int64{
		"config":         1,
		"keys/k1":        2,
		"data/ab/ab01":   3,
		"data/ab/ab02":   4,
		"data/cd/cd01":   5,
		"datax/1":        6,
		"index/i1":       7,
		"snapshots/ab12": 8,
		"snapshots/ab34": 9,
		"snapshots/cd56": 10,
	}
	for name, size := range objects {
		put(t, b, name, randBytes(6, int(size)))
	}
	for _, prefix := range []string{
		"", "data/", "data/ab/", "data/ab", "data", "d", "snapshots/", "snapshots/ab",
		"snapshots/ab12", "snapshots/ab12x", "keys/", "config", "nothing/", "nothing",
	} {
		want := maps.Clone(objects)
		maps.DeleteFunc(want, func(name string, _ int64) bool { return !strings.HasPrefix(name, prefix) })
		checkList(t, b, prefix, want)
	}
}

func testListMany(t *testing.T, b backend.Backend) {
	const n = 1200
	want := make(map[string]int64, n)
	for i := range n {
		want[fmt.Sprintf("many/%04d", i)] = int64(i % 10)
	}
	names := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for name := range names {
				if err := b.Put(t.Context(), name, make([]byte, want[name])); err != nil {
					t.Errorf("Put(%q): %v", name, err)
				}
			}
		})
	}
	for name := range want {
		names <- name
	}
	close(names)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	checkList(t, b, "", want)
	checkList(t, b, "many/", want)
	if got := len(list(t, b, "many/1")); got != 200 {
		t.Errorf("List(%q) reported %d objects, want 200", "many/1", got)
	}
}

func testListCallbackError(t *testing.T, b backend.Backend) {
	for i := range 5 {
		put(t, b, fmt.Sprintf("index/i%d", i), []byte("x"))
	}
	errStop := errors.New("stop")
	calls := 0
	err := b.List(t.Context(), "index/", func(backend.Info) error {
		calls++
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Errorf("List = %v, want the callback's error", err)
	}
	if calls != 1 {
		t.Errorf("callback ran %d times after returning an error, want 1", calls)
	}
}

// testListDeleteInCallback checks that the callback may use the backend, as
// a prune that deletes what it lists does.
func testListDeleteInCallback(t *testing.T, b backend.Backend) {
	for i := range 20 {
		put(t, b, fmt.Sprintf("data/%02d/p%d", i%3, i), []byte("x"))
	}
	put(t, b, "config", []byte("c"))
	err := b.List(t.Context(), "data/", func(info backend.Info) error {
		return b.Delete(t.Context(), info.Name)
	})
	if err != nil {
		t.Fatalf("List deleting each object: %v", err)
	}
	checkList(t, b, "", map[string]int64{"config": 1})
}
