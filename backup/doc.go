// Package backup turns files, directories and streams into a snapshot.
//
// The pipeline: a walker goroutine descends the backup paths in name order
// and hands every regular file to a fixed pool of workers (bounded by
// Options.Workers, with at most 4×Workers files queued). A worker reads and
// chunks one file with a chunker and buffer it owns and hashes each chunk;
// a chunk the repository does not know yet is copied into a pooled buffer
// and handed to a goroutine that calls repo.Writer.SaveBlobID (compress,
// verify, pack), at most 2×GOMAXPROCS chunks at once, so that one large
// file still uses every core. The buffer returns to the pool when the save
// is done; the worker goes on to its next file meanwhile, and the run
// waits for every save before it commits (the first that fails stops it).
// Each directory becomes a tree blob once all its entries are done: a
// goroutine per directory waits on its entries' futures, so the walker
// never blocks on a slow file. Packs are sealed once and uploaded to every
// region by the writer's uploaders.
//
// Unchanged files are skipped by metadata: a Cache of the host's previous
// snapshot maps each path to its size, times, inode and chunk IDs; a file
// whose metadata match and whose chunks are all still indexed is not read.
// An unchanged directory (the same entries with the same lstat data, its
// files all skipped, its subdirectories all unchanged) keeps the tree ID the
// Cache holds for it: its tree is neither built, encoded nor hashed again,
// and its files never reach a worker (see dirs.go).
//
// A stream (Stream) is chunked and hashed on the caller's goroutine and its
// chunks saved like a large file's, so that its producer (pg_dump) only
// waits when every save slot is busy.
//
// Files that cannot be read are reported through Options.Warn and left out
// (or fail the run with Options.Strict); a file that changes while it is
// read is read again, and reported if it keeps changing.
package backup
