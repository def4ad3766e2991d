package runnerd

import "syscall"

// sysProcAttr puts the shim in a new process group and has the kernel send
// it SIGUSR1 when the runner dies, on which the shim kills the group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGUSR1}
}
