//go:build unix

package runnerd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pontus-ci/pontus/internal/testrun"
)

// Timings of the native executor.
const (
	// stopSlack is how long, beyond the kill grace, a stopping step's
	// supervisor may take to kill and reap the step's processes before the
	// runner kills it.
	stopSlack = 5 * time.Second
	// drainTimeout bounds the wait for the output pipe to close once the
	// supervisor has exited.
	drainTimeout = 2 * time.Second
	// maxStepReport bounds the supervisor's report the runner reads.
	maxStepReport = 64 << 10
)

// Native runs a step's command as a native process on this host, under a
// supervisor (see StepCommand) that is the only process the runner starts.
type Native struct {
	logger *slog.Logger
	// user is who steps run as; nil means the runner's own user.
	user *stepUser
}

// NewNative returns the native executor; steps run as the runner's user.
func NewNative(logger *slog.Logger) *Native {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Native{logger: logger}
}

var _ Executor = (*Native)(nil)

// Run runs spec.Command in spec.Dir with spec.Env under a step supervisor,
// its stdout and stderr merged in order into spec.Output. It returns when
// the command has exited and every process it started, wherever it went
// (another process group or session, double-forked), is gone; processes
// left running when the command exited are killed and named in the output.
// When spec.Timeout passes or ctx is canceled, every process of the step
// gets SIGTERM and, after spec.KillGrace, SIGKILL; the result is TimedOut
// or Canceled.
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
	exe, err := os.Executable()
	if err != nil {
		return errored("find the runner's executable to supervise the step: %v", err)
	}
	out := spec.Output
	if out == nil {
		out = io.Discard
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return errored("create output pipe: %v", err)
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return errored("create report pipe: %v", err)
	}
	args := []string{StepCommand, "-parent", strconv.Itoa(os.Getpid()), "-grace", spec.KillGrace.String()}
	if n.user != nil {
		args = append(args, "-uid", strconv.Itoa(n.user.uid), "-gid", strconv.Itoa(n.user.gid))
	}
	cmd := exec.Command(exe, append(append(args, "--"), spec.Command...)...)
	cmd.Dir = spec.Dir
	cmd.Env = append(slices.Clip(spec.Env), StepEnv+"=1")
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.ExtraFiles = []*os.File{rw} // stepReportFD
	cmd.SysProcAttr = supervisorProcAttr()

	// Pdeathsig fires when the thread that started the child exits, so start
	// it from a thread this goroutine holds.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	pw.Close()
	rw.Close()
	if err != nil {
		pr.Close()
		rr.Close()
		return errored("start %s: %v", spec.Command[0], err)
	}
	log := n.logger.With("pid", cmd.Process.Pid)

	copied := make(chan struct{})
	go func() {
		defer close(copied)
		drain(out, pr)
	}()
	reported := make(chan stepReport, 1)
	go func() {
		defer rr.Close()
		var rep stepReport
		if err := json.NewDecoder(io.LimitReader(rr, maxStepReport)).Decode(&rep); err != nil {
			rep = stepReport{Error: "the step supervisor ended without a report", ExitCode: -1}
		}
		io.Copy(io.Discard, rr)
		reported <- rep
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
	select {
	case <-exited:
	case <-timeout:
		log.Debug("step timed out", "timeout", spec.Timeout)
		stop(cmd.Process.Pid, spec.KillGrace, exited, log)
		res = testrun.Result{Status: testrun.TimedOut, Reason: fmt.Sprintf("timed out after %v", spec.Timeout)}
	case <-ctx.Done():
		log.Debug("step canceled", "cause", context.Cause(ctx))
		stop(cmd.Process.Pid, spec.KillGrace, exited, log)
		res = testrun.Result{Status: testrun.Canceled, Reason: causeText(ctx)}
	}
	rep := <-reported

	select {
	case <-copied:
	case <-time.After(drainTimeout):
		log.Warn("output pipe still open after the step ended")
		pr.Close()
		<-copied
	}
	pr.Close()

	if len(rep.LeftBehind) > 0 {
		msg := leftBehindText(rep)
		log.Info(msg)
		fmt.Fprintf(out, "[pontus: %s]\n", msg)
	}
	if res.Status != 0 {
		res.ExitCode = -1
		return res
	}
	switch {
	case rep.Error != "":
		return errored("%s", rep.Error)
	case rep.ExitCode == 0:
		return testrun.Result{Status: testrun.Passed, ExitCode: 0}
	case rep.ExitCode > 0:
		return testrun.Result{Status: testrun.Failed, ExitCode: rep.ExitCode}
	}
	return errored("the step supervisor died: %v", cmd.ProcessState)
}

// stop has the supervisor stop the step (SIGTERM: it forwards SIGTERM and
// kills what is left after grace) and waits for it; a supervisor that has
// not finished stopSlack later is killed with its process group.
func stop(pid int, grace time.Duration, exited <-chan error, log *slog.Logger) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	t := time.NewTimer(grace + stopSlack)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		log.Error("step supervisor did not stop the step in time; killing it", "grace", grace)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
}

// leftBehindText is the log line for processes a step left running.
func leftBehindText(rep stepReport) string {
	n := len(rep.LeftBehind) + rep.More
	noun := "processes"
	if n == 1 {
		noun = "process"
	}
	text := fmt.Sprintf("killed %d %s left behind: %s", n, noun, strings.Join(rep.LeftBehind, ", "))
	if rep.More > 0 {
		text += fmt.Sprintf(" and %d more", rep.More)
	}
	return text
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
