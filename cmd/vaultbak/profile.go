package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startProfile profiles the whole command for maintainers measuring the
// pipeline as users run it (docs/performance.md): a CPU profile to the file
// VAULTBAK_CPUPROFILE names, an allocation profile, written at the end, to
// the one VAULTBAK_MEMPROFILE names. It returns the function that ends
// them; without either variable, a no-op.
func startProfile() func() {
	stopCPU := func() {}
	if path := os.Getenv("VAULTBAK_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			if err = pprof.StartCPUProfile(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "vaultbak: warning: VAULTBAK_CPUPROFILE: %v\n", err)
		} else {
			stopCPU = func() {
				pprof.StopCPUProfile()
				f.Close()
			}
		}
	}
	return func() {
		stopCPU()
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
