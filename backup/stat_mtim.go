//go:build linux || openbsd

package backup

import "syscall"

// statTimes returns the modification and change times that a stat system
// call filled into sys, in ns; Linux and OpenBSD name them Mtim and Ctim.
func statTimes(sys *syscall.Stat_t) (mtime, ctime int64) {
	return sys.Mtim.Nano(), sys.Ctim.Nano()
}
