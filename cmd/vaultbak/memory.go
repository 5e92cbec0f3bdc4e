package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The pipeline's own buffers are bounded by configuration: chunks in
// flight (two per core) with their compression scratch, one zstd state per
// core, the chunkers, and, when a region cannot stage objects (S3), pack
// buffers (uploaders + 1, a pack each); packs written to local directories
// stream to their files as they are sealed. What the Go runtime adds on
// top is garbage not yet collected, which by default may grow as large as
// the live heap (GOGC=100) and would double the peak RSS. A soft memory
// limit makes the collector run earlier.
//
// The limit is a budget above the live heap after the repository is open
// (its index is the part that grows with the repository), so a large index
// never leaves the collector running without end: backupBudget plus the
// pack buffers for a backup, readBudget for the other commands (restore
// windows and chunks in flight). Measured on the Go tree: 64 MiB for a
// backup into a local directory kept the peak RSS at 70 MiB (96: 100 MiB)
// for the same CPU time. Commands that open no repository (init, keygen,
// replicate, which copies objects between regions) keep the runtime's
// defaults. GOMEMLIMIT, when set, replaces all of this (see the runtime
// package).
const (
	backupBudget = 64 << 20
	readBudget   = 96 << 20
)

// fitMemoryLimit sets the memory limit to budget above the live heap; call
// it once the repository (and its index) is loaded.
func fitMemoryLimit(budget int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		debug.SetMemoryLimit(int64(s[0].Value.Uint64()) + budget)
	}
}
