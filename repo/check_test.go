package repo

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"vaultbak/crypt"
)

// problemsNaming returns the problems that are IntegrityErrors about object
// in region.
func problemsNaming(res *CheckResult, region, object string) []*IntegrityError {
	var out []*IntegrityError
	for _, p := range res.Problems {
		var ie *IntegrityError
		if errors.As(p, &ie) && ie.Region == region && strings.Contains(ie.Object, object) {
			out = append(out, ie)
		}
	}
	return out
}

func TestCheckCleanRepository(t *testing.T) {
	ctx := context.Background()
	e, blobs, _ := twoRegionRepo(t)
	for name, keys := range map[string]Keys{"no keys": {}, "host": e.keysHost(), "recovery": e.keysRecovery()} {
		r := e.open(keys)
		var progress []int
		res, err := r.Check(ctx, CheckOptions{Progress: func(done, total int) { progress = append(progress, done) }})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(res.Problems) != 0 || len(res.Warnings) != 0 {
			t.Fatalf("%s: problems %v, warnings %v", name, res.Problems, res.Warnings)
		}
		packs := len(e.names(0, "data/"))
		if res.Packs != 2*packs || res.Snapshots != 2 || res.Bytes == 0 {
			t.Errorf("%s: %d packs, %d snapshots, %d bytes checked", name, res.Packs, res.Snapshots, res.Bytes)
		}
		if want := 2 * (packs + len(e.names(0, "index/"))); len(progress) != want {
			t.Errorf("%s: %d progress calls, want %d", name, len(progress), want)
		}
	}
	r := e.open(e.keysRecovery())
	res, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(res.Problems) != 0 {
		t.Fatalf("read-data: %v, %v", err, res.Problems)
	}
	if res.Blobs != len(blobs)+2 { // + the tree and the body
		t.Errorf("read-data verified %d blobs, want %d", res.Blobs, len(blobs)+2)
	}
	// Sampling 0.0001% of one pack reads that pack.
	a, _ := r.Check(ctx, CheckOptions{ReadData: true, Percent: 0.0001, Seed: "x"})
	if a.Blobs != res.Blobs || a.PacksRead != 1 || a.PacksIndexed != 1 {
		t.Errorf("a sampled check read %d blobs in %d of %d packs, want %d in 1 of 1", a.Blobs, a.PacksRead, a.PacksIndexed, res.Blobs)
	}
}

// TestCheckReadDataSample: a percentage of N packs reads ceil(percent% × N)
// of them, at least one, whatever the seed. It used to keep each pack with
// that probability, so --read-data=10% of a one-pack repository mostly
// verified nothing and passed.
func TestCheckReadDataSample(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, crypt.KindX25519)
	const packs = 10
	for i := range packs { // one blob per pack
		w := newWriter(t, e.repo)
		saveAll(t, w, [][]byte{randomBlob(uint64(100+i), 3000)})
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := e.open(e.keysRecovery())
	for _, c := range []struct {
		percent float64
		want    int
	}{{0.0001, 1}, {10, 1}, {15, 2}, {25, 3}, {70, 7}, {99.9, 10}, {100, 10}, {0, 10}} {
		for _, seed := range []string{"", "a", "b", "c", "d"} {
			res, err := r.Check(ctx, CheckOptions{ReadData: true, Percent: c.percent, Seed: seed})
			if err != nil || len(res.Problems) != 0 {
				t.Fatalf("%v%%: %v, %v", c.percent, err, res.Problems)
			}
			if res.PacksRead != c.want || res.PacksIndexed != packs || res.Blobs != c.want {
				t.Errorf("%v%% (seed %q): %d blobs in %d of %d packs read, want %d of %d", c.percent, seed, res.Blobs, res.PacksRead, res.PacksIndexed, c.want, packs)
			}
		}
	}
}

// TestChoosePacks: the sample is a function of the seed, a larger
// percentage reads a superset, and the seed rotates it.
func TestChoosePacks(t *testing.T) {
	var packs []crypt.ID
	for i := range 20 {
		packs = append(packs, testID(byte(i)))
	}
	if got := choosePacks(nil, 10, ""); len(got) != 0 {
		t.Errorf("no packs: chose %d", len(got))
	}
	first := map[crypt.ID]bool{}
	for _, seed := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		prev := map[crypt.ID]bool{}
		for _, pct := range []float64{1, 5, 7, 33, 50, 99, 100} {
			got := choosePacks(slices.Clone(packs), pct, seed)
			again := choosePacks(slices.Clone(packs), pct, seed)
			if want := max(1, int(math.Ceil(pct*20/100))); len(got) != want || !slices.Equal(got, again) {
				t.Fatalf("%v%% of 20 (seed %q): %d packs, then %d; want %d, the same", pct, seed, len(got), len(again), want)
			}
			now := map[crypt.ID]bool{}
			for _, p := range got {
				now[p] = true
			}
			for p := range prev {
				if !now[p] {
					t.Errorf("%v%% (seed %q) drops pack %s that a smaller percentage read", pct, seed, p)
				}
			}
			prev = now
		}
		first[choosePacks(slices.Clone(packs), 1, seed)[0]] = true
	}
	if len(first) < 3 {
		t.Errorf("8 seeds chose %d distinct packs at 1%%", len(first))
	}
}

func TestCheckFlippedByteInPack(t *testing.T) {
	ctx := context.Background()
	e, _, ids := twoRegionRepo(t)
	pack := e.packOf(t, e.repo, ids[0])
	raw, _ := e.mems[1].Raw(pack)
	e.mems[1].SetRaw(pack, flipAt(raw, payloadOffset(t, raw)+10))
	for name, keys := range map[string]Keys{"no keys": {}, "recovery": e.keysRecovery()} {
		res, err := e.open(keys).Check(ctx, CheckOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		found := problemsNaming(res, "r2", pack)
		if len(found) != 1 || !strings.Contains(found[0].Reason, "does not match its hash") {
			t.Fatalf("%s: problems %v, want one naming r2 and %s", name, res.Problems, pack)
		}
		if !errors.Is(res.Problems[0], ErrIntegrity) || !strings.Contains(res.Problems[0].Error(), "region r2") {
			t.Errorf("%s: problem %v", name, res.Problems[0])
		}
		if len(problemsNaming(res, "r1", "")) != 0 {
			t.Errorf("%s: region r1 blamed: %v", name, res.Problems)
		}
	}
	// With --read-data, damage in the first region read is found by
	// decryption too.
	raw1, _ := e.mems[0].Raw(pack)
	e.mems[0].SetRaw(pack, flipAt(raw1, payloadOffset(t, raw1)+10))
	res, err := e.open(e.keysRecovery()).Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(problemsNaming(res, "r1", pack)) < 2 { // its hash, and its decryption
		t.Errorf("read-data: problems %v", res.Problems)
	}
}

func TestCheckMissingPack(t *testing.T) {
	ctx := context.Background()
	e, _, ids := twoRegionRepo(t)
	pack := e.packOf(t, e.repo, ids[0])
	if err := e.mems[1].Delete(ctx, pack); err != nil {
		t.Fatal(err)
	}
	res, err := e.open(e.keysRecovery()).Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// One region lacking a pack another holds is lag, not damage.
	if len(res.Problems) != 0 {
		t.Fatalf("problems %v, want none (lag is a warning)", res.Problems)
	}
	if !contains(res.Warnings, "region r2 lacks indexed pack "+pack) {
		t.Errorf("warnings %v", res.Warnings)
	}
	if !contains(res.Warnings, "region r2 lacks 1 pack(s) that region r1 holds") {
		t.Errorf("warnings %v", res.Warnings)
	}
	// Without keys there is no index: only the warning.
	res, err = e.open(Keys{}).Check(ctx, CheckOptions{})
	if err != nil || len(res.Problems) != 0 || len(res.Warnings) != 1 {
		t.Fatalf("keyless: %v, problems %v, warnings %v", err, res.Problems, res.Warnings)
	}
	// A pack of the wrong size in a region.
	raw, _ := e.mems[0].Raw(pack)
	e.mems[1].SetRaw(pack, append(raw, 0))
	res, err = e.open(e.keysHost()).Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(problemsNaming(res, "r2", pack)) != 2 { // hash and size
		t.Errorf("longer pack: problems %v", res.Problems)
	}
}

func TestCheckRegionLagging(t *testing.T) {
	ctx := context.Background()
	e, _, _ := twoRegionRepo(t)
	for _, n := range e.names(1, "index/") {
		e.mems[1].Delete(ctx, n)
	}
	extra := e.names(0, "data/")[0]
	e.mems[0].Delete(ctx, extra)
	res, err := e.open(Keys{}).Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 0 {
		t.Errorf("keyless check: problems %v", res.Problems)
	}
	if !contains(res.Warnings, "region r2 lacks 1 index file(s) that region r1 holds") || !contains(res.Warnings, "region r1 lacks 1 pack(s) that region r2 holds") {
		t.Errorf("warnings %v", res.Warnings)
	}
	if len(res.Warnings) != 2 { // r2 lacks an index file, r1 lacks a pack
		t.Errorf("%d warnings: %v", len(res.Warnings), res.Warnings)
	}
	// A manifest missing from a region it was committed to is not lag.
	manifest := e.names(1, "snapshots/")[0]
	e.mems[1].Delete(ctx, manifest)
	res, err = e.open(Keys{}).Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(problemsNaming(res, "r2", "snapshot "+strings.TrimPrefix(manifest, "snapshots/"))) != 1 {
		t.Errorf("hidden manifest: problems %v", res.Problems)
	}
}

// Objects that are not what their names say.
func TestCheckStrayObjects(t *testing.T) {
	ctx := context.Background()
	e, _, _ := twoRegionRepo(t)
	e.mems[0].SetRaw("data/zz/not-a-hash", []byte("x"))
	idx := e.names(0, "index/")[0]
	raw, _ := e.mems[0].Raw(idx)
	e.mems[0].SetRaw(idx, flipAt(raw, 0))
	res, err := e.open(Keys{}).Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(problemsNaming(res, "r1", "data/zz/not-a-hash")) != 1 || len(problemsNaming(res, "r1", idx)) != 1 {
		t.Errorf("problems %v", res.Problems)
	}
}

func TestCheckWalksSnapshotTrees(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, crypt.KindX25519)
	w := newWriter(t, e.repo)
	ids := saveAll(t, w, [][]byte{textBlob(1, 1000)})
	// A tree naming a chunk that was never stored.
	ghost := testID(99)
	commitTree(t, e.repo, w, "f", append(ids, ghost), testTime)
	res, err := e.open(e.keysRecovery()).Check(ctx, CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0].Error(), ghost.String()) || !isIntegrity(res.Problems[0]) {
		t.Fatalf("problems %v, want one naming the missing chunk", res.Problems)
	}
}
