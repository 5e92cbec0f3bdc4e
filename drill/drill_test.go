package drill

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"vaultbak/backend"
	"vaultbak/backend/mem"
	"vaultbak/backup"
	"vaultbak/chunk"
	"vaultbak/crypt"
	"vaultbak/repo"
)

func TestChoose(t *testing.T) {
	var files []file
	var total uint64
	for i := range 200 {
		size := uint64(i * 1000)
		files = append(files, file{fmt.Sprintf("/f%03d", i), &repo.Node{Size: size}})
		total += size
	}
	tests := []struct {
		name    string
		percent float64
		seed    string
		wantAll bool
	}{
		{"five percent", 5, "a", false},
		{"another seed", 5, "b", false},
		{"half", 50, "a", false},
		{"all", 100, "a", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := choose(files, tc.percent, tc.seed)
			if tc.wantAll {
				if len(got) != len(files) {
					t.Fatalf("%v%%: chose %d of %d files, want all", tc.percent, len(got), len(files))
				}
				return
			}
			var bytes uint64
			for _, f := range got {
				bytes += f.node.Size
			}
			if want := uint64(float64(total) * tc.percent / 100); bytes < want {
				t.Errorf("chose %d bytes, want at least %d", bytes, want)
			}
			if len(got) == len(files) {
				t.Errorf("chose every file at %v%%", tc.percent)
			}
			again := choose(files, tc.percent, tc.seed)
			if fmt.Sprint(pathsOf(again)) != fmt.Sprint(pathsOf(got)) {
				t.Errorf("the same seed chose differently: %v, then %v", pathsOf(got), pathsOf(again))
			}
		})
	}
	if fmt.Sprint(pathsOf(choose(files, 5, "a"))) == fmt.Sprint(pathsOf(choose(files, 5, "b"))) {
		t.Error("two seeds chose the same files")
	}
	// Weighted by size: over many seeds, large files are drawn far more
	// often than small ones.
	small, large := 0, 0
	for s := range 200 {
		for _, f := range choose(files, 2, fmt.Sprint(s)) {
			switch {
			case f.node.Size < 50000:
				small++
			case f.node.Size >= 150000:
				large++
			}
		}
	}
	if large < 3*small {
		t.Errorf("files of the top quarter drawn %d times, of the bottom quarter %d: want a sample weighted by size", large, small)
	}
	if got := choose(nil, 5, "a"); len(got) != 0 {
		t.Errorf("chose %d files of none", len(got))
	}
}

func pathsOf(fs []file) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.path)
	}
	return out
}

// testRepo is a repository over in-memory regions with one snapshot.
type testRepo struct {
	mems     []*mem.Mem
	recovery age.Identity
	snap     *repo.Snapshot
	all      []*repo.Snapshot
}

func newTestRepo(t *testing.T, names ...string) *testRepo {
	t.Helper()
	ctx := context.Background()
	id, rec, err := crypt.GenerateIdentity("x25519")
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRepo{recovery: id}
	var regions []*repo.Region
	for _, n := range names {
		m := mem.New(n)
		tr.mems = append(tr.mems, m)
		regions = append(regions, &repo.Region{Name: n, Backend: m})
	}
	_, host, err := repo.Init(ctx, regions, repo.InitOptions{
		Recovery: []string{rec}, Host: "h1",
		Chunker:  chunk.Params{Algorithm: chunk.AlgorithmFastCDC, Min: 2048, Avg: 8192, Max: 32768},
		PackSize: 1 << 20, Now: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	w, err := repo.Open(ctx, regions, repo.Keys{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		data := make([]byte, r.IntN(200<<10))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := backup.Run(ctx, w, backup.Options{Paths: []string{src}, Set: "docs", Time: time.Now().Add(-time.Hour)}, &backup.Progress{})
	if err != nil {
		t.Fatal(err)
	}
	tr.snap = res.Snapshot
	rr, err := repo.Open(ctx, regions, repo.Keys{Recovery: []age.Identity{id}})
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	if tr.all, err = rr.Snapshots(ctx); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (tr *testRepo) options(t *testing.T) Options {
	return Options{
		Regions: []string{"r1", "r2"},
		Open: func(ctx context.Context, name string) (*repo.Repository, error) {
			for _, m := range tr.mems {
				if strings.TrimPrefix(m.Location(), "mem:") == name {
					return repo.Open(ctx, []*repo.Region{{Name: name, Backend: m}}, repo.Keys{Recovery: []age.Identity{tr.recovery}})
				}
			}
			return nil, fmt.Errorf("region %s: unreachable", name)
		},
		Snapshots:  tr.all,
		Sets:       []string{"docs"},
		Seed:       "test",
		ScratchDir: t.TempDir(),
	}
}

func TestRun(t *testing.T) {
	tr := newTestRepo(t, "r1", "r2")
	ctx := context.Background()

	t.Run("healthy", func(t *testing.T) {
		opts := tr.options(t)
		opts.Objectives = func(string) Objectives { return Objectives{MaxRPO: 2 * time.Hour, MaxRTO: time.Hour, Sample: 100} }
		rep, err := Run(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Success {
			t.Fatalf("drill failed: problems %v, missed %v", rep.Problems, rep.Missed)
		}
		for _, rr := range rep.Regions {
			if len(rr.Sets) != 1 {
				t.Fatalf("region %s: %d entries, want 1", rr.Region, len(rr.Sets))
			}
			e := rr.Sets[0]
			if !e.Verified || e.VerifiedBytes != tr.snap.Stats.Bytes || e.RPO == nil || e.RTO == nil || e.Set != "docs" {
				t.Errorf("region %s: %+v, want every byte (%d) verified, RPO and RTO", rr.Region, e, tr.snap.Stats.Bytes)
			}
		}
		entries, _ := os.ReadDir(opts.ScratchDir)
		if len(entries) != 0 {
			t.Errorf("scratch space left behind: %v", entries)
		}
		again, err := Run(ctx, Options{Previous: rep, Regions: opts.Regions, Open: opts.Open, Snapshots: opts.Snapshots, ScratchDir: opts.ScratchDir})
		if err != nil {
			t.Fatal(err)
		}
		if again.Previous == nil || again.Regions[0].Sets[0].Previous == nil || again.Regions[0].Sets[0].Previous.RTO == nil {
			t.Errorf("the previous drill's figures are not beside this one's: %+v", again.Regions[0].Sets[0])
		}
	})

	t.Run("objectives missed", func(t *testing.T) {
		opts := tr.options(t)
		opts.Objectives = func(string) Objectives { return Objectives{MaxRPO: time.Minute} }
		opts.Sets = append(opts.Sets, "never")
		rep, err := Run(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		missed := strings.Join(rep.Missed, "\n")
		for _, want := range []string{"region r1: set docs of host h1: RPO", "region r2: set docs of host h1: RPO", "set never has no snapshot"} {
			if !strings.Contains(missed, want) {
				t.Errorf("missed objectives do not say %q:\n%s", want, missed)
			}
		}
		if len(rep.Problems) != 0 || rep.Success {
			t.Errorf("problems %v, success %v", rep.Problems, rep.Success)
		}
	})

	t.Run("region down", func(t *testing.T) {
		opts := tr.options(t)
		opts.Regions = []string{"r1", "r3"}
		rep, err := Run(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Regions[1].Up || !strings.Contains(strings.Join(rep.Missed, "\n"), "region r3 cannot serve a restore") {
			t.Errorf("region r3 (unreachable) not reported: %+v, missed %v", rep.Regions[1], rep.Missed)
		}
	})
}

func TestRunDamage(t *testing.T) {
	tr := newTestRepo(t, "r1", "r2")
	ctx := context.Background()
	// Damage every pack in r2, keeping sizes.
	var damaged []string
	tr.mems[1].List(ctx, "data/", func(fi backend.Info) error {
		damaged = append(damaged, fi.Name)
		return nil
	})
	intact := map[string][]byte{}
	for _, name := range damaged {
		data, _ := tr.mems[1].Raw(name)
		intact[name] = data
		data = append([]byte(nil), data...)
		data[len(data)/2] ^= 0xff
		tr.mems[1].SetRaw(name, data)
	}
	opts := tr.options(t)
	opts.Objectives = func(string) Objectives { return Objectives{Sample: 100} }
	rep, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 {
		t.Fatalf("no problem found with every pack of r2 damaged: %+v", rep)
	}
	for _, p := range rep.Problems {
		if p.Region != "r2" || !strings.HasPrefix(p.Object, "data/") || p.Snapshot != tr.snap.ID {
			t.Errorf("problem %s: want region r2, a pack and the snapshot", p)
		}
	}
	if !rep.Regions[0].Sets[0].Verified || rep.Regions[1].Sets[0].Verified {
		t.Errorf("r1 verified %v, r2 verified %v: want r1 only", rep.Regions[0].Sets[0].Verified, rep.Regions[1].Sets[0].Verified)
	}

	// A missing pack is found without restoring it.
	for name, data := range intact {
		tr.mems[1].SetRaw(name, data)
	}
	tr.mems[1].Delete(ctx, damaged[len(damaged)-1])
	opts.Objectives = func(string) Objectives { return Objectives{Sample: 1} }
	rep, err = Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Region != "r2" || rep.Problems[0].Object != damaged[len(damaged)-1] {
		t.Errorf("problems %v: want region r2 naming the missing pack %s", rep.Problems, damaged[len(damaged)-1])
	}
}

func TestRunEmpty(t *testing.T) {
	tr := newTestRepo(t, "r1")
	opts := tr.options(t)
	opts.Regions = []string{"r1"}
	opts.Snapshots = nil
	opts.Sets = nil
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Success || len(rep.Missed) != 1 || !strings.Contains(rep.Missed[0], "no snapshot") {
		t.Errorf("a drill with nothing to restore: success %v, missed %v", rep.Success, rep.Missed)
	}
}
