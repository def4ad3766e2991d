//go:build unix

package plugins

import "syscall"

// processIsolation reports whether IsolationProcess is available here.
const processIsolation = true

// killGroup kills a worker process's process group (its pid: it was
// started with Setpgid). A worker starts nothing itself, but a
// group kill leaves nothing behind even so.
func killGroup(pid int) error {
	return syscall.Kill(-pid, syscall.SIGKILL)
}
