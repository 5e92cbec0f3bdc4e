package replicate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"vaultbak/backend"
	"vaultbak/repo"
)

// prefixes are listed in commit order; Sync copies in this order.
var prefixes = []string{"keys/", "data/", "index/", "snapshots/", "audit/", "config"}

// Options select how deep Inspect looks.
type Options struct {
	// Verify reads every copy of every object in every region and checks it
	// without keys (repo.VerifyStored), so that a copy damaged without a
	// change of size is found. Without it only the copies of objects whose
	// size differs between regions are read (and manifests, once, for the
	// heads).
	Verify bool
	// Progress, if set, is called after each copy is verified, from several
	// goroutines at once.
	Progress func(done, total int)
}

// RegionStatus is one region compared with the union of all regions.
type RegionStatus struct {
	Name         string
	Err          error // the region could not be listed, or a copy in it could not be read
	Objects      int
	Bytes        int64
	Missing      []string // objects other regions hold and this one lacks
	MissingBytes int64    // the size of the copies that fill Missing
	// Damaged are objects whose copy here fails verification; Sync replaces
	// each with a copy from another region that verifies.
	Damaged      []string
	DamagedBytes int64             // the size of the intact copies that replace Damaged
	SizeMismatch []string          // the Damaged objects whose size here differs from an intact copy's
	Heads        map[string]uint64 // host → newest chain position here
}

// Status compares all regions.
//
// Which region holds the damaged copy of an object is decided by
// verification, never by listing order: when copies of one object differ in
// size (or, with Options.Verify, always), every copy is read and checked
// without keys, and only the copies that fail are damaged. A region whose
// copy verifies is never blamed, and its copy is never overwritten.
type Status struct {
	Regions []RegionStatus
	// Heads is host → newest chain position in any region.
	Heads map[string]uint64
	// Damage is one *repo.IntegrityError per damaged copy of an object that
	// some other region holds intact (Sync heals these).
	Damage []error
	// Problems are objects of which every copy read fails verification, one
	// *repo.IntegrityError each, naming the regions: Sync cannot heal them.
	Problems []error

	have    []map[string]int64 // per region: name → listed size; nil when the region failed
	damaged []map[string]error // per region: name → why its copy fails verification
	union   map[string]int64   // name → size of an intact copy (of any copy when none is)
	lost    map[string]bool    // names no region holds intact
}

// InSync reports whether every region answered and holds an intact copy of
// every object (as far as Inspect looked).
func (s *Status) InSync() bool {
	for _, r := range s.Regions {
		if r.Err != nil || len(r.Missing) > 0 || len(r.Damaged) > 0 {
			return false
		}
	}
	return len(s.Problems) == 0
}

// Inspect lists every region and compares them, verifying the copies that
// listing alone cannot decide between (see Status).
func Inspect(ctx context.Context, regions []*repo.Region, opts Options) (*Status, error) {
	st := &Status{
		Regions: make([]RegionStatus, len(regions)),
		Heads:   map[string]uint64{},
		have:    make([]map[string]int64, len(regions)),
		damaged: make([]map[string]error, len(regions)),
		union:   map[string]int64{},
		lost:    map[string]bool{},
	}
	answered := 0
	for i, reg := range regions {
		rs := &st.Regions[i]
		rs.Name = reg.Name
		rs.Heads = map[string]uint64{}
		have := map[string]int64{}
		for _, p := range prefixes {
			err := reg.Backend.List(ctx, p, func(fi backend.Info) error {
				if p == "config" && fi.Name != "config" {
					return nil
				}
				have[fi.Name] = fi.Size
				return nil
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				rs.Err = err
				break
			}
		}
		if rs.Err != nil {
			continue
		}
		answered++
		st.have[i] = have
		st.damaged[i] = map[string]error{}
	}
	if answered == 0 {
		return nil, fmt.Errorf("replicate: no region could be listed")
	}
	if err := st.verify(ctx, regions, opts); err != nil {
		return nil, err
	}
	if err := st.readHeads(ctx, regions); err != nil {
		return nil, err
	}
	st.compare(regions)
	return st, nil
}

// verify reads and checks every copy of every object whose listed size
// differs between regions — one copy at least is damaged, and only reading
// tells which — or, with opts.Verify, of every object. The config is left
// out: it cannot be verified without the repository secrets, and regions
// may hold different versions of it for a while after a key change. A
// region that fails to answer a read is left out of the comparison, like
// one that failed to list.
func (st *Status) verify(ctx context.Context, regions []*repo.Region, opts Options) error {
	size := map[string]int64{}
	differs := map[string]bool{}
	for _, have := range st.have {
		for name, n := range have {
			if prev, ok := size[name]; ok && prev != n {
				differs[name] = true
			}
			size[name] = n
		}
	}
	type job struct {
		region int
		name   string
	}
	var jobs []job
	for i, have := range st.have {
		for name := range have {
			if name != "config" && (opts.Verify || differs[name]) {
				jobs = append(jobs, job{i, name})
			}
		}
	}
	sort.Slice(jobs, func(a, b int) bool {
		if jobs[a].region != jobs[b].region {
			return jobs[a].region < jobs[b].region
		}
		return jobs[a].name < jobs[b].name
	})

	var mu sync.Mutex
	done := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, j := range jobs {
		g.Go(func() error {
			mu.Lock()
			failed := st.Regions[j.region].Err != nil
			mu.Unlock()
			var err error
			if !failed {
				_, err = repo.VerifyStored(gctx, regions[j.region], j.name)
			}
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			mu.Lock()
			defer mu.Unlock()
			var ie *repo.IntegrityError
			switch {
			case err == nil:
			case errors.As(err, &ie):
				st.damaged[j.region][j.name] = err
			case st.Regions[j.region].Err == nil:
				st.Regions[j.region].Err = err
			}
			done++
			if opts.Progress != nil {
				opts.Progress(done, len(jobs))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i := range st.Regions {
		if st.Regions[i].Err != nil {
			st.have[i], st.damaged[i] = nil, nil
		}
	}
	return nil
}

// readHeads reads every manifest once, from the first region whose copy is
// not known to be damaged, to learn each region's newest chain position per
// host. A copy that fails to parse or verify on the way is damage in its
// region.
func (st *Status) readHeads(ctx context.Context, regions []*repo.Region) error {
	names := map[string]bool{}
	for _, have := range st.have {
		for name := range have {
			if strings.HasPrefix(name, "snapshots/") {
				names[name] = true
			}
		}
	}
	heads := map[string]repo.ManifestHead{}
	for name := range names {
		id := strings.TrimPrefix(name, "snapshots/")
		var readErr error
		for i, reg := range regions {
			if _, has := st.have[i][name]; !has || st.damaged[i][name] != nil {
				continue
			}
			data, err := backend.ReadAll(ctx, reg.Backend, name, 1<<20)
			if err == nil {
				var h repo.ManifestHead
				if h, err = repo.ParseManifestHead(id, data); err == nil {
					heads[name] = h
					readErr = nil
					break
				}
			} else if !errors.Is(err, backend.ErrTooLarge) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				readErr = &repo.RegionError{Region: reg.Name, Err: err}
				continue
			}
			st.damaged[i][name] = &repo.IntegrityError{Region: reg.Name, Object: name, Reason: err.Error()}
		}
		if readErr != nil {
			return readErr
		}
	}
	for i := range regions {
		for name := range st.have[i] {
			if h, ok := heads[name]; ok && st.damaged[i][name] == nil {
				st.Regions[i].Heads[h.Host] = max(st.Regions[i].Heads[h.Host], h.Seq)
				st.Heads[h.Host] = max(st.Heads[h.Host], h.Seq)
			}
		}
	}
	return nil
}

// compare fills in each region's counts, what it lacks and which of its
// copies are damaged, and finds the objects no region holds intact.
func (st *Status) compare(regions []*repo.Region) {
	for i := range regions {
		for name, size := range st.have[i] {
			if _, ok := st.union[name]; !ok || st.damaged[i][name] == nil {
				st.union[name] = size
			}
		}
	}
	names := slices.Sorted(maps.Keys(st.union))
	for _, name := range names {
		intact := false
		var reasons []string
		for i, reg := range regions {
			if _, has := st.have[i][name]; !has {
				continue
			}
			err := st.damaged[i][name]
			if err == nil {
				intact = true
				break
			}
			var ie *repo.IntegrityError
			if errors.As(err, &ie) {
				reasons = append(reasons, fmt.Sprintf("region %s: %s", reg.Name, ie.Reason))
			}
		}
		if !intact {
			st.lost[name] = true
			st.Problems = append(st.Problems, &repo.IntegrityError{Object: name, Reason: "no region holds an intact copy (" + strings.Join(reasons, "; ") + ")"})
		}
	}
	for i := range regions {
		rs := &st.Regions[i]
		if rs.Err != nil {
			continue
		}
		for _, size := range st.have[i] {
			rs.Objects++
			rs.Bytes += size
		}
		for _, name := range names {
			size := st.union[name]
			got, has := st.have[i][name]
			switch {
			case !has:
				rs.Missing = append(rs.Missing, name)
				rs.MissingBytes += size
			case st.damaged[i][name] != nil:
				rs.Damaged = append(rs.Damaged, name)
				if st.lost[name] {
					continue
				}
				rs.DamagedBytes += size
				if got != size {
					rs.SizeMismatch = append(rs.SizeMismatch, name)
				}
				st.Damage = append(st.Damage, st.damaged[i][name])
			}
		}
	}
}

// SyncResult sums up a Sync.
type SyncResult struct {
	Copied   int // objects copied into regions that lacked them
	Replaced int // damaged copies replaced by a copy that verifies
	Bytes    int64
	Problems []error // objects no region holds intact
}

// Sync copies to every region what it lacks, and replaces every damaged
// copy Inspect found, from a region whose copy verifies; it never
// overwrites a copy that verifies, and writes only bytes it has verified.
// Objects no region holds intact are left as they are and returned as
// Problems. progress, if set, is called after each object written, from
// several goroutines at once, with the region it went to and its size; a
// region's total to write is its MissingBytes plus its DamagedBytes.
func Sync(ctx context.Context, regions []*repo.Region, st *Status, progress func(region string, bytes int64)) (*SyncResult, error) {
	res := &SyncResult{Problems: slices.Clone(st.Problems)}
	// The regions' configs say how what is copied is locked (as a
	// backup's writes are) and which keys may sign the manifests and
	// audit records copied into each region: one signed by a key the
	// region's config does not enrol is not spread (a region may hold a
	// forged one, and in a locked bucket a copy could not be taken back).
	configs, err := repo.ReadStoredConfigs(ctx, regions)
	if err != nil {
		return nil, err
	}
	if err := repo.ApplyObjectLock(regions, configs); err != nil {
		return nil, err
	}
	var copied, replaced atomic.Int64
	var bytes atomic.Int64
	var mu sync.Mutex
	for _, prefix := range prefixes {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(4)
		for i, reg := range regions {
			rs := st.Regions[i]
			if rs.Err != nil {
				continue
			}
			for _, name := range slices.Concat(rs.Missing, rs.Damaged) {
				if !strings.HasPrefix(name, prefix) || st.lost[name] {
					continue
				}
				g.Go(func() error {
					n, err := copyObject(gctx, regions, st, name, reg, enrolling(configs, reg.Name))
					if err != nil {
						var ie *repo.IntegrityError
						if errors.As(err, &ie) {
							mu.Lock()
							res.Problems = append(res.Problems, err)
							mu.Unlock()
							return nil
						}
						return err
					}
					if st.damaged[i][name] != nil {
						replaced.Add(1)
					} else {
						copied.Add(1)
					}
					bytes.Add(n)
					if progress != nil {
						progress(reg.Name, n)
					}
					return nil
				})
			}
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	}
	res.Copied = int(copied.Load())
	res.Replaced = int(replaced.Load())
	res.Bytes = bytes.Load()
	return res, nil
}

// enrolling returns the configs a manifest or audit record copied into
// region target must be accepted by: that region's own, or, for a region
// that has none yet (its config is copied last), every region's.
func enrolling(configs repo.StoredConfigs, target string) [][]byte {
	if c, ok := configs[target]; ok {
		return [][]byte{c}
	}
	return slices.Collect(maps.Values(configs))
}

// copyObject writes name into target from the first other region whose
// copy verifies, through the target backend's Put (temp file and rename in
// a local directory, one PUT on S3), replacing target's copy if it has one.
// A manifest or audit record must also be accepted by every config of
// accept (see enrolling).
func copyObject(ctx context.Context, regions []*repo.Region, st *Status, name string, target *repo.Region, accept [][]byte) (int64, error) {
	var reasons []string
	for i, src := range regions {
		if src == target {
			continue
		}
		if _, has := st.have[i][name]; !has || st.damaged[i][name] != nil {
			continue
		}
		data, err := backend.ReadAll(ctx, src.Backend, name, repo.MaxObjectSize)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			reasons = append(reasons, fmt.Sprintf("region %s: %v", src.Name, err))
			continue
		}
		if err := repo.VerifyObject(name, data); err != nil {
			reasons = append(reasons, fmt.Sprintf("region %s: %v", src.Name, err))
			continue
		}
		for _, cfg := range accept {
			if err := repo.VerifyEnrolled(cfg, name, data); err != nil {
				return 0, &repo.IntegrityError{Region: target.Name, Object: name, Reason: fmt.Sprintf("not copied from region %s: %v (by the repository's config in region %s, or in every region when it has none)", src.Name, err, target.Name)}
			}
		}
		if err := target.Backend.Put(ctx, name, data); err != nil {
			return 0, &repo.RegionError{Region: target.Name, Err: fmt.Errorf("write %s: %w", name, err)}
		}
		return int64(len(data)), nil
	}
	return 0, &repo.IntegrityError{Region: target.Name, Object: name, Reason: "no region holds an intact copy to heal it from (" + strings.Join(reasons, "; ") + ")"}
}
