package backup

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"

	"vaultbak/repo"
)

// TestFileChangedWhileRead backs up a file that grows all the time: every
// read of it sees a different size at its end, so it is read maxAttempts
// times and stored as the last read saw it, with a warning that names it;
// a file beside it is stored without one.
func TestFileChangedWhileRead(t *testing.T) {
	e := newDirEnv(t)
	growing := filepath.Join(e.src, "growing.log")
	if err := os.WriteFile(growing, bytes.Repeat([]byte("x"), 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(growing, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		line := []byte("another line\n")
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.Write(line); err != nil {
				t.Error(err)
				return
			}
		}
	})

	r, err := repo.Open(context.Background(), e.regions(), repo.Keys{Host: e.host})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	warned := map[string]string{}
	res, err := Run(context.Background(), r, Options{Paths: []string{e.src}, Warn: func(p string, err error) {
		mu.Lock()
		warned[p] = err.Error()
		mu.Unlock()
	}}, nil)
	close(stop)
	wg.Wait()
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.Warnings != 1 || !strings.Contains(warned[growing], "changed while it was read 3 times; stored the last read") {
		t.Fatalf("warnings %d: %q, want one for %s", res.Warnings, warned, growing)
	}

	rr, err := repo.Open(context.Background(), e.regions(), repo.Keys{Recovery: []age.Identity{e.id}})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	tree, err := rr.LoadTree(context.Background(), e.subtree(res.Snapshot, "."))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]repo.Node{}
	for _, n := range tree.Nodes {
		names[string(n.Name)] = n
	}
	n, ok := names["growing.log"]
	if !ok || n.Size < 16<<20 || n.Hash == nil {
		t.Fatalf("growing.log stored as %+v, want its last read (at least 16 MiB, with its hash)", n)
	}
	if n, ok := names["top.txt"]; !ok || n.Size != uint64(len("content of top.txt")) {
		t.Fatalf("top.txt stored as %+v", n)
	}
}

// TestFileWithoutSize backs up a file of /proc, which states a size of 0
// but has content: it is read to its end and stored as read, with the
// warning that its size did not match, never silently empty.
func TestFileWithoutSize(t *testing.T) {
	const p = "/proc/self/status"
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Skipf("%s: no regular file stating size 0 here (%v, %v)", p, fi, err)
	}
	e := newDirEnv(t)
	r, err := repo.Open(context.Background(), e.regions(), repo.Keys{Host: e.host})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var warned []string
	res, err := Run(context.Background(), r, Options{Paths: []string{p}, Warn: func(path string, err error) {
		warned = append(warned, path+": "+err.Error())
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Warnings != 1 || !strings.Contains(warned[0], "changed while it was read") {
		t.Fatalf("warnings %d %q, want one that %s changed while it was read", res.Warnings, warned, p)
	}
	if res.Snapshot.Stats.Bytes == 0 {
		t.Fatalf("%s stored empty", p)
	}
}
