package backup

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"reflect"
	"testing"

	"vaultbak/crypt"
)

func testCache(rng *rand.Rand, files int) *Cache {
	id := func() (v crypt.ID) {
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		return v
	}
	c := NewCache("0123456789abcdef")
	c.Excludes = []string{"*.tmp", "/var/cache/**", ""}
	for i := range files {
		content := make([]crypt.ID, rng.IntN(4)) // empty files have none
		for j := range content {
			content[j] = id()
		}
		path := "/src/dir/file-" + string(rune('a'+i%26)) + string([]byte{0xff, 0xfe, byte(i), byte(i >> 8)}) // names are bytes
		c.Files[path] = CacheEntry{Size: rng.Int64(), MTime: -rng.Int64(), CTime: rng.Int64(), Inode: rng.Uint64(), Dev: rng.Uint64(), Content: content, Hash: id()}
	}
	for i := range files / 5 {
		c.Dirs["/src/dir-"+string([]byte{byte(i), byte(i >> 8)})] = DirEntry{Digest: id(), Tree: id()}
	}
	c.Dirs[""] = DirEntry{}
	return c
}

// The cache reads back as it was written: names with any bytes, empty
// files, negative times, the largest numbers.
func TestCacheRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []*Cache{NewCache(""), testCache(rng, 1000)} {
		c.Files["/max"] = CacheEntry{Size: 1<<63 - 1, MTime: -1 << 63, Inode: 1<<64 - 1, Dev: 1<<64 - 1}
		got, err := DecodeCache(c.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if !sameCache(got, c) {
			t.Fatalf("cache of %d files, %d dirs read back different", len(c.Files), len(c.Dirs))
		}
	}
}

// A damaged cache is refused, whatever byte is changed and wherever the
// file is cut, so that the backup reads every file instead of trusting it.
func TestCacheDamaged(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := testCache(rng, 50).Marshal()
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 1 << (i % 8)
		if _, err := DecodeCache(bad); err == nil {
			t.Fatalf("byte %d of %d changed: cache read without an error", i, len(data))
		}
	}
	for n := range len(data) {
		if _, err := DecodeCache(data[:n]); err == nil {
			t.Fatalf("cut to %d of %d bytes: cache read without an error", n, len(data))
		}
	}
}

// Counts in a file with a valid checksum cannot make the decoder allocate
// more than the file holds.
func TestCacheCounts(t *testing.T) {
	b := []byte(cacheMagic)
	b = appendString(b, "repo")
	b = append(b, 0)                                        // no excludes
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f) // 2^49-1 files
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if _, err := DecodeCache(b); !errors.Is(err, errCacheFormat) {
		t.Fatalf("huge count: %v, want %v", err, errCacheFormat)
	}
}

// A cache written in gob by an earlier version is still read, so that an
// upgrade does not make the next backup read every file.
func TestCacheGob(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	c := testCache(rng, 100)
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(c); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCache(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !sameCache(got, c) {
		t.Fatal("gob cache read back different")
	}
}

// sameCache compares caches, taking a nil Content for an empty one: both
// are an empty file to the backup.
func sameCache(got, want *Cache) bool {
	for p, e := range got.Files {
		if len(e.Content) == 0 && len(want.Files[p].Content) == 0 {
			e.Content = want.Files[p].Content
			got.Files[p] = e
		}
	}
	return reflect.DeepEqual(got, want)
}

func BenchmarkCache(b *testing.B) {
	c := testCache(rand.New(rand.NewPCG(7, 8)), 15000)
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			c.Marshal()
		}
	})
	b.Run("decode", func(b *testing.B) {
		data := c.Marshal()
		for b.Loop() {
			if _, err := DecodeCache(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
