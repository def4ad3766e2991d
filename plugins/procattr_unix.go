//go:build unix && !linux

package plugins

import "syscall"

// guestProcAttr puts a worker process in a process group of its own, which
// the host kills at a run's deadline. Without Pdeathsig (Linux only) a
// SIGKILLed runner leaves a running guest behind until its own end; the
// worker then exits, as its stdin, the host's end of the pipe, has closed.
func guestProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
