package repo

import (
	"encoding/binary"
	"fmt"

	"vaultbak/crypt"
)

// BlobType says what a blob holds.
type BlobType uint8

// Blob types, part of the format.
const (
	DataBlob BlobType = 1 // a chunk of file or stream content
	TreeBlob BlobType = 2 // an encoded Tree
	MetaBlob BlobType = 3 // a snapshot's ManifestBody (JSON)
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	case MetaBlob:
		return "snapshot body"
	}
	return fmt.Sprintf("blob type %d", uint8(t))
}

// Blob flags, part of the format.
const (
	flagZstd uint8 = 1 // the stored bytes are one zstd frame
)

// BlobEntry locates one blob inside a pack's plaintext.
type BlobEntry struct {
	ID     crypt.ID
	Type   BlobType
	Flags  uint8
	Offset uint32 // in the pack's plaintext
	Length uint32 // stored (compressed) length
	RawLen uint32 // plaintext length
}

// Pack plaintext layout (before sealing), part of the format:
//
//	blob 0 | blob 1 | … | blob n-1 | trailer | trailer length (u32 LE) | "VBPACK01"
//
// The trailer is n entries of packEntrySize bytes (see putEntry), so a pack
// describes itself and the index can be rebuilt from packs by a holder of
// the recovery identity.
const (
	packMagic     = "VBPACK01"
	packEntrySize = crypt.IDSize + 1 + 1 + 4 + 4 + 4
	maxPackBlobs  = 1 << 20
)

func putEntry(b []byte, e BlobEntry) {
	copy(b, e.ID[:])
	b[32] = byte(e.Type)
	b[33] = e.Flags
	binary.LittleEndian.PutUint32(b[34:], e.Offset)
	binary.LittleEndian.PutUint32(b[38:], e.Length)
	binary.LittleEndian.PutUint32(b[42:], e.RawLen)
}

func getEntry(b []byte) BlobEntry {
	var e BlobEntry
	copy(e.ID[:], b)
	e.Type = BlobType(b[32])
	e.Flags = b[33]
	e.Offset = binary.LittleEndian.Uint32(b[34:])
	e.Length = binary.LittleEndian.Uint32(b[38:])
	e.RawLen = binary.LittleEndian.Uint32(b[42:])
	return e
}

// packBuilder accumulates blobs into one pack plaintext.
type packBuilder struct {
	buf     []byte
	entries []BlobEntry
}

func (p *packBuilder) add(id crypt.ID, t BlobType, flags uint8, stored []byte, rawLen int) {
	p.entries = append(p.entries, BlobEntry{ID: id, Type: t, Flags: flags, Offset: uint32(len(p.buf)), Length: uint32(len(stored)), RawLen: uint32(rawLen)})
	p.buf = append(p.buf, stored...)
}

func (p *packBuilder) size() int { return len(p.buf) }

// finish appends the trailer and returns the complete pack plaintext.
func (p *packBuilder) finish() []byte {
	trailer := make([]byte, len(p.entries)*packEntrySize+4+len(packMagic))
	for i, e := range p.entries {
		putEntry(trailer[i*packEntrySize:], e)
	}
	n := len(p.entries) * packEntrySize
	binary.LittleEndian.PutUint32(trailer[n:], uint32(n))
	copy(trailer[n+4:], packMagic)
	return append(p.buf, trailer...)
}

// parsePackTrailer returns the blob entries of a pack plaintext of size
// bytes, given its last bytes (at least the trailer). tail must end at the
// end of the plaintext.
func parsePackTrailer(tail []byte, size int64) ([]BlobEntry, error) {
	if len(tail) < 4+len(packMagic) || string(tail[len(tail)-len(packMagic):]) != packMagic {
		return nil, fmt.Errorf("pack trailer: bad magic")
	}
	n := int64(binary.LittleEndian.Uint32(tail[len(tail)-len(packMagic)-4:]))
	if n%packEntrySize != 0 || n/packEntrySize > maxPackBlobs || n+4+int64(len(packMagic)) > size {
		return nil, fmt.Errorf("pack trailer: bad length %d", n)
	}
	start := int64(len(tail)) - int64(len(packMagic)) - 4 - n
	if start < 0 {
		return nil, fmt.Errorf("pack trailer: truncated")
	}
	dataEnd := size - n - 4 - int64(len(packMagic))
	entries := make([]BlobEntry, 0, n/packEntrySize)
	for off := start; off < start+n; off += packEntrySize {
		e := getEntry(tail[off:])
		if int64(e.Offset)+int64(e.Length) > dataEnd {
			return nil, fmt.Errorf("pack trailer: blob %s out of bounds", e.ID)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// PackName returns the object name of the pack with the given hash.
func PackName(h crypt.ID) string {
	s := h.String()
	return "data/" + s[:2] + "/" + s
}
