package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// streamPipeSize is the pipe buffer asked for between a dump and the
// backup reading it: with Linux's default of 64 KiB, a dump writing at
// 300 MB/s blocks after 0.2 ms whenever the backup's reader is busy
// chunking and hashing a chunk (about 1 ms per 512 KiB); with 1 MiB, the
// largest an unprivileged process may ask for by default, it runs on.
const streamPipeSize = 1 << 20

// widenPipe grows the buffer of r when it is a pipe; failing that, the
// stream is read as it is.
func widenPipe(r any) {
	if f, ok := r.(*os.File); ok {
		unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, streamPipeSize)
	}
}
