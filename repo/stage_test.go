package repo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"vaultbak/backend"
	"vaultbak/crypt"
)

// stagingMem stages objects for an in-memory region the way a local
// directory does (in a buffer here, put on Commit), so that writer tests
// run the staged path and can make it fail.
type stagingMem struct {
	backend.Backend
	failWriteAfter int  // > 0: a Write fails once an object would pass this many bytes
	failCommit     bool // every Commit fails

	mu      sync.Mutex
	staged  int // Stage calls
	pending int // staged, neither committed nor aborted
}

func (s *stagingMem) CanStage() bool { return true }

func (s *stagingMem) Stage(ctx context.Context) (backend.Staged, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staged++
	s.pending++
	return &memStaged{s: s}, nil
}

func (s *stagingMem) counts() (staged, pending int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.staged, s.pending
}

type memStaged struct {
	s    *stagingMem
	buf  bytes.Buffer
	done bool
}

func (m *memStaged) Write(p []byte) (int, error) {
	if m.s.failWriteAfter > 0 && m.buf.Len()+len(p) > m.s.failWriteAfter {
		return 0, errors.New("disk full")
	}
	return m.buf.Write(p)
}

func (m *memStaged) Commit(ctx context.Context, name string) error {
	if m.s.failCommit {
		return errors.New("rename failed")
	}
	if err := m.s.Backend.Put(ctx, name, m.buf.Bytes()); err != nil {
		return err
	}
	m.finish()
	return nil
}

func (m *memStaged) Abort() { m.finish() }

func (m *memStaged) finish() {
	if !m.done {
		m.done = true
		m.s.mu.Lock()
		m.s.pending--
		m.s.mu.Unlock()
	}
}

// stagingEnv opens the repository of a new 2-region env over staging
// regions.
func stagingEnv(t *testing.T) (*env, []*stagingMem, *Repository) {
	e := newEnv(t, 2, crypt.KindX25519)
	st := []*stagingMem{{Backend: e.regions[0].Backend}, {Backend: e.regions[1].Backend}}
	r, err := Open(context.Background(), []*Region{{Name: "r1", Backend: st[0]}, {Name: "r2", Backend: st[1]}}, e.keysAll())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return e, st, r
}

// Packs stream to regions that stage objects: several packs, each within
// PackSize, every one named by the hash of what was staged, and the data
// reads back from a fresh open.
func TestStagedPacks(t *testing.T) {
	e, st, r := stagingEnv(t)
	if !r.StagesPacks() || r.PackBufferBytes() != 0 {
		t.Fatalf("StagesPacks() = %v, PackBufferBytes() = %d over staging regions", r.StagesPacks(), r.PackBufferBytes())
	}
	if e.repo.StagesPacks() {
		t.Fatal("in-memory regions claim to stage")
	}
	w := newWriter(t, r)
	var blobs [][]byte
	for i := range 70 {
		blobs = append(blobs, randomBlob(uint64(100+i), 50000))
	}
	ids := saveAll(t, w, blobs)
	commitTree(t, r, w, "f", ids, testTime)
	for i := range 2 {
		packs := e.names(i, "data/")
		if len(packs) < 3 {
			t.Fatalf("region %d holds %d packs, want at least 3 for 3.3 MiB in 1 MiB packs", i+1, len(packs))
		}
		for _, name := range packs {
			data, _ := e.mems[i].Raw(name)
			if PackName(objectHash(data)) != name {
				t.Errorf("region %d: %s does not hash to its name", i+1, name)
			}
			if len(data) > packBufSize(testPackSize) {
				t.Errorf("region %d: %s is %d bytes, more than a pack buffer (%d)", i+1, name, len(data), packBufSize(testPackSize))
			}
		}
		if staged, pending := st[i].counts(); pending != 0 || staged < len(packs) {
			t.Errorf("region %d: %d staged, %d left open", i+1, staged, pending)
		}
	}
	checkBlobs(t, e.open(e.keysRecovery()), ids, blobs)
}

// A region whose staged write or commit fails is dropped for the run, as
// a failed put is: with a quorum of one the snapshot commits in the other
// region and the failing one lags; with both required, nothing commits.
// Either way no staged object is left open.
func TestStagedRegionFails(t *testing.T) {
	for _, fault := range []string{"write", "commit"} {
		for _, quorum := range []int{1, 2} {
			t.Run(fault+"/quorum="+string(rune('0'+quorum)), func(t *testing.T) {
				e, st, r := stagingEnv(t)
				if fault == "write" {
					st[1].failWriteAfter = 300 << 10
				} else {
					st[1].failCommit = true
				}
				w, err := r.NewWriter(context.Background(), WriterOptions{Quorum: quorum})
				if err != nil {
					t.Fatal(err)
				}
				var blobs [][]byte
				for i := range 30 {
					blobs = append(blobs, randomBlob(uint64(200+i), 50000))
				}
				var ids []crypt.ID
				for _, b := range blobs {
					id, err := w.SaveBlob(context.Background(), DataBlob, b)
					if err != nil {
						break
					}
					ids = append(ids, id)
				}
				tree, _ := EncodeTree(&Tree{Nodes: []Node{{Name: []byte("f"), Type: NodeFile, Content: ids}}})
				root, err := w.SaveBlob(context.Background(), TreeBlob, tree)
				if err == nil {
					_, err = w.Commit(context.Background(), &Manifest{Time: testTime, Tree: root}, &ManifestBody{}, 0, "")
				}
				if quorum == 2 {
					if err == nil || !errors.Is(err, ErrBelowQuorum) || !strings.Contains(err.Error(), "r2") {
						t.Fatalf("backup with r2 failing, both required: %v, want ErrBelowQuorum naming r2", err)
					}
					w.Abort()
					for i := range 2 {
						if s := e.names(i, "snapshots/"); len(s) != 0 {
							t.Errorf("region %d holds a manifest: %v", i+1, s)
						}
					}
				} else {
					if err != nil {
						t.Fatalf("Commit with quorum 1: %v", err)
					}
					if lag := w.Lagging(); len(lag) != 1 || lag["r2"] == nil {
						t.Errorf("Lagging() = %v, want r2", lag)
					}
					if s := e.names(1, "snapshots/"); len(s) != 0 {
						t.Errorf("failing region holds a manifest: %v", s)
					}
					checkBlobs(t, e.open(e.keysRecovery()), ids, blobs)
				}
				for i := range 2 {
					if _, pending := st[i].counts(); pending != 0 {
						t.Errorf("region %d: %d staged objects left open", i+1, pending)
					}
				}
			})
		}
	}
}
