package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/internal/buildtext"
	"github.com/pontus-ci/pontus/internal/git"
	"github.com/pontus-ci/pontus/internal/testrun"
	"github.com/pontus-ci/pontus/internal/validate"
	"github.com/pontus-ci/pontus/plugins"
	"github.com/pontus-ci/pontus/plugins/sdk"
	"github.com/pontus-ci/pontus/runnerd"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Exit statuses of pontus plugin run besides 0 (passed), 1 (tests failed)
// and 2 (bad usage).
const (
	exitPluginTimedOut = 3   // the run passed its --timeout
	exitPluginError    = 4   // out of memory, crashed, or could not start
	exitPluginCanceled = 130 // interrupted
)

const pluginUsage = `Usage:
  pontus plugin run FILE.wasm --repo DIR [flags] [-- ARGS...]
      run a plugin in the runner's sandbox against DIR's working tree, or a
      clean checkout of --commit; exit 0 passed, 1 tests failed, 2 bad usage,
      3 timed out, 4 out of memory, crashed or not started, 130 interrupted
  pontus plugin build DIR [-o FILE]
      build the Go plugin (main package) or Go test package in DIR to
      WebAssembly with the trusted toolchain (GOOS=wasip1, offline)
  pontus plugin new DIR
      write a minimal Go plugin, with a copy of the SDK, to DIR

Examples:
  pontus plugin new fixme && pontus plugin build fixme && pontus plugin run fixme.wasm --repo .

Run 'pontus plugin <subcommand> -h' for its flags.
`

// runPluginCmd is `pontus plugin`: the plugin author's loop.
func runPluginCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, pluginUsage)
		return exitError{2}
	}
	switch args[0] {
	case "run":
		return runPluginRun(ctx, args[1:], stdout, stderr)
	case "build":
		return runPluginBuild(ctx, args[1:], stdout, stderr)
	case "new":
		return runPluginNew(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stderr, pluginUsage)
		return nil
	}
	fmt.Fprintf(stderr, "pontus plugin: unknown subcommand %q\n\n%s", args[0], pluginUsage)
	return exitError{2}
}

// parseMiB parses a memory size: a whole number of MiB or GiB ("256MiB",
// "1GiB"; "M" and "G" mean the same, a bare number is MiB).
func parseMiB(s string) (int, error) {
	num := strings.TrimRightFunc(s, unicode.IsLetter)
	unit := s[len(num):]
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size: give a positive whole number of MiB or GiB, like 256MiB or 1GiB", s)
	}
	switch strings.ToLower(unit) {
	case "", "m", "mi", "mib":
	case "g", "gi", "gib":
		n *= 1024
	default:
		return 0, fmt.Errorf("%q: unknown unit %q (use MiB or GiB)", s, unit)
	}
	if n > plugins.MaxMemoryLimitMiB {
		return 0, fmt.Errorf("%s is more than a wasm32 guest can address (%d MiB)", s, plugins.MaxMemoryLimitMiB)
	}
	return n, nil
}

// runPluginRun is `pontus plugin run`. A problem that is not the run's nor
// the user's (the host does not start, a checkout fails) exits
// exitPluginError, not 1, which means that tests failed.
func runPluginRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := pluginRun(ctx, args, stdout, stderr)
	var ee exitError
	if err == nil || errors.As(err, &ee) || errors.Is(err, flag.ErrHelp) {
		return err
	}
	fmt.Fprintf(stderr, "pontus plugin run: %v\n", err)
	return exitError{exitPluginError}
}

func pluginRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const cmd = "plugin run"
	defaults := runnerd.DefaultConfig()
	fs := newFlagSet(cmd, help{
		usage: cmd + " FILE.wasm --repo DIR [flags] [-- ARGS...]",
		about: "Runs FILE.wasm with ARGS in the sandbox and with the limits a runner uses, the\n" +
			"checkout mounted read-only at /src, and prints its output and per-test results.\n" +
			"Exit status: 0 passed, 1 tests failed, 2 bad usage, 3 timed out, 4 out of\n" +
			"memory, crashed or not started, 130 interrupted.",
		examples: []string{cmd + " fixme.wasm --repo .", cmd + " fixme.wasm --repo . --commit HEAD~1 --timeout 30s -- -v"},
	}, stderr)
	repo := fs.String("repo", "", "the checkout: run against the working tree of `DIR` (required)")
	commit := fs.String("commit", "", "run against a clean checkout of `REV` of the repository in --repo instead")
	workdir := fs.String("workdir", "", "the guest's working directory: `DIR` relative to the checkout (default tests when it exists, else the root)")
	asJSON := fs.Bool("json", false, "print the result as JSON (as pontus show --json); the plugin's output goes to stderr")
	timeout := defaults.Timeout
	fs.Func("timeout", fmt.Sprintf("stop the run after `D`; compiling the module does not count (default %s, a runner's)", defaults.Timeout), func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (like 30s or 5m)", s)
		}
		if d <= 0 {
			return fmt.Errorf("must be positive, got %s", d)
		}
		timeout = d
		return nil
	})
	memory := defaults.WASMMemoryLimitMiB
	fs.Func("memory", fmt.Sprintf("cap the guest's memory at `SIZE` (like 256MiB or 1GiB; default %d MiB, a runner's)", defaults.WASMMemoryLimitMiB), func(s string) error {
		n, err := parseMiB(s)
		memory = n
		return err
	})
	env := map[string]string{}
	fs.Func("env", "pass `K=V` to the guest (repeatable); nothing else of this environment reaches it", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("%q is not KEY=VALUE", s)
		}
		if err := plugins.EnvKey(k); err != nil {
			return err
		}
		env[k] = v
		return nil
	})
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageError(stderr, cmd, "give the module to run: pontus %s FILE.wasm --repo DIR", cmd)
	}
	if *repo == "" {
		return usageError(stderr, cmd, "--repo DIR is required: the checkout the plugin tests")
	}
	module, err := filepath.Abs(pos[0])
	if err != nil {
		return usageError(stderr, cmd, "%v", err)
	}
	if fi, err := os.Stat(module); err != nil || !fi.Mode().IsRegular() {
		return usageError(stderr, cmd, "%s is not a module file", pos[0])
	}
	dir, err := filepath.Abs(*repo)
	if err != nil {
		return usageError(stderr, cmd, "%v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usageError(stderr, cmd, "--repo %s is not a directory", *repo)
	}
	name := strings.TrimSuffix(filepath.Base(module), ".wasm")
	if validate.Name("name", name) != nil {
		name = "plugin"
	}
	step := plugins.StepConfig{Name: name, Module: module, Args: pos[1:], Env: env, WorkDir: *workdir, MemoryLimitMiB: memory, Timeout: timeout}
	if err := step.Validate(); err != nil {
		return usageError(stderr, cmd, "%v", err)
	}

	if *commit != "" {
		checkout, cleanup, err := checkoutCommit(ctx, dir, *commit)
		var bad badCommitError
		if errors.As(err, &bad) {
			return usageError(stderr, cmd, "%v", err)
		}
		if err != nil {
			return err
		}
		defer cleanup()
		dir = checkout
	}

	hc := defaults.PluginHostConfig()
	hc.CacheDir = ""
	if base, err := os.UserCacheDir(); err == nil {
		// Compiled modules persist between runs, like the runner's.
		hc.CacheDir = filepath.Join(base, "pontus", "wazero")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	host, err := plugins.NewHost(ctx, hc, logger)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = host.Close(closeCtx)
	}()

	out := stdout
	if *asJSON {
		out = stderr
	}
	started := time.Now()
	res := host.Run(ctx, testrun.Spec{Dir: dir, Plugin: step.Plugin(dir), Env: step.EnvList(), Output: out, Timeout: timeout})
	took := time.Since(started)
	if *asJSON {
		err = printJSON(stdout, &pontusv1.Build{
			Status: res.Status.BuildStatus(), Reason: res.Reason, ExitCode: int32(res.ExitCode),
			Tests: res.Tests, Duration: durationpb.New(took),
		})
	} else {
		printTests(stdout, res.Tests)
		_, err = fmt.Fprintf(stdout, "\n%s\n", runSummary(res))
	}
	if err != nil {
		return err
	}
	switch res.Status {
	case testrun.Passed:
		return nil
	case testrun.Failed:
		return exitError{1}
	case testrun.TimedOut:
		return exitError{exitPluginTimedOut}
	case testrun.Canceled:
		return exitError{exitPluginCanceled}
	}
	return exitError{exitPluginError}
}

// runSummary is the last line of pontus plugin run: how the run ended, in
// plain words ("timed out after 3s").
func runSummary(res testrun.Result) string {
	failed := 0
	for _, t := range res.Tests {
		if t.Outcome == pontusv1.TestOutcome_TEST_OUTCOME_FAILED || t.Outcome == pontusv1.TestOutcome_TEST_OUTCOME_ERROR {
			failed++
		}
	}
	switch res.Status {
	case testrun.Passed:
		return "passed: " + buildtext.Plural(len(res.Tests), "test", "tests")
	case testrun.Failed:
		if failed > 0 {
			return fmt.Sprintf("failed: %d of %s failed (exit status %d)", failed, buildtext.Plural(len(res.Tests), "test", "tests"), res.ExitCode)
		}
		return fmt.Sprintf("failed: exit status %d", res.ExitCode)
	case testrun.Errored:
		return "error: " + res.Reason
	}
	return res.Reason // "timed out after 3s", "canceled"
}

// checkoutCommit makes a clean checkout of rev of the repository in dir in
// a temporary directory, leaving the repository itself untouched, and
// returns it with the function that removes it.
func checkoutCommit(ctx context.Context, dir, rev string) (string, func(), error) {
	if rev == "" || strings.HasPrefix(rev, "-") || strings.ContainsAny(rev, "\x00\n") {
		return "", nil, badCommitError{fmt.Sprintf("--commit %q is not a revision", rev)}
	}
	top, err := git.Output(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return "", nil, badCommitError{fmt.Sprintf("--commit needs --repo to be a git repository: %v", err)}
	}
	id, err := git.Output(ctx, top, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil {
		return "", nil, badCommitError{fmt.Sprintf("--commit %s: no such commit in %s", rev, top)}
	}
	tmp, err := os.MkdirTemp("", "pontus-plugin-run-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	checkout := filepath.Join(tmp, "checkout")
	// A shared clone borrows the repository's objects, so it is quick,
	// and nothing is written into the repository.
	if _, err := git.Output(ctx, tmp, "clone", "--quiet", "--shared", "--no-checkout", "--", top, checkout); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("check out %s: %w", rev, err)
	}
	if _, err := git.Output(ctx, checkout, "checkout", "--quiet", "--detach", id); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("check out %s: %w", rev, err)
	}
	return checkout, cleanup, nil
}

// badCommitError is a --commit that names no commit of the repository.
type badCommitError struct{ msg string }

func (e badCommitError) Error() string { return e.msg }

// runPluginBuild is `pontus plugin build`.
func runPluginBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const cmd = "plugin build"
	fs := newFlagSet(cmd, help{
		usage: cmd + " DIR [-o FILE]",
		about: "Builds the Go package in DIR for WebAssembly with the runner's trusted toolchain\n" +
			"(GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local, offline): a main package with go\n" +
			"build (a plugin, default FILE ./NAME.wasm), a package with tests as go test -c\n" +
			"(default FILE ./NAME.test.wasm).",
		examples: []string{cmd + " fixme", cmd + " fixme -o /tmp/fixme.wasm"},
	}, stderr)
	outFile := fs.String("o", "", "write the module to `FILE`")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(stderr, cmd, "give exactly one package directory: pontus %s DIR [-o FILE]", cmd)
	}
	dir, err := filepath.Abs(pos[0])
	if err != nil {
		return usageError(stderr, cmd, "%v", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usageError(stderr, cmd, "%s is not a directory", pos[0])
	}
	if *outFile != "" && !strings.HasSuffix(*outFile, ".wasm") {
		return usageError(stderr, cmd, "-o %s: name the module FILE.wasm", *outFile)
	}
	tests, err := plugins.GoTestPackage(dir)
	if err != nil {
		return err
	}
	out := *outFile
	switch {
	case out == "" && tests:
		out = pluginName(filepath.Base(dir)) + ".test.wasm"
	case out == "":
		out = pluginName(filepath.Base(dir)) + ".wasm"
	}
	if _, err := plugins.BuildGo(ctx, dir, out, plugins.GoCacheEnv()); err != nil {
		var be *plugins.BuildError
		if errors.As(err, &be) {
			_, _ = stderr.Write(be.Output)
			return fmt.Errorf("%s ./%s failed (exit %d)", be.Command, be.Package, be.ExitCode)
		}
		return err
	}
	kind := "plugin"
	if tests {
		kind = "Go test binary"
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "built %s %s (%.1f MiB)\n", kind, out, float64(fi.Size())/(1<<20))
	return nil
}

// sdkModule is the SDK's module path, which a new plugin requires and
// replaces with the copy written beside it.
const sdkModule = "github.com/pontus-ci/pontus/plugins/sdk"

// runPluginNew is `pontus plugin new`.
func runPluginNew(_ context.Context, args []string, stdout, stderr io.Writer) error {
	const cmd = "plugin new"
	flags := newFlagSet(cmd, help{
		usage: cmd + " DIR",
		about: "Writes a minimal Go test plugin to DIR (created if needed): go.mod, main.go, and\n" +
			"a copy of the plugin SDK in DIR/sdk that go.mod uses through a replace, so the\n" +
			"plugin builds offline with pontus plugin build DIR.",
		examples: []string{cmd + " fixme"},
	}, stderr)
	pos, err := parseInterspersed(flags, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(stderr, cmd, "give exactly one directory: pontus %s DIR", cmd)
	}
	dir, err := filepath.Abs(pos[0])
	if err != nil {
		return usageError(stderr, cmd, "%v", err)
	}
	name := pluginName(filepath.Base(dir))
	for _, f := range []string{"go.mod", "main.go", "sdk"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return usageError(stderr, cmd, "%s already exists; not overwriting it", filepath.Join(pos[0], f))
		}
	}
	goVersion, err := sdkGoVersion()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "sdk"), 0o755); err != nil {
		return err
	}
	n := 0
	err = fs.WalkDir(sdk.Source, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := sdk.Source.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		return os.WriteFile(filepath.Join(dir, "sdk", filepath.FromSlash(p)), data, 0o644)
	})
	if err != nil {
		return fmt.Errorf("write the SDK: %w", err)
	}
	gomod := fmt.Sprintf("module example.com/%s\n\ngo %s\n\nrequire %s v0.0.0\n\n// The SDK's source, written by pontus plugin new: no network needed.\nreplace %s => ./sdk\n",
		name, goVersion, sdkModule, sdkModule)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(strings.ReplaceAll(newPluginMain, "NAME", name)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: go.mod, main.go and sdk/ (the plugin SDK, %d files)\n", pos[0], n)
	fmt.Fprintf(stdout, "next: pontus plugin build %s -o %s.wasm && pontus plugin run %s.wasm --repo CHECKOUT\n", pos[0], name, name)
	return nil
}

// pluginName turns a directory name into a name usable as a module path
// element and a file name.
func pluginName(base string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(base) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-_")
	if name == "" {
		return "plugin"
	}
	return name
}

// sdkGoVersion is the go line of the SDK's go.mod, which a new plugin
// repeats: the oldest Go that builds it.
func sdkGoVersion() (string, error) {
	data, err := sdk.Source.ReadFile("go.mod")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("the SDK's go.mod has no go line")
}

// newPluginMain is the main.go of pontus plugin new; NAME is replaced.
const newPluginMain = `// Command NAME is a Pontus test plugin. Build it and run it on a checkout:
//
//	pontus plugin build . -o NAME.wasm
//	pontus plugin run NAME.wasm --repo /path/to/a/checkout
//
// In the sandbox the checkout is mounted read-only at /src. The plugin
// reports its tests on stdout in TAP 14 and exits 1 when one failed; the SDK
// in ./sdk does both. Run it natively on a directory with: go run . DIR
package main

import (
	"fmt"
	"os"

	"github.com/pontus-ci/pontus/plugins/sdk"
)

func main() {
	root := "/src" // the checkout, in the sandbox
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	sdk.Main(func(t *sdk.T) {
		t.Run("checkout is readable", func(t *sdk.T) {
			files := 0
			err := sdk.WalkFiles(root, func(path string, data []byte) {
				files++
				// Check each text file here: t.Run(path, ...) makes a
				// test per file, t.Fail records a failure.
			})
			if err != nil {
				t.Fatal(err.Error())
			}
			t.Log(fmt.Sprintf("%d text files", files))
		})
	})
}
`
