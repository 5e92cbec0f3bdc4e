package replicate

import (
	"context"
	"errors"
	"fmt"
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

// RegionStatus is one region compared with the union of all regions.
type RegionStatus struct {
	Name         string
	Err          error // the region could not be listed
	Objects      int
	Bytes        int64
	Missing      []string // objects other regions hold and this one lacks
	MissingBytes int64
	SizeMismatch []string          // objects whose size differs from another region's
	Heads        map[string]uint64 // host → newest chain position here
}

// Status compares all regions.
type Status struct {
	Regions []RegionStatus
	// Heads is host → newest chain position in any region.
	Heads map[string]uint64
	// Problems are manifests that fail verification (found while reading
	// heads): damage, not lag.
	Problems []error

	have  []map[string]int64 // per region: name → size
	union map[string]int64
}

// InSync reports whether every region answered and holds every object.
func (s *Status) InSync() bool {
	for _, r := range s.Regions {
		if r.Err != nil || len(r.Missing) > 0 || len(r.SizeMismatch) > 0 {
			return false
		}
	}
	return len(s.Problems) == 0
}

// Inspect lists every region and compares them.
func Inspect(ctx context.Context, regions []*repo.Region) (*Status, error) {
	st := &Status{Heads: map[string]uint64{}, union: map[string]int64{}, have: make([]map[string]int64, len(regions))}
	st.Regions = make([]RegionStatus, len(regions))
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
		st.have[i] = have
		for name, size := range have {
			rs.Objects++
			rs.Bytes += size
			if _, ok := st.union[name]; !ok {
				st.union[name] = size
			}
		}
	}
	answered := 0
	for i := range regions {
		rs := &st.Regions[i]
		if rs.Err != nil {
			continue
		}
		answered++
		for name, size := range st.union {
			got, ok := st.have[i][name]
			switch {
			case !ok:
				rs.Missing = append(rs.Missing, name)
				rs.MissingBytes += size
			case got != size && !strings.HasPrefix(name, "config"):
				rs.SizeMismatch = append(rs.SizeMismatch, name)
			}
		}
		sort.Strings(rs.Missing)
		sort.Strings(rs.SizeMismatch)
	}
	if answered == 0 {
		return nil, fmt.Errorf("replicate: no region could be listed")
	}
	if err := st.readHeads(ctx, regions); err != nil {
		return nil, err
	}
	return st, nil
}

// readHeads reads every manifest once (from a region that holds it) to
// learn each region's newest chain position per host.
func (st *Status) readHeads(ctx context.Context, regions []*repo.Region) error {
	heads := map[string]repo.ManifestHead{}
	for name := range st.union {
		id, ok := strings.CutPrefix(name, "snapshots/")
		if !ok {
			continue
		}
		var lastErr error
		for i, reg := range regions {
			if _, has := st.have[i][name]; !has {
				continue
			}
			data, err := backend.ReadAll(ctx, reg.Backend, name, 1<<20)
			if err == nil {
				var h repo.ManifestHead
				if h, err = repo.ParseManifestHead(id, data); err == nil {
					heads[name] = h
					lastErr = nil
					break
				}
				err = &repo.IntegrityError{Region: reg.Name, Object: name, Reason: err.Error()}
			}
			lastErr = err
		}
		if lastErr != nil {
			var ie *repo.IntegrityError
			if !errors.As(lastErr, &ie) {
				return lastErr
			}
			st.Problems = append(st.Problems, lastErr)
		}
	}
	for i := range regions {
		for name := range st.have[i] {
			if h, ok := heads[name]; ok {
				st.Regions[i].Heads[h.Host] = max(st.Regions[i].Heads[h.Host], h.Seq)
				st.Heads[h.Host] = max(st.Heads[h.Host], h.Seq)
			}
		}
	}
	return nil
}

// SyncResult sums up a Sync.
type SyncResult struct {
	Copied   int
	Bytes    int64
	Problems []error // objects no region holds intact
}

// Sync copies to every region what it lacks, from a region that holds an
// intact copy. progress, if set, is called after each object copied, from
// several goroutines at once, with the region it went to and its size; a
// region's total to copy is its RegionStatus.MissingBytes.
func Sync(ctx context.Context, regions []*repo.Region, st *Status, progress func(region string, bytes int64)) (*SyncResult, error) {
	res := &SyncResult{}
	var copied atomic.Int64
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
			for _, name := range rs.Missing {
				if !strings.HasPrefix(name, prefix) {
					continue
				}
				g.Go(func() error {
					n, err := copyObject(gctx, regions, st, name, reg)
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
					copied.Add(1)
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
	res.Bytes = bytes.Load()
	return res, nil
}

// copyObject copies one object into target from the first region holding
// an intact copy.
func copyObject(ctx context.Context, regions []*repo.Region, st *Status, name string, target *repo.Region) (int64, error) {
	var reasons []string
	for i, src := range regions {
		if src == target {
			continue
		}
		if _, has := st.have[i][name]; !has {
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
		if err := target.Backend.Put(ctx, name, data); err != nil {
			return 0, &repo.RegionError{Region: target.Name, Err: fmt.Errorf("write %s: %w", name, err)}
		}
		return int64(len(data)), nil
	}
	return 0, &repo.IntegrityError{Region: target.Name, Object: name, Reason: "no region holds an intact copy to heal it from (" + strings.Join(reasons, "; ") + ")"}
}
