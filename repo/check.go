package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"vaultbak/backend"
	"vaultbak/crypt"
)

// CheckOptions select how deep Check goes.
type CheckOptions struct {
	// ReadData decrypts packs and verifies every blob against its keyed ID,
	// and walks every snapshot's trees. Needs the recovery identity.
	ReadData bool
	// Percent of packs to read with ReadData (0 or 100: all): the
	// ceil(Percent% × N) of the N indexed packs, so at least one, that rank
	// first by a hash of Seed and the pack. Successive runs with the same
	// percentage read the same packs (a larger one reads more of them);
	// vary Seed to rotate.
	Percent float64
	Seed    string
	// Progress, if set, is called after each object is checked.
	Progress func(done, total int)
}

// CheckResult lists what Check found. Problems are integrity failures;
// Warnings are inconsistencies that are not damage (a region lagging).
type CheckResult struct {
	Packs     int     // pack objects hashed (summed over regions)
	Bytes     int64   // bytes read
	Blobs     int     // blobs decrypted and verified
	Snapshots int     // manifests verified (summed over regions)
	Problems  []error // *IntegrityError
	Warnings  []string

	// With ReadData: packs decrypted and verified, of the PacksIndexed
	// packs the index names (all of them unless Percent samples).
	PacksRead, PacksIndexed int

	// Strays are the regions that hold temporary files beside their
	// objects: neither damage nor a lag (no snapshot references them, and
	// one may be a running backup's pack), so neither a Problem nor a
	// Warning.
	Strays []RegionStrays
}

// RegionStrays counts the temporary files in one region (see
// backend.Sweeper): what interrupted writes left, or running ones are
// writing. The next writer removes the stale ones.
type RegionStrays struct {
	Region string
	backend.Strays
}

// Check verifies the repository in every region. Without keys it verifies
// the hash of every pack and index file and every manifest's signature;
// with the index it also checks that every indexed pack is present with its
// size in every region; with ReadData it decrypts and verifies blobs.
func (r *Repository) Check(ctx context.Context, opts CheckOptions) (*CheckResult, error) {
	res := &CheckResult{}
	var mu sync.Mutex
	problem := func(err error) {
		mu.Lock()
		res.Problems = append(res.Problems, err)
		mu.Unlock()
	}

	type regionObjects struct {
		packs, indexes, snaps map[string]int64
	}
	// Regions that do not answer are reported and left out of the rest.
	var regions []*Region
	var listed []regionObjects
	total := 0
	for _, reg := range r.regions {
		var ro regionObjects
		var err error
		for _, l := range []struct {
			prefix string
			into   *map[string]int64
		}{{"data/", &ro.packs}, {"index/", &ro.indexes}, {"snapshots/", &ro.snaps}} {
			m := map[string]int64{}
			if err = reg.Backend.List(ctx, l.prefix, func(fi backend.Info) error { m[fi.Name] = fi.Size; return nil }); err != nil {
				break
			}
			*l.into = m
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			res.Warnings = append(res.Warnings, fmt.Sprintf("region %s could not be checked: %v", reg.Name, err))
			continue
		}
		regions = append(regions, reg)
		listed = append(listed, ro)
		total += len(ro.packs) + len(ro.indexes)
	}
	// A repository that locks its history needs buckets that can hold
	// locks: writes into one that cannot all fail.
	if r.cfg.ObjectLock != nil {
		for _, reg := range regions {
			if l, ok := reg.Backend.(backend.Locker); ok {
				if err := l.CheckLock(ctx); err != nil {
					res.Warnings = append(res.Warnings, fmt.Sprintf("region %s cannot hold the repository's Object Lock, so every write there fails: %v", reg.Name, err))
				}
			}
		}
	}
	if len(regions) == 0 {
		return nil, fmt.Errorf("repo: no region could be listed: %s", strings.Join(res.Warnings, "; "))
	}
	for _, reg := range regions {
		// A count that fails is left out: it is advice, and the region
		// answered its listings.
		if sw, ok := reg.Backend.(backend.Sweeper); ok {
			if st, err := sw.Strays(ctx); err == nil && st.Files > 0 {
				res.Strays = append(res.Strays, RegionStrays{Region: reg.Name, Strays: st})
			}
		}
	}

	// Every pack and index file: its bytes hash to its name.
	var done int
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, reg := range regions {
		for _, m := range []map[string]int64{listed[i].packs, listed[i].indexes} {
			for _, name := range sortedKeys(m) {
				g.Go(func() error {
					n, err := hashObject(gctx, reg, name)
					if err != nil {
						var ie *IntegrityError
						if !errors.As(err, &ie) {
							return err
						}
						problem(err)
					}
					mu.Lock()
					res.Bytes += n
					if strings.HasPrefix(name, "data/") {
						res.Packs++
					}
					done++
					if opts.Progress != nil {
						opts.Progress(done, total)
					}
					mu.Unlock()
					return nil
				})
			}
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// Every manifest, in every region: signature and enrolment; and every
	// region it names holds it.
	answered := map[string]int{}
	for i, reg := range regions {
		answered[reg.Name] = i
	}
	seenManifest := map[string]bool{}
	for i, reg := range regions {
		for _, name := range sortedKeys(listed[i].snaps) {
			id := strings.TrimPrefix(name, "snapshots/")
			data, err := backend.ReadAll(ctx, reg.Backend, name, maxManifestSize)
			if err != nil {
				return nil, &RegionError{reg.Name, err}
			}
			s, err := decodeManifest(id, data)
			if err == nil {
				err = r.verifySigner(s)
			}
			if err != nil {
				problem(&IntegrityError{Region: reg.Name, Object: "snapshot " + id, Reason: err.Error()})
			}
			res.Snapshots++
			if err == nil && !seenManifest[name] {
				seenManifest[name] = true
				for _, named := range s.Regions {
					if j, ok := answered[named]; ok {
						if _, has := listed[j].snaps[name]; !has {
							problem(&IntegrityError{Region: named, Object: "snapshot " + id, Reason: "missing, though it was committed there (its manifest names the region): deleted or hidden"})
						}
					}
				}
			}
		}
	}

	// Regions that lack what another region has.
	for i, reg := range regions {
		for j, other := range regions {
			if i == j {
				continue
			}
			var lacks []string
			for _, kind := range []struct {
				what       string
				have, lack map[string]int64
			}{{"pack(s)", listed[j].packs, listed[i].packs}, {"index file(s)", listed[j].indexes, listed[i].indexes}, {"manifest(s)", listed[j].snaps, listed[i].snaps}} {
				n := 0
				for name := range kind.have {
					if _, ok := kind.lack[name]; !ok {
						n++
					}
				}
				if n > 0 {
					lacks = append(lacks, fmt.Sprintf("%d %s", n, kind.what))
				}
			}
			if lacks != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("region %s lacks %s that region %s holds", reg.Name, strings.Join(lacks, ", "), other.Name))
			}
		}
	}

	// Every pack the index names: present with its size. A pack that one
	// region lacks but another holds is lag (replication heals it); one
	// that no region holds, or of the wrong size, is damage.
	for pack, size := range r.index.Packs() {
		name := PackName(pack)
		held := 0
		for i, reg := range regions {
			got, ok := listed[i].packs[name]
			switch {
			case !ok:
				res.Warnings = append(res.Warnings, fmt.Sprintf("region %s lacks indexed pack %s", reg.Name, name))
			case got != size:
				problem(&IntegrityError{Region: reg.Name, Object: name, Reason: fmt.Sprintf("size %d, index says %d", got, size)})
			default:
				held++
			}
		}
		if held == 0 {
			problem(&IntegrityError{Object: name, Reason: "indexed pack is missing in every region"})
		}
	}
	res.Problems = append(res.Problems, r.damaged...)
	res.Warnings = append(res.Warnings, r.lagging...)

	if opts.ReadData {
		if !r.CanRead() {
			return nil, ErrNeedRecovery
		}
		if err := r.checkData(ctx, opts, res, problem); err != nil {
			return nil, err
		}
	}
	sort.Slice(res.Problems, func(i, j int) bool { return res.Problems[i].Error() < res.Problems[j].Error() })
	return res, nil
}

// hashObject reads one stored object and compares its SHA-256 with its name.
func hashObject(ctx context.Context, reg *Region, name string) (int64, error) {
	want, ok := hashFromName(name)
	if !ok {
		return 0, &IntegrityError{Region: reg.Name, Object: name, Reason: "unexpected object name"}
	}
	rc, err := reg.Backend.Get(ctx, name)
	if err != nil {
		return 0, &RegionError{reg.Name, fmt.Errorf("read %s: %w", name, err)}
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return n, &RegionError{reg.Name, fmt.Errorf("read %s: %w", name, err)}
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		return n, &IntegrityError{Region: reg.Name, Object: name, Reason: "content does not match its hash"}
	}
	return n, nil
}

// checkData decrypts the selected packs (from the first region whose copy
// is intact) and verifies every blob, then walks every snapshot's trees.
func (r *Repository) checkData(ctx context.Context, opts CheckOptions, res *CheckResult, problem func(error)) error {
	var packs []crypt.ID
	for p := range r.index.Packs() {
		packs = append(packs, p)
	}
	selected := choosePacks(packs, opts.Percent, opts.Seed)
	sort.Slice(selected, func(i, j int) bool { return bytes.Compare(selected[i][:], selected[j][:]) < 0 })
	res.PacksRead, res.PacksIndexed = len(selected), len(packs)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for _, p := range selected {
		g.Go(func() error {
			n, err := r.verifyPack(gctx, p)
			mu.Lock()
			res.Blobs += n
			mu.Unlock()
			if err != nil {
				var ie *IntegrityError
				if !errors.As(err, &ie) {
					return err
				}
				problem(err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return err
	}
	seen := map[crypt.ID]bool{}
	for _, s := range snaps {
		if err := r.checkTree(ctx, s.Tree, seen); err != nil {
			var ie *IntegrityError
			if !errors.As(err, &ie) {
				return err
			}
			problem(fmt.Errorf("snapshot %s: %w", ShortID(s.ID), err))
		}
	}
	return nil
}

// choosePacks returns the ceil(percent% × len(packs)) packs, at least one,
// that rank first by SHA-256 of seed and the pack ID (all of them for a
// percent of 0 or 100 and above).
func choosePacks(packs []crypt.ID, percent float64, seed string) []crypt.ID {
	if percent <= 0 || percent >= 100 || len(packs) == 0 {
		return packs
	}
	// The small slack keeps 7% of 100 at 7, despite binary fractions.
	n := max(1, int(math.Ceil(percent*float64(len(packs))/100-1e-9)))
	type ranked struct {
		rank [sha256.Size]byte
		pack crypt.ID
	}
	all := make([]ranked, len(packs))
	for i, p := range packs {
		all[i] = ranked{sha256.Sum256(append([]byte(seed), p[:]...)), p}
	}
	slices.SortFunc(all, func(a, b ranked) int { return bytes.Compare(a.rank[:], b.rank[:]) })
	out := make([]crypt.ID, min(n, len(all)))
	for i := range out {
		out[i] = all[i].pack
	}
	return out
}

// verifyPack decrypts one pack and verifies each blob in it and its trailer
// against the index. It tries the regions in order until one copy is whole.
func (r *Repository) verifyPack(ctx context.Context, pack crypt.ID) (int, error) {
	var last error
	for _, reg := range r.regions {
		n, err := r.verifyPackIn(ctx, reg, pack)
		if err == nil {
			return n, nil
		}
		var ie *IntegrityError
		if !errors.As(err, &ie) && !errors.Is(err, backend.ErrNotFound) {
			return n, err
		}
		last = err
		if errors.As(err, &ie) {
			return n, err // damage in any region is reported
		}
	}
	return 0, last
}

func (r *Repository) verifyPackIn(ctx context.Context, reg *Region, pack crypt.ID) (int, error) {
	name := PackName(pack)
	obj, err := reg.Backend.Open(ctx, name)
	if err != nil {
		return 0, err
	}
	defer obj.Close()
	bad := func(reason string) error { return &IntegrityError{Region: reg.Name, Object: name, Reason: reason} }
	key, err := crypt.FileKey(obj, obj.Size(), r.keys.Recovery)
	if err != nil {
		return 0, bad(err.Error())
	}
	plain, size, err := crypt.OpenAt(obj, obj.Size(), key)
	if err != nil {
		return 0, bad(err.Error())
	}
	data := make([]byte, size)
	if _, err := plain.ReadAt(data, 0); err != nil && err != io.EOF {
		return 0, bad(err.Error())
	}
	entries, err := parsePackTrailer(data, size)
	if err != nil {
		return 0, bad(err.Error())
	}
	n := 0
	for _, e := range entries {
		blob, err := decodeBlob(data[e.Offset:e.Offset+e.Length], e.Flags, e.RawLen, nil)
		if err != nil {
			return n, bad(fmt.Sprintf("blob %s: %v", e.ID, err))
		}
		if r.secrets.BlobID(blob) != e.ID {
			return n, bad(fmt.Sprintf("blob %s does not match its ID", e.ID))
		}
		if loc, ok := r.index.Lookup(e.ID); ok && loc.Pack == pack && (loc.Offset != e.Offset || loc.Length != e.Length) {
			return n, bad(fmt.Sprintf("blob %s: index and pack disagree on its place", e.ID))
		}
		n++
	}
	return n, nil
}

// checkTree loads tree id and its subtrees and checks that every chunk a
// file names is in the index.
func (r *Repository) checkTree(ctx context.Context, id crypt.ID, seen map[crypt.ID]bool) error {
	if seen[id] {
		return nil
	}
	seen[id] = true
	t, err := r.LoadTree(ctx, id)
	if err != nil {
		return err
	}
	for _, n := range t.Nodes {
		for _, c := range n.Content {
			if !r.index.Has(c) {
				return &IntegrityError{Object: fmt.Sprintf("file %q", n.Name), Reason: fmt.Sprintf("chunk %s is not in the index", c)}
			}
		}
		if n.Subtree != nil {
			if err := r.checkTree(ctx, *n.Subtree, seen); err != nil {
				return err
			}
		}
	}
	return nil
}
