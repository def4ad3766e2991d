//go:build unix && !linux

package runnerd

// Without Linux's child subreaper and /proc, the supervisor knows only the
// command's process group: a process that leaves the group (setsid)
// escapes it, and a SIGKILLed runner leaves its steps running.

// descendantsKnown is false: descendants knows none here.
const descendantsKnown = false

func becomeSupervisor() error { return nil }

// SetNonDumpable does nothing on this system.
func SetNonDumpable() error { return nil }

func descendants(int) []int { return nil }

func running(pids []int) []int { return pids }

func processCommand(int) string { return "" }
