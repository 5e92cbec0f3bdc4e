package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"vaultbak/backend"
	"vaultbak/crypt"
)

// indexFlushPacks is how many uploaded packs are described by one index file
// written while a backup runs: what an interrupted run leaves reusable.
const indexFlushPacks = 8

// Writer adds blobs to the repository and commits a snapshot.
//
// Flow and ownership: SaveBlob (called from many goroutines) compresses and
// verifies a blob in the caller's goroutine, then, under w.mu, seals it into
// the current pack (sealingPack: age's stream writer encrypts as the pack
// grows, so no pack plaintext is held whole). The caller that fills a pack
// takes it out of w.cur (later callers wait on w.curReady), hands it to an
// uploader goroutine, which finishes the seal once and puts the same bytes
// to every region, and takes a free buffer from w.bufs for the next pack.
// The uploader returns the buffer to w.bufs once every region has it. So a
// writer holds at most Uploaders+1 pack buffers (~PackSize + one chunk
// each): its memory is bounded by configuration, and reused buffers are
// neither garbage nor zeroed again. After a pack is durable in every region
// its entries join w.done, and every indexFlushPacks packs an index file is
// written. Commit flushes the rest, confirms every object this writer
// wrote is present in every region, and only then writes the manifest.
type Writer struct {
	r   *Repository
	enc *zstd.Encoder

	ctx    context.Context // the writer's lifetime; canceled by Abort
	cancel context.CancelCauseFunc
	g      *errgroup.Group
	gctx   context.Context // the uploaders'; canceled when one fails
	packs  chan *sealingPack
	bufs   chan *packBuf // free pack buffers

	mu       sync.Mutex
	curReady *sync.Cond            // on mu: cur was replaced, or curErr set
	cur      *sealingPack          // nil while a full pack is handed over
	curErr   error                 // no next pack: the handover failed
	pending  map[crypt.ID]struct{} // in a pack not yet in the index
	flushed  bool                  // Flush ran: no more blobs
	flushErr error

	doneMu  sync.Mutex
	done    []indexPack // uploaded, not yet in an index file
	written []writtenObject

	scratch    chan *encodeScratch // free list; a sync.Pool would drop them at every GC
	regions    *regionSet
	staged     bool // packs stream to the regions as they fill (see stagedPack)
	addedBytes atomic.Uint64
	newBlobs   atomic.Uint64
	indexRecip []age.Recipient
	sweeps     sync.WaitGroup // the regions' sweeps (see NewWriter)
}

type writtenObject struct {
	name string
	size int64
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Uploaders is how many full packs are uploaded concurrently while the
	// next one fills; 0: 1. The writer holds Uploaders+1 pack buffers.
	Uploaders int
	Level     zstd.EncoderLevel
	// Quorum is how many regions must hold everything for the snapshot to
	// commit; 0: DefaultQuorum. A region that fails is dropped for the run
	// and reported by Lagging.
	Quorum int
}

// NewWriter starts a writer. It needs the host credential (to sign) and the
// secrets (to compute IDs). Cancel ctx or call Abort to stop it.
func (r *Repository) NewWriter(ctx context.Context, opts WriterOptions) (*Writer, error) {
	if r.keys.Host == nil {
		return nil, ErrNeedHostKey
	}
	if r.secrets == nil {
		return nil, errors.New("repo: writer needs the repository secrets")
	}
	if opts.Uploaders <= 0 {
		opts.Uploaders = writerUploaders
	}
	if opts.Level == 0 {
		opts.Level = zstd.SpeedFastest
	}
	// No frame checksum: every blob is checked against its keyed ID when it
	// is read, and against its input when it is written (see encode), so
	// xxhash over it on both sides would check nothing more.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(opts.Level), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, err
	}
	indexRecip, _, err := crypt.ParseRecipients(append(append([]string(nil), r.cfg.Recovery...), r.cfg.Writers()...))
	if err != nil {
		return nil, &IntegrityError{Object: "config", Reason: err.Error()}
	}
	if opts.Quorum <= 0 {
		opts.Quorum = DefaultQuorum(len(r.regions))
	}
	if opts.Quorum > len(r.regions) {
		return nil, fmt.Errorf("repo: quorum %d exceeds the %d regions", opts.Quorum, len(r.regions))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	g, gctx := errgroup.WithContext(ctx)
	w := &Writer{
		r: r, enc: enc, ctx: ctx, cancel: cancel, g: g, gctx: gctx,
		packs:      make(chan *sealingPack),
		bufs:       make(chan *packBuf, opts.Uploaders+1),
		pending:    map[crypt.ID]struct{}{},
		indexRecip: indexRecip,
		regions:    newRegionSet(r.regions, opts.Quorum),
	}
	// A region that did not answer while the repository was read is left
	// out of this run (it lags; replicate sync heals it): what it holds is
	// unknown, so no blob can be reused there.
	for name, err := range r.Down() {
		for _, reg := range r.regions {
			if reg.Name == name {
				w.regions.drop(reg, err)
			}
		}
	}
	// What writers killed earlier left in the regions (a local
	// directory's temporary files) goes while this one writes: a sweep
	// reads every directory of the region (~0.1 s for 100,000 packs with
	// a warm cache, far more on a slow disk), which a backup need not wait
	// for, and it removes only files a day old, never this writer's. A
	// region that cannot be swept is no reason to fail; its writes report
	// what is wrong with it. Commit and Abort wait for the sweeps.
	for _, reg := range w.regions.live() {
		if sw, ok := reg.Backend.(backend.Sweeper); ok {
			w.sweeps.Go(func() { sw.Sweep(w.ctx) })
		}
	}
	w.curReady = sync.NewCond(&w.mu)
	w.scratch = make(chan *encodeScratch, 4*runtime.GOMAXPROCS(0))
	// When every region can stage objects (local directories), packs are
	// written to them as they are sealed and no pack is held in memory;
	// otherwise each pack is sealed into a buffer and put to every region
	// once full. A pack holds at most PackSize bytes of blobs (see
	// SaveBlobID), plus its trailer and age's overhead.
	w.staged = canStage(w.regions.live())
	for range opts.Uploaders + 1 {
		w.bufs <- &packBuf{full: packBufSize(r.cfg.PackSize)}
	}
	if w.cur, err = w.newPack(ctx, <-w.bufs); err != nil {
		cancel(nil)
		return nil, err
	}
	for range opts.Uploaders {
		g.Go(w.uploader)
	}
	return w, nil
}

// newPack starts a pack in buf, staged in the live regions when the writer
// stages its packs.
func (w *Writer) newPack(ctx context.Context, buf *packBuf) (*sealingPack, error) {
	var sp *stagedPack
	if w.staged {
		var err error
		if sp, err = w.regions.stagePack(ctx); err != nil {
			w.bufs <- buf
			return nil, fmt.Errorf("repo: %w", err)
		}
	}
	p, err := newSealingPack(buf, sp, w.r.recovery)
	if err != nil {
		if sp != nil {
			sp.abort()
		}
		w.bufs <- buf
		return nil, err
	}
	return p, nil
}

// writerUploaders is how many packs a writer uploads at once by default.
const writerUploaders = 1

// packBufSize is what a pack buffer grows to: a pack's blobs (at most
// packSize bytes), its trailer (46 bytes a blob: packSize/32 holds the
// trailer of 11,000 blobs in a 16 MiB pack, one of small files or trees),
// and age's overhead.
func packBufSize(packSize int) int {
	full := packSize + packSize/32
	return full + full/(64<<10)*16 + 16<<10 // age: a tag per 64 KiB chunk, the header
}

// nextPack starts a new current pack in a free buffer once an uploader
// returns one, and wakes the callers waiting for it.
func (w *Writer) nextPack(ctx context.Context) error {
	var err error
	var p *sealingPack
	select {
	case buf := <-w.bufs:
		p, err = w.newPack(ctx, buf)
	case <-w.gctx.Done():
		err = w.err()
	case <-ctx.Done():
		err = ctx.Err()
	}
	w.mu.Lock()
	if err != nil {
		w.curErr = err
	} else {
		w.cur = p
	}
	w.curReady.Broadcast()
	w.mu.Unlock()
	return err
}

// current waits until there is a current pack; it is called with w.mu held.
func (w *Writer) current() error {
	for w.cur == nil && w.curErr == nil {
		w.curReady.Wait()
	}
	return w.curErr
}

// Secrets returns the repository secrets (for IDs and chunking).
func (w *Writer) Secrets() *Secrets { return w.r.secrets }

// reuseMask is the regions a blob must already be in to be reused: every
// region this writer writes to. A blob stored only elsewhere (in a region
// that lagged, or by a backup set pinned to other regions) is stored again,
// so that each region a manifest names holds everything it references.
func (w *Writer) reuseMask() uint64 {
	return w.regions.liveMask()
}

// Known reports whether blob id is already stored in every region this
// writer writes to, or being stored.
func (w *Writer) Known(id crypt.ID) bool {
	if w.r.index.Covers(id, w.reuseMask()) {
		return true
	}
	w.mu.Lock()
	_, ok := w.pending[id]
	w.mu.Unlock()
	return ok
}

// SaveBlob stores data as a blob of type t unless a blob with its ID exists,
// and returns the ID. data is not retained. Safe for concurrent use.
func (w *Writer) SaveBlob(ctx context.Context, t BlobType, data []byte) (crypt.ID, error) {
	id := w.r.secrets.BlobID(data)
	return id, w.SaveBlobID(ctx, t, id, data)
}

// SaveBlobID is SaveBlob for a caller that computed id already.
func (w *Writer) SaveBlobID(ctx context.Context, t BlobType, id crypt.ID, data []byte) error {
	if err := w.gctx.Err(); err != nil {
		return w.err()
	}
	if w.r.index.Covers(id, w.reuseMask()) {
		return nil
	}
	w.mu.Lock()
	if _, ok := w.pending[id]; ok {
		w.mu.Unlock()
		return nil
	}
	w.pending[id] = struct{}{}
	w.mu.Unlock()

	var scratch *encodeScratch
	select {
	case scratch = <-w.scratch:
	default:
		scratch = new(encodeScratch)
	}
	defer func() {
		select {
		case w.scratch <- scratch:
		default:
		}
	}()
	stored, flags, err := w.encode(id, data, scratch)
	if err != nil {
		w.mu.Lock()
		delete(w.pending, id)
		w.mu.Unlock()
		return err
	}

	for {
		w.mu.Lock()
		if err := w.current(); err != nil {
			w.mu.Unlock()
			return err
		}
		if w.flushed {
			w.mu.Unlock()
			return errors.New("repo: blob saved after the writer was flushed")
		}
		// A blob that would take the pack past PackSize goes into the
		// next one, so that a pack's buffer never grows past its size.
		if w.cur.size() == 0 || w.cur.size()+len(stored) <= w.r.cfg.PackSize {
			break
		}
		full := w.cur
		w.cur = nil
		w.mu.Unlock()
		err := w.send(ctx, full)
		if err != nil {
			full.abort()
		}
		if nerr := w.nextPack(ctx); err == nil {
			err = nerr
		}
		if err != nil {
			return err
		}
	}
	defer w.mu.Unlock()
	if err := w.cur.add(id, t, flags, stored, len(data)); err != nil {
		return err
	}
	w.newBlobs.Add(1)
	return nil
}

// encodeScratch holds the buffers of one encode, reused from blob to blob
// (the stored bytes are copied into the pack before they are reused), so
// that compressing a backup makes no garbage proportional to its size.
type encodeScratch struct{ comp, back []byte }

// encode compresses data when that pays and verifies that what will be
// stored decodes back to data: compression libraries have had bugs. The
// result may live in s: valid until s is used again.
func (w *Writer) encode(id crypt.ID, data []byte, s *encodeScratch) ([]byte, uint8, error) {
	if len(data) < 64 {
		return data, 0, nil
	}
	comp := w.enc.EncodeAll(data, s.comp[:0])
	s.comp = comp
	if len(comp) >= len(data)-len(data)/32 {
		return data, 0, nil
	}
	back, err := decodeBlob(comp, flagZstd, uint32(len(data)), s.back)
	if cap(back) > cap(s.back) {
		s.back = back
	}
	if err != nil || !bytes.Equal(back, data) {
		return nil, 0, fmt.Errorf("repo: blob %s does not survive compression (%v): refusing to store it", id, err)
	}
	return comp, flagZstd, nil
}

func (w *Writer) send(ctx context.Context, p *sealingPack) error {
	select {
	case w.packs <- p:
		return nil
	case <-w.gctx.Done():
		return w.err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// err returns why the uploaders stopped.
func (w *Writer) err() error {
	if err := context.Cause(w.ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if err := w.g.Wait(); err != nil {
		return err
	}
	return w.gctx.Err()
}

func (w *Writer) uploader() error {
	for {
		select {
		case <-w.gctx.Done():
			return w.gctx.Err()
		case p, ok := <-w.packs:
			if !ok {
				return nil
			}
			if err := w.upload(w.gctx, p); err != nil {
				return err
			}
		}
	}
}

// upload finishes sealing one pack, puts it to every region, records its
// entries and gives its buffer back.
func (w *Writer) upload(ctx context.Context, p *sealingPack) error {
	sealed, err := p.finish()
	if err != nil {
		p.abort()
		w.bufs <- p.buf
		return err
	}
	var hash crypt.ID
	var size int64
	if p.stage != nil {
		hash, size = p.stage.sum(), p.stage.n
		err = w.regions.commit(ctx, PackName(hash), p.stage)
	} else {
		hash, size = objectHash(sealed), int64(len(sealed))
		err = w.regions.put(ctx, PackName(hash), sealed)
	}
	w.bufs <- p.buf // put retains nothing; never blocks: the channel holds every buffer
	if err != nil {
		return fmt.Errorf("repo: upload pack: %w", err)
	}
	w.addedBytes.Add(uint64(size))
	w.doneMu.Lock()
	w.written = append(w.written, writtenObject{PackName(hash), size})
	w.done = append(w.done, indexPack{Hash: hash, Size: size, Entries: p.entries})
	var flush []indexPack
	if len(w.done) >= indexFlushPacks {
		flush, w.done = w.done, nil
	}
	w.doneMu.Unlock()
	if flush != nil {
		return w.writeIndex(ctx, flush)
	}
	return nil
}

// writeIndex writes one index file describing packs (already durable in
// every region) to every region, then adds them to the in-memory index.
func (w *Writer) writeIndex(ctx context.Context, packs []indexPack) error {
	sealed, err := crypt.Seal(encodeIndex(packs), w.indexRecip)
	if err != nil {
		return err
	}
	name := indexName(objectHash(sealed))
	if err := w.regions.put(ctx, name, sealed); err != nil {
		return fmt.Errorf("repo: write index: %w", err)
	}
	w.doneMu.Lock()
	w.written = append(w.written, writtenObject{name, int64(len(sealed))})
	w.doneMu.Unlock()
	mask := w.reuseMask() // the regions that took the packs and this index
	for _, p := range packs {
		w.r.index.addIn(p.Hash, p.Size, mask, p.Entries)
	}
	w.mu.Lock()
	for _, p := range packs {
		for _, e := range p.Entries {
			delete(w.pending, e.ID)
		}
	}
	w.mu.Unlock()
	return nil
}

// Flush uploads the current pack and every pending index entry and waits
// for the uploaders. The writer cannot save blobs after Flush; a second
// Flush returns the first one's result.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	if w.flushed {
		w.mu.Unlock()
		return w.flushErr
	}
	w.flushed = true
	if err := w.current(); err != nil {
		w.flushErr = err
		w.mu.Unlock()
		return err
	}
	last := w.cur
	w.mu.Unlock()
	err := w.flush(ctx, last)
	w.mu.Lock()
	w.flushErr = err
	w.mu.Unlock()
	return err
}

func (w *Writer) flush(ctx context.Context, last *sealingPack) error {
	if len(last.entries) > 0 {
		if err := w.send(ctx, last); err != nil {
			last.abort()
			return err
		}
	} else {
		last.abort()
	}
	close(w.packs)
	if err := w.g.Wait(); err != nil {
		return err
	}
	w.doneMu.Lock()
	rest := w.done
	w.done = nil
	w.doneMu.Unlock()
	if len(rest) > 0 {
		return w.writeIndex(ctx, rest)
	}
	return nil
}

// Abort stops the writer; what it uploaded stays for a later run to reuse.
func (w *Writer) Abort() {
	w.cancel(errors.New("repo: writer aborted"))
	w.sweeps.Wait()
	w.g.Wait()
	w.mu.Lock()
	if w.cur != nil && !w.flushed {
		w.cur.abort()
	}
	w.mu.Unlock()
}

// AddedBytes returns the stored bytes of the packs uploaded so far.
func (w *Writer) AddedBytes() uint64 { return w.addedBytes.Load() }

// NewBlobs returns how many blobs were added.
func (w *Writer) NewBlobs() uint64 { return w.newBlobs.Load() }

// Commit flushes, confirms that every object written is present with its
// size in every region, then signs m and writes it to every region. m's
// Repository, Host, Version, Seq and Prev are filled in here: Seq and Prev
// continue the chain whose head is (headSeq, headID). m.PrevIn, if the
// caller set it, is what it knows regions held (the host's high-water
// mark); Commit raises it to what the regions' listings show.
func (w *Writer) Commit(ctx context.Context, m *Manifest, body *ManifestBody, headSeq uint64, headID string) (*Snapshot, error) {
	defer w.sweeps.Wait()
	// The content totals go into the sealed body, not the public manifest.
	content := m.Stats
	sealed := *body
	sealed.Stats = &ContentStats{Files: content.Files, Dirs: content.Dirs, Bytes: content.Bytes}
	m.Stats = Stats{}
	plainBody, err := json.Marshal(&sealed)
	if err != nil {
		return nil, err
	}
	// The body is a blob like any other: sealed to the recovery
	// recipients inside a pack, so rotating recovery keys rewraps it too.
	if m.Body, err = w.SaveBlob(ctx, MetaBlob, plainBody); err != nil {
		return nil, err
	}
	if err := w.Flush(ctx); err != nil {
		return nil, err
	}
	if err := w.confirm(ctx); err != nil {
		return nil, err
	}
	host := w.r.keys.Host
	m.Version = FormatVersion
	m.Repository = w.r.cfg.ID
	m.Host = host.Host
	m.Seq = headSeq + 1
	m.Prev = headID
	m.Stats.AddedBytes = w.AddedBytes()
	m.Stats.NewBlobs = w.NewBlobs()
	// What the listings show each region holds, raised to what the caller
	// knows a region held (m.PrevIn as given: the host's high-water mark),
	// which keeps regions that do not answer now in the record.
	m.PrevIn = raiseHeld(w.r.prevIn(host.Host, headSeq), m.PrevIn, headSeq)
	// The manifest names the regions it is committed to: a region it names
	// that lacks it later hid or lost it (integrity failure); a region it
	// does not name merely lags. When a region fails the manifest write,
	// the manifest is taken back and signed again without that region.
	for attempt := 0; ; attempt++ {
		live := w.regions.live()
		m.Regions = make([]string, len(live))
		for i, reg := range live {
			m.Regions[i] = reg.Name
		}
		sort.Strings(m.Regions)
		id, data, err := signManifest(m, host.Signing)
		if err != nil {
			return nil, err
		}
		err = w.regions.put(ctx, snapshotName(id), data)
		if err == nil && (len(w.regions.live()) == len(live) || attempt > 0) {
			s := &Snapshot{ID: id, Manifest: *m, Signer: host.Signing.Public(), StatsKnown: true}
			s.Stats.Files, s.Stats.Dirs, s.Stats.Bytes = content.Files, content.Dirs, content.Bytes
			return s, nil
		}
		// Take it back (below quorum: so that no region shows a snapshot
		// the quorum does not hold; otherwise: to sign it again).
		for _, reg := range live {
			reg.Backend.Delete(context.WithoutCancel(ctx), snapshotName(id))
		}
		if err != nil {
			return nil, fmt.Errorf("repo: write snapshot %s: %w", ShortID(id), err)
		}
	}
}

// confirm checks, in every live region, that each object this writer wrote
// is present with the right size: a provider that acknowledged a write and
// dropped it must not get a manifest that references it. A region that
// fails the check is dropped; the commit needs a quorum of confirmed ones.
func (w *Writer) confirm(ctx context.Context) error {
	regions := w.regions.live()
	bad := make([]error, len(regions))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, reg := range regions {
		for _, o := range w.written {
			g.Go(func() error {
				fi, err := reg.Backend.Stat(gctx, o.name)
				if err == nil && fi.Size != o.size {
					err = fmt.Errorf("size %d, wrote %d", fi.Size, o.size)
				}
				if err != nil {
					mu.Lock()
					if bad[i] == nil {
						bad[i] = fmt.Errorf("confirm %s: %w", o.name, err)
					}
					mu.Unlock()
				}
				return nil
			})
		}
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, err := range bad {
		if err != nil {
			w.regions.drop(regions[i], err)
		}
	}
	return w.regions.check()
}

// Lagging returns the regions dropped during this run (they lack what it
// wrote and can be healed by replication), with the reason.
func (w *Writer) Lagging() map[string]error { return w.regions.lagging() }
