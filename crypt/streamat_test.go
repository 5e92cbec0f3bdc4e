package crypt

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"filippo.io/age"
)

// sealedFile seals n random bytes and returns the plaintext, the sealed
// file and its file key.
func sealedFile(t testing.TB, n int, seed uint64) ([]byte, []byte, []byte) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	plain := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range plain {
		plain[i] = byte(rng.Uint32())
	}
	sealed, err := Seal(plain, []age.Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	key, err := FileKey(bytes.NewReader(sealed), int64(len(sealed)), []age.Identity{id})
	if err != nil {
		t.Fatal(err)
	}
	return plain, sealed, key
}

// OpenAt reads what age's own DecryptReaderAt reads: every size around the
// chunk boundaries, reads of every length at every kind of offset, and
// readers sharing one file concurrently.
func TestOpenAtMatchesAge(t *testing.T) {
	const c = plainChunkSize
	for _, n := range []int{0, 1, 100, c - 1, c, c + 1, 2 * c, 3*c + 17, 10*c + 5} {
		plain, sealed, key := sealedFile(t, n, uint64(n))
		r, size, err := OpenAt(bytes.NewReader(sealed), int64(len(sealed)), key)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		ar, asize, err := age.DecryptReaderAt(bytes.NewReader(sealed), int64(len(sealed)), age.NewInjectedFileKeyIdentity(key))
		if err != nil {
			t.Fatal(err)
		}
		if size != int64(n) || asize != size {
			t.Fatalf("size %d: OpenAt says %d, age %d", n, size, asize)
		}
		rng := rand.New(rand.NewPCG(uint64(n), 2))
		for range 200 {
			off := rng.IntN(n + 1)
			l := rng.IntN(min(n-off, 3*c) + 1)
			got := make([]byte, l)
			k, err := r.ReadAt(got, int64(off))
			if k != l || err != nil && !(err == io.EOF && off+l == n) {
				t.Fatalf("size %d: ReadAt(%d, %d) = %d, %v", n, l, off, k, err)
			}
			want := make([]byte, l)
			ar.ReadAt(want, int64(off))
			if !bytes.Equal(got, want) || !bytes.Equal(got, plain[off:off+l]) {
				t.Fatalf("size %d: ReadAt(%d, %d) differs from the plaintext", n, l, off)
			}
		}
		// Reads from a chunk's start whose buffer holds the sealed chunk or
		// just not (it is decrypted in the buffer or copied out of one).
		for off := 0; off <= n; off += c {
			for _, l := range []int{c - 1, c, c + 15, c + 16, c + 17, 2*c + 16, 2*c + 33, n - off} {
				l = min(l, n-off)
				got := make([]byte, l+40) // the 40 bytes past len must stay untouched
				k, err := r.ReadAt(got[:l], int64(off))
				if k != l || err != nil && !(err == io.EOF && off+l == n) || !bytes.Equal(got[:l], plain[off:off+l]) || !bytes.Equal(got[l:], make([]byte, 40)) {
					t.Fatalf("size %d: aligned ReadAt(%d, %d) = %d, %v, or its bytes differ", n, l, off, k, err)
				}
			}
		}
		if n >= 5 {
			if k, err := r.ReadAt(make([]byte, 10), int64(n-5)); k != 5 || err != io.EOF {
				t.Errorf("size %d: read past the end = %d, %v; want 5, EOF", n, k, err)
			}
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 3))
				for range 100 {
					off := rng.IntN(n + 1)
					l := rng.IntN(min(n-off, c/2) + 1)
					got := make([]byte, l)
					r.ReadAt(got, int64(off))
					if !bytes.Equal(got, plain[off:off+l]) {
						t.Errorf("size %d: concurrent ReadAt(%d, %d) differs", n, l, off)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}

// A flipped byte anywhere in the payload fails the read of its chunk (or
// the open, for the final chunk); a truncated or extended file fails to
// open; a wrong file key fails the header's MAC.
func TestOpenAtRefusesDamage(t *testing.T) {
	const c = plainChunkSize
	plain, sealed, key := sealedFile(t, 3*c+100, 7)
	hdrLen := len(sealed) - (len(plain) + 4*16) - payloadNonceSize
	for _, pos := range []int{hdrLen + 3, hdrLen + payloadNonceSize + 10, hdrLen + payloadNonceSize + SealedChunkSize + 5, len(sealed) - 1} {
		bad := bytes.Clone(sealed)
		bad[pos] ^= 1
		r, _, err := OpenAt(bytes.NewReader(bad), int64(len(bad)), key)
		if err == nil {
			_, err = r.ReadAt(make([]byte, len(plain)), 0)
		}
		if err == nil {
			t.Errorf("byte %d flipped: read without an error", pos)
		}
	}
	for _, bad := range [][]byte{sealed[:len(sealed)-1], sealed[:len(sealed)-17], append(bytes.Clone(sealed), 0)} {
		if _, _, err := OpenAt(bytes.NewReader(bad), int64(len(bad)), key); err == nil {
			t.Errorf("a file of %d bytes instead of %d opened", len(bad), len(sealed))
		}
	}
	wrong := bytes.Clone(key)
	wrong[0] ^= 1
	if _, _, err := OpenAt(bytes.NewReader(sealed), int64(len(sealed)), wrong); err == nil {
		t.Error("opened with a wrong file key")
	} else if errors.Is(err, io.EOF) {
		t.Errorf("wrong key reported as %v", err)
	}
}

// BenchmarkOpenAtRead reads a 16 MiB sealed pack in blob-sized pieces
// (300 KiB, at offsets no chunk boundary lines up with), as a restore does.
func BenchmarkOpenAtRead(b *testing.B) {
	const size, piece = 16 << 20, 300 << 10
	_, sealed, key := sealedFile(b, size, 1)
	r, _, err := OpenAt(bytes.NewReader(sealed), int64(len(sealed)), key)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, piece)
	b.SetBytes(size)
	for b.Loop() {
		for off := int64(0); off < size; off += piece {
			if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
	}
}
