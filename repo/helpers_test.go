package repo

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"vaultbak/backend"
	"vaultbak/backend/mem"
	"vaultbak/chunk"
	"vaultbak/crypt"
)

// Small parameters keep the tests fast: 1 MiB packs (the smallest a config
// may hold) and tiny chunks.
var (
	testChunker = chunk.Params{Algorithm: chunk.AlgorithmFastCDC, Min: 2048, Avg: 8192, Max: 32768}
	testTime    = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
)

const testPackSize = 1 << 20

// env is a repository under test over in-memory regions.
type env struct {
	t        testing.TB
	mems     []*mem.Mem
	regions  []*Region
	recovery age.Identity
	host     *crypt.HostCredential
	repo     *Repository // as returned by Init
}

// newEnv initialises a repository over n in-memory regions with an X25519
// recovery identity (kind) and the test parameters.
func newEnv(t testing.TB, n int, kind string) *env {
	t.Helper()
	id, rec, err := crypt.GenerateIdentity(kind)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, recovery: id}
	for i := range n {
		m := mem.New(regionName(i))
		e.mems = append(e.mems, m)
		e.regions = append(e.regions, &Region{Name: regionName(i), Backend: m})
	}
	r, host, err := Init(context.Background(), e.regions, InitOptions{
		Recovery: []string{rec},
		Host:     "host-a",
		Chunker:  testChunker,
		PackSize: testPackSize,
		Now:      testTime,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.repo, e.host = r, host
	t.Cleanup(func() { r.Close() })
	return e
}

func regionName(i int) string { return "r" + string(rune('1'+i)) }

// open opens the repository afresh (new index, empty pack cache).
func (e *env) open(keys Keys) *Repository {
	e.t.Helper()
	r, err := Open(context.Background(), e.regions, keys)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { r.Close() })
	return r
}

func (e *env) keysAll() Keys      { return Keys{Recovery: []age.Identity{e.recovery}, Host: e.host} }
func (e *env) keysRecovery() Keys { return Keys{Recovery: []age.Identity{e.recovery}} }
func (e *env) keysHost() Keys     { return Keys{Host: e.host} }

// names returns the object names under prefix in mem region i, sorted.
func (e *env) names(i int, prefix string) []string {
	var out []string
	e.mems[i].List(context.Background(), prefix, func(fi backend.Info) error {
		out = append(out, fi.Name)
		return nil
	})
	sort.Strings(out)
	return out
}

func newWriter(t testing.TB, r *Repository) *Writer {
	t.Helper()
	w, err := r.NewWriter(context.Background(), WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// randomBlob returns n incompressible bytes named by seed. randomBlob and
// textBlob regenerate the golden repository's content: never change them.
func randomBlob(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	s[8] = 0x5b
	rand.NewChaCha8(s).Read(b)
	return b
}

// textBlob returns n compressible bytes named by seed.
func textBlob(seed uint64, n int) []byte {
	words := []string{"backup ", "vault ", "region ", "pack ", "chunk ", "tree ", "manifest ", "index\n"}
	rng := rand.New(rand.NewPCG(seed, 99))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

// commitTree stores a one-file tree for content and commits a snapshot.
func commitTree(t testing.TB, r *Repository, w *Writer, name string, ids []crypt.ID, at time.Time, tags ...string) *Snapshot {
	t.Helper()
	ctx := context.Background()
	tree := &Tree{Nodes: []Node{{Name: []byte(name), Type: NodeFile, Mode: 0o644, Content: ids}}}
	data, err := EncodeTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	root, err := w.SaveBlob(ctx, TreeBlob, data)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seq, head := ChainHead(snaps, r.Host().Host)
	s, err := w.Commit(ctx, &Manifest{Time: at, Tags: tags, Tree: root}, &ManifestBody{Paths: [][]byte{[]byte("/src/" + name)}}, seq, head)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// saveAll saves every blob as data and returns their IDs.
func saveAll(t testing.TB, w *Writer, blobs [][]byte) []crypt.ID {
	t.Helper()
	var ids []crypt.ID
	for _, b := range blobs {
		id, err := w.SaveBlob(context.Background(), DataBlob, b)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// checkBlobs loads every blob and compares it with want.
func checkBlobs(t testing.TB, r *Repository, ids []crypt.ID, want [][]byte) {
	t.Helper()
	for i, id := range ids {
		got, err := r.LoadBlob(context.Background(), id, nil)
		if err != nil {
			t.Fatalf("LoadBlob #%d: %v", i, err)
		}
		if !bytes.Equal(got, want[i]) {
			t.Fatalf("LoadBlob #%d: content differs", i)
		}
	}
}

// isIntegrity reports whether err is or wraps an *IntegrityError.
func isIntegrity(err error) bool {
	var ie *IntegrityError
	return errors.As(err, &ie) && errors.Is(err, ErrIntegrity)
}

// recorder is a backend that logs every Put in order, across regions.
type recorder struct {
	backend.Backend
	region string
	log    *putLog
}

type putLog struct {
	mu   sync.Mutex
	puts []string // "region name"
}

func (r *recorder) Put(ctx context.Context, name string, data []byte) error {
	err := r.Backend.Put(ctx, name, data)
	if err == nil {
		r.log.mu.Lock()
		r.log.puts = append(r.log.puts, r.region+" "+name)
		r.log.mu.Unlock()
	}
	return err
}

// flipAt returns a copy of data with byte i inverted.
func flipAt(data []byte, i int) []byte {
	out := bytes.Clone(data)
	out[i] ^= 0xff
	return out
}

// payloadOffset returns the offset of the first payload byte of a sealed
// object (after the age header and the 16-byte nonce).
func payloadOffset(t testing.TB, sealed []byte) int {
	t.Helper()
	i := bytes.Index(sealed, []byte("\n---"))
	if i < 0 {
		t.Fatal("no age header end")
	}
	j := bytes.IndexByte(sealed[i+1:], '\n')
	return i + 1 + j + 1 + 16
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}
