package backup

import (
	"encoding/gob"
	"fmt"
	"io"

	"vaultbak/crypt"
)

// CacheEntry is what the previous snapshot stored for one file.
type CacheEntry struct {
	Size    int64
	MTime   int64 // ns
	CTime   int64 // ns
	Inode   uint64
	Dev     uint64
	Content []crypt.ID
	Hash    crypt.ID
}

// DirEntry is what the previous snapshot stored for one directory: its
// tree, and a digest of the lstat(2) data of the entries it held.
type DirEntry struct {
	Digest [32]byte
	Tree   crypt.ID
}

// Cache maps absolute file paths to their entries in the host's previous
// snapshot of the same paths, and directories to their trees. It lives on
// the backup host only (it names files, so it is written 0600), never in a
// region.
type Cache struct {
	Repository string
	Files      map[string]CacheEntry
	// Dirs holds the directories whose every entry was stored cleanly;
	// Excludes are the patterns they were walked with (other patterns
	// would keep other entries, so the Dirs are then not used).
	Dirs     map[string]DirEntry
	Excludes []string
}

// NewCache returns an empty cache for repository id.
func NewCache(repository string) *Cache {
	return &Cache{Repository: repository, Files: map[string]CacheEntry{}, Dirs: map[string]DirEntry{}}
}

// ReadCache decodes a cache written by Encode.
func ReadCache(r io.Reader) (*Cache, error) {
	var c Cache
	if err := gob.NewDecoder(r).Decode(&c); err != nil {
		return nil, fmt.Errorf("backup: read file cache: %w", err)
	}
	if c.Files == nil {
		c.Files = map[string]CacheEntry{}
	}
	if c.Dirs == nil {
		c.Dirs = map[string]DirEntry{}
	}
	return &c, nil
}

// Encode writes the cache.
func (c *Cache) Encode(w io.Writer) error {
	return gob.NewEncoder(w).Encode(c)
}
