package runnerd

import "syscall"

// supervisorProcAttr puts a step's supervisor in a process group of its own
// and has the kernel send it SIGUSR1 when the runner dies, on which it kills
// every process of the step.
func supervisorProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGUSR1}
}
