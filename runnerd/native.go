//go:build unix

package runnerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/pontus-ci/pontus/internal/testrun"
)

// shim is the group leader of every native step. It receives the
// parent-death signal (SIGUSR1, see sysProcAttr) and answers it by killing its
// whole process group, which Pdeathsig alone cannot do: the kernel sends that
// signal only to the direct child. It runs the real command in the
// background and exits with its status. Its text is fixed; the command comes
// in as arguments ("$@"), never as shell text.
const shim = `trap 'kill -KILL 0' USR1; "$@" & wait $!`

// Timings of the native executor.
const (
	// groupPoll is how often a stopping step checks whether its group is gone.
	groupPoll = 10 * time.Millisecond
	// drainTimeout bounds the wait for the output pipe to close once the
	// group is dead (a process that left the group may still hold it).
	drainTimeout = 2 * time.Second
)

// Native runs a step's command as a native process on this host.
type Native struct {
	logger *slog.Logger
}

// NewNative returns the native executor.
func NewNative(logger *slog.Logger) *Native {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Native{logger: logger}
}

var _ Executor = (*Native)(nil)

// Run runs spec.Command in spec.Dir with spec.Env, in a process group of its
// own, its stdout and stderr merged in order into spec.Output. It returns
// when the command has exited and every process left in its group is gone.
// When spec.Timeout passes or ctx is canceled, the group gets SIGTERM and,
// after spec.KillGrace, SIGKILL; the result is TimedOut or Canceled.
func (n *Native) Run(ctx context.Context, spec testrun.Spec) testrun.Result {
	if spec.Plugin != nil {
		return errored("the native executor cannot run plugin %q", spec.Plugin.Name)
	}
	if len(spec.Command) == 0 {
		return errored("no command to run")
	}
	if err := ctx.Err(); err != nil {
		return testrun.Result{Status: testrun.Canceled, ExitCode: -1, Reason: causeText(ctx)}
	}
	out := spec.Output
	if out == nil {
		out = io.Discard
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return errored("create output pipe: %v", err)
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", shim, "sh"}, spec.Command...)...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = sysProcAttr()

	// Pdeathsig fires when the thread that started the child exits, so start
	// it from a thread this goroutine holds.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	pw.Close()
	if err != nil {
		pr.Close()
		return errored("start %s: %v", spec.Command[0], err)
	}
	pgid := cmd.Process.Pid
	log := n.logger.With("pid", pgid)

	copied := make(chan struct{})
	go func() {
		defer close(copied)
		drain(out, pr)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var timeout <-chan time.Time
	if spec.Timeout > 0 {
		t := time.NewTimer(spec.Timeout)
		defer t.Stop()
		timeout = t.C
	}

	var res testrun.Result
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-timeout:
		log.Debug("step timed out", "timeout", spec.Timeout)
		waitErr = stopGroup(pgid, spec.KillGrace, exited)
		res = testrun.Result{Status: testrun.TimedOut, Reason: fmt.Sprintf("timed out after %v", spec.Timeout)}
	case <-ctx.Done():
		log.Debug("step canceled", "cause", context.Cause(ctx))
		waitErr = stopGroup(pgid, spec.KillGrace, exited)
		res = testrun.Result{Status: testrun.Canceled, Reason: causeText(ctx)}
	}
	// Whatever the command left behind in its group goes with it.
	killGroup(pgid, syscall.SIGKILL)

	select {
	case <-copied:
	case <-time.After(drainTimeout):
		log.Warn("output pipe still open after the step ended; a process left its group")
		pr.Close()
		<-copied
	}
	pr.Close()

	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	if res.Status != 0 {
		res.ExitCode = code
		return res
	}
	var exitErr *exec.ExitError
	switch {
	case waitErr == nil:
		return testrun.Result{Status: testrun.Passed, ExitCode: 0}
	case errors.As(waitErr, &exitErr) && code >= 0:
		return testrun.Result{Status: testrun.Failed, ExitCode: code}
	case errors.As(waitErr, &exitErr):
		return testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: fmt.Sprintf("test command killed: %v", waitErr)}
	default:
		return testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: fmt.Sprintf("wait for test command: %v", waitErr)}
	}
}

// stopGroup sends SIGTERM to the process group, waits up to grace for every
// process in it to exit, then sends SIGKILL. It returns the shim's wait error.
func stopGroup(pgid int, grace time.Duration, exited <-chan error) error {
	killGroup(pgid, syscall.SIGTERM)
	var waitErr error
	gotExit := false
	deadline := time.Now().Add(grace)
	tick := time.NewTicker(groupPoll)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if gotExit && !groupAlive(pgid) {
			return waitErr
		}
		select {
		case waitErr = <-exited:
			gotExit = true
		case <-tick.C:
		}
	}
	killGroup(pgid, syscall.SIGKILL)
	if !gotExit {
		waitErr = <-exited
	}
	return waitErr
}

func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// groupAlive reports whether any process of the group still exists. Zombies
// count, which at worst makes a stop wait its full grace period.
func groupAlive(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}

// drain copies r to w; after w fails it keeps reading (and discarding) so the
// step never blocks on a full pipe.
func drain(w io.Writer, r io.Reader) {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 && w != nil {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w = nil
			}
		}
		if err != nil {
			return
		}
	}
}

func errored(format string, args ...any) testrun.Result {
	return testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: fmt.Sprintf(format, args...)}
}

// causeText says why ctx ended: its cause when one was given, else "canceled".
func causeText(ctx context.Context) string {
	cause := context.Cause(ctx)
	if cause == nil || cause == context.Canceled {
		return "canceled"
	}
	return cause.Error()
}
