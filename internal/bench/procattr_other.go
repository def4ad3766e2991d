//go:build !linux

package bench

import "syscall"

// childAttr puts a child in its own process group.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// fsType is not known on this platform.
func fsType(string) string { return "unknown file system" }
