package backup

import (
	"crypto/sha256"
	"encoding/binary"
	"io/fs"
	"slices"

	"vaultbak/repo"
)

// Unchanged directories. A directory's tree blob is a function of its
// entries' nodes, and every node field comes from the entry's lstat(2)
// data, its chunks (for a file) or its own tree (for a directory); only
// user and group names come from elsewhere (the system's user database),
// and a change there alone is picked up when the directory next changes.
// So a directory whose entries have the same names and lstat data as in
// the previous snapshot, whose files all match the file cache and whose
// subdirectories are all unchanged in turn has the same tree: the backup
// takes the tree ID from the cache and neither builds, encodes nor hashes
// it again, and none of its files goes to a worker. The directory is still
// listed and every entry still lstat'ed: a file changed in place changes
// its own times, not its directory's.
//
// A directory is cached only when it was listed in full and every entry was
// stored (none left out with a warning), and reused only when every file
// in it is in the file cache (a file stored with a warning is not), so
// that what was not backed up cleanly is tried again, and reported, every
// run.

// child is one entry of a directory being walked.
type child struct {
	abs, name string
	fi        fs.FileInfo
	st        stat
}

// dirDigest returns a digest of the names and lstat data of children.
func dirDigest(children []child) [32]byte {
	h := sha256.New()
	var b []byte
	for _, c := range children {
		b = b[:0]
		b = binary.LittleEndian.AppendUint32(b, uint32(len(c.name)))
		b = append(b, c.name...)
		st := c.st
		for _, v := range []uint64{uint64(st.mode), uint64(st.perm), uint64(st.uid), uint64(st.gid), uint64(st.size), uint64(st.blocks), uint64(st.mtime), uint64(st.ctime), st.ino, st.dev, st.nlink, st.rdev} {
			b = binary.LittleEndian.AppendUint64(b, v)
		}
		h.Write(b)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// dirCache is what finishDir needs to record a directory in the next
// cache: nil for a directory that is not to be recorded.
type dirCache struct {
	abs    string
	digest [32]byte
}

// prevDir returns the previous run's entry for the directory abs, if the
// cache was made with the same excludes.
func (b *backuper) prevDir(abs string) (DirEntry, bool) {
	if b.prev == nil || !slices.Equal(b.prev.Excludes, b.opts.Excludes) {
		return DirEntry{}, false
	}
	e, ok := b.prev.Dirs[abs]
	return e, ok
}

// carryFiles checks that every regular file among children is unchanged by
// the file cache, and if so carries their entries over to the next cache
// and counts them as skipped. It changes nothing when one is not.
func (b *backuper) carryFiles(children []child) bool {
	for _, c := range children {
		if c.st.mode.IsRegular() {
			e, ok := b.prev.Files[c.abs]
			if !ok || e.Size != c.st.size || e.MTime != c.st.mtime || e.CTime != c.st.ctime || e.Inode != c.st.ino || e.Dev != c.st.dev {
				return false
			}
		}
	}
	for _, c := range children {
		if c.st.mode.IsRegular() {
			e := b.prev.Files[c.abs]
			b.remember(c.abs, c.st, e.Content, e.Hash)
			b.done(c.st.size, false)
			b.progress.Skipped.Add(1)
			b.progress.SkippedBytes.Add(uint64(c.st.size))
		}
	}
	return true
}

// reusedDir returns the resolved node of an unchanged directory whose tree
// is tree, and records it in the next cache.
func (b *backuper) reusedDir(abs, name string, st stat, d DirEntry) *future {
	b.nextMu.Lock()
	b.next.Dirs[abs] = d
	b.nextMu.Unlock()
	n := b.baseNode(name, st)
	n.Type = repo.NodeDir
	n.Subtree = &d.Tree
	b.stats.dirs.Add(1)
	b.progress.Dirs.Add(1)
	f := resolved(&n, nil)
	f.reused = true
	return f
}
