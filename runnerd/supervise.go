//go:build unix

package runnerd

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The step supervisor protocol. The native executor runs every step as
//
//	<os.Executable()> __step -parent PID -grace D [-uid U -gid G] -- argv…
//
// with StepEnv=1 added to the step's environment, stdout and stderr the
// step's output pipe, and file descriptor 3 (the first of
// exec.Cmd.ExtraFiles) for the report: one JSON object (stepReport) written
// when the step and everything it started are gone. The supervisor:
//
//   - is a child subreaper (Linux), so every process the step starts, even
//     one that double-forks or calls setsid, stays its descendant;
//   - is not dumpable, so a step running as the same user cannot read its
//     memory or environment through /proc nor ptrace it;
//   - runs argv in a process group of its own, as uid/gid (with no
//     supplementary groups) when given: privileges are dropped in the
//     forked child before exec, never in the runner;
//   - ignores SIGTERM and SIGINT itself: they stop the step, so it forwards
//     SIGTERM to every descendant and, after the grace period, kills them;
//   - when the command exits, kills every descendant still running and
//     names them in the report ("left behind");
//   - on SIGUSR1 (the parent-death signal the runner sets) or SIGHUP,
//     kills every descendant at once;
//   - exits with the command's exit status (128+N for signal N) once it has
//     reaped every descendant.
//
// Any program that imports this package serves as a supervisor: its init
// routes a process started that way to StepMain before main (or TestMain)
// runs, so the pontus binary and test binaries need no code of their own,
// and the supervisor owns its signals from the start.
const (
	// StepCommand is the first argument of a step supervisor.
	StepCommand = "__step"
	// StepEnv is set to "1" in a supervisor's environment (and removed
	// from the step's).
	StepEnv = "PONTUS_STEP_SUPERVISOR"
)

func init() {
	if os.Getenv(StepEnv) == "1" && len(os.Args) > 1 && os.Args[1] == StepCommand {
		os.Exit(StepMain(os.Args[2:], os.Stderr))
	}
}

const (
	// stepReportFD is the supervisor's report pipe.
	stepReportFD = 3
	// killPoll is how often a supervisor that is killing the step's
	// processes looks for ones that appeared since.
	killPoll = 10 * time.Millisecond
	// exitSetupFailed is a supervisor's exit status when the step never
	// started (the report's error says why).
	exitSetupFailed = 125
	// maxCommandText bounds how a process is named in the report.
	maxCommandText = 120
	// maxLeftBehind bounds how many processes the report names.
	maxLeftBehind = 20
	// defaultPath is where a command is looked up when the step's
	// environment has no PATH.
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// stepReport is what a supervisor writes on stepReportFD.
type stepReport struct {
	// Error is set when the step could not be started.
	Error string `json:"error,omitempty"`
	// ExitCode is the command's exit status, 128+N if signal N killed it.
	ExitCode int `json:"exit_code"`
	// LeftBehind names the processes still running when the command
	// exited, which the supervisor killed: "sleep 600 (pid 4242)".
	LeftBehind []string `json:"left_behind,omitempty"`
	// More counts left-behind processes beyond those named.
	More int `json:"more,omitempty"`
}

// StepMain is the step supervisor (see StepCommand). args are the
// arguments after StepCommand; it returns the exit status.
func StepMain(args []string, stderr io.Writer) int {
	// Signals first: a runner that dies before this point makes SIGUSR1
	// end this process, which has started nothing yet.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	report := os.NewFile(stepReportFD, "pontus-step-report")
	if report != nil {
		syscall.CloseOnExec(stepReportFD)
		defer report.Close()
	}
	rep, code := supervise(args, sigs)
	if rep.Error != "" {
		fmt.Fprintf(stderr, "pontus %s: %s\n", StepCommand, rep.Error)
	}
	if report != nil {
		_ = json.NewEncoder(report).Encode(rep)
	}
	return code
}

func supervise(args []string, sigs <-chan os.Signal) (stepReport, int) {
	fail := func(format string, a ...any) (stepReport, int) {
		return stepReport{Error: fmt.Sprintf(format, a...), ExitCode: -1}, exitSetupFailed
	}
	fs := flag.NewFlagSet(StepCommand, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	parent := fs.Int("parent", 0, "the runner's pid")
	grace := fs.Duration("grace", 0, "time between SIGTERM and SIGKILL")
	uid := fs.Int("uid", -1, "run the step as this user id")
	gid := fs.Int("gid", -1, "and this group id")
	if err := fs.Parse(args); err != nil {
		return fail("bad arguments: %v", err)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fail("no command")
	}
	if err := becomeSupervisor(); err != nil {
		return fail("%v", err)
	}
	if *parent != 0 && os.Getppid() != *parent {
		return fail("the runner is gone")
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, StepEnv+"=") })
	if _, ok := os.LookupEnv("PATH"); !ok {
		// Look the command up where a shell would without PATH; the step's
		// environment stays as it was given.
		os.Setenv("PATH", defaultPath)
	}
	path, err := lookPathAs(argv[0], *uid, *gid)
	if err != nil {
		// What a shell would say, with its status.
		fmt.Fprintf(os.Stderr, "%s: not found\n", argv[0])
		return stepReport{ExitCode: 127}, 127
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if *uid >= 0 && *gid >= 0 {
		attr.Credential = &syscall.Credential{Uid: uint32(*uid), Gid: uint32(*gid), Groups: []uint32{}}
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return fail("open %s: %v", os.DevNull, err)
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{devNull.Fd(), os.Stdout.Fd(), os.Stderr.Fd()},
		Sys:   attr,
	})
	devNull.Close()
	if err != nil {
		return fail("start %s: %v", argv[0], err)
	}
	return watch(pid, *grace, sigs)
}

type reaped struct {
	pid    int
	status syscall.WaitStatus
}

// watch runs the supervisor's loop until every descendant is reaped.
func watch(cmdPid int, grace time.Duration, sigs <-chan os.Signal) (stepReport, int) {
	exits := make(chan reaped, 64)
	go func() {
		defer close(exits)
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, 0, nil)
			switch {
			case err == syscall.EINTR:
				continue
			case err != nil: // ECHILD: nothing left to wait for
				return
			}
			exits <- reaped{pid, ws}
		}
	}()

	self := os.Getpid()
	rep := stepReport{ExitCode: -1}
	var (
		killTick  <-chan time.Time
		graceOver <-chan time.Time
		stopping  bool
		cmdDone   bool
	)
	// killAll kills the command's process group (while its id cannot
	// name another group) and every descendant.
	killAll := func() {
		if !cmdDone || !descendantsKnown {
			_ = syscall.Kill(-cmdPid, syscall.SIGKILL)
		}
		signalAll(descendants(self), syscall.SIGKILL)
	}
	killing := func() {
		if killTick == nil {
			t := time.NewTicker(killPoll)
			killTick = t.C
		}
		killAll()
	}
	for {
		select {
		case r, ok := <-exits:
			if !ok {
				return rep, max(rep.ExitCode, 0)
			}
			if r.pid != cmdPid || cmdDone {
				continue
			}
			cmdDone = true
			rep.ExitCode = exitCode(r.status)
			if killTick == nil && !stopping {
				left := running(descendants(self))
				for i, p := range left {
					if i == maxLeftBehind {
						rep.More = len(left) - i
						break
					}
					rep.LeftBehind = append(rep.LeftBehind, fmt.Sprintf("%s (pid %d)", commandText(p), p))
				}
			}
			killing()
		case s := <-sigs:
			switch s {
			case syscall.SIGTERM, syscall.SIGINT:
				if !stopping {
					stopping = true
					_ = syscall.Kill(-cmdPid, syscall.SIGTERM)
					signalAll(descendants(self), syscall.SIGTERM)
					graceOver = time.After(grace)
				}
			default: // SIGUSR1 (the runner died), SIGHUP
				killing()
			}
		case <-graceOver:
			killing()
		case <-killTick:
			killAll()
		}
	}
}

// lookPathAs finds file in PATH as exec.LookPath does, skipping what the
// user the step runs as (uid, gid; -1 for this process's own) could not
// execute, as a shell running as that user would.
func lookPathAs(file string, uid, gid int) (string, error) {
	if uid < 0 || strings.Contains(file, "/") {
		return exec.LookPath(file)
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, file)
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || reachable(dir, uid, gid) != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			mode := fi.Mode().Perm()
			switch {
			case int(st.Uid) == uid:
				mode &= 0o100
			case int(st.Gid) == gid:
				mode &= 0o010
			default:
				mode &= 0o001
			}
			if mode == 0 {
				continue
			}
		}
		return p, nil
	}
	return "", exec.ErrNotFound
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func signalAll(pids []int, sig syscall.Signal) {
	for _, p := range pids {
		_ = syscall.Kill(p, sig)
	}
}

// commandText names process pid by its command line (its name when the
// command line is empty), shortened.
func commandText(pid int) string {
	s := processCommand(pid)
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if s == "" {
		s = "?"
	}
	return truncate(s, maxCommandText)
}
