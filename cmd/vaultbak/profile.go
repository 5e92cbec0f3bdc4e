package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// startProfile profiles the whole command for maintainers measuring the
// pipeline as users run it (docs/performance.md): a CPU profile to the file
// VAULTBAK_CPUPROFILE names, an allocation profile, written at the end, to
// the one VAULTBAK_MEMPROFILE names, and an execution trace (go tool trace:
// where goroutines wait, how busy each core is) to the one VAULTBAK_TRACE
// names. It returns the function that ends them; without any of the
// variables, a no-op.
func startProfile() func() {
	stopCPU := recordTo("VAULTBAK_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile)
	stopTrace := recordTo("VAULTBAK_TRACE", trace.Start, trace.Stop)
	return func() {
		stopCPU()
		stopTrace()
		if path := os.Getenv("VAULTBAK_MEMPROFILE"); path != "" {
			f, err := os.Create(path)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "vaultbak: warning: VAULTBAK_MEMPROFILE: %v\n", err)
			}
		}
	}
}

// recordTo starts a recording into the file the environment variable env
// names, if any, and returns the function that stops it.
func recordTo(env string, start func(io.Writer) error, stop func()) func() {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		if err = start(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vaultbak: warning: %s: %v\n", env, err)
		return func() {}
	}
	return func() {
		stop()
		f.Close()
	}
}
