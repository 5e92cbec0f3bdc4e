package replicate

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"vaultbak/backend"
	"vaultbak/backend/faulty"
	"vaultbak/backend/mem"
	"vaultbak/chunk"
	"vaultbak/crypt"
	"vaultbak/repo"
)

// errNoWrite is scripted on every Put into a region that must not be
// written: a Sync that tries fails with it.
var errNoWrite = errors.New("test: this region's copy verifies and must not be overwritten")

// testRegions is a repository with one snapshot, over n in-memory regions
// each wrapped in a fault injector.
type testRegions struct {
	mems    []*mem.Mem
	faults  []*faulty.Faulty
	regions []*repo.Region
}

func newTestRegions(t *testing.T, n int) *testRegions {
	t.Helper()
	ctx := context.Background()
	_, rec, err := crypt.GenerateIdentity(crypt.KindX25519)
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRegions{}
	for i := range n {
		name := []string{"primary", "usb", "offsite"}[i]
		m := mem.New(name)
		f := faulty.New(m)
		tr.mems = append(tr.mems, m)
		tr.faults = append(tr.faults, f)
		tr.regions = append(tr.regions, &repo.Region{Name: name, Backend: f})
	}
	r, _, err := repo.Init(ctx, tr.regions, repo.InitOptions{
		Recovery: []string{rec},
		Host:     "host-a",
		Chunker:  chunk.Params{Algorithm: chunk.AlgorithmFastCDC, Min: 2048, Avg: 8192, Max: 32768},
		PackSize: 1 << 20,
		Now:      time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.NewWriter(ctx, repo.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	content, err := w.SaveBlob(ctx, repo.DataBlob, bytes.Repeat([]byte("replicate me "), 1000))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := repo.EncodeTree(&repo.Tree{Nodes: []repo.Node{{Name: []byte("f"), Type: repo.NodeFile, Mode: 0o644, Content: []crypt.ID{content}}}})
	if err != nil {
		t.Fatal(err)
	}
	root, err := w.SaveBlob(ctx, repo.TreeBlob, tree)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(ctx, &repo.Manifest{Time: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), Tree: root}, &repo.ManifestBody{Paths: [][]byte{[]byte("/src/f")}}, 0, ""); err != nil {
		t.Fatal(err)
	}
	return tr
}

// object returns the name of the one object under prefix (the first, sorted).
func (tr *testRegions) object(t *testing.T, prefix string) string {
	t.Helper()
	var names []string
	tr.mems[0].List(context.Background(), prefix, func(fi backend.Info) error {
		names = append(names, fi.Name)
		return nil
	})
	if len(names) == 0 {
		t.Fatalf("no object under %s", prefix)
	}
	return names[0]
}

func (tr *testRegions) raw(t *testing.T, i int, name string) []byte {
	t.Helper()
	data, ok := tr.mems[i].Raw(name)
	if !ok {
		t.Fatalf("region %d lacks %s", i, name)
	}
	return data
}

// truncate cuts region i's copy of name to keep bytes.
func (tr *testRegions) truncate(t *testing.T, i int, name string, keep int) {
	t.Helper()
	tr.mems[i].SetRaw(name, tr.raw(t, i, name)[:keep])
}

// flip inverts one byte of region i's copy of name, keeping its size.
func (tr *testRegions) flip(t *testing.T, i int, name string) {
	t.Helper()
	data := tr.raw(t, i, name)
	data[len(data)/2] ^= 0xff
	tr.mems[i].SetRaw(name, data)
}

// forbidWrites makes every Put into region i fail.
func (tr *testRegions) forbidWrites(i int) {
	tr.faults[i].AddFault(faulty.OpPut, "", errNoWrite, -1)
}

func inspect(t *testing.T, tr *testRegions, verify bool) *Status {
	t.Helper()
	st, err := Inspect(context.Background(), tr.regions, Options{Verify: verify})
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return st
}

// requireBlamed checks that exactly region bad holds a damaged copy of name
// and that nothing else is wrong.
func requireBlamed(t *testing.T, st *Status, bad int, name string) {
	t.Helper()
	for i, rs := range st.Regions {
		if rs.Err != nil || len(rs.Missing) > 0 {
			t.Errorf("region %s: err %v, missing %v; want it answering and lacking nothing", rs.Name, rs.Err, rs.Missing)
		}
		want := 0
		if i == bad {
			want = 1
		}
		if len(rs.Damaged) != want || (want == 1 && rs.Damaged[0] != name) {
			t.Errorf("region %s: damaged %v, want %d (%s)", rs.Name, rs.Damaged, want, name)
		}
	}
	if len(st.Problems) != 0 {
		t.Errorf("problems %v, want none (another region holds an intact copy)", st.Problems)
	}
	if len(st.Damage) != 1 || !strings.Contains(st.Damage[0].Error(), "region "+st.Regions[bad].Name+": "+name) || !errors.Is(st.Damage[0], repo.ErrIntegrity) {
		t.Errorf("damage %v, want one integrity error naming region %s and %s", st.Damage, st.Regions[bad].Name, name)
	}
	if st.InSync() {
		t.Error("InSync with a damaged copy")
	}
}

// requireHealed syncs and checks that the damaged copy in region bad was
// replaced by the intact one, through Put, and that the other regions were
// not written.
func requireHealed(t *testing.T, tr *testRegions, st *Status, bad int, name string) {
	t.Helper()
	for i := range tr.regions {
		if i != bad {
			tr.forbidWrites(i)
		}
	}
	res, err := Sync(context.Background(), tr.regions, st, nil)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if res.Replaced != 1 || res.Copied != 0 || len(res.Problems) != 0 {
		t.Fatalf("Sync: replaced %d, copied %d, problems %v; want the one damaged copy replaced", res.Replaced, res.Copied, res.Problems)
	}
	good := tr.raw(t, (bad+1)%len(tr.regions), name)
	if got := tr.raw(t, bad, name); !bytes.Equal(got, good) {
		t.Fatalf("region %d's copy of %s after Sync: %d bytes, differs from the intact %d bytes", bad, name, len(got), len(good))
	}
	if st := inspect(t, tr, true); !st.InSync() {
		t.Fatalf("after Sync: not in sync: %+v", st.Regions)
	}
}

// A copy whose size differs is found by listing and blamed by verifying,
// whichever region is listed first.
func TestTruncatedCopyBlamesTheDamagedRegion(t *testing.T) {
	for _, c := range []struct {
		name   string
		prefix string
		bad    int
	}{
		{"manifest in the region listed first", "snapshots/", 0},
		{"manifest in the region listed second", "snapshots/", 1},
		{"pack in the region listed first", "data/", 0},
		{"pack in the region listed second", "data/", 1},
		{"index in the region listed second", "index/", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newTestRegions(t, 2)
			name := tr.object(t, c.prefix)
			tr.truncate(t, c.bad, name, 100)
			st := inspect(t, tr, false)
			requireBlamed(t, st, c.bad, name)
			if len(st.Regions[c.bad].SizeMismatch) != 1 {
				t.Errorf("region %s: size mismatch %v, want %s", st.Regions[c.bad].Name, st.Regions[c.bad].SizeMismatch, name)
			}
			requireHealed(t, tr, st, c.bad, name)
		})
	}
}

// With three regions, the one damaged copy is blamed even when it is listed
// first and its size is the odd one out only against the others.
func TestTruncatedManifestAmongThree(t *testing.T) {
	tr := newTestRegions(t, 3)
	name := tr.object(t, "snapshots/")
	tr.truncate(t, 0, name, 300)
	st := inspect(t, tr, false)
	requireBlamed(t, st, 0, name)
	for i, rs := range st.Regions {
		if i > 0 && rs.Heads["host-a"] != 1 {
			t.Errorf("region %s: head #%d, want #1", rs.Name, rs.Heads["host-a"])
		}
	}
	requireHealed(t, tr, st, 0, name)
}

// A flipped byte keeps the size: listing cannot see it, Verify does.
func TestFlippedByteInPackNeedsVerify(t *testing.T) {
	for _, bad := range []int{0, 1} {
		tr := newTestRegions(t, 2)
		name := tr.object(t, "data/")
		tr.flip(t, bad, name)
		if st := inspect(t, tr, false); !st.InSync() {
			t.Errorf("listing alone (no Verify) read a same-size copy: %+v", st.Regions)
		}
		st := inspect(t, tr, true)
		requireBlamed(t, st, bad, name)
		requireHealed(t, tr, st, bad, name)
	}
}

// Damaged in every region: reported once, naming the object and every
// region; nothing is written anywhere.
func TestDamagedEverywhere(t *testing.T) {
	for _, c := range []struct {
		name   string
		prefix string
		verify bool
		damage func(tr *testRegions, t *testing.T, name string)
	}{
		{"manifest truncated differently", "snapshots/", false, func(tr *testRegions, t *testing.T, name string) {
			tr.truncate(t, 0, name, 300)
			tr.truncate(t, 1, name, 200)
		}},
		{"manifest truncated alike", "snapshots/", false, func(tr *testRegions, t *testing.T, name string) {
			tr.truncate(t, 0, name, 300)
			tr.truncate(t, 1, name, 300)
		}},
		{"pack flipped, with Verify", "data/", true, func(tr *testRegions, t *testing.T, name string) {
			tr.flip(t, 0, name)
			tr.flip(t, 1, name)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newTestRegions(t, 2)
			name := tr.object(t, c.prefix)
			c.damage(tr, t, name)
			before := [][]byte{tr.raw(t, 0, name), tr.raw(t, 1, name)}
			st := inspect(t, tr, c.verify)
			if len(st.Problems) != 1 || !errors.Is(st.Problems[0], repo.ErrIntegrity) {
				t.Fatalf("problems %v, want one integrity error", st.Problems)
			}
			msg := st.Problems[0].Error()
			for _, want := range []string{name, "no region holds an intact copy", "region primary", "region usb"} {
				if !strings.Contains(msg, want) {
					t.Errorf("problem %q does not say %q", msg, want)
				}
			}
			if len(st.Damage) != 0 {
				t.Errorf("damage %v, want none healable", st.Damage)
			}
			for _, rs := range st.Regions {
				if len(rs.Damaged) != 1 {
					t.Errorf("region %s: damaged %v, want %s", rs.Name, rs.Damaged, name)
				}
			}
			tr.forbidWrites(0)
			tr.forbidWrites(1)
			res, err := Sync(context.Background(), tr.regions, st, nil)
			if err != nil {
				t.Fatalf("Sync: %v", err)
			}
			if res.Copied+res.Replaced != 0 || len(res.Problems) != 1 || !strings.Contains(res.Problems[0].Error(), name) {
				t.Fatalf("Sync: copied %d, replaced %d, problems %v; want nothing written and the object named once", res.Copied, res.Replaced, res.Problems)
			}
			for i := range before {
				if !bytes.Equal(tr.raw(t, i, name), before[i]) {
					t.Errorf("region %d's copy changed", i)
				}
			}
		})
	}
}

// A region that lacks an object whose only copy is damaged is not filled
// with the damaged copy.
func TestMissingWithOnlyDamagedCopy(t *testing.T) {
	tr := newTestRegions(t, 2)
	name := tr.object(t, "snapshots/")
	tr.truncate(t, 0, name, 300)
	if err := tr.mems[1].Delete(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	st := inspect(t, tr, false)
	if len(st.Problems) != 1 || len(st.Regions[1].Missing) != 1 || len(st.Regions[0].Damaged) != 1 {
		t.Fatalf("problems %v, usb missing %v, primary damaged %v; want the manifest lost, missing in usb, damaged in primary", st.Problems, st.Regions[1].Missing, st.Regions[0].Damaged)
	}
	tr.forbidWrites(0)
	tr.forbidWrites(1)
	res, err := Sync(context.Background(), tr.regions, st, nil)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if res.Copied+res.Replaced != 0 || len(res.Problems) != 1 {
		t.Fatalf("Sync: copied %d, replaced %d, problems %v", res.Copied, res.Replaced, res.Problems)
	}
}

// Plain lag still heals: a missing pack is copied, nothing is replaced.
func TestMissingPackCopied(t *testing.T) {
	tr := newTestRegions(t, 2)
	name := tr.object(t, "data/")
	if err := tr.mems[1].Delete(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	st := inspect(t, tr, false)
	if len(st.Regions[1].Missing) != 1 || len(st.Damage) != 0 || len(st.Problems) != 0 {
		t.Fatalf("usb missing %v, damage %v, problems %v", st.Regions[1].Missing, st.Damage, st.Problems)
	}
	tr.forbidWrites(0)
	res, err := Sync(context.Background(), tr.regions, st, nil)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if res.Copied != 1 || res.Replaced != 0 {
		t.Fatalf("Sync: copied %d, replaced %d; want 1, 0", res.Copied, res.Replaced)
	}
	if st := inspect(t, tr, true); !st.InSync() {
		t.Fatalf("after Sync: not in sync: %+v", st.Regions)
	}
}

// TestForeignManifestNotSpread: a region holding a manifest the others'
// configs do not accept (here one of another repository; a region's own
// forgery would be one signed by an unenrolled key) does not get it copied
// into them: it is a problem naming the object, and nothing is written.
func TestForeignManifestNotSpread(t *testing.T) {
	tr := newTestRegions(t, 2)
	other := newTestRegions(t, 1)
	name := other.object(t, "snapshots/")
	if err := tr.mems[0].Put(context.Background(), name, other.raw(t, 0, name)); err != nil {
		t.Fatal(err)
	}
	st := inspect(t, tr, false)
	if len(st.Regions[1].Missing) != 1 {
		t.Fatalf("usb missing %v, want the planted manifest", st.Regions[1].Missing)
	}
	tr.forbidWrites(0)
	tr.forbidWrites(1)
	res, err := Sync(context.Background(), tr.regions, st, nil)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if res.Copied != 0 || len(res.Problems) != 1 || !strings.Contains(res.Problems[0].Error(), name) || !strings.Contains(res.Problems[0].Error(), "belongs to repository") {
		t.Fatalf("Sync: copied %d, problems %v; want the manifest refused", res.Copied, res.Problems)
	}
}
