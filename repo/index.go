package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"vaultbak/crypt"
)

// Location is where a blob is stored.
type Location struct {
	Pack crypt.ID // SHA-256 of the sealed pack
	BlobEntry
}

// indexValue is the in-memory form of a blob location; packs are interned.
type indexValue struct {
	pack   uint32
	offset uint32
	length uint32
	rawLen uint32
	typ    BlobType
	flags  uint8
}

// indexEntry is one blob in the sorted part of the index: 52 bytes.
type indexEntry struct {
	id crypt.ID
	indexValue
}

// Index maps blob IDs to their locations. It is safe for concurrent use.
//
// Memory layout (the index of a large repository is most of what a backup
// holds): most entries live in sorted, one array of 52-byte entries ordered
// by ID, found by binary search within the range that buckets gives for the
// ID's first two bytes (IDs are keyed hashes, so the 65,536 ranges are even).
// A map would cost 60 to 120 bytes per entry, depending on how full it is
// since it last grew. Entries arrive in two ways: add appends them, unsorted
// and unchecked, to bulk, which is cheap for the thousands of packs read
// when a repository opens; the next lookup settles them. A large bulk is
// bucket-sorted and merged into sorted; a small one (the packs one index
// file of a running backup describes) goes into recent, a map that is merged
// into sorted once it holds a sixteenth as many entries. So the index costs
// about 52 bytes per blob plus its packs (~5 bytes per blob at 32 blobs a
// pack), TestIndexMemory measures it on 10 million.
type Index struct {
	mu        sync.RWMutex
	packs     []crypt.ID
	packSizes []int64
	packNum   map[crypt.ID]uint32
	// packRegions are the regions known to hold each pack, as a bit mask
	// over the repository's regions (bit i: Repository.regions[i]): a blob is
	// reused by a backup only when its pack is in every region the backup
	// writes to, and of two locations of one blob the one in more regions
	// is kept.
	packRegions []uint64

	sorted  []indexEntry
	buckets []uint32 // entries with first two ID bytes b are sorted[buckets[b]:buckets[b+1]]
	recent  map[crypt.ID]indexValue
	bulk    []indexEntry // added, not yet settled; may hold duplicates
}

// bulkSettleMin is the smallest bulk merged straight into sorted rather
// than put into recent.
const bulkSettleMin = 1 << 16

func newIndex() *Index {
	return &Index{packNum: map[crypt.ID]uint32{}, recent: map[crypt.ID]indexValue{}}
}

// rlock takes the read lock with every added entry settled.
func (x *Index) rlock() {
	x.mu.RLock()
	if len(x.bulk) == 0 {
		return
	}
	x.mu.RUnlock()
	x.mu.Lock()
	x.settle()
	x.mu.Unlock()
	x.mu.RLock()
	// Another add may have come in between: find looks in bulk too.
}

// find returns the location of id; the caller holds a lock.
func (x *Index) find(id crypt.ID) (indexValue, bool) {
	if v, ok := x.recent[id]; ok {
		return v, true
	}
	if len(x.sorted) > 0 {
		b := uint32(id[0])<<8 | uint32(id[1])
		part := x.sorted[x.buckets[b]:x.buckets[b+1]]
		if i, ok := slices.BinarySearchFunc(part, id, compareEntry); ok {
			return part[i].indexValue, true
		}
	}
	for i := range x.bulk {
		if x.bulk[i].id == id {
			return x.bulk[i].indexValue, true
		}
	}
	return indexValue{}, false
}

func compareEntry(e indexEntry, id crypt.ID) int { return bytes.Compare(e.id[:], id[:]) }

// wider reports whether location a is in more regions than b.
func (x *Index) wider(a, b indexValue) bool {
	return bits.OnesCount64(x.packRegions[a.pack]) > bits.OnesCount64(x.packRegions[b.pack])
}

// Covers reports whether blob id is indexed in a pack that every region in
// mask holds.
func (x *Index) Covers(id crypt.ID, mask uint64) bool {
	x.rlock()
	defer x.mu.RUnlock()
	v, ok := x.find(id)
	return ok && x.packRegions[v.pack]&mask == mask
}

// Has reports whether blob id is indexed.
func (x *Index) Has(id crypt.ID) bool {
	x.rlock()
	_, ok := x.find(id)
	x.mu.RUnlock()
	return ok
}

// Lookup returns the location of blob id.
func (x *Index) Lookup(id crypt.ID) (Location, bool) {
	x.rlock()
	defer x.mu.RUnlock()
	v, ok := x.find(id)
	if !ok {
		return Location{}, false
	}
	return Location{Pack: x.packs[v.pack], BlobEntry: v.entry(id)}, true
}

func (v indexValue) entry(id crypt.ID) BlobEntry {
	return BlobEntry{ID: id, Type: v.typ, Flags: v.flags, Offset: v.offset, Length: v.length, RawLen: v.rawLen}
}

// Len returns the number of indexed blobs.
func (x *Index) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.settle()
	return len(x.sorted) + len(x.recent)
}

// Packs returns every pack the index knows with its stored size.
func (x *Index) Packs() map[crypt.ID]int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[crypt.ID]int64, len(x.packs))
	for i, p := range x.packs {
		out[p] = x.packSizes[i]
	}
	return out
}

// packSize returns the stored size of pack, 0 when the index does not know
// the pack.
func (x *Index) packSize(pack crypt.ID) int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if n, ok := x.packNum[pack]; ok {
		return x.packSizes[n]
	}
	return 0
}

// entriesByPack returns every indexed blob grouped by its pack.
func (x *Index) entriesByPack() map[crypt.ID][]BlobEntry {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.settle()
	out := make(map[crypt.ID][]BlobEntry, len(x.packs))
	for _, e := range x.sorted {
		p := x.packs[e.pack]
		out[p] = append(out[p], e.entry(e.id))
	}
	for id, v := range x.recent {
		p := x.packs[v.pack]
		out[p] = append(out[p], v.entry(id))
	}
	return out
}

// allRegions is the region mask of a pack known to be everywhere.
const allRegions = ^uint64(0)

// add records the blobs of one pack held by every region.
func (x *Index) add(pack crypt.ID, size int64, entries []BlobEntry) {
	x.addIn(pack, size, allRegions, entries)
}

// addIn records the blobs of one pack that the regions in mask hold. A
// blob already indexed keeps its first location unless the new one is in
// more regions.
func (x *Index) addIn(pack crypt.ID, size int64, regions uint64, entries []BlobEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n, ok := x.packNum[pack]
	if !ok {
		n = uint32(len(x.packs))
		x.packs = append(x.packs, pack)
		x.packSizes = append(x.packSizes, size)
		x.packRegions = append(x.packRegions, 0)
		x.packNum[pack] = n
	}
	x.packRegions[n] |= regions
	for _, e := range entries {
		x.bulk = append(x.bulk, indexEntry{e.ID, indexValue{pack: n, offset: e.Offset, length: e.Length, rawLen: e.RawLen, typ: e.Type, flags: e.Flags}})
	}
}

// settle moves bulk into recent or sorted, dropping duplicates (the entry
// that was there first stays); the caller holds the write lock.
func (x *Index) settle() {
	if len(x.bulk) == 0 {
		return
	}
	bulk := x.bulk
	x.bulk = nil
	if len(bulk) < bulkSettleMin && len(x.sorted) > 0 {
		for _, e := range bulk {
			if v, ok := x.find(e.id); !ok || x.wider(e.indexValue, v) {
				x.recent[e.id] = e.indexValue
			}
		}
		if len(x.recent) > max(bulkSettleMin, len(x.sorted)/16) {
			x.mergeRecent()
		}
		return
	}
	add := bulk
	if len(x.recent) > 0 {
		// recent first: of equal IDs, the first one stays.
		add = make([]indexEntry, 0, len(x.recent)+len(bulk))
		for id, v := range x.recent {
			add = append(add, indexEntry{id, v})
		}
		add = append(add, bulk...)
		x.recent = map[crypt.ID]indexValue{}
	}
	x.merge(bucketSort(add))
}

func (x *Index) mergeRecent() {
	add := make([]indexEntry, 0, len(x.recent))
	for id, v := range x.recent {
		add = append(add, indexEntry{id, v})
	}
	x.recent = map[crypt.ID]indexValue{}
	x.merge(bucketSort(add))
}

// bucketSort sorts entries by ID (stably: of equal IDs the first stays
// first) into a new slice: a counting sort on the first two bytes, then a
// sort of each small bucket.
func bucketSort(in []indexEntry) []indexEntry {
	var count [1<<16 + 1]int
	for i := range in {
		count[int(in[i].id[0])<<8|int(in[i].id[1])+1]++
	}
	for b := 1; b < len(count); b++ {
		count[b] += count[b-1]
	}
	out := make([]indexEntry, len(in))
	next := count
	for i := range in {
		b := int(in[i].id[0])<<8 | int(in[i].id[1])
		out[next[b]] = in[i]
		next[b]++
	}
	for b := 0; b < 1<<16; b++ {
		slices.SortStableFunc(out[count[b]:count[b+1]], func(a, b indexEntry) int { return bytes.Compare(a.id[:], b.id[:]) })
	}
	return out
}

// merge merges add (sorted, possibly with duplicates) into x.sorted into a
// new array of exactly the needed size, and rebuilds the buckets.
func (x *Index) merge(add []indexEntry) {
	n := 0
	for i := range add {
		if i == 0 || add[i].id != add[i-1].id {
			n++
		}
	}
	var out []indexEntry
	if len(x.sorted) == 0 && n == len(add) {
		out = add // nothing to merge with, no duplicates: add is the result
	} else {
		out = make([]indexEntry, 0, len(x.sorted)+n)
		old := x.sorted
		for i := 0; i < len(add); i++ {
			if i > 0 && add[i].id == add[i-1].id {
				continue
			}
			e := x.widest(add[i:])
			for len(old) > 0 && bytes.Compare(old[0].id[:], e.id[:]) < 0 {
				out = append(out, old[0])
				old = old[1:]
			}
			if len(old) > 0 && old[0].id == e.id {
				if x.wider(e.indexValue, old[0].indexValue) {
					old[0] = e
				}
				continue // indexed before: keep that location unless e is in more regions
			}
			out = append(out, e)
		}
		out = append(out, old...)
	}
	x.sorted = out
	if x.buckets == nil {
		x.buckets = make([]uint32, 1<<16+1)
	}
	b := 0
	for i := range x.sorted {
		for k := int(x.sorted[i].id[0])<<8 | int(x.sorted[i].id[1]); b <= k; b++ {
			x.buckets[b] = uint32(i)
		}
	}
	for ; b <= 1<<16; b++ {
		x.buckets[b] = uint32(len(x.sorted))
	}
}

// widest returns, of the entries at the start of add with add[0]'s ID, the
// first of those in the most regions.
func (x *Index) widest(add []indexEntry) indexEntry {
	best := add[0]
	for _, e := range add[1:] {
		if e.id != best.id {
			break
		}
		if x.wider(e.indexValue, best.indexValue) {
			best = e
		}
	}
	return best
}

// indexPack is one pack's entry in an index file.
type indexPack struct {
	Hash    crypt.ID
	Size    int64
	Entries []BlobEntry
}

// Index file plaintext, part of the format:
//
//	"VBINDEX1" | u32 pack count | per pack: hash[32] u64 size u32 blob count,
//	then that many entries of packEntrySize bytes (as in the pack trailer)
const (
	indexMagic   = "VBINDEX1"
	maxIndexSize = 256 << 20
)

func encodeIndex(packs []indexPack) []byte {
	n := len(indexMagic) + 4
	for _, p := range packs {
		n += crypt.IDSize + 8 + 4 + len(p.Entries)*packEntrySize
	}
	b := make([]byte, 0, n)
	b = append(b, indexMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(packs)))
	for _, p := range packs {
		b = append(b, p.Hash[:]...)
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Size))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Entries)))
		for _, e := range p.Entries {
			var buf [packEntrySize]byte
			putEntry(buf[:], e)
			b = append(b, buf[:]...)
		}
	}
	return b
}

func decodeIndex(b []byte) ([]indexPack, error) {
	if len(b) < len(indexMagic)+4 || string(b[:len(indexMagic)]) != indexMagic {
		return nil, fmt.Errorf("index: bad magic")
	}
	b = b[len(indexMagic):]
	np := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(np)*(crypt.IDSize+12) > uint64(len(b)) {
		return nil, fmt.Errorf("index: pack count %d exceeds the file", np)
	}
	packs := make([]indexPack, 0, np)
	for range np {
		if len(b) < crypt.IDSize+12 {
			return nil, fmt.Errorf("index: truncated")
		}
		var p indexPack
		copy(p.Hash[:], b)
		p.Size = int64(binary.LittleEndian.Uint64(b[32:]))
		ne := binary.LittleEndian.Uint32(b[40:])
		b = b[44:]
		if uint64(ne)*packEntrySize > uint64(len(b)) || p.Size < 0 {
			return nil, fmt.Errorf("index: truncated pack %s", p.Hash)
		}
		p.Entries = make([]BlobEntry, ne)
		for i := range p.Entries {
			p.Entries[i] = getEntry(b)
			b = b[packEntrySize:]
		}
		packs = append(packs, p)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("index: %d trailing bytes", len(b))
	}
	return packs, nil
}

// objectHash returns the SHA-256 of stored bytes: the name of packs and
// index files, checkable without keys.
func objectHash(data []byte) crypt.ID { return sha256.Sum256(data) }

func indexName(h crypt.ID) string { return "index/" + h.String() }

// hashFromName returns the hash that the last element of an object name
// claims, for data/ and index/ objects.
func hashFromName(name string) (crypt.ID, bool) {
	if len(name) < 64 {
		return crypt.ID{}, false
	}
	var id crypt.ID
	if _, err := hex.Decode(id[:], []byte(name[len(name)-64:])); err != nil {
		return crypt.ID{}, false
	}
	return id, true
}
