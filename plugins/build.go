package plugins

import (
	"context"
	"errors"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildGo builds the Go package in dir to the wasip1 module outFile with
// the same trusted toolchain and environment as CompileGoTests: a main
// package (a plugin) with go build, any other package with test files as a
// test binary (go test -c). The module root (the directory of dir's go.mod)
// stands for the checkout: like a runner, BuildGo refuses a go.mod replace
// or a symbolic link that leads out of it. It reports whether it built a
// test binary. A failing build returns a *BuildError with the compiler's
// output.
func BuildGo(ctx context.Context, dir, outFile string, cacheEnv []string) (tests bool, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return false, err
	}
	if outFile, err = filepath.Abs(outFile); err != nil {
		return false, err
	}
	if tests, err = GoTestPackage(dir); err != nil {
		return false, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return false, fmt.Errorf("no go command: %w", err)
	}
	out, err := goOutput(ctx, goBin, goEnv(cacheEnv), dir, "env", "GOMOD")
	if err != nil {
		return false, err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return false, fmt.Errorf("%s is not in a Go module (no go.mod)", dir)
	}
	root := filepath.Dir(gomod)
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		return false, err
	}
	return tests, compileGo(ctx, root, filepath.ToSlash(rel), outFile, cacheEnv, tests)
}

// GoTestPackage reports whether BuildGo builds the package in dir as a Go
// test binary (a package with tests) rather than as a plugin (a main
// package), and fails for a directory that is neither.
func GoTestPackage(dir string) (bool, error) {
	bc := build.Default
	bc.GOOS, bc.GOARCH, bc.CgoEnabled = "wasip1", "wasm", false
	pkg, err := bc.ImportDir(dir, 0)
	var noGo *build.NoGoError
	switch {
	case errors.As(err, &noGo):
		return false, fmt.Errorf("%s holds no Go files that build for wasip1", dir)
	case err != nil:
		return false, fmt.Errorf("read the package in %s: %w", dir, err)
	case pkg.Name == "main":
		return false, nil
	case len(pkg.TestGoFiles)+len(pkg.XTestGoFiles) > 0:
		return true, nil
	}
	return false, fmt.Errorf("package %s in %s is neither a main package (a plugin) nor a package with tests", pkg.Name, dir)
}

// GoCacheEnv is the part of the caller's environment the go command of
// CompileGoTests and BuildGo needs to find its caches and the toolchain:
// HOME, GOCACHE, GOMODCACHE, GOPATH and PATH. Nothing else passes (no
// GOFLAGS, no GOPROXY: builds are offline).
func GoCacheEnv() []string {
	var env []string
	for _, k := range []string{"HOME", "GOCACHE", "GOMODCACHE", "GOPATH", "PATH"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
