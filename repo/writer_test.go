package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"vaultbak/backend/faulty"
	"vaultbak/crypt"
)

func TestWriterManyBlobsAcrossPacks(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, crypt.KindX25519)
	w := newWriter(t, e.repo)
	var blobs [][]byte
	for i := range 40 {
		if i%3 == 0 {
			blobs = append(blobs, textBlob(uint64(i), 20000+i))
		} else {
			blobs = append(blobs, randomBlob(uint64(i), 100000+i))
		}
	}
	blobs = append(blobs, []byte{}, []byte("tiny"), randomBlob(99, 63), randomBlob(98, 64))
	ids := saveAll(t, w, blobs)
	snap := commitTree(t, e.repo, w, "big", ids, testTime)

	if snap.Stats.NewBlobs != uint64(len(blobs)+2) { // + the tree and the body
		t.Errorf("NewBlobs = %d, want %d", snap.Stats.NewBlobs, len(blobs)+2)
	}
	packs := e.names(0, "data/")
	if len(packs) < 3 {
		t.Fatalf("%d packs for ~2.8 MB with 1 MiB packs", len(packs))
	}
	var total int64
	for pack, size := range e.repo.Index().Packs() {
		raw, ok := e.mems[1].Raw(PackName(pack))
		if !ok || int64(len(raw)) != size || objectHash(raw) != pack {
			t.Fatalf("pack %s: in region 2 %v, %d bytes, index says %d", pack, ok, len(raw), size)
		}
		if size > testPackSize+200<<10 {
			t.Errorf("pack of %d bytes: far above the %d pack size", size, testPackSize)
		}
		total += size
	}
	if uint64(total) != snap.Stats.AddedBytes {
		t.Errorf("AddedBytes = %d, packs hold %d", snap.Stats.AddedBytes, total)
	}
	// Every region holds the same objects.
	for _, prefix := range []string{"data/", "index/", "snapshots/", "keys/"} {
		if a, b := e.names(0, prefix), e.names(1, prefix); strings.Join(a, ",") != strings.Join(b, ",") {
			t.Errorf("regions differ under %s", prefix)
		}
	}
	// A fresh open reads every blob back from the committed index.
	r := e.open(e.keysRecovery())
	if r.Index().Len() != len(blobs)+2 { // + the tree and the body
		t.Fatalf("index holds %d blobs, want %d", r.Index().Len(), len(blobs)+2)
	}
	checkBlobs(t, r, ids, blobs)
	for i, id := range ids {
		loc, ok := r.Index().Lookup(id)
		if !ok || loc.Type != DataBlob || loc.RawLen != uint32(len(blobs[i])) {
			t.Fatalf("blob %d: %+v", i, loc)
		}
		if i%3 == 0 && i < 40 && loc.Flags&flagZstd == 0 {
			t.Errorf("text blob %d is stored uncompressed", i)
		}
		if i%3 != 0 && i < 40 && loc.Flags&flagZstd != 0 {
			t.Errorf("random blob %d is stored compressed", i)
		}
	}
	// Loading into a buffer that is large enough reuses it.
	buf := make([]byte, 0, 200000)
	got, err := r.LoadBlob(ctx, ids[0], buf)
	if err != nil || string(got) != string(blobs[0]) {
		t.Fatalf("LoadBlob with buf: %v", err)
	}
	if _, err := r.LoadBlob(ctx, testID(200), nil); !isIntegrity(err) {
		t.Errorf("LoadBlob of an unknown ID: %v, want an IntegrityError", err)
	}
}

func TestWriterDeduplicates(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, crypt.KindX25519)
	blobs := [][]byte{randomBlob(1, 300000), randomBlob(2, 300000), textBlob(3, 50000), randomBlob(4, 300000), randomBlob(5, 300000)}

	w := newWriter(t, e.repo)
	for _, b := range blobs {
		id := e.repo.Secrets().BlobID(b)
		if w.Known(id) {
			t.Fatal("Known before SaveBlob")
		}
		got, err := w.SaveBlob(ctx, DataBlob, b)
		if err != nil || got != id {
			t.Fatalf("SaveBlob = %s, %v; want %s", got, err, id)
		}
		if !w.Known(id) {
			t.Fatal("not Known after SaveBlob (pending)")
		}
	}
	ids := saveAll(t, w, blobs) // again: all duplicates
	if w.NewBlobs() != uint64(len(blobs)) {
		t.Fatalf("NewBlobs = %d after saving %d blobs twice", w.NewBlobs(), len(blobs))
	}
	s1 := commitTree(t, e.repo, w, "f", ids, testTime)
	for _, id := range ids {
		if !e.repo.Index().Has(id) {
			t.Fatal("not in the index after Commit")
		}
	}
	packs, indexes := e.names(0, "data/"), e.names(0, "index/")

	// A second writer on the same Repository adds nothing.
	w2 := newWriter(t, e.repo)
	for _, id := range ids {
		if !w2.Known(id) {
			t.Fatal("second writer: not Known")
		}
	}
	ids2 := saveAll(t, w2, blobs)
	s2 := commitTree(t, e.repo, w2, "f", ids2, testTime.Add(time.Hour))
	if s2.Stats.NewBlobs != 0 || s2.Stats.AddedBytes != 0 {
		t.Errorf("second writer: %d new blobs, %d bytes", s2.Stats.NewBlobs, s2.Stats.AddedBytes)
	}
	if s2.Tree != s1.Tree {
		t.Error("the same tree got another ID")
	}
	// A writer of a freshly opened repository (another run) adds nothing.
	r3 := e.open(e.keysHost())
	w3 := newWriter(t, r3)
	ids3 := saveAll(t, w3, blobs)
	s3 := commitTree(t, r3, w3, "f", ids3, testTime.Add(2*time.Hour))
	if s3.Stats.NewBlobs != 0 || s3.Stats.AddedBytes != 0 {
		t.Errorf("writer after reopening: %d new blobs, %d bytes", s3.Stats.NewBlobs, s3.Stats.AddedBytes)
	}
	if a, b := e.names(0, "data/"), e.names(0, "index/"); len(a) != len(packs) || len(b) != len(indexes) {
		t.Errorf("deduplicated runs wrote objects: %d→%d packs, %d→%d index files", len(packs), len(a), len(indexes), len(b))
	}
	if n := len(e.names(0, "snapshots/")); n != 3 {
		t.Errorf("%d snapshots, want 3", n)
	}
}

func TestWriterConcurrentSaveBlob(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, crypt.KindX25519)
	w, err := e.repo.NewWriter(ctx, WriterOptions{Uploaders: 3})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, perG, distinct = 16, 40, 120
	blob := func(i int) []byte {
		if i%4 == 0 {
			return textBlob(uint64(i), 10000+i)
		}
		return randomBlob(uint64(i), 30000+i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perG {
				i := (g*7 + k*13) % distinct // overlapping sets: the same blob from several goroutines
				b := blob(i)
				id, err := w.SaveBlob(ctx, DataBlob, b)
				if err != nil {
					errs <- err
					return
				}
				if id != e.repo.Secrets().BlobID(b) || !w.Known(id) {
					errs <- fmt.Errorf("blob %d: wrong ID or not Known", i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for g := range goroutines {
		for k := range perG {
			seen[(g*7+k*13)%distinct] = true
		}
	}
	if w.NewBlobs() != uint64(len(seen)) {
		t.Fatalf("NewBlobs = %d, want %d distinct", w.NewBlobs(), len(seen))
	}
	var ids []crypt.ID
	var want [][]byte
	for i := range distinct {
		if seen[i] {
			ids = append(ids, e.repo.Secrets().BlobID(blob(i)))
			want = append(want, blob(i))
		}
	}
	commitTree(t, e.repo, w, "c", ids, testTime)
	r := e.open(e.keysRecovery())
	if r.Index().Len() != len(ids)+2 { // + the tree and the snapshot body
		t.Fatalf("index holds %d blobs, want %d", r.Index().Len(), len(ids)+2)
	}
	// Concurrent readers too.
	var rg sync.WaitGroup
	for g := range 8 {
		rg.Add(1)
		go func() {
			defer rg.Done()
			for k := range len(ids) {
				i := (k + g*5) % len(ids)
				got, err := r.LoadBlob(ctx, ids[i], nil)
				if err != nil || string(got) != string(want[i]) {
					t.Errorf("concurrent LoadBlob %d: %v", i, err)
					return
				}
			}
		}()
	}
	rg.Wait()
}

// Commit order: every pack and index file is in a region before the
// manifest is written there.
func TestCommitWritesManifestLast(t *testing.T) {
	e := newEnv(t, 2, crypt.KindX25519)
	log := &putLog{}
	var regions []*Region
	for _, reg := range e.regions {
		regions = append(regions, &Region{Name: reg.Name, Backend: &recorder{Backend: reg.Backend, region: reg.Name, log: log}})
	}
	r, err := Open(context.Background(), regions, e.keysAll())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w := newWriter(t, r)
	var blobs [][]byte
	for i := range 30 {
		blobs = append(blobs, randomBlob(uint64(i), 200000))
	}
	ids := saveAll(t, w, blobs)
	snap := commitTree(t, r, w, "f", ids, testTime)

	snapAt := map[string]int{}
	lastObj := map[string]int{}
	packs, indexes := 0, 0
	for i, p := range log.puts {
		region, name, _ := strings.Cut(p, " ")
		switch {
		case strings.HasPrefix(name, "snapshots/"):
			if name != snapshotName(snap.ID) {
				t.Fatalf("unexpected manifest %s", name)
			}
			snapAt[region] = i
		case strings.HasPrefix(name, "data/"), strings.HasPrefix(name, "index/"):
			if _, done := snapAt[region]; done {
				t.Errorf("%s written to %s after the manifest", name, region)
			}
			lastObj[region] = i
			if strings.HasPrefix(name, "data/") {
				packs++
			} else {
				indexes++
			}
		default:
			t.Errorf("unexpected put %s", p)
		}
	}
	if len(snapAt) != 2 || packs < 2*6 || indexes < 2*1 {
		t.Fatalf("puts: manifests in %d regions, %d packs, %d index files", len(snapAt), packs, indexes)
	}
	// Every pack a manifest's blobs live in is described by an index file
	// written before it: a fresh open finds every blob.
	fresh := e.open(e.keysRecovery())
	checkBlobs(t, fresh, ids, blobs)
	if _, err := fresh.LoadTree(context.Background(), snap.Tree); err != nil {
		t.Fatal(err)
	}
}

// A region that acknowledges a write and drops it never gets a manifest.
// With every region required, nothing commits anywhere; with a quorum of
// one, the snapshot commits in the healthy region and the other lags.
func TestCommitConfirmsObjectsBeforeManifest(t *testing.T) {
	for _, prefix := range []string{"data/", "index/"} {
		for _, quorum := range []int{2, 1} {
			t.Run(fmt.Sprintf("%squorum=%d", prefix, quorum), func(t *testing.T) {
				e := newEnv(t, 2, crypt.KindX25519)
				f := faulty.New(e.regions[1].Backend)
				f.AddDrop(prefix, 1)
				regions := []*Region{e.regions[0], {Name: "r2", Backend: f}}
				r, err := Open(context.Background(), regions, e.keysAll())
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				w, err := r.NewWriter(context.Background(), WriterOptions{Quorum: quorum})
				if err != nil {
					t.Fatal(err)
				}
				ids := saveAll(t, w, [][]byte{randomBlob(1, 5000)})
				tree, _ := EncodeTree(&Tree{Nodes: []Node{{Name: []byte("f"), Type: NodeFile, Content: ids}}})
				root, err := w.SaveBlob(context.Background(), TreeBlob, tree)
				if err != nil {
					t.Fatal(err)
				}
				_, err = w.Commit(context.Background(), &Manifest{Time: testTime, Tree: root}, &ManifestBody{}, 0, "")
				f.VerifyAllFired(t)
				if quorum == 2 {
					if err == nil || !strings.Contains(err.Error(), "r2") || !errors.Is(err, ErrBelowQuorum) {
						t.Fatalf("Commit after a dropped %s write: %v, want ErrBelowQuorum naming r2", prefix, err)
					}
					for i := range 2 {
						if s := e.names(i, "snapshots/"); len(s) != 0 {
							t.Errorf("region %d holds a manifest: %v", i+1, s)
						}
					}
					return
				}
				if err != nil {
					t.Fatalf("Commit with quorum 1: %v", err)
				}
				if lag := w.Lagging(); len(lag) != 1 || lag["r2"] == nil {
					t.Errorf("Lagging() = %v, want r2", lag)
				}
				if n := len(e.names(0, "snapshots/")); n != 1 {
					t.Errorf("healthy region holds %d manifests, want 1", n)
				}
				if s := e.names(1, "snapshots/"); len(s) != 0 {
					t.Errorf("lagging region holds a manifest: %v", s)
				}
			})
		}
	}
}

func TestManifestChain(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, crypt.KindX25519)
	var prev *Snapshot
	for i := range 4 {
		w := newWriter(t, e.repo)
		ids := saveAll(t, w, [][]byte{textBlob(uint64(i), 1000)})
		s := commitTree(t, e.repo, w, fmt.Sprint("f", i), ids, testTime.Add(time.Duration(i)*time.Hour), "daily")
		if s.Seq != uint64(i+1) {
			t.Errorf("snapshot %d: Seq %d", i, s.Seq)
		}
		if prev == nil && s.Prev != "" || prev != nil && s.Prev != prev.ID {
			t.Errorf("snapshot %d: Prev %q, want %q", i, s.Prev, map[bool]string{true: "", false: "prev"}[prev == nil])
		}
		if s.Host != "host-a" || s.Repository != e.repo.Config().ID || s.Version != FormatVersion {
			t.Errorf("snapshot %d: host %q repo %q version %d", i, s.Host, s.Repository, s.Version)
		}
		prev = s
	}
	snaps, err := e.open(Keys{}).Snapshots(ctx)
	if err != nil || len(snaps) != 4 {
		t.Fatalf("Snapshots: %d, %v", len(snaps), err)
	}
	for i, s := range snaps {
		if s.Seq != uint64(i+1) || (i > 0 && s.Prev != snaps[i-1].ID) || s.Region != "r1" || s.Signer != e.host.Signing.Public() {
			t.Errorf("snapshot %d read back: seq %d prev %.8s region %s", i, s.Seq, s.Prev, s.Region)
		}
		if len(s.Tags) != 1 || s.Tags[0] != "daily" {
			t.Errorf("tags %v", s.Tags)
		}
	}
	if seq, id := ChainHead(snaps, "host-a"); seq != 4 || id != snaps[3].ID {
		t.Errorf("ChainHead = %d, %.8s", seq, id)
	}
	if seq, id := ChainHead(snaps, "other"); seq != 0 || id != "" {
		t.Errorf("ChainHead(other) = %d, %q", seq, id)
	}
}

// Abort after index files were flushed: a new run deduplicates against
// what the interrupted one uploaded, and no manifest was written.
func TestAbortedWriterLeavesReusableIndex(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, crypt.KindX25519)
	w := newWriter(t, e.repo)
	// 256 KiB random blobs: four fill a 1 MiB pack. 44 blobs = 11 packs,
	// more than indexFlushPacks.
	var blobs [][]byte
	for i := range 44 {
		blobs = append(blobs, randomBlob(uint64(i), 256<<10))
	}
	ids := saveAll(t, w, blobs)
	// Wait (bounded) for the first index file, written after 8 packs.
	deadline := time.Now().Add(20 * time.Second)
	for len(e.names(1, "index/")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no index file was flushed while the writer ran")
		}
		time.Sleep(5 * time.Millisecond)
	}
	w.Abort()
	if _, err := w.SaveBlob(ctx, DataBlob, randomBlob(1000, 10)); err == nil {
		t.Error("SaveBlob after Abort succeeded")
	}
	if len(e.names(0, "snapshots/")) != 0 {
		t.Fatal("an aborted writer wrote a manifest")
	}

	r := e.open(e.keysAll())
	indexed := 0
	for _, id := range ids {
		if r.Index().Has(id) {
			indexed++
		}
	}
	if indexed < indexFlushPacks*4 {
		t.Fatalf("after the abort the index holds %d of %d blobs, want at least %d (8 packs of 4)", indexed, len(ids), indexFlushPacks*4)
	}
	packsBefore := len(e.names(0, "data/"))
	// The next run stores only what the index lacks, and commits.
	w2 := newWriter(t, r)
	ids2 := saveAll(t, w2, blobs)
	if got, want := w2.NewBlobs(), uint64(len(blobs)-indexed); got != want {
		t.Errorf("second run stored %d blobs, want %d", got, want)
	}
	s := commitTree(t, r, w2, "f", ids2, testTime)
	if s.Seq != 1 {
		t.Errorf("Seq %d", s.Seq)
	}
	added := len(e.names(0, "data/")) - packsBefore
	if added > (len(blobs)-indexed)/4+2 {
		t.Errorf("second run uploaded %d packs for %d blobs", added, len(blobs)-indexed)
	}
	res, err := e.open(e.keysRecovery()).Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(res.Problems) != 0 {
		t.Fatalf("check after an interrupted run: %v, %v", err, res.Problems)
	}
	checkBlobs(t, e.open(e.keysRecovery()), ids2, blobs)
}

func TestCommitAfterAbortFails(t *testing.T) {
	e := newEnv(t, 1, crypt.KindX25519)
	w := newWriter(t, e.repo)
	ids := saveAll(t, w, [][]byte{randomBlob(1, 1000)})
	w.Abort()
	_, err := w.Commit(context.Background(), &Manifest{Time: testTime, Tree: ids[0]}, &ManifestBody{}, 0, "")
	if err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if n := len(e.names(0, "snapshots/")); n != 0 {
		t.Fatalf("%d manifests after an aborted commit", n)
	}
}

func TestWriterCanceledContext(t *testing.T) {
	e := newEnv(t, 1, crypt.KindX25519)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := e.repo.NewWriter(ctx, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	var lastErr error
	for i := range 20 {
		if _, lastErr = w.SaveBlob(context.Background(), DataBlob, randomBlob(uint64(i), 300000)); lastErr != nil {
			break
		}
	}
	if lastErr == nil {
		t.Fatal("SaveBlob kept succeeding after the writer's context was canceled")
	}
	if !errors.Is(lastErr, context.Canceled) {
		t.Logf("error after cancel: %v", lastErr)
	}
	w.Abort()
}

// Flush is exported and Commit flushes again: calling Flush (say, to learn
// AddedBytes before signing) and then Commit must not crash the process.
func TestCommitAfterFlush(t *testing.T) {
	e := newEnv(t, 1, crypt.KindX25519)
	w := newWriter(t, e.repo)
	ids := saveAll(t, w, [][]byte{randomBlob(1, 1000)})
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Commit after Flush panicked: %v", p)
		}
	}()
	if _, err := w.Commit(context.Background(), &Manifest{Time: testTime, Tree: ids[0]}, &ManifestBody{}, 0, ""); err != nil {
		t.Logf("Commit after Flush: %v", err) // an error is acceptable, a panic is not
	}
}

// TestReuseNeedsEveryTargetRegion: a blob stored only in region r1 (by a
// backup set pinned there, or while r2 was down) is stored again by a
// backup that writes to both regions, so that each region a manifest
// names holds everything it references.
func TestReuseNeedsEveryTargetRegion(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 2, crypt.KindX25519)
	blob := randomBlob(41, 50000)

	pinned, err := Open(ctx, e.regions[:1], e.keysHost())
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	w := newWriter(t, pinned)
	ids := saveAll(t, w, [][]byte{blob})
	commitTree(t, pinned, w, "a", ids, testTime)
	if n := len(e.names(1, "data/")); n != 0 {
		t.Fatalf("region r2 holds %d packs after a backup pinned to r1", n)
	}

	both := e.open(e.keysAll())
	w = newWriter(t, both)
	if w.Known(ids[0]) {
		t.Fatal("a blob only region r1 holds counts as known to a writer for r1 and r2")
	}
	saveAll(t, w, [][]byte{blob})
	commitTree(t, both, w, "b", ids, testTime.Add(time.Hour))
	if n := len(e.names(1, "data/")); n == 0 {
		t.Fatal("the blob was not stored again for region r2")
	}
	// Opened afresh, the index prefers the location both regions hold.
	loc, ok := e.open(e.keysAll()).Index().Lookup(ids[0])
	if !ok {
		t.Fatal("blob not indexed")
	}
	for i := range e.mems {
		if _, ok := e.mems[i].Raw(PackName(loc.Pack)); !ok {
			t.Errorf("the indexed location %s is not in region %s", PackName(loc.Pack), regionName(i))
		}
	}
	// And a writer for r1 alone reuses it.
	if w := newWriter(t, pinned); !w.Known(ids[0]) {
		t.Error("a writer for r1 alone does not reuse a blob r1 holds")
	}
}
