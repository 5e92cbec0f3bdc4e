package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"vaultbak/backend"
	"vaultbak/backup"
	"vaultbak/repo"
	"vaultbak/restore"
)

// Progress of a long command (backup, restore, replicate sync, drill),
// following the output rules of output.go:
//
//   - stderr is a terminal (not TERM=dumb), no --json, no --quiet: one bar
//     per gauge on stderr (the whole job, then one per region) with bytes,
//     rate and ETA, redrawn five times a second by mpb. Warnings printed
//     meanwhile go above the bars.
//   - --json (without --quiet): a {"type":"status",…} object on stdout every
//     statusInterval; the command's summary object still comes last.
//   - otherwise (cron, systemd, a pipe, --quiet): nothing at all.
//
// The libraries never print: they count (backup.Progress, restore.Progress,
// the replicate.Sync callback, repo.Served) and a gauge reads the counts.
//
// Use from a command: make the gauges (backupGauges, streamGauges,
// restoreGauges, drillGauges, or gauge values of its own), start the meter,
// run the job, stop the meter with the job's error, then print the summary:
//
//	p := &restore.Progress{}
//	stop := g.out.meter("restore", restoreGauges(s.repo, "restore "+id, p, snap.Stats.Bytes)...)
//	res, err := restore.Run(ctx, s.repo, snap, opts, p)
//	stop(err)

const (
	barRefresh     = 200 * time.Millisecond
	statusInterval = 2 * time.Second
	rateWindow     = 5 * time.Second // rates are averaged over this much recent time
	barWidth       = 40              // columns of a bar at most
)

// gauge is one line of progress: bytes done and, when known, bytes in all.
type gauge struct {
	name string
	// region marks a region's line. A region gauge without total is
	// measured against the region that has done most, so that a lagging
	// region shows as a shorter bar.
	region bool
	done   func() int64
	// total returns the bytes in all, or 0 while unknown; nil: never known.
	total func() int64
	// failed, if set, reports that the region stopped taking part (it
	// failed and was dropped for this run).
	failed func() bool
}

// meterSample is what a gauge showed at one moment.
type meterSample struct {
	at   time.Time
	done int64
}

// gaugeState is a gauge's latest reading, derived rate and ETA.
type gaugeState struct {
	done, total int64 // total 0: unknown
	rate        float64
	eta         time.Duration // -1: unknown
	failed      bool
	history     []meterSample
}

type meter struct {
	o       *output
	command string
	gauges  []gauge
	start   time.Time

	mu     sync.Mutex
	states []gaugeState

	quit chan struct{}
	wg   sync.WaitGroup

	// bars mode only
	p     *mpb.Progress
	bars  []*mpb.Bar
	saved [2]io.Writer // o.w and o.errw while the bars are drawn
}

// progressShown reports whether a meter would show anything: bars on a
// terminal that can move its cursor (TERM is not "dumb") or status objects
// under --json. Commands use it to skip work that only progress needs
// (such as estimating a backup's size).
func (o *output) progressShown() bool {
	return !o.quiet && (o.json || (o.tty && os.Getenv("TERM") != "dumb"))
}

// meter starts showing the progress of command (a name such as "backup"
// or "replicate sync") through gauges, as the rules above say. The
// returned stop draws the final state and must be called before the
// command prints its summary; err is how the job ended (on success every
// whole-job bar is drawn complete).
func (o *output) meter(command string, gauges ...gauge) (stop func(err error)) {
	if !o.progressShown() || len(gauges) == 0 {
		return func(error) {}
	}
	m := &meter{o: o, command: command, gauges: gauges, start: time.Now(), states: make([]gaugeState, len(gauges)), quit: make(chan struct{})}
	m.sample(m.start)
	interval := statusInterval
	if !o.json {
		interval = barRefresh
		m.startBars()
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.quit:
				return
			case now := <-t.C:
				m.sample(now)
				if o.json {
					m.emitStatus()
				} else {
					m.updateBars(false)
				}
			}
		}
	}()
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			close(m.quit)
			m.wg.Wait()
			if m.p != nil {
				m.sample(time.Now())
				m.updateBars(err == nil)
				m.stopBars()
			}
		})
	}
}

// sample reads every gauge and updates rates and ETAs.
func (m *meter) sample(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var leader int64 // the region that has done most
	for i, g := range m.gauges {
		st := &m.states[i]
		st.done = g.done()
		st.total = 0
		if g.total != nil {
			st.total = g.total()
		}
		st.failed = g.failed != nil && g.failed()
		if g.region && st.done > leader {
			leader = st.done
		}
		st.history = append(st.history, meterSample{now, st.done})
		for len(st.history) > 2 && now.Sub(st.history[1].at) >= rateWindow {
			st.history = st.history[1:]
		}
		st.rate = 0
		if first := st.history[0]; now.Sub(first.at) > 0 && st.done > first.done {
			st.rate = float64(st.done-first.done) / now.Sub(first.at).Seconds()
		}
	}
	for i, g := range m.gauges {
		st := &m.states[i]
		if g.region && g.total == nil {
			st.total = leader
		}
		if st.total > 0 && st.done > st.total {
			st.total = st.done
		}
		st.eta = -1
		switch {
		case st.total <= 0 || st.failed || (g.region && g.total == nil):
		case st.done >= st.total:
			st.eta = 0
		case st.rate > 0:
			st.eta = time.Duration(float64(st.total-st.done) / st.rate * float64(time.Second))
		}
	}
}

// emitStatus writes the --json status object of the latest sample.
func (m *meter) emitStatus() {
	m.mu.Lock()
	obj := map[string]any{"type": "status", "command": m.command, "elapsed_seconds": roundTo(time.Since(m.start).Seconds(), 1)}
	var regions []map[string]any
	for i, g := range m.gauges {
		st := m.states[i]
		fields := map[string]any{"bytes": st.done, "bytes_per_second": int64(st.rate)}
		if st.total > 0 && !(g.region && g.total == nil) {
			fields["total_bytes"] = st.total
		}
		if st.eta >= 0 {
			fields["eta_seconds"] = roundTo(st.eta.Seconds(), 0)
		}
		if !g.region {
			for k, v := range fields {
				obj[k] = v
			}
			continue
		}
		fields["region"] = g.name
		if st.failed {
			fields["failed"] = true
		}
		regions = append(regions, fields)
	}
	if regions != nil {
		obj["regions"] = regions
	}
	m.mu.Unlock()
	m.o.emit(obj)
}

func roundTo(x float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(x*p+0.5)) / p
}

func (m *meter) startBars() {
	o := m.o
	opts := []mpb.ContainerOption{mpb.WithOutput(o.errw), mpb.WithRefreshRate(barRefresh), mpb.WithWidth(barWidth)}
	if f, ok := o.errw.(*os.File); ok {
		if w, h, err := term.GetSize(int(f.Fd())); err != nil || w <= 0 || h <= 0 {
			// A terminal that reports no size (a pty nobody sized, as
			// script(1) in a pipe makes) would get no rows from mpb: draw
			// for 80 columns instead.
			opts = append(opts, mpb.WithOutput(struct{ io.Writer }{f}), mpb.WithAutoRefresh(), mpb.WithWidth(80))
		}
	}
	m.p = mpb.New(opts...)
	nameWidth := 0
	for _, g := range m.gauges {
		nameWidth = max(nameWidth, len(g.name)+2)
	}
	for i, g := range m.gauges {
		label := g.name
		if g.region {
			label = "  " + label
		}
		bar := m.p.New(0, mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Rbound("]"),
			mpb.PrependDecorators(decor.Name(label, decor.WC{W: nameWidth, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return m.describe(i) }, decor.WC{C: decor.DSyncWidthR})),
		)
		m.bars = append(m.bars, bar)
	}
	// Whatever the command prints while the bars are drawn (warnings)
	// goes above them; text for a terminal stdout too.
	o.mu.Lock()
	m.saved = [2]io.Writer{o.w, o.errw}
	o.errw = m.p
	if f, ok := o.w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		o.w = m.p
	}
	o.mu.Unlock()
}

// describe is the text after gauge i's bar: bytes, rate, ETA.
func (m *meter) describe(i int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, st := m.gauges[i], m.states[i]
	s := humanBytes(uint64(st.done))
	if st.total > 0 && !(g.region && g.total == nil) {
		s += " / " + humanBytes(uint64(st.total))
	}
	if st.failed {
		return s + "  failed, dropped for this run"
	}
	s += fmt.Sprintf("  %s/s", humanBytes(uint64(st.rate)))
	switch {
	case st.eta > 0:
		s += "  ETA " + shortDuration(st.eta)
	case st.eta == 0 && st.total > 0:
		s += "  done"
	}
	return s
}

// updateBars moves the bars to the latest sample; final (on success)
// draws every whole-job bar complete.
func (m *meter) updateBars(final bool) {
	m.mu.Lock()
	states := append([]gaugeState(nil), m.states...)
	m.mu.Unlock()
	for i, b := range m.bars {
		st := states[i]
		total := st.total
		if final && !m.gauges[i].region {
			total = st.done
		}
		b.SetTotal(total, false)
		b.SetCurrent(st.done)
	}
}

func (m *meter) stopBars() {
	for _, b := range m.bars {
		b.Abort(false)
	}
	m.p.Wait()
	o := m.o
	o.mu.Lock()
	o.w, o.errw = m.saved[0], m.saved[1]
	o.mu.Unlock()
}

// shortDuration formats d as 45s, 3m05s or 2h10m.
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// restoreGauges are the gauges of a verified restore (restore, drill):
// content bytes restored out of total (0: unknown), and what each region
// served (stored bytes, as repo.Served counts them).
func restoreGauges(r *repo.Repository, name string, p *restore.Progress, total uint64) []gauge {
	gs := []gauge{{
		name:  name,
		done:  func() int64 { return int64(p.Bytes.Load()) },
		total: func() int64 { return int64(total) },
	}}
	return append(gs, servedGauges(r)...)
}

// servedGauges show what each region of r served to reads.
func servedGauges(r *repo.Repository) []gauge {
	var gs []gauge
	for _, reg := range r.Regions() {
		gs = append(gs, gauge{name: reg.Name, region: true, done: func() int64 {
			served, _ := r.Served()
			return int64(served[reg.Name].Bytes)
		}})
	}
	return gs
}

// regionRepos are the repositories a drill opened, one per region, as it
// opens them.
type regionRepos struct {
	mu sync.Mutex
	m  map[string]*repo.Repository
}

// add records the repository opened for region alone.
func (rr *regionRepos) add(region string, r *repo.Repository) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.m == nil {
		rr.m = map[string]*repo.Repository{}
	}
	rr.m[region] = r
}

func (rr *regionRepos) served(region string) int64 {
	rr.mu.Lock()
	r := rr.m[region]
	rr.mu.Unlock()
	if r == nil {
		return 0
	}
	served, _ := r.Served()
	return int64(served[region].Bytes)
}

// drillGauges are the gauges of a drill: the bytes restored and verified
// so far (how many it will be is known only region by region), and what
// each region served once the drill opened it (repos, filled by the
// drill's Open).
func drillGauges(regions []string, p *restore.Progress, repos *regionRepos) []gauge {
	gs := []gauge{{name: "drill", done: func() int64 { return int64(p.Bytes.Load()) }}}
	for _, name := range regions {
		gs = append(gs, gauge{name: name, region: true, done: func() int64 { return repos.served(name) }})
	}
	return gs
}

// uploadMeter counts the bytes a region stored (Put) and whether a Put
// failed. It wraps the region's backend for the length of one command.
type uploadMeter struct {
	backend.Backend
	bytes  atomic.Int64
	failed atomic.Bool
}

// CanStage and Stage pass staging through (see backend.Stager), counting
// the bytes of a staged object once it is committed.
func (u *uploadMeter) CanStage() bool {
	st, ok := u.Backend.(backend.Stager)
	return ok && st.CanStage()
}

func (u *uploadMeter) Stage(ctx context.Context) (backend.Staged, error) {
	st, ok := u.Backend.(backend.Stager)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	o, err := st.Stage(ctx)
	if err != nil {
		return nil, err
	}
	return &meteredStage{Staged: o, u: u}, nil
}

// Strays and Sweep pass sweeping through (see backend.Sweeper): a
// backend that writes no temporary files has none.
func (u *uploadMeter) Strays(ctx context.Context) (backend.Strays, error) {
	if sw, ok := u.Backend.(backend.Sweeper); ok {
		return sw.Strays(ctx)
	}
	return backend.Strays{}, nil
}

func (u *uploadMeter) Sweep(ctx context.Context) (backend.Strays, error) {
	if sw, ok := u.Backend.(backend.Sweeper); ok {
		return sw.Sweep(ctx)
	}
	return backend.Strays{}, nil
}

type meteredStage struct {
	backend.Staged
	u *uploadMeter
	n int64
}

func (m *meteredStage) Write(p []byte) (int, error) {
	n, err := m.Staged.Write(p)
	m.n += int64(n)
	return n, err
}

func (m *meteredStage) Commit(ctx context.Context, name string) error {
	err := m.Staged.Commit(ctx, name)
	if err == nil {
		m.u.bytes.Add(m.n)
	} else if ctx.Err() == nil {
		m.u.failed.Store(true)
	}
	return err
}

func (u *uploadMeter) Put(ctx context.Context, name string, data []byte) error {
	err := u.Backend.Put(ctx, name, data)
	if err == nil {
		u.bytes.Add(int64(len(data)))
	} else if ctx.Err() == nil {
		u.failed.Store(true)
	}
	return err
}

// meterUploads wraps the backend of every region of r with an uploadMeter
// and returns a gauge per region. Call it after the repository is open
// and before anything writes (a backup's writer reads the regions when it
// starts); the wrappers stay for the life of r.
func meterUploads(r *repo.Repository) []gauge {
	var gs []gauge
	for _, reg := range r.Regions() {
		u := &uploadMeter{Backend: reg.Backend}
		reg.Backend = u
		gs = append(gs, gauge{name: reg.Name, region: true, done: u.bytes.Load, failed: u.failed.Load})
	}
	return gs
}

// backupGauges are the gauges of a file backup: content bytes done (read,
// or skipped as unchanged) out of an estimate of what the paths hold, and
// the bytes each region stored. The estimate is what the host's previous
// snapshot of the same paths held (prev, its file cache), when it was taken
// with the same excludes: an incremental backup then does not stat every
// file twice. Otherwise the paths are walked in the background, and until
// that is done the total is unknown.
func backupGauges(ctx context.Context, r *repo.Repository, paths, excludes []string, prev *backup.Cache, p *backup.Progress) []gauge {
	g := gauge{
		name: "backup",
		done: func() int64 { return int64(p.ReadBytes.Load() + p.SkippedBytes.Load()) },
	}
	if n, ok := cachedBytes(prev, excludes); ok {
		g.total = upTo(n, g.done)
	} else {
		var total atomic.Int64
		go func() {
			if n, err := estimateBytes(ctx, paths, excludes); err == nil {
				total.Store(n)
			}
		}()
		g.total = total.Load
	}
	return append([]gauge{g}, meterUploads(r)...)
}

// upTo is the total of a gauge estimated at n: n until done passes it, then
// unknown (0), since the estimate was too low and the end is not reached.
func upTo(n int64, done func() int64) func() int64 {
	return func() int64 {
		if done() > n {
			return 0
		}
		return n
	}
}

// cachedBytes adds up the file sizes a previous snapshot's cache holds, if
// that snapshot was taken with these excludes and held any file.
func cachedBytes(prev *backup.Cache, excludes []string) (int64, bool) {
	if prev == nil || len(prev.Files) == 0 || !slices.Equal(prev.Excludes, excludes) {
		return 0, false
	}
	var n int64
	for _, e := range prev.Files {
		n += e.Size
	}
	return n, true
}

// streamGauges are the gauges of a stream backup: bytes read from the
// stream so far (its size is unknown) and the bytes each region stored.
func streamGauges(r *repo.Repository, name string, read func() int64) []gauge {
	gs := []gauge{{name: name, done: read}}
	return append(gs, meterUploads(r)...)
}

// estimateBytes adds up the sizes of the regular files below paths that
// the excludes leave in: what a backup of paths will read at most. It
// follows the backup's walk (no symlinks followed) and ignores what it
// cannot read (the backup reports that).
func estimateBytes(ctx context.Context, paths, excludes []string) (int64, error) {
	excl, err := backup.NewExcluder(excludes)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, root := range paths {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				return nil
			}
			if excl.Excluded(p) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					n += fi.Size()
				}
			}
			return nil
		})
	}
	return n, ctx.Err()
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
