package repo

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
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

// Index maps blob IDs to their locations. It is safe for concurrent use.
type Index struct {
	mu        sync.RWMutex
	packs     []crypt.ID
	packSizes []int64
	packNum   map[crypt.ID]uint32
	blobs     map[crypt.ID]indexValue
}

func newIndex() *Index {
	return &Index{packNum: map[crypt.ID]uint32{}, blobs: map[crypt.ID]indexValue{}}
}

// Has reports whether blob id is indexed.
func (x *Index) Has(id crypt.ID) bool {
	x.mu.RLock()
	_, ok := x.blobs[id]
	x.mu.RUnlock()
	return ok
}

// Lookup returns the location of blob id.
func (x *Index) Lookup(id crypt.ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	v, ok := x.blobs[id]
	if !ok {
		return Location{}, false
	}
	return Location{Pack: x.packs[v.pack], BlobEntry: BlobEntry{ID: id, Type: v.typ, Flags: v.flags, Offset: v.offset, Length: v.length, RawLen: v.rawLen}}, true
}

// Len returns the number of indexed blobs.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
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

// entriesByPack returns every indexed blob grouped by its pack.
func (x *Index) entriesByPack() map[crypt.ID][]BlobEntry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make(map[crypt.ID][]BlobEntry, len(x.packs))
	for id, v := range x.blobs {
		p := x.packs[v.pack]
		out[p] = append(out[p], BlobEntry{ID: id, Type: v.typ, Flags: v.flags, Offset: v.offset, Length: v.length, RawLen: v.rawLen})
	}
	return out
}

// add records the blobs of one pack.
func (x *Index) add(pack crypt.ID, size int64, entries []BlobEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n, ok := x.packNum[pack]
	if !ok {
		n = uint32(len(x.packs))
		x.packs = append(x.packs, pack)
		x.packSizes = append(x.packSizes, size)
		x.packNum[pack] = n
	}
	for _, e := range entries {
		if _, dup := x.blobs[e.ID]; dup {
			continue
		}
		x.blobs[e.ID] = indexValue{pack: n, offset: e.Offset, length: e.Length, rawLen: e.RawLen, typ: e.Type, flags: e.Flags}
	}
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
