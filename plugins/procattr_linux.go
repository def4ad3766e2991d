package plugins

import "syscall"

// guestProcAttr puts a worker process in a process group of its own, which
// the host kills at a run's deadline, and has the kernel kill it when the
// host dies (strictly: when the host thread that started it exits; Go
// threads only do when a goroutine locked to one ends), so a SIGKILLed
// runner leaves no guest running. An idle worker also exits when its
// stdin, the host's end of the pipe, closes.
func guestProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
