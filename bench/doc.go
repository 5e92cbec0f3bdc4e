// Package bench holds throughput benchmarks of the backup pipeline, run
// through the library packages (repo, backup, restore) on local directory
// regions in temporary directories:
//
//	go test -bench . -benchtime 1x ./bench
//
// BenchmarkBackup (1 and 3 regions), BenchmarkBackupNoChange (file cache of
// the previous run) and BenchmarkRestore report MB/s of dataset bytes and
// cpu-s/op, the process CPU time of the timed part, which moves far less
// than wall time when other processes share the cores. BenchmarkBackup and
// BenchmarkRestore also report peak-heap-MiB, the most heap the run held
// at once (sampled every 5 ms); VAULTBAK_BENCH_HEAPPROFILE=FILE writes the
// heap profile taken at that peak. docs/performance.md reads their CPU
// profiles stage by stage. BenchmarkStage
// measures each CPU stage alone on one goroutine; give it more iterations
// (-bench Stage -benchtime 5x), as its first one pays for warming up.
//
// Every benchmark works on one generated dataset of 256 MiB (half random
// bytes, half compressible text-like data; a few hundred files in a tree plus
// one 64 MiB file), made once per process from a seeded ChaCha8 stream, so
// every run backs up the same bytes. Generation is never timed. Set
// VAULTBAK_BENCH_DIR to keep the dataset in that directory across runs (it is
// reused when complete), which also keeps its generation out of a CPU
// profile.
//
// The dataset sits in the page cache after it is written, so the figures
// measure the pipeline (chunk, hash, compress, seal, write with fsync), not
// the source disk. scripts/bench/run.sh measures the built binary end to end
// against reference tools and restic.
package bench
