package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The pipeline's own buffers are bounded by configuration: pack buffers
// (uploaders + 1, each a pack and one chunk), chunks in flight (two per
// core) and one zstd state per core, about 60 MiB with the defaults. What
// the Go runtime adds on top is garbage not yet collected, which by
// default may grow as large as the live heap (GOGC=100) and would double
// the peak RSS. A soft memory limit makes the collector run earlier.
//
// The limit is pipelineBudget above the live heap after the repository is
// open (its index is the part that grows with the repository), so a large
// index never leaves the collector running without end. Commands that
// open no repository (init, keygen, replicate, which copies objects
// between regions) keep the runtime's defaults. GOMEMLIMIT, when set,
// replaces all of this (see the runtime package).
const pipelineBudget = 96 << 20

// fitMemoryLimit sets the memory limit to pipelineBudget above the live
// heap; call it once the repository (and its index) is loaded.
func fitMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		debug.SetMemoryLimit(int64(s[0].Value.Uint64()) + pipelineBudget)
	}
}
