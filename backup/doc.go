// Package backup turns files, directories and streams into a snapshot.
//
// The pipeline: a walker goroutine descends the backup paths in name order
// and hands every regular file to a fixed pool of workers (bounded by
// Options.Workers, with at most 4×Workers files queued). A worker reads and
// chunks one file with a chunker and buffer it owns, hashes each chunk and
// passes it to repo.Writer.SaveBlob, which compresses, deduplicates and packs
// it; the chunk buffer is reused as soon as SaveBlob returns. Each directory
// becomes a tree blob once all its entries are done: a goroutine per
// directory waits on its entries' futures, so the walker never blocks on a
// slow file. Packs are sealed once and uploaded to every region by the
// writer's uploaders.
//
// Unchanged files are skipped by metadata: a Cache of the host's previous
// snapshot maps each path to its size, times, inode and chunk IDs; a file
// whose metadata match and whose chunks are all still indexed is not read.
//
// Files that cannot be read are reported through Options.Warn and left out
// (or fail the run with Options.Strict); a file that changes while it is
// read is read again, and reported if it keeps changing.
package backup
