package runnerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pontus-ci/pontus/internal/settings"
	"github.com/pontus-ci/pontus/internal/testreport"
	"github.com/pontus-ci/pontus/internal/testrun"
	"github.com/pontus-ci/pontus/plugins"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Sandbox is what the runner needs of the WebAssembly host: an Executor for
// plugin steps that can also run a repository's Go tests compiled to
// WebAssembly. plugins.Host satisfies it.
type Sandbox interface {
	Executor
	RunGoTests(ctx context.Context, spec testrun.Spec, cacheEnv []string) testrun.Result
}

// repoConfigFile is a repository's own configuration, read when the runner
// allows it.
const repoConfigFile = ".pontus.toml"

// repoConfig is what a repository's .pontus.toml may say.
type repoConfig struct {
	// TestCommand replaces the runner's test command (sh -c in the checkout).
	TestCommand string `toml:"test_command"`
	// Plugins are WebAssembly steps; modules are paths inside the checkout.
	Plugins []plugins.StepConfig `toml:"plugins"`
	// Build is the repository's build settings (retries, shards, bisect,
	// reuse). The observer applies them, within its own values, when it
	// reports the commit; the runner gets them with the job, so here they
	// are only accepted (and checked).
	Build settings.Table `toml:"build"`
}

// jobStep is one step of a job: native (argv) or sandboxed (plugin, or the
// repository's Go tests).
type jobStep struct {
	name   string
	native *step
	plugin *plugins.StepConfig
	// budget, when set, bounds the step below its timeout (a retry gets
	// what is left of the step's).
	budget time.Duration
}

func (s jobStep) describe() string {
	switch {
	case s.native != nil:
		return strings.Join(s.native.argv, " ")
	case s.plugin.GoTests:
		return fmt.Sprintf("%s: Go tests of ./%s compiled to WebAssembly, in the sandbox", s.plugin.Name, s.plugin.WorkDir)
	}
	return fmt.Sprintf("plugin %s (%s), in the sandbox", s.plugin.Name, s.plugin.Module)
}

// planSteps decides what a job runs in the checkout at dir, in this order:
// the runner's plugin steps, the repository's (when it has a .pontus.toml
// the runner allows), then the test step: the repository's
// test_command, the runner's test_command, or what the checkout's files call
// for (pytest or Python unittest, Go tests natively or in the sandbox,
// tests/*.wasm modules). A reason is returned when the job cannot run.
func (r *Runner) planSteps(ctx context.Context, dir string) ([]jobStep, string) {
	pluginSteps := r.cfg.Plugins
	testCommand := r.cfg.TestCommand
	if r.cfg.AllowRepoConfig {
		rc, found, err := readRepoConfig(dir)
		if err != nil {
			return nil, err.Error()
		}
		if found {
			// The repository adds steps; the runner's own (a mandatory
			// secrets scan, say) always run.
			pluginSteps = append(slices.Clip(pluginSteps), rc.Plugins...)
			if rc.TestCommand != "" {
				testCommand = rc.TestCommand
			}
		}
	}
	var steps []jobStep
	for i := range pluginSteps {
		steps = append(steps, jobStep{name: pluginSteps[i].Name, plugin: &pluginSteps[i]})
	}
	if testCommand != "" {
		steps = append(steps, jobStep{name: "tests", native: &step{argv: []string{"sh", "-c", testCommand}}})
	} else if st, ok := detectTests(dir); ok {
		if st.pytest != "" && r.cfg.Native {
			python, ok := r.pytestPython(ctx)
			if !ok {
				return nil, r.pytestMissing(st.pytest)
			}
			st = pytestStep(python, filepath.Join(homeDir(dir), pytestJUnitName))
		}
		goTests := st.argv[0] == "go"
		if goTests && r.sandbox != nil && (r.cfg.SandboxGoTests || !r.cfg.Native) {
			steps = append(steps, jobStep{name: "go-tests", plugin: &plugins.StepConfig{Name: "go-tests", GoTests: true, WorkDir: "tests"}})
		} else {
			steps = append(steps, jobStep{name: "tests", native: &st})
		}
	} else if r.sandbox != nil {
		mods, _ := plugins.FindTestModules(dir)
		for _, m := range mods {
			rel, _ := filepath.Rel(dir, m)
			name := strings.TrimSuffix(filepath.Base(m), ".wasm")
			steps = append(steps, jobStep{name: name, plugin: &plugins.StepConfig{Name: name, Module: filepath.ToSlash(rel), WorkDir: "tests"}})
		}
	}
	if len(steps) == 0 {
		return nil, noTestsReason
	}
	for _, s := range steps {
		if s.native != nil && !r.cfg.Native {
			return nil, fmt.Sprintf("this runner runs only sandboxed WebAssembly steps (runner.native = false), but the job needs %q", s.describe())
		}
		if s.plugin != nil && r.sandbox == nil {
			return nil, "the job has WebAssembly steps but this runner does not run them (runner.wasm = false)"
		}
	}
	return steps, ""
}

// readRepoConfig reads dir/.pontus.toml. The file comes from the repository
// under test, so it is untrusted: it must be a regular file, small, with no
// unknown keys, and its plugin modules must lie inside the checkout.
func readRepoConfig(dir string) (repoConfig, bool, error) {
	var rc repoConfig
	// Opened without following a symlink or blocking on a FIFO, then
	// checked: the checkout belongs to step_user, whose other jobs may
	// change it at any time.
	f, err := os.OpenFile(filepath.Join(dir, repoConfigFile), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return rc, false, nil
	}
	if errors.Is(err, syscall.ELOOP) {
		return rc, false, fmt.Errorf("%s must be a regular file of at most 1 MiB", repoConfigFile)
	}
	if err != nil {
		return rc, false, fmt.Errorf("%s: %v", repoConfigFile, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
		return rc, false, fmt.Errorf("%s must be a regular file of at most 1 MiB", repoConfigFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return rc, false, fmt.Errorf("%s: %v", repoConfigFile, err)
	}
	md, err := toml.Decode(string(data), &rc)
	if err != nil {
		return rc, false, fmt.Errorf("%s: %v", repoConfigFile, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return rc, false, fmt.Errorf("%s: unknown key %s", repoConfigFile, und[0])
	}
	if strings.ContainsRune(rc.TestCommand, 0) {
		return rc, false, fmt.Errorf("%s: test_command contains a NUL byte", repoConfigFile)
	}
	if err := rc.Build.Check(); err != nil {
		return rc, false, fmt.Errorf("%s: %v", repoConfigFile, err)
	}
	for i, s := range rc.Plugins {
		if err := s.ValidateInRepo(); err != nil {
			return rc, false, fmt.Errorf("%s: plugins[%d]: %v", repoConfigFile, i, err)
		}
	}
	return rc, true, nil
}

// runSteps runs the steps in order and combines their results: the worst
// status wins, a canceled or timed-out step ends the job, and each step's
// per-test results come from its executor, else from JUnit reports it left
// (native steps), else from its output. With several steps, sandboxed
// steps' tests are named "<step>: <test>".
func (r *Runner) runSteps(ctx context.Context, job *pontusv1.Job, dir string, steps []jobStep, stream *logStream) testrun.Result {
	total := testrun.Result{Status: testrun.Passed, Tests: []*pontusv1.TestCase{}}
	for i, s := range steps {
		if len(steps) > 1 {
			stream.Printf("[pontus: step %d of %d: %s]", i+1, len(steps), s.describe())
		}
		began := time.Now()
		res := r.runStepLogged(ctx, job, dir, s, stream)
		res.Tests = r.stepTests(dir, s, res, stream)
		res = r.retryFailed(ctx, job, dir, s, res, stream, r.stepTimeout(s)-time.Since(began))
		if s.native != nil && s.native.junit != "" && res.Status == testrun.Failed && res.Reason == "" {
			res.Reason = pytestExitReason(res.ExitCode)
		}
		for _, t := range res.Tests {
			if len(steps) > 1 && s.native == nil {
				t.Name = s.name + ": " + t.Name
			}
			t.Runs = max(t.Runs, 1)
			total.Tests = append(total.Tests, t)
		}
		if i == 0 || worse(res.Status, total.Status) {
			total.Status, total.ExitCode, total.Reason = res.Status, res.ExitCode, res.Reason
			if len(steps) > 1 && res.Reason != "" {
				total.Reason = s.name + ": " + res.Reason
			}
		}
		if res.Status == testrun.Canceled || res.Status == testrun.TimedOut {
			break
		}
	}
	return total
}

// runStepLogged runs a step (or a retry of one) as this step's output in
// the log, a native step's go test -json lines turned into the text they
// carry.
func (r *Runner) runStepLogged(ctx context.Context, job *pontusv1.Job, dir string, s jobStep, stream *logStream) testrun.Result {
	out := stream.Output() // starts this step's output
	defer stream.EndOutput()
	if s.native == nil {
		return r.runStep(ctx, job, dir, s, out)
	}
	text := newGoJSONText(out)
	res := r.runStep(ctx, job, dir, s, text)
	_ = text.Flush() // the stream's writer never fails
	return res
}

// stepTests are a step's per-test results: from its executor, else from
// JUnit reports it left (native steps), else parsed from the output it just
// wrote.
func (r *Runner) stepTests(dir string, s jobStep, res testrun.Result, stream *logStream) []*pontusv1.TestCase {
	if res.Tests == nil && s.native != nil && s.native.junit != "" {
		res.Tests = readJUnitFile(s.native.junit)
	}
	if res.Tests == nil && s.native != nil {
		res.Tests = junitTests(dir, r.cfg.JUnit)
	}
	if res.Tests == nil {
		res.Tests = testreport.Parse(stream.OutputBytes())
	}
	return res.Tests
}

// stepTimeout bounds a step: the runner's timeout, or less when the step
// (perhaps from an untrusted repository's .pontus.toml) asks for less, or
// when it has a budget. The runner's limits are ceilings.
func (r *Runner) stepTimeout(s jobStep) time.Duration {
	timeout := r.cfg.Timeout
	if s.plugin != nil && s.plugin.Timeout > 0 {
		timeout = min(s.plugin.Timeout, timeout)
	}
	if s.budget > 0 {
		timeout = min(s.budget, timeout)
	}
	return timeout
}

// worse orders statuses: canceled, timed out, error, failed, passed.
func worse(a, b testrun.Status) bool {
	rank := []testrun.Status{testrun.Passed, testrun.Failed, testrun.Errored, testrun.TimedOut, testrun.Canceled}
	return slices.Index(rank, a) > slices.Index(rank, b)
}

func (r *Runner) runStep(ctx context.Context, job *pontusv1.Job, dir string, s jobStep, out io.Writer) testrun.Result {
	switch {
	case s.native != nil:
		if s.native.detected {
			if _, err := exec.LookPath(s.native.argv[0]); err != nil {
				return errored("cannot run the tests: %s is not installed on this runner (not found on PATH)", s.native.argv[0])
			}
		}
		if s.native.junit != "" {
			if err := prepareJUnitDir(s.native.junit); err != nil {
				return errored("%v", err)
			}
		}
		env := stepEnv(os.Environ(), job, s.native.env)
		if r.user != nil {
			env = r.user.env(env, homeDir(dir))
		}
		return r.exec.Run(ctx, testrun.Spec{
			Dir: dir, Command: s.native.argv, Env: env,
			Output: out, Timeout: r.stepTimeout(s), KillGrace: r.cfg.KillGrace,
		})
	}
	timeout := r.stepTimeout(s)
	plugin := s.plugin.Plugin(dir)
	if plugin.MemoryLimitMiB == 0 || plugin.MemoryLimitMiB > r.cfg.WASMMemoryLimitMiB {
		plugin.MemoryLimitMiB = r.cfg.WASMMemoryLimitMiB
	}
	spec := testrun.Spec{
		Dir: dir, Plugin: plugin, Env: append(s.plugin.EnvList(), ciEnv(job)...),
		Output: out, Timeout: timeout,
	}
	if s.plugin.GoTests {
		return r.sandbox.RunGoTests(ctx, spec, plugins.GoCacheEnv())
	}
	return r.sandbox.Run(ctx, spec)
}

// ciEnv is the CI metadata a sandboxed step sees (its only environment
// besides what its configuration names).
func ciEnv(job *pontusv1.Job) []string {
	return stepEnv(nil, job, nil)
}
