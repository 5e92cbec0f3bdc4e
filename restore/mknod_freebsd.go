package restore

import "golang.org/x/sys/unix"

// mknod creates the device node p with the device number dev as recorded;
// FreeBSD's mknod takes the 64-bit dev_t as it is.
func mknod(p string, mode uint32, dev uint64) error {
	return unix.Mknod(p, mode, dev)
}
