package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"vaultbak/backend"
	"vaultbak/crypt"
	"vaultbak/repo"
	"vaultbak/restore"
)

// DefaultSample is the percentage of a snapshot's bytes restored when no
// objective says otherwise.
const DefaultSample = 5.0

// Objectives are what a host's and set's newest snapshot must meet in
// every region. Zero durations are not checked.
type Objectives struct {
	MaxRPO time.Duration // newest snapshot at most this old
	MaxRTO time.Duration // restorable within this time
	Sample float64       // percent of the snapshot's bytes to restore; 0: DefaultSample
}

// Options configure Run.
type Options struct {
	// Regions are the names of the regions to drill, in turn.
	Regions []string
	// Open opens the repository held by one region, with that region's
	// backend only and the recovery identity. Its time counts towards the
	// region's time to first byte.
	Open func(ctx context.Context, region string) (*repo.Repository, error)
	// Snapshots are the repository's snapshots read and verified over all
	// regions: what each region's heads are compared with.
	Snapshots []*repo.Snapshot
	// Set, when not "", limits the drill to that backup set.
	Set string
	// Sets are the configured backup sets: one without any snapshot is an
	// objective missed (a backup that never ran, or silently stopped).
	Sets []string
	// SetRegions returns the regions a set is pinned to (nil: every
	// region); its snapshots are drilled there only. May be nil.
	SetRegions func(set string) []string
	// Objectives returns the objectives of a set ("" for snapshots that
	// belong to none). May be nil.
	Objectives func(set string) Objectives
	// Seed chooses the sample; "" picks a random one (reported).
	Seed string
	// ScratchDir holds the sample while it is restored ("" for the system
	// temporary directory); what the drill writes there is removed.
	ScratchDir string
	// Now is the time RPO is measured at; zero for the current time.
	Now time.Time
	// Previous is the previous drill's report, whose figures are put
	// beside this one's; may be nil.
	Previous *Report
	// Progress, if set, counts the bytes restored and verified.
	Progress *restore.Progress
}

// group is one host's snapshots of one set.
type group struct{ host, set string }

// Run drills every region in turn; see the package documentation. The
// error is for a drill that could not run; what it found is in the Report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	start := time.Now()
	now := opts.Now
	if now.IsZero() {
		now = start
	}
	if opts.Seed == "" {
		var b [8]byte
		rand.Read(b[:])
		opts.Seed = hex.EncodeToString(b[:])
	}
	if opts.Objectives == nil {
		opts.Objectives = func(string) Objectives { return Objectives{} }
	}
	if opts.Progress == nil {
		opts.Progress = &restore.Progress{}
	}
	rep := &Report{Time: now.UTC(), Seed: opts.Seed, Problems: []Problem{}, Missed: []string{}}
	groups, newest := groupsOf(opts)
	if len(groups) == 0 {
		rep.Missed = append(rep.Missed, "the repository holds no snapshot: there is nothing a restore could bring back")
	}
	for _, g := range groups {
		if newest[g] == nil {
			rep.Missed = append(rep.Missed, fmt.Sprintf("%s has no snapshot in any region", g))
		}
	}
	for _, name := range opts.Regions {
		var mine []group
		for _, g := range groups {
			if regions := setRegions(opts, g.set); regions == nil || slices.Contains(regions, name) {
				mine = append(mine, g)
			}
		}
		rr, err := drillRegion(ctx, opts, rep, name, mine, newest, now)
		if err != nil {
			return nil, err
		}
		rep.Regions = append(rep.Regions, *rr)
	}
	rep.attachPrevious(opts.Previous)
	rep.Success = len(rep.Problems) == 0 && len(rep.Missed) == 0
	rep.Duration = time.Since(start).Seconds()
	return rep, nil
}

func (g group) String() string {
	if g.set == "" {
		return fmt.Sprintf("host %s (no set)", g.host)
	}
	if g.host == "" {
		return fmt.Sprintf("set %s", g.set)
	}
	return fmt.Sprintf("set %s of host %s", g.set, g.host)
}

func setRegions(opts Options, set string) []string {
	if opts.SetRegions == nil {
		return nil
	}
	return opts.SetRegions(set)
}

// groupsOf returns the host/set groups to drill, sorted, and the newest
// snapshot of each in the repository (nil for a configured set that has
// none).
func groupsOf(opts Options) ([]group, map[group]*repo.Snapshot) {
	newest := map[group]*repo.Snapshot{}
	sets := map[string]bool{}
	for _, s := range opts.Snapshots {
		if opts.Set != "" && s.Set != opts.Set {
			continue
		}
		g := group{s.Host, s.Set}
		if cur := newest[g]; cur == nil || s.Seq > cur.Seq {
			newest[g] = s
		}
		sets[s.Set] = true
	}
	for _, set := range opts.Sets {
		if !sets[set] && (opts.Set == "" || opts.Set == set) {
			newest[group{"", set}] = nil
		}
	}
	if opts.Set != "" && len(newest) == 0 {
		newest[group{"", opts.Set}] = nil
	}
	groups := make([]group, 0, len(newest))
	for g := range newest {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool {
		if groups[i].set != groups[j].set {
			return groups[i].set < groups[j].set
		}
		return groups[i].host < groups[j].host
	})
	return groups, newest
}

// drillRegion drills one region. A failure of the region is recorded in
// the report; the error is for failures of the drill itself.
func drillRegion(ctx context.Context, opts Options, rep *Report, name string, groups []group, newest map[group]*repo.Snapshot, now time.Time) (*RegionReport, error) {
	rr := &RegionReport{Region: name, Sets: []Entry{}}
	down := func(err error) (*RegionReport, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, repo.ErrNeedRecovery) || errors.Is(err, crypt.ErrNoIdentity) {
			return nil, err // the same in every region: not the region's fault
		}
		rep.addIntegrity(err, Problem{Region: name})
		rr.Up = false
		rr.Error = err.Error()
		rep.Missed = append(rep.Missed, fmt.Sprintf("region %s cannot serve a restore: %v", name, err))
		for _, g := range groups {
			rr.Sets = append(rr.Sets, Entry{Host: g.host, Set: g.set, Error: "region unavailable"})
		}
		return rr, nil
	}
	t0 := time.Now()
	r, err := opts.Open(ctx, name)
	if err != nil {
		return down(err)
	}
	defer r.Close()
	snaps, err := regionSnapshots(ctx, r, name, opts.Snapshots)
	if err != nil {
		return down(err)
	}
	opened := time.Since(t0)
	rr.Up = true
	rr.OpenSeconds = opened.Seconds()
	rr.Snapshots = len(snaps)
	var packs map[string]int64 // the region's data/, listed once
	for _, g := range groups {
		e, err := drillEntry(ctx, opts, rep, r, name, g, snaps, newest[g], &packs, opened, now)
		if err != nil {
			return nil, err
		}
		rr.Sets = append(rr.Sets, *e)
	}
	return rr, nil
}

// regionSnapshots returns the snapshots of all (the repository's, verified
// over every region) whose manifests the region holds, after checking the
// region's copy of each. The chain is not checked per region: a region
// that once lagged holds a chain with gaps, which the union fills (the
// caller checked it, and that no region hides a manifest that names it).
func regionSnapshots(ctx context.Context, r *repo.Repository, region string, all []*repo.Snapshot) ([]*repo.Snapshot, error) {
	b := r.Regions()[0].Backend
	held := map[string]bool{}
	err := b.List(ctx, "snapshots/", func(fi backend.Info) error {
		held[strings.TrimPrefix(fi.Name, "snapshots/")] = true
		return nil
	})
	if err != nil {
		return nil, &repo.RegionError{Region: region, Err: fmt.Errorf("list snapshots/: %w", err)}
	}
	var out []*repo.Snapshot
	for _, s := range all {
		if !held[s.ID] {
			continue
		}
		data, err := backend.ReadAll(ctx, b, "snapshots/"+s.ID, 1<<20)
		if err != nil {
			return nil, &repo.RegionError{Region: region, Err: fmt.Errorf("read snapshot %s: %w", repo.ShortID(s.ID), err)}
		}
		// Its name is the hash of what was signed: a copy that verifies
		// is the manifest verified over all regions.
		if err := repo.VerifyObject("snapshots/"+s.ID, data); err != nil {
			return nil, &repo.IntegrityError{Region: region, Object: "snapshot " + s.ID, Reason: err.Error()}
		}
		out = append(out, s)
	}
	return out, nil
}

// scratchError is a failure to write the scratch space: the drill's own
// failure, not the region's.
type scratchError struct{ err error }

func (e *scratchError) Error() string { return "drill: scratch space: " + e.err.Error() }
func (e *scratchError) Unwrap() error { return e.err }

// drillEntry drills the newest snapshot of group g in one region.
func drillEntry(ctx context.Context, opts Options, rep *Report, r *repo.Repository, region string, g group, snaps []*repo.Snapshot, newest *repo.Snapshot, packs *map[string]int64, opened time.Duration, now time.Time) (*Entry, error) {
	obj := opts.Objectives(g.set)
	e := &Entry{Host: g.host, Set: g.set, SamplePercent: obj.Sample, MaxRPO: obj.MaxRPO.Seconds(), MaxRTO: obj.MaxRTO.Seconds()}
	if e.SamplePercent <= 0 {
		e.SamplePercent = DefaultSample
	}
	where := fmt.Sprintf("region %s: %s", region, g)
	if newest == nil {
		e.Error = "no snapshot"
		return e, nil // reported once, not per region
	}
	var snap *repo.Snapshot
	for _, s := range snaps {
		if s.Host == g.host && s.Set == g.set && (snap == nil || s.Seq > snap.Seq) {
			snap = s
		}
	}
	if snap == nil {
		e.Lagging, e.Newest = true, newest.ID
		e.Error = "the region holds no snapshot of it"
		rep.Missed = append(rep.Missed, fmt.Sprintf("%s: the region holds no snapshot (the newest, %s, is elsewhere)", where, repo.ShortID(newest.ID)))
		return e, nil
	}
	t := snap.Time
	e.Snapshot, e.SnapshotTime = snap.ID, &t
	if snap.ID != newest.ID {
		e.Lagging, e.Newest = true, newest.ID
	}
	rpo := max(0, now.Sub(snap.Time)).Seconds()
	e.RPO = &rpo
	e.RPOMet = obj.MaxRPO == 0 || rpo <= obj.MaxRPO.Seconds()
	if !e.RPOMet {
		lag := ""
		if e.Lagging {
			lag = fmt.Sprintf(" (the region lags: the repository's newest is %s)", repo.ShortID(newest.ID))
		}
		rep.Missed = append(rep.Missed, fmt.Sprintf("%s: RPO %s exceeds the objective %s: the newest snapshot %s is from %s%s", where, seconds(rpo), obj.MaxRPO, repo.ShortID(snap.ID), snap.Time.UTC().Format(time.RFC3339), lag))
	}

	fail := func(err error) (*Entry, error) {
		var se *scratchError
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.As(err, &se) {
			return nil, err
		}
		e.Error = err.Error()
		if !rep.addIntegrity(err, Problem{Region: region, Host: g.host, Set: g.set, Snapshot: snap.ID}) {
			rep.Missed = append(rep.Missed, fmt.Sprintf("%s: cannot restore snapshot %s from this region: %v", where, repo.ShortID(snap.ID), err))
		}
		return e, nil
	}

	// The snapshot's trees, from this region, and what they need.
	walkStart := time.Now()
	var firstTree time.Duration
	var files []file
	needed := []crypt.ID{snap.Tree, snap.Body}
	if _, err := r.Body(ctx, snap); err != nil {
		return fail(err)
	}
	// The content totals are sealed in the body.
	if err := r.LoadContentStats(ctx, snap); err != nil {
		return fail(err)
	}
	e.SnapshotFiles, e.SnapshotBytes = snap.Stats.Files, snap.Stats.Bytes
	err := restore.Walk(ctx, r, snap.Tree, func(p string, n *repo.Node) error {
		if firstTree == 0 {
			firstTree = time.Since(walkStart)
		}
		switch {
		case n.Type == repo.NodeDir:
			needed = append(needed, *n.Subtree)
		case n.Type == repo.NodeFile:
			needed = append(needed, n.Content...)
			files = append(files, file{p, n})
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	if *packs == nil {
		m := map[string]int64{}
		err := r.Regions()[0].Backend.List(ctx, "data/", func(fi backend.Info) error { m[fi.Name] = fi.Size; return nil })
		if err != nil {
			return fail(&repo.RegionError{Region: region, Err: fmt.Errorf("list data/: %w", err)})
		}
		*packs = m
	}
	n, err := checkPresent(r, region, needed, *packs)
	e.PacksChecked = n
	if err != nil {
		return fail(err)
	}

	// The sample, restored into scratch space and verified.
	sample := choose(files, e.SamplePercent, opts.Seed)
	e.SampledFiles = len(sample)
	res, err := restoreSample(ctx, r, sample, opts.ScratchDir, opts.Progress)
	e.VerifiedBytes = res.bytes
	e.RestoreSeconds = res.took.Seconds()
	if err != nil {
		return fail(err)
	}
	e.Verified = true
	e.TTFB = (opened + firstTree + res.firstByte).Seconds()
	rto := e.TTFB
	if res.bytes > 0 && res.took > 0 {
		e.Throughput = float64(res.bytes) / res.took.Seconds()
		rto += float64(snap.Stats.Bytes) / e.Throughput
	}
	e.RTO = &rto
	e.RTOMet = obj.MaxRTO == 0 || rto <= obj.MaxRTO.Seconds()
	if !e.RTOMet {
		rep.Missed = append(rep.Missed, fmt.Sprintf("%s: RTO %s exceeds the objective %s (time to first byte %s, %s/s measured over %d bytes, %d bytes to restore)", where, seconds(rto), obj.MaxRTO, seconds(e.TTFB), humanRate(e.Throughput), res.bytes, snap.Stats.Bytes))
	}
	return e, nil
}

// addIntegrity records err as a problem when it is an integrity failure,
// naming the region and object it gives; it reports whether it did.
func (rep *Report) addIntegrity(err error, p Problem) bool {
	if !errors.Is(err, repo.ErrIntegrity) {
		return false
	}
	var ie *repo.IntegrityError
	if errors.As(err, &ie) {
		if ie.Region != "" {
			p.Region = ie.Region
		}
		p.Object = ie.Object
		p.Message = ie.Reason
	} else {
		p.Message = err.Error()
	}
	rep.Problems = append(rep.Problems, p)
	return true
}

// checkPresent checks that every blob in needed is in the region's index
// and that every pack holding them is in the region (listed in packs) with
// the size the index gives. It returns how many packs it checked.
func checkPresent(r *repo.Repository, region string, needed []crypt.ID, packs map[string]int64) (int, error) {
	sizes := r.Index().Packs()
	seen := map[crypt.ID]bool{}
	for _, id := range needed {
		loc, ok := r.Index().Lookup(id)
		if !ok {
			return len(seen), &repo.IntegrityError{Region: region, Object: "blob " + id.String(), Reason: "needed by the snapshot but not in the region's index"}
		}
		if seen[loc.Pack] {
			continue
		}
		seen[loc.Pack] = true
		name := repo.PackName(loc.Pack)
		got, ok := packs[name]
		switch {
		case !ok:
			return len(seen), &repo.IntegrityError{Region: region, Object: name, Reason: "needed by the snapshot but missing from the region"}
		case got != sizes[loc.Pack]:
			return len(seen), &repo.IntegrityError{Region: region, Object: name, Reason: fmt.Sprintf("size %d, the index says %d", got, sizes[loc.Pack])}
		}
	}
	return len(seen), nil
}

type sampleResult struct {
	bytes     uint64
	took      time.Duration
	firstByte time.Duration // from the start of the restore
}

// restoreSample restores each file of sample into a scratch directory,
// verified, two at a time, and removes the directory.
func restoreSample(ctx context.Context, r *repo.Repository, sample []file, scratchDir string, progress *restore.Progress) (sampleResult, error) {
	var res sampleResult
	dir, err := os.MkdirTemp(scratchDir, "vaultbak-drill-")
	if err != nil {
		return res, &scratchError{err}
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	var mu sync.Mutex
	var first sync.Once
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for i, f := range sample {
		g.Go(func() error {
			out, err := os.OpenFile(fmt.Sprintf("%s/%d", dir, i), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return &scratchError{err}
			}
			w := &scratchWriter{f: out, written: func(n int) {
				first.Do(func() {
					mu.Lock()
					res.firstByte = time.Since(start)
					mu.Unlock()
				})
				progress.Bytes.Add(uint64(n))
			}}
			err = restore.Content(gctx, r, f.path, f.node, w)
			if cerr := out.Close(); err == nil && cerr != nil {
				err = &scratchError{cerr}
			}
			if w.err != nil {
				err = &scratchError{w.err}
			}
			if err != nil {
				return err
			}
			progress.Files.Add(1)
			mu.Lock()
			res.bytes += f.node.Size
			mu.Unlock()
			return nil
		})
	}
	err = g.Wait()
	res.took = time.Since(start)
	if res.firstByte == 0 {
		res.firstByte = res.took
	}
	return res, err
}

// scratchWriter tells its own write errors from the repository's.
type scratchWriter struct {
	f       *os.File
	written func(int)
	err     error
}

func (w *scratchWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		w.err = err
		return n, err
	}
	w.written(n)
	return n, nil
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

func humanRate(bps float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for bps >= 1024 && i < len(units)-1 {
		bps /= 1024
		i++
	}
	return strings.TrimSpace(fmt.Sprintf("%.1f %s", bps, units[i]))
}
