package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pontus-ci/pontus/internal/testrun"
)

// maxBuildOutput bounds the compiler output kept in a BuildError.
const maxBuildOutput = 256 << 10

// BuildError is returned by CompileGoTests when the go command ran and
// failed: the repository's code does not compile (or its go.mod needs a
// newer Go, or a module that is not in the cache). Output is what the go
// command printed, capped.
type BuildError struct {
	// Command is "go test -c" or "go build"; empty means "go test -c".
	Command  string
	Package  string
	ExitCode int
	Output   []byte
}

func (e *BuildError) Error() string {
	command := e.Command
	if command == "" {
		command = "go test -c"
	}
	return fmt.Sprintf("%s ./%s failed (exit %d): %s", command, e.Package, e.ExitCode, firstLine(string(e.Output)))
}

// CompileGoTests compiles the Go test package pkgDir (relative to
// checkoutDir, "." for the root) of an untrusted repository into the wasip1
// test binary outFile, with the runner's own (trusted) go command:
//
//	GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local GOWORK=off GOPROXY=off \
//	    go test -c -trimpath -buildvcs=false -o outFile ./pkgDir
//
// run as an argument vector in checkoutDir. -trimpath makes the binary
// independent of where the checkout lies, so the same commit tested in
// another job's worktree yields the same module and hits the compilation
// cache (without it every job would recompile to machine code, seconds per
// megabyte); file names in panics read "example.com/mod/x_test.go". GOTOOLCHAIN=local means a
// toolchain line in the repository's go.mod cannot make the go command
// fetch and run another toolchain (it fails instead); GOWORK=off ignores a
// committed go.work; -mod is left to the go command's default (readonly, or
// vendor when the module vendors), so go.mod and go.sum are never
// rewritten. Before compiling it refuses a module whose go.mod lies outside
// the checkout, a replace directive pointing at a directory outside it, and
// symbolic links leading out of it, so the build reads only the checkout,
// GOROOT and the module cache.
//
// The environment is minimal: PATH, HOME and TMPDIR from the runner, then
// GOPROXY=off and an empty GOFLAGS, then cacheEnv (e.g. "GOCACHE=...",
// "GOMODCACHE=..."; it may also set GOPROXY, GOFLAGS or GONOSUMDB if the
// runner allows downloads), then the fixed GOOS, GOARCH, GOTOOLCHAIN,
// GOWORK and CGO_ENABLED=0. A failing build returns a *BuildError with the
// compiler's output.
func CompileGoTests(ctx context.Context, checkoutDir, pkgDir, outFile string, cacheEnv []string) error {
	return compileGo(ctx, checkoutDir, pkgDir, outFile, cacheEnv, true)
}

// compileGo is CompileGoTests, or with tests false the same build of a
// main package with go build.
func compileGo(ctx context.Context, checkoutDir, pkgDir, outFile string, cacheEnv []string, tests bool) error {
	what := "compile go tests"
	if !tests {
		what = "build go plugin"
	}
	if !filepath.IsAbs(checkoutDir) {
		return fmt.Errorf("%s: checkout dir %q is not absolute", what, checkoutDir)
	}
	if !filepath.IsAbs(outFile) {
		return fmt.Errorf("%s: output file %q is not absolute", what, outFile)
	}
	if pkgDir == "" {
		pkgDir = "."
	}
	if pkgDir != "." && !localPath(pkgDir) {
		return fmt.Errorf("%s: package dir %q must be a relative path inside the checkout (no '..')", what, pkgDir)
	}
	pkgDir = filepath.ToSlash(filepath.Clean(filepath.FromSlash(pkgDir)))
	checkoutDir, err := filepath.EvalSymlinks(checkoutDir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("%s: no go command on the runner: %w", what, err)
	}
	env := goEnv(cacheEnv)
	dir := filepath.Join(checkoutDir, filepath.FromSlash(pkgDir))
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s: package dir %q is not a directory in the checkout", what, pkgDir)
	}
	if err := checkGoModule(ctx, goBin, env, checkoutDir, dir); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}

	command := []string{"test", "-c"}
	if !tests {
		command = []string{"build"}
	}
	cmd := exec.CommandContext(ctx, goBin, append(command, "-trimpath", "-buildvcs=false", "-o", outFile, "./"+pkgDir)...)
	if pkgDir == "." {
		cmd.Args[len(cmd.Args)-1] = "."
	}
	cmd.Dir = checkoutDir
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && ctx.Err() == nil {
			if len(out) > maxBuildOutput {
				out = append(out[:maxBuildOutput:maxBuildOutput], "\n[output truncated]\n"...)
			}
			return &BuildError{Command: "go " + strings.Join(command, " "), Package: pkgDir, ExitCode: exit.ExitCode(), Output: out}
		}
		return fmt.Errorf("%s: run go %s: %w", what, strings.Join(command, " "), err)
	}
	if _, err := os.Stat(outFile); err != nil {
		// go test -c writes nothing for a package without test files.
		return &BuildError{Command: "go " + strings.Join(command, " "), Package: pkgDir, ExitCode: 0, Output: append(out, "no test binary written: the package has no test files\n"...)}
	}
	return nil
}

// goEnv builds the go command's environment; later entries win.
func goEnv(cacheEnv []string) []string {
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, k := range []string{"HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, "GOPROXY=off", "GOFLAGS=")
	env = append(env, cacheEnv...)
	env = append(env,
		"GOOS=wasip1", "GOARCH=wasm",
		"GOTOOLCHAIN=local", // never download a toolchain a go.mod asks for
		"GOWORK=off",        // ignore a committed go.work
		"CGO_ENABLED=0",
	)
	return env
}

// checkGoModule makes sure the build of the package in dir stays inside
// checkoutDir: its go.mod is in the checkout (not a parent directory of
// it), local replace directives point inside it, and no symbolic link in it
// leads out.
func checkGoModule(ctx context.Context, goBin string, env []string, checkoutDir, dir string) error {
	out, err := goOutput(ctx, goBin, env, dir, "env", "GOMOD")
	if err != nil {
		return err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return errors.New("the package is not in a Go module (no go.mod in the checkout)")
	}
	if !inside(checkoutDir, gomod) {
		return errors.New("the package's go.mod is outside the checkout")
	}
	out, err = goOutput(ctx, goBin, env, dir, "mod", "edit", "-json", gomod)
	if err != nil {
		return err
	}
	var mod struct {
		Replace []struct {
			New struct{ Path, Version string }
		}
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		return fmt.Errorf("read go.mod: %w", err)
	}
	modDir := filepath.Dir(gomod)
	for _, r := range mod.Replace {
		if r.New.Version != "" {
			continue // a module version, fetched through the module cache
		}
		target := r.New.Path
		if !filepath.IsAbs(target) {
			target = filepath.Join(modDir, target)
		}
		if !inside(checkoutDir, target) {
			return fmt.Errorf("go.mod replaces a module with directory %q, outside the checkout", r.New.Path)
		}
	}
	return filepath.WalkDir(checkoutDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil // dangling: the build cannot read through it either
		}
		if !inside(checkoutDir, target) {
			rel, _ := filepath.Rel(checkoutDir, p)
			return fmt.Errorf("symbolic link %s leads outside the checkout", filepath.ToSlash(rel))
		}
		return nil
	})
}

func goOutput(ctx context.Context, goBin string, env []string, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, firstLine(stderr.String()))
	}
	return out, nil
}

// inside reports whether p is root or below it (both cleaned, absolute).
func inside(root, p string) bool {
	rel, err := filepath.Rel(root, filepath.Clean(p))
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

// GoTestArgs are the arguments Host.Run gives a Go test binary:
// verbose output in the framing test2json reads (-test.v=test2json), a
// panic if a test calls os.Exit(0), and the test binary's own timeout a
// little before the host's, so a hung test ends with the testing package's
// report of which test hung rather than a bare kill.
func GoTestArgs(timeout time.Duration) []string {
	args := []string{"-test.v=test2json", "-test.paniconexit0"}
	if timeout > 0 {
		grace := min(timeout/10, 30*time.Second)
		args = append(args, "-test.timeout="+(timeout-grace).String())
	}
	return args
}

// RunGoTests compiles the Go test package spec.Plugin.WorkDir ("" for the
// checkout root) with CompileGoTests and runs the binary in the sandbox
// with GoTestArgs followed by spec.Plugin.Args, in that package's
// directory, reporting each test. spec.Plugin.Module is ignored. A build
// failure ends Failed, like go test, with the compiler's output in
// spec.Output. The test binary is written to a temporary directory of the
// runner and removed afterwards.
func (h *Host) RunGoTests(ctx context.Context, spec testrun.Spec, cacheEnv []string) testrun.Result {
	w := &capWriter{dst: outputOrDiscard(spec.Output), limit: h.cfg.OutputLimitMiB << 20}
	if spec.Plugin == nil {
		return h.refuse(w, "not a plugin step (testrun.Spec.Plugin is nil)")
	}
	tmp, err := os.MkdirTemp("", "pontus-gotest-")
	if err != nil {
		return h.refuse(w, fmt.Sprintf("create temp dir: %v", err))
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "tests.wasm")

	pkg := spec.Plugin.WorkDir
	if pkg == "" {
		pkg = "."
	}
	compileCtx := ctx
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		compileCtx, cancel = context.WithTimeout(ctx, spec.Timeout)
		defer cancel()
	}
	started := time.Now()
	if err := CompileGoTests(compileCtx, spec.Dir, pkg, bin, cacheEnv); err != nil {
		var be *BuildError
		switch {
		case errors.As(err, &be):
			_, _ = w.Write(be.Output)
			w.marker("go test -c ./%s failed (exit %d)", be.Package, be.ExitCode)
			return testrun.Result{Status: testrun.Failed, ExitCode: be.ExitCode, Reason: "build failed: " + firstLine(string(be.Output))}
		case errors.Is(ctx.Err(), context.Canceled):
			return testrun.Result{Status: testrun.Canceled, ExitCode: -1, Reason: "canceled"}
		case compileCtx.Err() != nil:
			return testrun.Result{Status: testrun.TimedOut, ExitCode: -1, Reason: fmt.Sprintf("timed out after %s while compiling the tests", spec.Timeout)}
		}
		return h.refuse(w, err.Error())
	}
	h.logger.InfoContext(ctx, "compiled go tests", logPlugin, spec.Plugin.Name, "package", pkg, "took", time.Since(started))

	run := *spec.Plugin
	run.Module = bin
	run.WorkDir = pkg
	if run.Name == "" {
		run.Name = "go-tests"
	}
	if spec.Timeout > 0 {
		// The build counts against the step's time.
		spec.Timeout = max(time.Second, spec.Timeout-time.Since(started))
	}
	spec.Plugin = &run
	return h.Run(ctx, spec) // recognises the test binary: GoTestArgs
}

// goTestModInfo is the sentinel the go command puts before a binary's
// module information (cmd/go's modload.infoStart), which the linker stores
// in the data segment as a string: "path\t<main package path>\n...".
// A test binary's main package path ends in ".test".
const goTestModInfo = "0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6path\t"

// isGoTestModule reports whether wasm is a Go test binary (built with
// go test -c): its module information names a main package "<pkg>.test",
// and it holds the testing package's entry point, testing.MainStart, in
// its function names.
func isGoTestModule(wasm []byte) bool {
	i := bytes.Index(wasm, []byte(goTestModInfo))
	if i < 0 {
		return false
	}
	path, _, ok := bytes.Cut(wasm[i+len(goTestModInfo):min(len(wasm), i+len(goTestModInfo)+4096)], []byte("\n"))
	return ok && bytes.HasSuffix(path, []byte(".test")) && bytes.Contains(wasm, []byte("testing.MainStart"))
}

// goTestRunArgs returns the arguments of a run of a Go test binary:
// GoTestArgs(timeout), less the flags args sets itself, then args.
func goTestRunArgs(args []string, timeout time.Duration) []string {
	given := map[string]bool{}
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "-"); ok {
			name, _, _ = strings.Cut(strings.TrimPrefix(name, "-"), "=")
			given[name] = true
		}
	}
	var out []string
	for _, a := range GoTestArgs(timeout) {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if !given[name] {
			out = append(out, a)
		}
	}
	return append(out, args...)
}

// FindTestModules lists the ready-made test modules a repository ships:
// the regular files tests/*.wasm of the checkout, sorted, as absolute
// paths. Symbolic links are skipped (a link could point at any host file),
// and so is a tests directory that is itself a link. No tests directory
// means no modules, not an error.
func FindTestModules(checkoutDir string) ([]string, error) {
	fi, err := os.Lstat(filepath.Join(checkoutDir, "tests"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find test modules: %w", err)
	}
	if !fi.IsDir() {
		return nil, nil
	}
	entries, err := os.ReadDir(filepath.Join(checkoutDir, "tests"))
	if err != nil {
		return nil, fmt.Errorf("find test modules: %w", err)
	}
	var mods []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".wasm") {
			mods = append(mods, filepath.Join(checkoutDir, "tests", e.Name()))
		}
	}
	slices.Sort(mods)
	return mods, nil
}
