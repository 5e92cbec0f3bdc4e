package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"vaultbak/chunk"
	"vaultbak/repo"
)

// Options configure one backup.
type Options struct {
	Paths    []string // files or directories; made absolute
	Excludes []string // see Excluder
	Tags     []string
	Set      string
	Time     time.Time // snapshot time; zero: now

	// Cache of the previous snapshot of these paths (nil: read every file).
	Cache *Cache
	// Workers reading files concurrently; 0: 2.
	Workers int
	// Strict turns an unreadable file into a failure instead of a warning.
	Strict bool
	// Warn is told about every file left out or stored with a problem.
	Warn func(path string, err error)

	// Quorum of regions that must hold the snapshot; 0: repo.DefaultQuorum.
	Quorum int

	// HeadSeq and HeadID are the host's chain head the new manifest follows.
	HeadSeq uint64
	HeadID  string
	// HeadHeld is how much of the host's chain each region held when the
	// host last committed (its high-water mark; nil when unknown): the new
	// manifest's PrevIn keeps it for regions that do not answer now, so
	// that one of them coming back without what it held is caught.
	HeadHeld map[string]uint64
}

// Progress counts work done so far; read its fields atomically with Load.
type Progress struct {
	Files     atomic.Uint64 // files done (read or skipped)
	Dirs      atomic.Uint64
	Bytes     atomic.Uint64 // content bytes done
	ReadBytes atomic.Uint64 // content bytes actually read
	Skipped   atomic.Uint64 // files skipped by metadata
	// SkippedBytes is the content of the skipped files: ReadBytes plus
	// SkippedBytes is how far a backup has come through its paths.
	SkippedBytes atomic.Uint64
}

// Result is a finished backup.
type Result struct {
	Snapshot *repo.Snapshot
	Cache    *Cache // the cache for the next run of the same paths
	Warnings int
	// Lagging are the regions dropped during the run (the snapshot
	// committed in a quorum of the others), with the reason.
	Lagging map[string]error
}

// ErrStrict wraps the failure of a strict backup on an unreadable file.
var ErrStrict = errors.New("unreadable file in strict mode")

type backuper struct {
	r        *repo.Repository
	w        *repo.Writer
	opts     Options
	excl     *Excluder
	names    names
	progress *Progress
	prev     *Cache
	next     *Cache
	nextMu   sync.Mutex
	warnings atomic.Int64
	jobs     chan fileJob
	dirs     sync.WaitGroup
	// listers bounds the directories listed ahead of the walk (see
	// listAhead).
	listers chan struct{}
	ctx     context.Context
	cancel  context.CancelCauseFunc
	stats   struct{ files, dirs, bytes atomic.Uint64 }

	saver *chunkSaver
	saves *saveGroup // every chunk save of the run
}

// future is the node of one entry, available once done is closed. A nil
// node with a nil err means the entry is left out.
type future struct {
	done   chan struct{}
	node   *repo.Node
	err    error
	reused bool // an unchanged directory, resolved from the cache (see dirs.go)
}

func newFuture() *future { return &future{done: make(chan struct{})} }

func resolved(n *repo.Node, err error) *future {
	f := &future{done: make(chan struct{}), node: n, err: err}
	close(f.done)
	return f
}

func (f *future) resolve(n *repo.Node, err error) {
	f.node, f.err = n, err
	close(f.done)
}

type fileJob struct {
	abs  string
	name string
	st   stat
	f    *future
}

// Run backs up opts.Paths into r and commits a snapshot. progress may be nil.
func Run(ctx context.Context, r *repo.Repository, opts Options, progress *Progress) (*Result, error) {
	if len(opts.Paths) == 0 {
		return nil, errors.New("backup: no paths given")
	}
	excl, err := NewExcluder(opts.Excludes)
	if err != nil {
		return nil, err
	}
	if progress == nil {
		progress = &Progress{}
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Time.IsZero() {
		opts.Time = time.Now()
	}
	var paths []string
	for _, p := range opts.Paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("backup: %s: %w", p, err)
		}
		if _, err := os.Lstat(abs); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		paths = append(paths, abs)
	}
	w, err := r.NewWriter(ctx, repo.WriterOptions{Quorum: opts.Quorum})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b := &backuper{
		r: r, w: w, opts: opts, excl: excl, progress: progress,
		names:   names{users: map[uint32]string{}, groups: map[uint32]string{}},
		prev:    opts.Cache,
		next:    &Cache{Repository: r.Config().ID, Files: map[string]CacheEntry{}, Dirs: map[string]DirEntry{}, Excludes: opts.Excludes},
		jobs:    make(chan fileJob, 4*opts.Workers),
		listers: make(chan struct{}, dirListers),
		ctx:     ctx,
		cancel:  cancel,
	}
	b.saver = newChunkSaver(ctx, w)
	b.saves = &saveGroup{fail: b.fail}
	if b.prev != nil && b.prev.Repository != r.Config().ID {
		b.prev = nil
	}

	var workers sync.WaitGroup
	for range opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			b.worker()
		}()
	}
	root := b.walkRoot(paths)
	close(b.jobs)
	<-root.done
	workers.Wait()
	b.dirs.Wait()
	saveErr := b.saves.wait()
	// The first failure cancels the run with itself as the cause (a file
	// unreadable in strict mode, a chunk that could not be stored, an
	// interrupt); what failed after it failed because of it, often with
	// a bare "context canceled".
	if cause := context.Cause(ctx); cause != nil {
		root.err = cause
	} else if root.err == nil {
		root.err = saveErr
	}
	if root.err != nil {
		w.Abort()
		return nil, root.err
	}

	m := &repo.Manifest{
		Time:   opts.Time.UTC(),
		Tags:   opts.Tags,
		Set:    opts.Set,
		Tree:   *root.node.Subtree,
		PrevIn: maps.Clone(opts.HeadHeld),
		Stats: repo.Stats{
			Files: b.stats.files.Load(),
			Dirs:  b.stats.dirs.Load(),
			Bytes: b.stats.bytes.Load(),
		},
	}
	body := &repo.ManifestBody{Excludes: opts.Excludes}
	for _, p := range paths {
		body.Paths = append(body.Paths, []byte(p))
	}
	snap, err := w.Commit(ctx, m, body, opts.HeadSeq, opts.HeadID)
	if err != nil {
		return nil, err
	}
	return &Result{Snapshot: snap, Cache: b.next, Warnings: int(b.warnings.Load()), Lagging: w.Lagging()}, nil
}

// fail stops the backup with err.
func (b *backuper) fail(err error) { b.cancel(err) }

func (b *backuper) warn(path string, err error) {
	b.warnings.Add(1)
	if b.opts.Warn != nil {
		b.opts.Warn(path, err)
	}
	if b.opts.Strict {
		b.fail(fmt.Errorf("backup: %s: %w: %v", path, ErrStrict, err))
	}
}

// vdir is a directory of the virtual tree that leads from "/" to the
// backup paths: its children are either further virtual directories or
// backup paths (real entries, walked in full).
type vdir struct {
	children map[string]*vdir
	real     bool // this path itself was given: walk it in full
}

func (b *backuper) walkRoot(paths []string) *future {
	top := &vdir{children: map[string]*vdir{}}
	for _, p := range paths {
		cur := top
		if p == "/" {
			cur.real = true
			continue
		}
		for _, elem := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
			next, ok := cur.children[elem]
			if !ok {
				next = &vdir{children: map[string]*vdir{}}
				cur.children[elem] = next
			}
			cur = next
		}
		cur.real = true
	}
	return b.walkVirtual("/", "", top)
}

// walkVirtual builds the node of a directory on the way to the backup paths.
func (b *backuper) walkVirtual(abs, name string, v *vdir) *future {
	if v.real {
		fi, err := os.Lstat(abs)
		if err != nil {
			return resolved(nil, fmt.Errorf("backup: %w", err))
		}
		return b.entry(abs, name, fi, nil)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return resolved(nil, fmt.Errorf("backup: %w", err))
	}
	elems := make([]string, 0, len(v.children))
	for e := range v.children {
		elems = append(elems, e)
	}
	sort.Strings(elems)
	var kids []*future
	for _, e := range elems {
		kids = append(kids, b.walkVirtual(filepath.Join(abs, e), e, v.children[e]))
	}
	return b.finishDir(abs, name, statOf(fi), kids, nil)
}

// entry returns the future node of one real entry; for a directory, pre is
// its listing when one was started ahead (see listAhead), or nil.
func (b *backuper) entry(abs, name string, fi fs.FileInfo, pre *listing) *future {
	if b.ctx.Err() != nil {
		return resolved(nil, context.Cause(b.ctx))
	}
	st := statOf(fi)
	switch {
	case st.mode.IsRegular():
		f := newFuture()
		select {
		case b.jobs <- fileJob{abs: abs, name: name, st: st, f: f}:
		case <-b.ctx.Done():
			return resolved(nil, context.Cause(b.ctx))
		}
		return f
	case st.mode.IsDir():
		return b.walkDir(abs, name, st, pre)
	case st.mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			b.warn(abs, err)
			return resolved(nil, nil)
		}
		n := b.baseNode(name, st)
		n.LinkTarget = []byte(target)
		return resolved(&n, nil)
	default: // FIFO, socket, device: recorded, never opened
		n := b.baseNode(name, st)
		return resolved(&n, nil)
	}
}

// listing is what listing one directory found: its entries that the
// excludes leave in, each lstat'ed. clean: listed in full, so that the
// directory may be cached; skip: nothing could be listed.
type listing struct {
	done     chan struct{}
	children []child
	clean    bool
	skip     bool
}

// list reads the directory abs and lstat's its entries into l.
func (b *backuper) list(abs string, l *listing) {
	defer close(l.done)
	ents, err := os.ReadDir(abs)
	l.clean = err == nil
	if err != nil {
		b.warn(abs, err)
		if ents == nil {
			l.skip = true
			return
		}
	}
	l.children = make([]child, 0, len(ents))
	for _, de := range ents {
		abs := filepath.Join(abs, de.Name())
		if b.excl.Excluded(abs) {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				b.warn(abs, err)
				l.clean = false
			}
			continue
		}
		l.children = append(l.children, child{abs: abs, name: de.Name(), fi: fi, st: statOf(fi)})
	}
}

// listAhead starts listing the directory abs on a goroutine of its own when
// one of the listers is free, and returns nil otherwise (the walk then
// lists it itself when it gets there).
func (b *backuper) listAhead(abs string) *listing {
	select {
	case b.listers <- struct{}{}:
	default:
		return nil
	}
	l := &listing{done: make(chan struct{})}
	go func() {
		defer func() { <-b.listers }()
		b.list(abs, l)
	}()
	return l
}

// dirListers is how many directories are listed (read and their entries
// lstat'ed) ahead of the walk at once. The walk itself goes depth first on
// one goroutine, so that files reach the workers, and their chunks the
// packs, in the order a restore reads them; a walk of an unchanged tree is
// nothing but these system calls, and they run in parallel.
const dirListers = 8

// walkDir returns the future node of the directory abs; pre is its listing
// when one was started ahead.
func (b *backuper) walkDir(abs, name string, st stat, pre *listing) *future {
	l := pre
	if l == nil {
		l = &listing{done: make(chan struct{})}
		b.list(abs, l)
	}
	<-l.done
	if l.skip {
		return resolved(nil, nil)
	}
	children := l.children
	// Listings of the subdirectories are started ahead of the walk, as
	// many as there are free listers, and topped up before each one is
	// walked (one not started by then is listed by the walk itself).
	ahead := make([]*listing, len(children))
	next := 0 // the first child not yet considered for listing ahead
	fill := func() {
		for ; next < len(children); next++ {
			if children[next].st.mode.IsDir() {
				if ahead[next] = b.listAhead(children[next].abs); ahead[next] == nil {
					return
				}
			}
		}
	}
	walk := func(i int) *future {
		next = max(next, i+1)
		fill()
		c := children[i]
		return b.entry(c.abs, c.name, c.fi, ahead[i])
	}
	fill()
	kids := make([]*future, len(children))
	var cache *dirCache
	if l.clean {
		cache = &dirCache{abs: abs, digest: dirDigest(children)}
		// Unchanged (see dirs.go): the subdirectories first, as each
		// must be unchanged too; they are walked either way.
		if prev, ok := b.prevDir(abs); ok && prev.Digest == cache.digest && b.w.Known(prev.Tree) {
			same := true
			for i, c := range children {
				if c.st.mode.IsDir() {
					kids[i] = walk(i)
					same = same && kids[i].reused
				}
			}
			if same && b.carryFiles(children) {
				return b.reusedDir(abs, name, st, prev)
			}
		}
	}
	for i := range children {
		if kids[i] == nil {
			kids[i] = walk(i)
		}
	}
	return b.finishDir(abs, name, st, kids, cache)
}

// finishDir returns the future node of a directory whose entries are kids;
// a goroutine waits for them and stores the tree. With cache, the tree is
// recorded in the next cache when every entry was stored without a warning.
func (b *backuper) finishDir(abs, name string, st stat, kids []*future, cache *dirCache) *future {
	f := newFuture()
	b.dirs.Add(1)
	go func() {
		defer b.dirs.Done()
		tree := &repo.Tree{Nodes: make([]repo.Node, 0, len(kids))}
		for _, k := range kids {
			<-k.done
			if k.err != nil {
				f.resolve(nil, k.err)
				return
			}
			if k.node != nil {
				tree.Nodes = append(tree.Nodes, *k.node)
			} else {
				cache = nil // left out with a warning
			}
		}
		data, err := repo.EncodeTree(tree)
		if err != nil {
			f.resolve(nil, fmt.Errorf("backup: %s: %w", abs, err))
			return
		}
		id, err := b.w.SaveBlob(b.ctx, repo.TreeBlob, data)
		if err != nil {
			b.fail(err)
			f.resolve(nil, err)
			return
		}
		if cache != nil {
			b.nextMu.Lock()
			b.next.Dirs[cache.abs] = DirEntry{Digest: cache.digest, Tree: id}
			b.nextMu.Unlock()
		}
		n := b.baseNode(name, st)
		n.Type = repo.NodeDir
		n.Subtree = &id
		if abs != "/" || name != "" {
			b.stats.dirs.Add(1)
			b.progress.Dirs.Add(1)
		}
		f.resolve(&n, nil)
	}()
	return f
}

func (b *backuper) worker() {
	var ch *chunk.Chunker
	for job := range b.jobs {
		if b.ctx.Err() != nil {
			job.f.resolve(nil, context.Cause(b.ctx))
			continue
		}
		if ch == nil {
			var err error
			ch, err = chunk.New(b.r.Config().Chunker, b.w.Secrets().ChunkerKey(), nil)
			if err != nil {
				b.fail(err)
				job.f.resolve(nil, err)
				continue
			}
		}
		job.f.resolve(b.saveFile(job, ch), nil)
	}
}
