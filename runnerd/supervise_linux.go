package runnerd

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Linux prctl options.
const (
	prSetDumpable       = 4
	prSetChildSubreaper = 36
)

// descendantsKnown is true where descendants finds every process a step
// started.
const descendantsKnown = true

// becomeSupervisor makes this process the child subreaper of everything it
// starts, and not dumpable.
func becomeSupervisor() error {
	if err := prctl(prSetChildSubreaper, 1); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}
	if err := prctl(prSetDumpable, 0); err != nil {
		return fmt.Errorf("make the supervisor non-dumpable: %w", err)
	}
	return nil
}

// SetNonDumpable makes the calling process not dumpable: processes of the
// same user can no longer read its /proc/<pid>/environ or mem, nor ptrace
// it. The runner does this so that a step running as its own user cannot
// reach its credentials.
func SetNonDumpable() error {
	if err := prctl(prSetDumpable, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}

func prctl(option, arg uintptr) error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, option, arg, 0); errno != 0 {
		return errno
	}
	return nil
}

// descendants lists every process whose chain of parents leads to pid,
// zombies included, parents before children. It follows the kernel's
// lists of children (/proc/<pid>/task/<tid>/children), which cost nothing
// when there are none, and scans all of /proc where they do not exist.
func descendants(pid int) []int {
	if _, err := os.Stat("/proc/self/task/" + strconv.Itoa(syscall.Gettid()) + "/children"); err != nil {
		return scanDescendants(pid)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p != pid {
			out = append(out, p)
		}
		queue = append(queue, children(p)...)
	}
	return out
}

// children lists the children of every thread of pid.
func children(pid int) []int {
	base := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(base)
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(base + "/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// scanDescendants is descendants from a scan of every process's parent.
func scanDescendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	kids := make(map[int][]int)
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := procStat(p); ok {
			kids[ppid] = append(kids[ppid], p)
		}
	}
	var out []int
	queue := kids[pid]
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, kids[p]...)
	}
	return out
}

// running keeps the processes of pids that are not zombies.
func running(pids []int) []int {
	var out []int
	for _, p := range pids {
		if _, state, ok := procStat(p); ok && state != 'Z' && state != 'X' {
			out = append(out, p)
		}
	}
	return out
}

// procStat reads the parent and state of pid from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return ppid, f[0][0], true
}

// processCommand is pid's command line, arguments separated by spaces, or
// its name when it has none.
func processCommand(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err == nil && len(b) > 0 {
		return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
	}
	b, _ = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}
