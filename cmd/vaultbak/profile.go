package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startProfile writes a CPU profile of the whole command to the file
// VAULTBAK_CPUPROFILE names, for maintainers measuring the pipeline as
// users run it (docs/performance.md). It returns the function that stops
// it; without the variable, a no-op.
func startProfile() func() {
	path := os.Getenv("VAULTBAK_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vaultbak: warning: VAULTBAK_CPUPROFILE: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(os.Stderr, "vaultbak: warning: VAULTBAK_CPUPROFILE: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		if mp := os.Getenv("VAULTBAK_MEMPROFILE"); mp != "" {
			if f, err := os.Create(mp); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
	}
}
