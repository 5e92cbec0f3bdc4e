package crypt

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash"
	"sync"

	"github.com/zeebo/blake3"
)

// IDSize is the size in bytes of an ID.
const IDSize = 32

// ID identifies a chunk, a tree or an object: a keyed BLAKE3 or a SHA-256
// digest, depending on what it names.
type ID [IDSize]byte

// String returns the lower-case hex form of id.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is all zeros (no ID).
func (id ID) IsZero() bool { return id == ID{} }

// MarshalText encodes id as hex.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes a hex ID.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ParseID parses the hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("crypt: invalid ID %q: want %d hex digits", truncate(s), 2*IDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("crypt: invalid ID %q: not hex", truncate(s))
	}
	return id, nil
}

func truncate(s string) string {
	if len(s) > 70 {
		return s[:70] + "…"
	}
	return s
}

// KeySize is the size in bytes of a Key.
const KeySize = 32

// Key is a secret 32-byte key for keyed hashing.
type Key [KeySize]byte

// NewKey returns a random key.
func NewKey() Key {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		panic("crypt: no randomness: " + err.Error())
	}
	return k
}

// hashers holds, per key, a pool of keyed BLAKE3 states (*blake3.Hasher),
// reset to the key's initial state. A state is about 7 KiB, and a backup
// hashes every chunk and every file: allocating one per hash made most of
// a backup's garbage.
var hashers sync.Map // Key → *sync.Pool

func (k *Key) pool() *sync.Pool {
	if p, ok := hashers.Load(*k); ok {
		return p.(*sync.Pool)
	}
	key := *k
	p, _ := hashers.LoadOrStore(key, &sync.Pool{New: func() any {
		h, err := blake3.NewKeyed(key[:])
		if err != nil {
			panic("crypt: blake3 key: " + err.Error()) // only on a wrong key size, which Key rules out
		}
		return h
	}})
	return p.(*sync.Pool)
}

// Sum returns the keyed BLAKE3 hash of data.
func (k *Key) Sum(data []byte) ID {
	h := k.New()
	h.Write(data)
	var id ID
	h.Sum(id[:0])
	k.Release(h)
	return id
}

// New returns a streaming keyed BLAKE3 hash; its Sum fills an ID. Release
// gives it back for reuse once its sum is taken.
func (k *Key) New() hash.Hash {
	return k.pool().Get().(*blake3.Hasher)
}

// Release returns h, which k.New returned, for reuse; h must not be used
// after.
func (k *Key) Release(h hash.Hash) {
	if bh, ok := h.(*blake3.Hasher); ok {
		bh.Reset()
		k.pool().Put(bh)
	}
}

// Derive returns a subkey of k for the named purpose, so that one repository
// secret can serve several independent uses.
func (k *Key) Derive(purpose string) Key {
	var out Key
	blake3.DeriveKey("vaultbak 2026 "+purpose, k[:], out[:])
	return out
}
