//go:build unix && !linux

package runnerd

import "syscall"

// sysProcAttr puts the step in a new process group. Without Pdeathsig
// (Linux only) a SIGKILLed runner leaves its steps running on this system.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
