//go:build !freebsd

package restore

import "golang.org/x/sys/unix"

// mknod creates the device node p with the device number dev as recorded;
// Linux, macOS and OpenBSD take it as an int.
func mknod(p string, mode uint32, dev uint64) error {
	return unix.Mknod(p, mode, int(dev))
}
