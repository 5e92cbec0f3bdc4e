// Package restore brings a snapshot back: into a directory (Run), one file
// to a writer (Dump), or as a listing (Walk).
//
// Run walks the snapshot's trees in one goroutine, creating directories as
// it goes, and hands each regular file to a fixed pool of workers. A worker
// writes a file under a temporary name in its final directory (its chunks
// are loaded a few at a time, each written at its offset by the goroutine
// that loaded and verified it against its keyed ID), verifies its size and
// keyed content hash against the tree (hashing the chunks in order), sets
// its metadata and only then renames it into place: a file with its final
// name is complete. A file or directory listing that no region gives back
// verified is left out and Run goes on, returning an *IncompleteError at
// the end; any other error stops it (see dataFailure).
// Directory metadata is set last, deepest first, so writing into a
// directory never disturbs its restored times or a read-only mode.
//
// Nothing is written outside the target: tree entry names are checked by
// repo.DecodeTree (no "/", "..", NUL), directories are created, never
// followed when a symlink already stands in their place, and files are
// created with O_EXCL|O_NOFOLLOW under a fresh temporary name.
package restore
