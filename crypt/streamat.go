package crypt

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// The payload of an age file (the age specification, "payload"): a 16-byte
// nonce, then the plaintext in chunks of 64 KiB, each sealed with
// ChaCha20-Poly1305 under a key derived from the file key and that nonce,
// with the chunk's index (big-endian, 11 bytes) and a last-chunk flag as
// the nonce.
const (
	payloadNonceSize = 16
	plainChunkSize   = 64 << 10
	// SealedChunkSize is the size of a payload chunk as stored: the final
	// chunk of a sealed object lies in its last SealedChunkSize bytes.
	SealedChunkSize = plainChunkSize + chacha20poly1305.Overhead
)

// chunkBufs holds sealed-chunk buffers (of *[SealedChunkSize]byte) that
// readers decrypt in place.
var chunkBufs = sync.Pool{New: func() any { return new([SealedChunkSize]byte) }}

// streamAt reads the plaintext of an age file at any offset, as age's
// DecryptReaderAt does, but decrypts each chunk into a buffer reused from
// read to read (age's allocates and clears 64 KiB per read: a restore of
// many small files reads a blob at a time) and keeps the last chunk it
// decrypted, for the next small read of the same chunk.
type streamAt struct {
	src     io.ReaderAt // the payload's chunks, from offset 0
	aead    cipher.AEAD
	size    int64 // plaintext
	chunks  int64
	encSize int64 // of src

	mu     sync.Mutex
	cached int64 // index of the chunk in cache, -1 for none
	cache  *[SealedChunkSize]byte
	clen   int
}

// openStream opens the age file in src (size bytes) with fileKey: it checks
// the header's MAC, derives the payload key and authenticates the final
// chunk, so that the plaintext size is known and true.
func openStream(src io.ReaderAt, size int64, fileKey []byte) (*streamAt, int64, error) {
	hdr, err := age.ExtractHeader(io.NewSectionReader(src, 0, min(size, MaxHeaderSize)))
	if err != nil {
		return nil, 0, fmt.Errorf("read header: %w", err)
	}
	if _, err := age.DecryptHeader(hdr, age.NewInjectedFileKeyIdentity(fileKey)); err != nil {
		return nil, 0, err
	}
	nonce := make([]byte, payloadNonceSize)
	if k, err := src.ReadAt(nonce, int64(len(hdr))); k < payloadNonceSize {
		return nil, 0, fmt.Errorf("read nonce: %w", err)
	}
	key, err := hkdf.Key(sha256.New, fileKey, nonce, "payload", chacha20poly1305.KeySize)
	if err != nil {
		return nil, 0, err
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, 0, err
	}
	payloadOff := int64(len(hdr)) + payloadNonceSize
	encSize := size - payloadOff
	if encSize < chacha20poly1305.Overhead {
		return nil, 0, fmt.Errorf("invalid encrypted payload size: %d", encSize)
	}
	chunks := (encSize + SealedChunkSize - 1) / SealedChunkSize
	plainSize := encSize - chunks*chacha20poly1305.Overhead
	want := (plainSize + plainChunkSize - 1) / plainChunkSize
	if plainSize == 0 {
		want = 1 // an empty plaintext is one empty final chunk
	}
	if want != chunks {
		return nil, 0, fmt.Errorf("invalid encrypted payload size: %d", encSize)
	}
	s := &streamAt{src: io.NewSectionReader(src, payloadOff, encSize), aead: aead, size: plainSize, chunks: chunks, encSize: encSize, cached: -1}
	buf := chunkBufs.Get().(*[SealedChunkSize]byte)
	n, err := s.open(buf[:], chunks-1)
	if err != nil {
		chunkBufs.Put(buf)
		return nil, 0, fmt.Errorf("authenticate the final chunk: %w", err)
	}
	s.cache, s.clen, s.cached = buf, n, chunks-1
	return s, plainSize, nil
}

// sealedLen returns the stored length of chunk i.
func (s *streamAt) sealedLen(i int64) int {
	return int(min(s.encSize-i*SealedChunkSize, SealedChunkSize))
}

// open reads chunk i into buf, which has room for it, and decrypts it in
// place; it returns the plaintext's length.
func (s *streamAt) open(buf []byte, i int64) (int, error) {
	off := i * SealedChunkSize
	n := s.sealedLen(i)
	if k, err := s.src.ReadAt(buf[:n], off); k < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("read chunk at offset %d: %w", off, err)
	}
	var nonce [chacha20poly1305.NonceSize]byte
	binary.BigEndian.PutUint64(nonce[3:11], uint64(i))
	if i == s.chunks-1 {
		nonce[11] = 1
	}
	plain, err := s.aead.Open(buf[:0], nonce[:], buf[:n], nil)
	if err != nil {
		return 0, fmt.Errorf("decrypt and authenticate chunk at offset %d: %w", off, err)
	}
	// Every chunk but the last is full and the last is empty only when it
	// is the only one: openStream checked the sizes, the tag the length.
	return len(plain), nil
}

func (s *streamAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > s.size {
		return 0, fmt.Errorf("offset out of range [0:%d]: %d", s.size, off)
	}
	n := 0
	var buf *[SealedChunkSize]byte
	defer func() {
		if buf != nil {
			chunkBufs.Put(buf)
		}
	}()
	for len(p) > 0 && off < s.size {
		i := off / plainChunkSize
		at := int(off - i*plainChunkSize)
		s.mu.Lock()
		if s.cached == i {
			k := copy(p, s.cache[at:s.clen])
			s.mu.Unlock()
			p, off, n = p[k:], off+int64(k), n+k
			continue
		}
		s.mu.Unlock()
		if at == 0 && len(p) >= s.sealedLen(i) {
			// The whole chunk fits: decrypt it in p, which ReadAt may use
			// as scratch, instead of copying it out of a buffer.
			plen, err := s.open(p, i)
			if err != nil {
				return n, err
			}
			p, off, n = p[plen:], off+int64(plen), n+plen
			continue
		}
		if buf == nil {
			buf = chunkBufs.Get().(*[SealedChunkSize]byte)
		}
		plen, err := s.open(buf[:], i)
		if err != nil {
			return n, err
		}
		k := copy(p, buf[at:plen])
		p, off, n = p[k:], off+int64(k), n+k
		if len(p) == 0 && at+k < plen {
			// The read ended inside this chunk: keep it for the next one.
			s.mu.Lock()
			buf, s.cache = s.cache, buf
			s.cached, s.clen = i, plen
			s.mu.Unlock()
		}
	}
	if off == s.size && len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}
