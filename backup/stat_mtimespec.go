//go:build darwin || freebsd

package backup

import "syscall"

// statTimes returns the modification and change times that a stat system
// call filled into sys, in ns; macOS and FreeBSD name them Mtimespec and
// Ctimespec.
func statTimes(sys *syscall.Stat_t) (mtime, ctime int64) {
	return sys.Mtimespec.Nano(), sys.Ctimespec.Nano()
}
