package repo

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"vaultbak/backend"
	"vaultbak/crypt"
)

// decoder decodes blobs; DecodeAll is safe for concurrent use.
var decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(maxTreeSize)) // the largest blob: a tree

// openPack is one pack opened for random access in one region.
type openPack struct {
	obj     io.Closer
	win     *windowReader // between obj and plain
	plain   io.ReaderAt
	size    int64
	refs    int  // readers using it now; guarded by packCache.mu
	evicted bool // out of the cache: closed when refs drops to 0
}

type packKey struct {
	region string
	pack   crypt.ID
}

// packCache keeps a bounded number of packs open for random access, and the
// file key of every pack it opened so that reopening (in another region or
// after eviction) costs no key decapsulation.
type packCache struct {
	r        *Repository
	mu       sync.Mutex
	open     map[packKey]*list.Element
	lru      *list.List         // of *cacheEntry, front = most recent
	fileKeys map[packKey][]byte // per region: a damaged copy may carry another key
	max      int
	// opening holds the packs being opened: a second reader of one waits
	// for the first instead of opening it again (an open costs a remote
	// region a round trip: the header and the final chunk, fetched at
	// once).
	opening     map[packKey]chan struct{}
	prefetching int  // prefetches under way
	closed      bool // by close: a pack opened after is not kept
}

type cacheEntry struct {
	key packKey
	p   *openPack
}

func newPackCache(r *Repository) *packCache {
	return &packCache{r: r, open: map[packKey]*list.Element{}, lru: list.New(), fileKeys: map[packKey][]byte{}, max: 32, opening: map[packKey]chan struct{}{}}
}

func (c *packCache) get(ctx context.Context, reg *Region, pack crypt.ID) (*openPack, error) {
	k := packKey{reg.Name, pack}
	c.mu.Lock()
	for {
		wait, ok := c.opening[k]
		if !ok {
			break
		}
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
	if el, ok := c.open[k]; ok {
		if c.lru.Front() != el {
			c.lru.MoveToFront(el)
			c.trimWindowsLocked()
		}
		p := el.Value.(*cacheEntry).p
		p.refs++
		c.mu.Unlock()
		return p, nil
	}
	fileKey := c.fileKeys[k]
	done := make(chan struct{})
	c.opening[k] = done
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.opening, k)
		c.mu.Unlock()
		close(done)
	}()

	obj, err := openPackObject(ctx, reg, pack, c.r.index.packSize(pack))
	if err != nil {
		return nil, err
	}
	win := newWindowReader(obj, obj.Size())
	// age reads the header, then the final chunk (which lies in the last
	// crypt.SealedChunkSize bytes): both are fetched at once.
	win.prefetch(obj.Size() - crypt.SealedChunkSize)
	fail := func(err error) (*openPack, error) {
		win.close()
		obj.Close()
		return nil, err
	}
	if fileKey == nil {
		fileKey, err = crypt.FileKey(win, obj.Size(), c.r.keys.Recovery)
		if errors.Is(err, crypt.ErrNoIdentity) {
			// LoadBlob runs only with a recovery identity, which every
			// pack is sealed to: a header it cannot open is damaged
			// or was not written by this repository.
			return fail(&headerError{IntegrityError{Region: reg.Name, Object: PackName(pack), Reason: "the recovery identity cannot open its header: damaged or not sealed by this repository"}})
		}
		if err != nil {
			return fail(packReadError(reg.Name, pack, err))
		}
	}
	plain, size, err := crypt.OpenAt(win, obj.Size(), fileKey)
	if err != nil {
		return fail(packReadError(reg.Name, pack, err))
	}
	p := &openPack{obj: obj, win: win, plain: plain, size: size}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.fileKeys[k] = fileKey
	if c.closed {
		// Closed meanwhile (a prefetch may outlive its caller): the
		// pack serves this read and is closed on release.
		p.refs, p.evicted = 1, true
		return p, nil
	}
	if el, ok := c.open[k]; ok { // opened concurrently
		p.close()
		p := el.Value.(*cacheEntry).p
		p.refs++
		return p, nil
	}
	p.refs = 1
	c.open[k] = c.lru.PushFront(&cacheEntry{k, p})
	for c.lru.Len() > c.max {
		c.evictLocked(c.lru.Back())
	}
	c.trimWindowsLocked()
	return p, nil
}

// openPackObject opens a pack in reg. size is the stored size the index
// gives (0: unknown): a backend that can opens it without asking (no stat
// round trip), and its reads report a missing pack or a copy of another
// size (damaged in that region, see packReadError). Other backends open it
// as it is stored, and age finds a copy of another size wrong.
func openPackObject(ctx context.Context, reg *Region, pack crypt.ID, size int64) (backend.Object, error) {
	if so, ok := reg.Backend.(backend.SizedOpener); ok && size > 0 {
		return so.OpenSized(ctx, PackName(pack), size)
	}
	return reg.Backend.Open(ctx, PackName(pack))
}

// packReadError classifies an error reading a pack through its window
// reader: the region failing to serve the bytes (missing, unreachable) is
// returned as it is, for the caller to treat as the region's; a stored
// size other than the index's, or bytes age finds wrong, are damage to
// that region's copy.
func packReadError(region string, pack crypt.ID, err error) error {
	var se *sourceError
	if errors.As(err, &se) && !errors.Is(err, backend.ErrWrongSize) {
		return se.err
	}
	return &IntegrityError{Region: region, Object: PackName(pack), Reason: err.Error()}
}

// maxPrefetches bounds the packs being opened ahead of their reads.
const maxPrefetches = 2

// prefetch opens pack in reg in the background unless it is open or being
// opened already, or maxPrefetches opens are under way. A failure is left
// for the read that follows to meet and report.
func (c *packCache) prefetch(ctx context.Context, reg *Region, pack crypt.ID) {
	k := packKey{reg.Name, pack}
	c.mu.Lock()
	_, open := c.open[k]
	_, opening := c.opening[k]
	if open || opening || c.closed || c.prefetching >= maxPrefetches {
		c.mu.Unlock()
		return
	}
	c.prefetching++
	c.mu.Unlock()
	go func() {
		if p, err := c.get(ctx, reg, pack); err == nil {
			c.release(p)
		}
		c.mu.Lock()
		c.prefetching--
		c.mu.Unlock()
	}()
}

// Prefetch starts opening, in the background, the pack that holds blob id
// in the region a read tries first, so that reading the blob later does
// not wait for the pack's header and final chunk. A caller that knows what
// it will read (a restore knows each file's chunks) calls it a little
// ahead; it costs nothing when the pack is open already.
func (r *Repository) Prefetch(ctx context.Context, id crypt.ID) {
	if !r.CanRead() {
		return
	}
	loc, ok := r.index.Lookup(id)
	if order := r.readOrder(); ok && len(order) > 0 {
		r.readers.prefetch(ctx, order[0], loc.Pack)
	}
}

// windowedPacks is how many of the most recently used open packs keep
// their read windows and stream (see windowReader): the memory of reading
// is bounded by windowedPacks × maxWindows windows, however many packs
// stay open. Two: the pack being read and the next, opened ahead (a
// restore reads packs one after the other; with four, the windows of
// packs read through made the peak RSS of a 1 GiB restore 105 MiB
// instead of 86).
const windowedPacks = 2

func (c *packCache) trimWindowsLocked() {
	i := 0
	for el := c.lru.Front(); el != nil; el = el.Next() {
		if i++; i > windowedPacks {
			el.Value.(*cacheEntry).p.win.drop()
		}
	}
}

// release ends one use of p returned by get.
func (c *packCache) release(p *openPack) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.refs--
	if p.evicted && p.refs == 0 {
		p.close()
	}
}

func (p *openPack) close() {
	p.win.close()
	p.obj.Close()
}

func (c *packCache) evictLocked(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.open, e.key)
	e.p.evicted = true
	if e.p.refs == 0 {
		e.p.close()
	}
}

// drop forgets an open pack after a read error.
func (c *packCache) drop(region string, pack crypt.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.open[packKey{region, pack}]; ok {
		c.evictLocked(el)
	}
	delete(c.fileKeys, packKey{region, pack}) // it may be the key of a bad copy
}

func (c *packCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for c.lru.Len() > 0 {
		c.evictLocked(c.lru.Back())
	}
}

// headerError is a pack header that no given identity opens: damage in one
// region, or the wrong identity when it happens in every region.
type headerError struct{ IntegrityError }

func (e *headerError) Unwrap() error { return &e.IntegrityError }

// LoadBlob returns the plaintext of blob id, verified against its keyed ID.
// It reads from the regions in order and falls back to the next region when
// the pack is missing or the blob is damaged there. buf, if large enough, is
// used for the result.
func (r *Repository) LoadBlob(ctx context.Context, id crypt.ID, buf []byte) ([]byte, error) {
	if !r.CanRead() {
		return nil, ErrNeedRecovery
	}
	loc, ok := r.index.Lookup(id)
	if !ok {
		return nil, &IntegrityError{Object: "blob " + id.String(), Reason: "not in the index"}
	}
	var errs []error
	for i, reg := range r.readOrder() {
		data, err := r.loadBlobFrom(ctx, reg, loc, buf)
		if err == nil {
			r.served.record(reg.Name, loc.Length, i > 0, errs)
			return data, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// ErrNeedRecovery here may be a damaged stanza in this region's copy:
		// age cannot tell it from a wrong key, so try the next region too.
		r.readers.drop(reg.Name, loc.Pack)
		errs = append(errs, err)
	}
	missing, unopened := 0, 0
	for _, e := range errs {
		var he *headerError
		switch {
		case errors.Is(e, backend.ErrNotFound):
			missing++
		case errors.As(e, &he):
			unopened++
		}
	}
	if unopened == len(r.regions) {
		// age cannot tell a damaged header from a wrong key; the pack's
		// hash can.
		if damaged := r.damagedCopies(ctx, loc.Pack); len(damaged) > 0 {
			return nil, fmt.Errorf("repo: load %s %s: %w", loc.Type, id, errors.Join(damaged...))
		}
		return nil, fmt.Errorf("repo: %w: the given recovery identity opens no copy of %s", ErrNeedRecovery, PackName(loc.Pack))
	}
	if missing == len(r.regions) {
		return nil, &IntegrityError{Object: PackName(loc.Pack), Reason: fmt.Sprintf("indexed pack is missing in every region (needed for %s %s)", loc.Type, id)}
	}
	return nil, fmt.Errorf("repo: load %s %s: %w", loc.Type, id, errors.Join(errs...))
}

// damagedCopies reads every region's copy of a pack whole and returns an
// integrity error for each copy whose bytes do not hash to its name.
func (r *Repository) damagedCopies(ctx context.Context, pack crypt.ID) []error {
	var errs []error
	for _, reg := range r.regions {
		data, err := backend.ReadAll(ctx, reg.Backend, PackName(pack), MaxObjectSize)
		if err == nil && objectHash(data) != pack {
			errs = append(errs, &IntegrityError{Region: reg.Name, Object: PackName(pack), Reason: "content does not match its hash"})
		}
	}
	return errs
}

func (r *Repository) loadBlobFrom(ctx context.Context, reg *Region, loc Location, buf []byte) ([]byte, error) {
	p, err := r.readers.get(ctx, reg, loc.Pack)
	if err != nil {
		return nil, r.regionError(reg, err)
	}
	defer r.readers.release(p)
	if int64(loc.Offset)+int64(loc.Length) > p.size {
		return nil, &IntegrityError{Region: reg.Name, Object: PackName(loc.Pack), Reason: "blob beyond the end of the pack"}
	}
	var stored []byte
	if loc.Flags&flagZstd == 0 && cap(buf) >= int(loc.Length) {
		// Stored as it is: read into the result's buffer, which saves
		// allocating and clearing one per blob.
		stored = buf[:loc.Length]
	} else {
		stored = make([]byte, loc.Length)
	}
	if _, err := p.plain.ReadAt(stored, int64(loc.Offset)); err != nil {
		return nil, r.regionError(reg, packReadError(reg.Name, loc.Pack, err))
	}
	data, err := decodeBlob(stored, loc.Flags, loc.RawLen, buf)
	if err != nil {
		return nil, &IntegrityError{Region: reg.Name, Object: PackName(loc.Pack), Reason: fmt.Sprintf("blob %s: %v", loc.ID, err)}
	}
	if r.secrets.BlobID(data) != loc.ID {
		return nil, &IntegrityError{Region: reg.Name, Object: PackName(loc.Pack), Reason: fmt.Sprintf("blob %s does not match its ID", loc.ID)}
	}
	return data, nil
}

// regionError returns err, an error reading a pack in reg, as it is when
// it is damage or a key that does not fit, and else as reg's failure to
// serve it (marking reg down unless the pack is only missing there).
func (r *Repository) regionError(reg *Region, err error) error {
	var ie *IntegrityError
	if errors.As(err, &ie) || errors.Is(err, ErrNeedRecovery) {
		return err
	}
	r.markDown(reg, err)
	return &RegionError{reg.Name, err}
}

// maxUndeclaredFrame is the largest blob whose zstd frame may omit its
// size (the encoder omits it below 256 bytes).
const maxUndeclaredFrame = 4 << 10

func decodeBlob(stored []byte, flags uint8, rawLen uint32, buf []byte) ([]byte, error) {
	if flags&flagZstd == 0 {
		if uint32(len(stored)) != rawLen {
			return nil, fmt.Errorf("length %d, want %d", len(stored), rawLen)
		}
		return stored, nil
	}
	if rawLen > maxTreeSize {
		return nil, fmt.Errorf("length %d too large", rawLen)
	}
	var hdr zstd.Header
	if err := hdr.Decode(stored); err != nil {
		return nil, err
	}
	switch {
	case hdr.HasFCS && hdr.FrameContentSize != uint64(rawLen):
		return nil, fmt.Errorf("frame declares %d bytes, want %d", hdr.FrameContentSize, rawLen)
	case !hdr.HasFCS && rawLen > maxUndeclaredFrame:
		// The encoder declares the size of every frame but tiny ones;
		// refusing other undeclared frames keeps a forged one from making
		// the decoder allocate more than the index says.
		return nil, fmt.Errorf("frame of %d bytes does not declare its size", rawLen)
	}
	if cap(buf) < int(rawLen) {
		buf = make([]byte, 0, rawLen)
	}
	out, err := decoder.DecodeAll(stored, buf[:0])
	if err != nil {
		return nil, err
	}
	if uint32(len(out)) != rawLen {
		return nil, fmt.Errorf("decoded length %d, want %d", len(out), rawLen)
	}
	return out, nil
}

// LoadTree loads and decodes tree blob id.
func (r *Repository) LoadTree(ctx context.Context, id crypt.ID) (*Tree, error) {
	if loc, ok := r.index.Lookup(id); ok && (loc.Type != TreeBlob || loc.RawLen > maxTreeSize) {
		return nil, &IntegrityError{Object: "tree " + id.String(), Reason: fmt.Sprintf("indexed as a %d-byte %s blob", loc.RawLen, loc.Type)}
	}
	data, err := r.LoadBlob(ctx, id, nil)
	if err != nil {
		return nil, err
	}
	t, err := DecodeTree(data)
	if err != nil {
		return nil, &IntegrityError{Object: "tree " + id.String(), Reason: err.Error()}
	}
	return t, nil
}

// ServedStats counts what one region served during a session.
type ServedStats struct {
	Blobs uint64 `json:"blobs"` // blobs read from this region
	Bytes uint64 `json:"bytes"` // their stored bytes
	// Failovers counts blobs this region served after an earlier region
	// failed to.
	Failovers uint64 `json:"failovers"`
}

type servedLog struct {
	mu       sync.Mutex
	byRegion map[string]*ServedStats
	failures []string // why earlier regions failed, for failovers
}

func (l *servedLog) record(region string, n uint32, failover bool, errs []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byRegion == nil {
		l.byRegion = map[string]*ServedStats{}
	}
	s := l.byRegion[region]
	if s == nil {
		s = &ServedStats{}
		l.byRegion[region] = s
	}
	s.Blobs++
	s.Bytes += uint64(n)
	if failover {
		s.Failovers++
		if len(l.failures) < 100 {
			for _, e := range errs {
				// Once per reason: the blobs of one missing pack must not
				// crowd out every other region's reason.
				if msg := e.Error(); !slices.Contains(l.failures, msg) {
					l.failures = append(l.failures, msg)
				}
			}
		}
	}
}

// Served returns, per region, what it served in this session, and the
// distinct errors that made reads fail over (the first hundred).
func (r *Repository) Served() (map[string]ServedStats, []string) {
	r.served.mu.Lock()
	defer r.served.mu.Unlock()
	out := make(map[string]ServedStats, len(r.served.byRegion))
	for k, v := range r.served.byRegion {
		out[k] = *v
	}
	return out, append([]string(nil), r.served.failures...)
}
