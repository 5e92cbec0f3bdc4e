package repo

import (
	"encoding/binary"
	"fmt"
	"io"

	"filippo.io/age"

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
	return append(p.buf, packTrailer(p.entries)...)
}

// packTrailer returns the trailer that ends a pack holding entries.
func packTrailer(entries []BlobEntry) []byte {
	trailer := make([]byte, len(entries)*packEntrySize+4+len(packMagic))
	for i, e := range entries {
		putEntry(trailer[i*packEntrySize:], e)
	}
	n := len(entries) * packEntrySize
	binary.LittleEndian.PutUint32(trailer[n:], uint32(n))
	copy(trailer[n+4:], packMagic)
	return trailer
}

// sealingPack builds a pack the way packBuilder does, but seals it as it
// grows: every blob goes straight through age's STREAM writer, which
// encrypts in 64 KiB chunks, so the pack's plaintext is never held whole
// and only its sealed bytes are (in buf, owned by the sealingPack until
// finish hands them over). The sealed object is the one crypt.Seal makes
// of the same plaintext: an age file to the recipients.
//
// With stage set, the sealed bytes go to the regions' staged objects
// instead (see stagedPack), and buf, which then stays empty, only bounds
// how many packs are in flight.
type sealingPack struct {
	buf     *packBuf
	stage   *stagedPack
	enc     io.WriteCloser // age writer into buf or stage
	plain   int            // plaintext bytes written so far
	entries []BlobEntry
}

// packBuf is a growable byte buffer that a writer reuses for pack after
// pack, so that a backup allocates (and the kernel zeroes) a bounded
// number of pack-sized buffers instead of one per pack.
type packBuf struct {
	b    []byte
	full int // capacity to grow to at once past the first MiB
}

func (b *packBuf) Write(p []byte) (int, error) {
	if need := len(b.b) + len(p); need > cap(b.b) {
		c := max(need, 2*cap(b.b), 64<<10)
		if need > 1<<20 {
			// Past full (a pack of many tiny blobs has a large trailer),
			// grow with room to spare and keep that size for the next
			// packs, rather than reallocate the buffer pack after pack.
			c = max(need, b.full)
			if need > b.full {
				c = need + need/8
				b.full = c
			}
		}
		nb := make([]byte, len(b.b), c)
		copy(nb, b.b)
		b.b = nb
	}
	b.b = append(b.b, p...)
	return len(p), nil
}

// newSealingPack starts a pack sealed to recipients in buf (emptied), or
// in stage when it is not nil.
func newSealingPack(buf *packBuf, stage *stagedPack, recipients []age.Recipient) (*sealingPack, error) {
	buf.b = buf.b[:0]
	var dst io.Writer = buf
	if stage != nil {
		dst = stage
	}
	enc, err := age.Encrypt(dst, recipients...)
	if err != nil {
		return nil, fmt.Errorf("repo: seal pack: %w", err)
	}
	return &sealingPack{buf: buf, stage: stage, enc: enc}, nil
}

func (p *sealingPack) add(id crypt.ID, t BlobType, flags uint8, stored []byte, rawLen int) error {
	p.entries = append(p.entries, BlobEntry{ID: id, Type: t, Flags: flags, Offset: uint32(p.plain), Length: uint32(len(stored)), RawLen: uint32(rawLen)})
	p.plain += len(stored)
	if _, err := p.enc.Write(stored); err != nil {
		return fmt.Errorf("repo: seal pack: %w", err)
	}
	return nil
}

// abort discards a staged pack's objects; a pack in a buffer needs nothing.
func (p *sealingPack) abort() {
	if p.stage != nil {
		p.stage.abort()
	}
}

// size returns the plaintext bytes of the blobs so far.
func (p *sealingPack) size() int { return p.plain }

// finish writes the trailer, closes the seal and returns the sealed pack
// (backed by p.buf: valid until the buffer is reused; empty when staged).
func (p *sealingPack) finish() ([]byte, error) {
	if _, err := p.enc.Write(packTrailer(p.entries)); err != nil {
		return nil, fmt.Errorf("repo: seal pack: %w", err)
	}
	if err := p.enc.Close(); err != nil {
		return nil, fmt.Errorf("repo: seal pack: %w", err)
	}
	return p.buf.b, nil
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
