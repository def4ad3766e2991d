package runnerd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/pontus-ci/pontus/internal/testreport"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// pytest support. A checkout whose tests/ is written for pytest is run with
// `python -m pytest`, which writes a JUnit XML report outside the checkout
// (in the job's home directory, which the step user owns and the runner can
// read); its test cases are the job's per-test results. Whether a suite is
// written for pytest is decided by reading files, never by running the
// repository's code.

// Bounds on what pytest detection reads of a checkout.
const (
	pytestMaxVisited = 5000      // entries of tests/ looked at
	pytestMaxFiles   = 300       // Python files read
	pytestMaxRead    = 256 << 10 // bytes read of one file
)

// pytestJUnitName is the JUnit file pytest writes in the job's home.
const pytestJUnitName = "pytest-junit.xml"

// pytestInstallHint is what the reason of a build that needs pytest on a
// runner without it suggests.
const pytestInstallHint = "apt-get install python3-pytest"

// pytestTestFunc matches a test function defined at the top level of a
// module (pytest collects them; unittest does not).
var pytestTestFunc = regexp.MustCompile(`(?m)^(?:async\s+)?def\s+test\w*\s*\(`)

// pytestImport matches an import of pytest at the start of a line.
var pytestImport = regexp.MustCompile(`(?m)^\s*(?:import\s+pytest\b|from\s+pytest\b|from\s+_pytest\b)`)

// pytestWhy returns why the checkout at dir is a pytest suite ("conftest.py
// found"), or "" when it is not (plain unittest, or no Python tests). Files
// are opened inside the checkout without following symlinks or blocking on
// FIFOs: the checkout belongs to the step user.
func pytestWhy(dir string) string {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return ""
	}
	defer root.Close()
	if fi, err := root.Lstat("tests"); err != nil || !fi.IsDir() {
		return ""
	}
	why, anyPy := "", false
	visited, files := 0, 0
	_ = fs.WalkDir(root.FS(), "tests", func(p string, d fs.DirEntry, err error) error {
		visited++
		if err != nil || visited > pytestMaxVisited || files >= pytestMaxFiles {
			return fs.SkipAll
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "__pycache__" {
				return fs.SkipDir
			}
			return nil
		}
		name := d.Name()
		if !d.Type().IsRegular() || !strings.HasSuffix(name, ".py") {
			return nil
		}
		anyPy = true
		if why != "" {
			return fs.SkipAll
		}
		if name == "conftest.py" {
			why = p + " found"
			return nil
		}
		if !strings.HasPrefix(name, "test") && !strings.HasSuffix(name, "_test.py") {
			return nil
		}
		files++
		text, ok := readSmall(root, p)
		switch {
		case !ok:
		case pytestTestFunc.MatchString(text):
			why = p + " has test functions outside unittest.TestCase"
		case pytestImport.MatchString(text):
			why = p + " imports pytest"
		}
		return nil
	})
	if !anyPy {
		return ""
	}
	for _, c := range []struct{ file, marker, why string }{
		{"conftest.py", "", "conftest.py found"},
		{"pytest.ini", "", "pytest.ini found"},
		{"pyproject.toml", "[tool.pytest.ini_options]", "[tool.pytest.ini_options] in pyproject.toml"},
		{"setup.cfg", "[tool:pytest]", "[tool:pytest] in setup.cfg"},
		{"tox.ini", "[pytest]", "[pytest] in tox.ini"},
	} {
		text, ok := readSmall(root, c.file)
		if ok && (c.marker == "" || hasLine(text, c.marker)) {
			return c.why
		}
	}
	return why
}

// readSmall reads the start of a regular file inside root.
func readSmall(root *os.Root, name string) (string, bool) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	b, err := io.ReadAll(io.LimitReader(f, pytestMaxRead))
	if err != nil {
		return "", false
	}
	return string(b), true
}

// hasLine reports whether text has a line that is marker (blanks around it
// allowed).
func hasLine(text, marker string) bool {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, pytestMaxRead)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == marker {
			return true
		}
	}
	return false
}

// pytestStep is the step that runs a pytest suite with python, writing its
// JUnit report to junit (outside the checkout).
func pytestStep(python, junit string) step {
	return step{
		argv: []string{python, "-m", "pytest",
			"-p", "no:cacheprovider", // nothing written into the checkout
			"-v", "-rA", "--junitxml=" + junit, "tests"},
		// Unbuffered output in order; no __pycache__ in the checkout.
		env:      []string{"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"},
		detected: true,
		junit:    junit,
	}
}

// pytestPython returns an interpreter that can import pytest: the runner's
// python setting when set, else python3 on PATH, else the interpreter of
// the pytest script on PATH (its #! line: Debian's python3-pytest installs
// /usr/bin/pytest for /usr/bin/python3, which need not be the python3 first
// on PATH). An interpreter found is remembered; a miss is looked up again
// next time, so installing pytest needs no restart.
func (r *Runner) pytestPython(ctx context.Context) (string, bool) {
	r.mu.Lock()
	cached := r.pytest
	r.mu.Unlock()
	if cached != "" {
		return cached, true
	}
	var candidates []string
	if r.cfg.Python != "" {
		candidates = []string{r.cfg.Python}
	} else {
		candidates = []string{"python3"}
		for _, script := range []string{"pytest", "pytest-3"} {
			if py := scriptInterpreter(script); py != "" {
				candidates = append(candidates, py)
			}
		}
	}
	for _, py := range candidates {
		if canImportPytest(ctx, py) {
			r.mu.Lock()
			r.pytest = py
			r.mu.Unlock()
			return py, true
		}
	}
	return "", false
}

// scriptInterpreter returns the absolute interpreter named by the #! line
// of the script name found on PATH, or "".
func scriptInterpreter(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, _ := bufio.NewReader(io.LimitReader(f, 512)).ReadString('\n')
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "#!")
	if !ok {
		return ""
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || !filepath.IsAbs(fields[0]) || !strings.Contains(filepath.Base(fields[0]), "python") {
		return ""
	}
	return fields[0]
}

// canImportPytest runs `python -c "import pytest"` in the root directory
// (no repository code on its path).
func canImportPytest(ctx context.Context, python string) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", "import pytest")
	cmd.Dir = "/"
	cmd.Env = stepEnv(os.Environ(), nil, []string{"PYTHONDONTWRITEBYTECODE=1"})
	return cmd.Run() == nil
}

// pytestMissing is the reason of a build whose pytest suite this runner
// cannot run.
func (r *Runner) pytestMissing(why string) string {
	python := "python3"
	if r.cfg.Python != "" {
		python = r.cfg.Python
	}
	return fmt.Sprintf("tests/ is written for pytest (%s) but pytest is not installed on runner %s (%s cannot import it): %s",
		why, r.cfg.Name, python, pytestInstallHint)
}

// prepareJUnitDir makes the directory the step writes its JUnit report in:
// the job's home, which exists (owned by the step user) when steps run as
// another user, and is made here otherwise. A report left from an earlier
// attempt is removed.
func prepareJUnitDir(junit string) error {
	if err := os.MkdirAll(filepath.Dir(junit), 0o700); err != nil {
		return fmt.Errorf("create the directory of the JUnit report: %w", err)
	}
	if err := os.Remove(junit); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove an old JUnit report: %w", err)
	}
	return nil
}

// readJUnitFile returns the test cases of the JUnit report a step wrote at
// path, or nil. The step user owns the directory, so the file is opened
// without following a symlink or blocking on a FIFO.
func readJUnitFile(path string) []*pontusv1.TestCase {
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return nil
	}
	defer root.Close()
	f, err := root.OpenFile(filepath.Base(path), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	cases, _ := testreport.ParseJUnit(f)
	return cases
}

// pytestExitReason says what a pytest exit status other than 0 and 1
// (tests failed) means, or "".
func pytestExitReason(code int) string {
	switch code {
	case 2:
		return "pytest was interrupted (exit status 2): errors during collection, or -x/--maxfail stopped it"
	case 3:
		return "pytest had an internal error (exit status 3)"
	case 4:
		return "pytest was used wrongly (exit status 4): check its options in pytest.ini, pyproject.toml, setup.cfg or tox.ini"
	case 5:
		return "pytest collected no tests (exit status 5)"
	}
	return ""
}
