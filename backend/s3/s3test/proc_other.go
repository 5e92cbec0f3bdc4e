//go:build !linux

package s3test

import "syscall"

// sysProcAttr: elsewhere the server is an ordinary child; cleanup stops it.
func sysProcAttr() *syscall.SysProcAttr { return nil }
