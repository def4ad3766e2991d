package plugins

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pontus-ci/pontus/internal/testrun"
	"github.com/pontus-ci/pontus/internal/validate"
)

// Limits the host and step configurations enforce.
const (
	// MaxMemoryLimitMiB is the most a wasm32 guest can address (4 GiB).
	MaxMemoryLimitMiB = 4096
	// MaxOutputLimitMiB bounds the per-run output cap.
	MaxOutputLimitMiB = 1024
	// MaxModuleBytes is the largest module the host will load.
	MaxModuleBytes = 256 << 20
	maxArgs        = 256
	maxEnv         = 128
)

// HostConfig configures a Host. The zero value of a field means its
// default.
type HostConfig struct {
	// CacheDir holds wazero's compilation cache: machine code compiled from
	// modules, so a restarted runner need not compile them again. It must
	// be private to the runner (it is created 0700, and a directory others
	// may write is refused) and is never mounted into guests. Empty means
	// no on-disk cache: every module is compiled once per process.
	CacheDir string `toml:"cache_dir"`
	// MemoryLimitMiB is the default cap on a guest's linear memory, for
	// plugins whose step does not set one. Default 512.
	MemoryLimitMiB int `toml:"memory_limit_mib"`
	// OutputLimitMiB caps the stdout+stderr the host keeps and forwards per
	// run; the rest is counted and dropped. Default 8.
	OutputLimitMiB int `toml:"output_limit_mib"`
	// MaxOpenFiles caps the files and directories a run may hold open at
	// once under /src and /tmp together (each is a file descriptor of the
	// runner). Further opens fail in the guest with EIO. Default 1024.
	MaxOpenFiles int `toml:"max_open_files"`
	// TmpLimitMiB caps the size of what a run keeps in its /tmp: the sum of
	// the sizes of the files it created there, less what it deleted or
	// truncated. A write, or a truncate, that would go beyond it fails in
	// the guest with EIO. Default 256.
	TmpLimitMiB int `toml:"tmp_limit_mib"`
	// TmpMaxFiles caps the files and directories a run may have in its
	// /tmp at once; creating more fails with EIO. Default 10000.
	TmpMaxFiles int `toml:"tmp_max_files"`
	// CacheLimitMiB caps the on-disk compilation cache under CacheDir: at
	// NewHost and at most hourly afterwards, the least recently used
	// compiled modules are deleted until it fits. Default 2048.
	CacheLimitMiB int `toml:"cache_limit_mib"`
	// CacheMaxAge is how long a compiled module unused stays in the
	// on-disk cache before that pruning deletes it. Default 168h (7 days).
	CacheMaxAge time.Duration `toml:"cache_max_age"`
	// Isolation is where guests run: "process" (the default on Unix
	// systems; "" means the default) in warm worker processes of the host
	// (its executable re-run as GuestCommand), one run at a time each,
	// killed at the run's deadline: guest CPU at wazero's full speed and
	// the runner isolated from the guest by the OS; or "inprocess" (the
	// default elsewhere), in the host's process, where stopping a
	// CPU-bound guest at its deadline needs wazero's close-on-context-done
	// and costs guest CPU ~7x. Workers load compiled modules from CacheDir
	// (a private temporary directory when it is empty).
	Isolation string `toml:"isolation"`
}

// Bounds of the HostConfig limits.
const (
	maxMaxOpenFiles  = 1 << 20
	maxTmpLimitMiB   = 1 << 20 // 1 TiB
	maxTmpMaxFiles   = 1 << 24
	maxCacheLimitMiB = 1 << 24 // 16 TiB
	minCacheMaxAge   = time.Hour
)

// DefaultHostConfig returns the defaults: no disk cache (at most 2 GiB and
// 7 days of it when CacheDir is set), 512 MiB of guest memory, 8 MiB of
// output, 1024 open files, 256 MiB and 10000 files in /tmp, guests run in
// worker processes (in the host's process where that is unavailable).
func DefaultHostConfig() HostConfig {
	return HostConfig{
		MemoryLimitMiB: 512,
		OutputLimitMiB: 8,
		MaxOpenFiles:   1024,
		TmpLimitMiB:    256,
		TmpMaxFiles:    10000,
		CacheLimitMiB:  2048,
		CacheMaxAge:    7 * 24 * time.Hour,
		Isolation:      defaultIsolation(),
	}
}

// withDefaults fills the zero fields from DefaultHostConfig.
func (c HostConfig) withDefaults() HostConfig {
	d := DefaultHostConfig()
	if c.MemoryLimitMiB == 0 {
		c.MemoryLimitMiB = d.MemoryLimitMiB
	}
	if c.OutputLimitMiB == 0 {
		c.OutputLimitMiB = d.OutputLimitMiB
	}
	if c.MaxOpenFiles == 0 {
		c.MaxOpenFiles = d.MaxOpenFiles
	}
	if c.TmpLimitMiB == 0 {
		c.TmpLimitMiB = d.TmpLimitMiB
	}
	if c.TmpMaxFiles == 0 {
		c.TmpMaxFiles = d.TmpMaxFiles
	}
	if c.CacheLimitMiB == 0 {
		c.CacheLimitMiB = d.CacheLimitMiB
	}
	if c.CacheMaxAge == 0 {
		c.CacheMaxAge = d.CacheMaxAge
	}
	if c.Isolation == "" {
		c.Isolation = d.Isolation
	}
	return c
}

// Validate checks the configuration; zero values are valid (defaults).
func (c HostConfig) Validate() error {
	if c.CacheDir != "" && !filepath.IsAbs(c.CacheDir) {
		return &validate.Error{Field: "cache_dir", Reason: fmt.Sprintf("must be an absolute path, got %q", c.CacheDir)}
	}
	if c.MemoryLimitMiB < 0 || c.MemoryLimitMiB > MaxMemoryLimitMiB {
		return &validate.Error{Field: "memory_limit_mib", Reason: fmt.Sprintf("must be between 1 and %d (0 for the default), got %d", MaxMemoryLimitMiB, c.MemoryLimitMiB)}
	}
	if c.OutputLimitMiB < 0 || c.OutputLimitMiB > MaxOutputLimitMiB {
		return &validate.Error{Field: "output_limit_mib", Reason: fmt.Sprintf("must be between 1 and %d (0 for the default), got %d", MaxOutputLimitMiB, c.OutputLimitMiB)}
	}
	for _, l := range []struct {
		field    string
		val, max int
	}{
		{"max_open_files", c.MaxOpenFiles, maxMaxOpenFiles},
		{"tmp_limit_mib", c.TmpLimitMiB, maxTmpLimitMiB},
		{"tmp_max_files", c.TmpMaxFiles, maxTmpMaxFiles},
		{"cache_limit_mib", c.CacheLimitMiB, maxCacheLimitMiB},
	} {
		if l.val < 0 || l.val > l.max {
			return &validate.Error{Field: l.field, Reason: fmt.Sprintf("must be between 1 and %d (0 for the default), got %d", l.max, l.val)}
		}
	}
	switch c.Isolation {
	case "", IsolationInProcess:
	case IsolationProcess:
		if !processIsolation {
			return &validate.Error{Field: "isolation", Reason: fmt.Sprintf("%q needs a Unix system", c.Isolation)}
		}
	default:
		return &validate.Error{Field: "isolation", Reason: fmt.Sprintf("must be %q or %q, got %q", IsolationProcess, IsolationInProcess, c.Isolation)}
	}
	if c.CacheMaxAge != 0 && c.CacheMaxAge < minCacheMaxAge {
		return &validate.Error{Field: "cache_max_age", Reason: fmt.Sprintf("must be at least %s (0 for the default, 168h), got %s", minCacheMaxAge, c.CacheMaxAge)}
	}
	return nil
}

// StepConfig is one plugin step as the runner reads it from pontus.toml
// (runner configuration: Module is an absolute path on the runner) or from a
// repository's .pontus.toml (repository configuration: Module is a path
// inside the checkout).
//
//	[[runner.plugins]]
//	name = "secrets"
//	module = "/opt/pontus/plugins/secrets.wasm"
//	args = ["-skip-dir", "testdata"]
//	env = { LOG_LEVEL = "debug" }
//	timeout = "2m"
//
//	[[runner.plugins]]
//	name = "unit tests in the sandbox"
//	go_tests = true
//	workdir = "tests"
type StepConfig struct {
	// Name labels the step in logs and results.
	Name string `toml:"name"`
	// Module is the .wasm file to run. Empty when GoTests is set.
	Module string `toml:"module"`
	// Args are passed to the module after argv[0].
	Args []string `toml:"args"`
	// Env is the guest's environment, besides what the host sets (PWD,
	// HOME, TMPDIR, GOMEMLIMIT). Keys are [A-Z_][A-Z0-9_]*.
	Env map[string]string `toml:"env"`
	// WorkDir is the guest working directory relative to the checkout
	// (mounted at /src). Default: "tests" when it exists, else the root.
	// With GoTests it is also the Go package compiled.
	WorkDir string `toml:"workdir"`
	// MemoryLimitMiB caps guest memory; 0 means the host's default.
	MemoryLimitMiB int `toml:"memory_limit_mib"`
	// Timeout bounds the step; 0 means the job's timeout.
	Timeout time.Duration `toml:"timeout"`
	// GoTests compiles the Go test package in WorkDir with the runner's
	// trusted toolchain (GOOS=wasip1) and runs the test binary in the
	// sandbox. See CompileGoTests and Host.RunGoTests.
	GoTests bool `toml:"go_tests"`
}

// Validate checks a step from the runner's own configuration, where Module
// must be an absolute path on the runner.
func (c StepConfig) Validate() error {
	if err := c.validateCommon(); err != nil {
		return err
	}
	if !c.GoTests && !filepath.IsAbs(c.Module) {
		return &validate.Error{Field: "module", Reason: fmt.Sprintf("must be an absolute path in the runner configuration, got %q", c.Module)}
	}
	return nil
}

// ValidateInRepo checks a step from a repository's .pontus.toml, where
// Module must be a relative path inside the checkout (no "..", not
// absolute).
func (c StepConfig) ValidateInRepo() error {
	if err := c.validateCommon(); err != nil {
		return err
	}
	if !c.GoTests && !localPath(c.Module) {
		return &validate.Error{Field: "module", Reason: fmt.Sprintf("must be a relative path inside the repository (no '..'), got %q", c.Module)}
	}
	return nil
}

func (c StepConfig) validateCommon() error {
	if err := validate.Name("name", c.Name); err != nil {
		return err
	}
	switch {
	case c.GoTests && c.Module != "":
		return &validate.Error{Field: "module", Reason: "must be empty when go_tests is set (the test binary is compiled from workdir)"}
	case !c.GoTests && c.Module == "":
		return &validate.Error{Field: "module", Reason: "is required (or set go_tests)"}
	case !c.GoTests && !strings.HasSuffix(c.Module, ".wasm"):
		return &validate.Error{Field: "module", Reason: fmt.Sprintf("must name a .wasm file, got %q", c.Module)}
	}
	if len(c.Args) > maxArgs {
		return &validate.Error{Field: "args", Reason: fmt.Sprintf("at most %d arguments, got %d", maxArgs, len(c.Args))}
	}
	for i, a := range c.Args {
		if !utf8.ValidString(a) || strings.ContainsRune(a, 0) {
			return &validate.Error{Field: fmt.Sprintf("args[%d]", i), Reason: "must be valid UTF-8 without NUL bytes"}
		}
	}
	if len(c.Env) > maxEnv {
		return &validate.Error{Field: "env", Reason: fmt.Sprintf("at most %d variables, got %d", maxEnv, len(c.Env))}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		if err := EnvKey(k); err != nil {
			return &validate.Error{Field: "env." + k, Reason: err.Error()}
		}
		if v := c.Env[k]; !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return &validate.Error{Field: "env." + k, Reason: "value must be valid UTF-8 without NUL bytes"}
		}
	}
	if c.WorkDir != "" && !localPath(c.WorkDir) {
		return &validate.Error{Field: "workdir", Reason: fmt.Sprintf("must be a relative path inside the repository (no '..'), got %q", c.WorkDir)}
	}
	if c.MemoryLimitMiB < 0 || c.MemoryLimitMiB > MaxMemoryLimitMiB {
		return &validate.Error{Field: "memory_limit_mib", Reason: fmt.Sprintf("must be between 1 and %d (0 for the host's default), got %d", MaxMemoryLimitMiB, c.MemoryLimitMiB)}
	}
	if c.Timeout < 0 {
		return &validate.Error{Field: "timeout", Reason: fmt.Sprintf("must not be negative, got %s", c.Timeout)}
	}
	return nil
}

// Plugin turns the step into the testrun.Plugin the runner passes to
// Host.Run. A repository-relative Module is resolved against checkoutDir
// (the host then reads it through an os.Root, so a symbolic link in the
// repository cannot make it load a host file). For a GoTests step, Module
// is left empty: compile the tests with CompileGoTests (or use
// Host.RunGoTests, which does both).
func (c StepConfig) Plugin(checkoutDir string) *testrun.Plugin {
	module := c.Module
	if module != "" && !filepath.IsAbs(module) {
		module = filepath.Join(checkoutDir, filepath.FromSlash(module))
	}
	return &testrun.Plugin{
		Name:           c.Name,
		Module:         module,
		Args:           slices.Clone(c.Args),
		WorkDir:        c.WorkDir,
		MemoryLimitMiB: c.MemoryLimitMiB,
	}
}

// EnvList returns Env as sorted KEY=value entries, for testrun.Spec.Env.
func (c StepConfig) EnvList() []string {
	env := make([]string, 0, len(c.Env))
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		env = append(env, k+"="+c.Env[k])
	}
	return env
}

// EnvKey checks the name of a variable a plugin may receive: it matches
// [A-Z_][A-Z0-9_]*, is not one the host sets (PWD, HOME, TMPDIR), and does
// not look like a Pontus credential (a PONTUS_ name containing TOKEN,
// SECRET, PASSWORD, KEY, CREDENTIAL or AUTH).
func EnvKey(k string) error {
	if k == "" {
		return fmt.Errorf("variable name is empty")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return fmt.Errorf("variable name %q must match [A-Z_][A-Z0-9_]*", k)
		}
	}
	if k == "PWD" || k == "HOME" || k == "TMPDIR" {
		return fmt.Errorf("%s is set by the plugin host", k)
	}
	if credentialName(k) {
		return fmt.Errorf("%s looks like a Pontus credential and is never passed to plugins", k)
	}
	return nil
}

// credentialName reports whether k names one of Pontus's own secrets.
func credentialName(k string) bool {
	if !strings.HasPrefix(k, "PONTUS_") {
		return false
	}
	for _, w := range []string{"TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// localPath reports whether p is a non-empty relative slash path that stays
// inside its root.
func localPath(p string) bool {
	return p != "" && !strings.Contains(p, `\`) && filepath.IsLocal(filepath.FromSlash(p)) && !strings.HasPrefix(p, "/")
}
