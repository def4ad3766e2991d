//go:build unix && !linux

package plugins

import "syscall"

// guestProcAttr puts a guest process in a process group of its own, which
// the host kills at the deadline. Without Pdeathsig (Linux only) a
// SIGKILLed runner leaves a running guest behind until its own end.
func guestProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
