package repo

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"vaultbak/backend"
)

// sweeper is a region that reports temporary files and counts sweeps.
type sweeper struct {
	backend.Backend
	strays backend.Strays
	swept  atomic.Int32
}

func (s *sweeper) Strays(context.Context) (backend.Strays, error) { return s.strays, nil }

func (s *sweeper) Sweep(context.Context) (backend.Strays, error) {
	s.swept.Add(1)
	return backend.Strays{StaleAfter: s.strays.StaleAfter}, nil
}

// A writer sweeps every region it writes to while it writes, done by the
// time Commit returns; Check counts each region's temporary files apart
// from its problems and warnings (a fresh one may be a running backup's
// pack).
func TestSweepAndStrays(t *testing.T) {
	e := newEnv(t, 2, "x25519")
	sw := &sweeper{Backend: e.regions[0].Backend, strays: backend.Strays{Files: 2, Bytes: 300, Stale: 1, StaleBytes: 100, StaleAfter: 24 * time.Hour}}
	e.regions[0].Backend = sw

	r := e.open(e.keysHost())
	w := newWriter(t, r)
	commitTree(t, r, w, "f", saveAll(t, w, [][]byte{randomBlob(1, 5000)}), testTime)
	if n := sw.swept.Load(); n != 1 {
		t.Errorf("the writer swept the region %d times, want 1", n)
	}

	res, err := e.open(Keys{}).Check(context.Background(), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 0 || len(res.Warnings) != 0 {
		t.Errorf("Check: problems %v, warnings %q; want none", res.Problems, res.Warnings)
	}
	want := []RegionStrays{{Region: "r1", Strays: sw.strays}}
	if len(res.Strays) != 1 || res.Strays[0] != want[0] {
		t.Errorf("Check strays = %+v, want %+v (r2 has none to report)", res.Strays, want)
	}
}
