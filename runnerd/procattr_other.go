//go:build unix && !linux

package runnerd

import "syscall"

// supervisorProcAttr puts a step's supervisor in a process group of its
// own. Without Pdeathsig (Linux only) a SIGKILLed runner leaves its steps
// running on this system.
func supervisorProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
