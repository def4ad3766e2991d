// Package testrun holds the types that pass between the runner and the
// executors that run a job's tests: the native executor in runnerd and the
// WebAssembly host in plugins. The runner declares the Executor interface it
// consumes; both executors satisfy it using only these types, so neither
// package imports the other.
package testrun

import (
	"io"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Spec is one step of a job to run.
type Spec struct {
	// Dir is the root of the job's checkout (read-only for plugins).
	Dir string
	// Command is the native command to run, as an argument vector
	// (argv[0] resolved on PATH). Empty for a plugin step.
	Command []string
	// Plugin is the WebAssembly step to run. Nil for a native step.
	Plugin *Plugin
	// Env is the environment of the step: the runner's environment minus
	// Pontus's credentials, plus CI metadata, for native steps; only the
	// plugin's allow-listed variables plus CI metadata for plugin steps.
	Env []string
	// Output receives the step's combined stdout and stderr as it is
	// produced. The runner caps and streams it; executors just write.
	Output io.Writer
	// Timeout bounds the step; when it passes the step ends TimedOut.
	// Zero means no limit beyond the context.
	Timeout time.Duration
	// KillGrace is how long a native step has between SIGTERM and SIGKILL
	// on timeout or cancel.
	KillGrace time.Duration
}

// Plugin describes a WebAssembly test plugin step.
type Plugin struct {
	// Name is for messages and logs ("secrets", "go-tests").
	Name string
	// Module is the path of the .wasm file on the runner's host.
	Module string
	// Args are passed after argv[0].
	Args []string
	// WorkDir is the guest working directory relative to the checkout
	// root ("tests"), mounted at /src.
	WorkDir string
	// MemoryLimitMiB caps the guest's linear memory (0 = the host's default).
	MemoryLimitMiB int
}

// Status is how a step ended.
type Status int

const (
	// Passed: exit code 0.
	Passed Status = iota + 1
	// Failed: the tests ran and reported failure (non-zero exit).
	Failed
	// Errored: the step could not run, crashed or ran out of memory.
	Errored
	// TimedOut: the step ran past Spec.Timeout and was stopped.
	TimedOut
	// Canceled: the context was canceled (build canceled, runner stopping).
	Canceled
)

func (s Status) String() string {
	switch s {
	case Passed:
		return "passed"
	case Failed:
		return "failed"
	case Errored:
		return "error"
	case TimedOut:
		return "timed out"
	case Canceled:
		return "canceled"
	}
	return "unknown"
}

// BuildStatus is the API's status for a build that ended so.
func (s Status) BuildStatus() pontusv1.BuildStatus {
	switch s {
	case Passed:
		return pontusv1.BuildStatus_BUILD_STATUS_PASSED
	case Failed:
		return pontusv1.BuildStatus_BUILD_STATUS_FAILED
	case TimedOut:
		return pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT
	case Canceled:
		return pontusv1.BuildStatus_BUILD_STATUS_CANCELED
	}
	return pontusv1.BuildStatus_BUILD_STATUS_ERROR
}

// Result is what an executor reports for one step.
type Result struct {
	Status Status
	// ExitCode of the process or module; -1 when killed or never started.
	ExitCode int
	// Reason explains Errored, TimedOut and Canceled ("out of memory",
	// "timed out after 10m0s").
	Reason string
	// Tests are per-test results the executor parsed from the output, if it
	// knows the format (plugins do; the native executor leaves this to the
	// runner, which parses the captured output).
	Tests []*pontusv1.TestCase
}
