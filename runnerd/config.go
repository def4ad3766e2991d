package runnerd

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/validate"
	"github.com/pontus-ci/pontus/plugins"
)

// Config is the [runner] table of pontus.toml.
type Config struct {
	// ControlPlane is the URL of the control plane, or the URLs of its
	// replicas (a list in TOML, comma-separated on the command line): the
	// runner fails over between them.
	ControlPlane dial.URLs `toml:"controlplane"`
	// Token is the runner token, sent as a bearer token. main sets it from
	// PONTUS_RUNNER_TOKEN or TokenFile; it never comes from the TOML.
	Token string `toml:"-"`
	// TokenFile is a file holding the runner token (read by main).
	TokenFile string `toml:"token_file"`
	// CAFile is a PEM file of CA certificates to trust for an https control plane.
	CAFile string `toml:"ca_file"`
	// Workdir holds the cache clones, the job checkouts and the runner's lock.
	Workdir string `toml:"workdir"`
	// Name is the runner's human name; empty means the host name.
	Name string `toml:"name"`
	// Labels the runner carries; jobs that require labels go only to runners
	// with all of them.
	Labels []string `toml:"labels"`
	// Capacity is how many jobs the runner runs at once.
	Capacity int `toml:"capacity"`
	// TestCommand is a shell command line run with `sh -c` in the checkout.
	// Empty means detect the tests from the checkout.
	TestCommand string `toml:"test_command"`
	// Python is the interpreter that runs pytest suites. Empty: python3 on
	// PATH, else the interpreter of the pytest script on PATH, whichever
	// can import pytest.
	Python string `toml:"python"`
	// Timeout bounds a job's test step (and, separately, its checkout).
	Timeout time.Duration `toml:"timeout"`
	// KillGrace is the time between SIGTERM and SIGKILL when a job is stopped.
	KillGrace time.Duration `toml:"kill_grace"`
	// OutputLimitMiB caps a job's output; beyond it output is dropped,
	// counted, and a marker line says so.
	OutputLimitMiB int `toml:"output_limit_mib"`
	// AllowedRepositories, when not empty, are the only clone URLs the
	// runner fetches from (path.Match patterns; "/**" at the end matches
	// everything below): a stolen observer token cannot point the runner at
	// other repositories on its host or network.
	AllowedRepositories []string `toml:"allowed_repositories"`
	// JUnit are glob patterns, relative to the checkout, of JUnit XML
	// files the tests leave behind; a leading "**/" matches any depth. When
	// such files exist, their test cases are the job's per-test results.
	JUnit []string `toml:"junit"`
	// AllowRepoConfig lets a repository's own .pontus.toml choose its
	// test_command and plugin steps.
	AllowRepoConfig bool `toml:"allow_repo_config"`
	// StepUser is who native steps run as when the runner runs as root: an
	// unprivileged account, with a HOME new for each job and caches of its
	// own kept between jobs in Workdir/cache. A runner that is not root runs
	// its steps as itself.
	StepUser string `toml:"step_user"`
	// Native lets the runner run native commands (a test command, python,
	// go test). A runner with native = false runs only sandboxed
	// WebAssembly steps, so it can safely test untrusted branches.
	Native bool `toml:"native"`
	// WASM runs WebAssembly test plugins in the wazero sandbox and adds the
	// label "wasm" to the runner's labels.
	WASM bool `toml:"wasm"`
	// WASMMemoryLimitMiB caps a plugin's memory unless its step says less.
	WASMMemoryLimitMiB int `toml:"wasm_memory_limit_mib"`
	// WASMIsolation is "process" (the default: each run in a warm worker
	// process of the runner, killed at its deadline) or "inprocess"
	// (plugins run inside the runner, where stopping one at its deadline
	// makes CPU-heavy guests ~5x slower). See plugins.HostConfig.
	WASMIsolation string `toml:"wasm_isolation"`
	// SandboxGoTests runs a repository's Go tests (go.mod + tests/*_test.go)
	// compiled to WebAssembly in the sandbox instead of natively.
	SandboxGoTests bool `toml:"sandbox_go_tests"`
	// Plugins are WebAssembly steps run for every job, before the tests.
	Plugins []plugins.StepConfig `toml:"plugins"`
}

// WASMLabel is the label a runner that can run plugins carries.
const WASMLabel = "wasm"

// Defaults.
const (
	DefaultControlPlane       = "http://127.0.0.1:8888"
	DefaultWorkdir            = ".pontus/runner"
	DefaultCapacity           = 1
	DefaultTimeout            = 10 * time.Minute
	DefaultKillGrace          = 5 * time.Second
	DefaultStepUser           = "nobody"
	DefaultOutputLimitMiB     = 8
	DefaultWASMMemoryLimitMiB = 512
)

// Limits on configuration values.
const (
	maxCapacity       = 256
	maxOutputLimitMiB = 1024
)

// DefaultConfig returns the configuration a runner uses when pontus.toml says
// nothing: the control plane on loopback, one job at a time, named after the
// host.
func DefaultConfig() Config {
	return Config{
		ControlPlane:       DefaultControlPlane,
		Workdir:            DefaultWorkdir,
		Name:               hostName(),
		Capacity:           DefaultCapacity,
		Timeout:            DefaultTimeout,
		KillGrace:          DefaultKillGrace,
		OutputLimitMiB:     DefaultOutputLimitMiB,
		JUnit:              DefaultJUnit(),
		StepUser:           DefaultStepUser,
		Native:             true,
		WASM:               true,
		WASMMemoryLimitMiB: DefaultWASMMemoryLimitMiB,
		WASMIsolation:      plugins.DefaultHostConfig().Isolation,
	}
}

// DefaultJUnit returns where JUnit XML reports are looked for by default:
// the names Maven, Gradle, pytest (--junitxml) and most JUnit reporters use.
func DefaultJUnit() []string {
	return []string{"**/TEST-*.xml", "**/junit*.xml", "**/test-results/**/*.xml"}
}

func hostName() string {
	h, err := os.Hostname()
	if err != nil || validate.Name("name", h) != nil {
		return "runner"
	}
	return h
}

// Validate checks every key and names the one that is wrong.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("runner.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if err := dial.CheckURL(string(c.ControlPlane)); err != nil {
		bad("controlplane", "%v", err)
	}
	if c.Workdir == "" {
		bad("workdir", "must not be empty")
	}
	if c.Name != "" {
		if err := validate.Name("name", c.Name); err != nil {
			errs = append(errs, fmt.Errorf("runner.%w", err))
		}
	}
	if err := validate.Labels("labels", c.Labels); err != nil {
		errs = append(errs, fmt.Errorf("runner.%w", err))
	}
	if c.Capacity < 1 || c.Capacity > maxCapacity {
		bad("capacity", "must be between 1 and %d, got %d", maxCapacity, c.Capacity)
	}
	if strings.ContainsRune(c.TestCommand, 0) {
		bad("test_command", "contains a NUL byte")
	}
	if strings.ContainsAny(c.Python, "\x00\n") {
		bad("python", "contains a NUL byte or a line break")
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be positive, got %v", c.Timeout)
	}
	if c.KillGrace < 0 {
		bad("kill_grace", "must not be negative, got %v", c.KillGrace)
	}
	if c.OutputLimitMiB < 1 || c.OutputLimitMiB > maxOutputLimitMiB {
		bad("output_limit_mib", "must be between 1 and %d, got %d", maxOutputLimitMiB, c.OutputLimitMiB)
	}
	for i, p := range c.AllowedRepositories {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			bad(fmt.Sprintf("allowed_repositories[%d]", i), "%q is not a valid pattern", p)
		}
	}
	for i, p := range c.JUnit {
		if _, err := path.Match(strings.ReplaceAll(p, "**/", ""), ""); err != nil || p == "" || path.IsAbs(p) || strings.Contains(p, "..") {
			bad(fmt.Sprintf("junit[%d]", i), "%q is not a relative glob pattern", p)
		}
	}
	if c.StepUser == "" || len(c.StepUser) > 64 || strings.ContainsAny(c.StepUser, "/:\x00\n") || c.StepUser == "root" {
		bad("step_user", "must name an unprivileged user, got %q", c.StepUser)
	}
	if !c.Native && !c.WASM {
		bad("native", "a runner with native = false and wasm = false can run nothing")
	}
	if !c.WASM && (len(c.Plugins) > 0 || c.SandboxGoTests) {
		bad("wasm", "plugins and sandbox_go_tests need wasm = true")
	}
	if c.WASMMemoryLimitMiB < 1 || c.WASMMemoryLimitMiB > plugins.MaxMemoryLimitMiB {
		bad("wasm_memory_limit_mib", "must be between 1 and %d, got %d", plugins.MaxMemoryLimitMiB, c.WASMMemoryLimitMiB)
	}
	if c.WASMIsolation != plugins.IsolationInProcess && c.WASMIsolation != plugins.IsolationProcess {
		bad("wasm_isolation", "must be %q or %q, got %q", plugins.IsolationInProcess, plugins.IsolationProcess, c.WASMIsolation)
	}
	for i, p := range c.Plugins {
		if err := p.Validate(); err != nil {
			bad(fmt.Sprintf("plugins[%d]", i), "%v", err)
		}
	}
	if strings.ContainsAny(c.Token, "\r\n") {
		errs = append(errs, errors.New("runner token (PONTUS_RUNNER_TOKEN or runner.token_file): contains a line break"))
	}
	return errors.Join(errs...)
}

// PluginHostConfig is the configuration of the runner's WebAssembly host:
// its memory, output and isolation settings, with the compilation cache in
// the workdir. `pontus plugin run` starts its host from the default
// configuration's, so that a plugin tried by hand meets the limits a runner
// applies.
func (c *Config) PluginHostConfig() plugins.HostConfig {
	return plugins.HostConfig{
		CacheDir:       filepath.Join(c.Workdir, "wazero"),
		MemoryLimitMiB: c.WASMMemoryLimitMiB,
		OutputLimitMiB: c.OutputLimitMiB,
		Isolation:      c.WASMIsolation,
	}
}
