package s3test

import "syscall"

// sysProcAttr puts the server in its own process group, so a ^C meant for
// the test does not reach it before cleanup, and has the kernel kill it
// when the test binary dies without running cleanup (a timeout panic, a
// SIGKILL).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
