package runnerd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func TestPytestDetection(t *testing.T) {
	t.Parallel()
	unittestCase := "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        pass\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // "" means not pytest
	}{
		{"plain unittest", map[string]string{"tests/test_a.py": unittestCase}, ""},
		{"unittest with a pytest-looking method", map[string]string{"tests/test_a.py": unittestCase + "    def test_y(self):\n        pass\n"}, ""},
		{"conftest at the top", map[string]string{"conftest.py": "", "tests/test_a.py": unittestCase}, "conftest.py found"},
		{"conftest in tests", map[string]string{"tests/conftest.py": "", "tests/test_a.py": unittestCase}, "tests/conftest.py found"},
		{"conftest deeper", map[string]string{"tests/unit/conftest.py": "", "tests/unit/test_a.py": unittestCase}, "tests/unit/conftest.py found"},
		{"pytest.ini", map[string]string{"pytest.ini": "[pytest]\n", "tests/test_a.py": unittestCase}, "pytest.ini found"},
		{"pyproject", map[string]string{"pyproject.toml": "[project]\nname = \"x\"\n\n[tool.pytest.ini_options]\naddopts = \"-q\"\n", "tests/test_a.py": unittestCase}, "[tool.pytest.ini_options] in pyproject.toml"},
		{"pyproject without pytest", map[string]string{"pyproject.toml": "[project]\nname = \"x\"\n", "tests/test_a.py": unittestCase}, ""},
		{"setup.cfg", map[string]string{"setup.cfg": "[metadata]\nname = x\n[tool:pytest]\n", "tests/test_a.py": unittestCase}, "[tool:pytest] in setup.cfg"},
		{"test functions", map[string]string{"tests/test_a.py": "def test_add():\n    assert 1 + 1 == 2\n"}, "tests/test_a.py has test functions outside unittest.TestCase"},
		{"async test functions", map[string]string{"tests/sub/test_a.py": "async def test_add():\n    pass\n"}, "tests/sub/test_a.py has test functions outside unittest.TestCase"},
		{"imports pytest", map[string]string{"tests/test_a.py": "import pytest\n\nclass TestX:\n    def test_x(self):\n        pass\n"}, "tests/test_a.py imports pytest"},
		{"markers without Python tests", map[string]string{"pytest.ini": "[pytest]\n", "tests/a_test.go": "package tests\n"}, ""},
		{"no tests directory", map[string]string{"conftest.py": "", "test_a.py": "def test_a():\n    pass\n"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := pytestWhy(writeTree(t, tc.files)); got != tc.want {
				t.Errorf("pytestWhy = %q, want %q", got, tc.want)
			}
		})
	}
}

// A symlink in the checkout does not lead detection elsewhere.
func TestPytestDetectionIgnoresSymlinks(t *testing.T) {
	t.Parallel()
	outside := writeTree(t, map[string]string{"conftest.py": "", "test_x.py": "def test_x():\n    pass\n"})
	dir := writeTree(t, map[string]string{"tests/test_a.py": "import unittest\n"})
	for _, l := range [][2]string{{filepath.Join(outside, "conftest.py"), "conftest.py"}, {filepath.Join(outside, "test_x.py"), "tests/test_x.py"}} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	if got := pytestWhy(dir); got != "" {
		t.Errorf("pytestWhy = %q through symlinks", got)
	}
}

// pytestSuite is a pytest repository: a conftest fixture, parametrized
// tests (one case fails), a skip with a reason, an xfail, an xpass, a
// failing assertion and a test class without unittest.
var pytestSuite = map[string]string{
	"tests/conftest.py": `import pytest

@pytest.fixture
def base():
    return 10
`,
	"tests/test_math.py": `import sys
import pytest

def add(a, b):
    return a + b

@pytest.mark.parametrize("a,b,want", [(1, 2, 3), (2, 2, 4), (2, 2, 5)])
def test_add(a, b, want):
    assert add(a, b) == want

def test_fixture(base):
    print("hello from pytest")
    assert base + 1 == 11

@pytest.mark.skip(reason="not on this planet")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False

@pytest.mark.xfail(reason="fixed meanwhile")
def test_xpass():
    pass

def test_fails(base):
    assert base == 11, "base is not eleven"

class TestGroup:
    def test_in_class(self):
        assert "py" in "pytest"
`,
}

// findPytest returns an interpreter that imports pytest, or skips.
func findPytest(t *testing.T) string {
	t.Helper()
	r := &Runner{}
	py, ok := r.pytestPython(t.Context())
	if !ok {
		t.Skip("pytest is not installed (apt-get install python3-pytest)")
	}
	return py
}

// pytestCounts runs pytest on dir directly and returns its own counts
// ("passed", "failed", "skipped", "xfailed", "xpassed", "error").
func pytestCounts(t *testing.T, python, dir string) map[string]int {
	t.Helper()
	cmd := exec.Command(python, "-m", "pytest", "-p", "no:cacheprovider", "tests")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, _ := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	counts := map[string]int{}
	for _, m := range regexp.MustCompile(`(\d+) (passed|failed|skipped|xfailed|xpassed|errors?)`).FindAllStringSubmatch(last, -1) {
		n, _ := strconv.Atoi(m[1])
		counts[strings.TrimSuffix(m[2], "s")] += n
	}
	if len(counts) == 0 {
		t.Fatalf("no counts in pytest's last line %q:\n%s", last, out)
	}
	return counts
}

// A pytest repository gets per-test results that agree with pytest's own
// counts, with parametrized ids, skip reasons, failure messages and
// durations; nothing pytest would cache is written into the checkout.
func TestPytestSuite(t *testing.T) {
	t.Parallel()
	python := findPytest(t)
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(pytestSuite)
	startRunner(t, testConfig(t, fake))
	req, log := fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, failed)
	if !strings.Contains(log, "-m pytest -p no:cacheprovider -v -rA --junitxml=") || !strings.Contains(log, "hello from pytest") {
		t.Errorf("log:\n%s", log)
	}

	direct := pytestCounts(t, python, repo.dir)
	got := map[pontusv1.TestOutcome]int{}
	byName := map[string]*pontusv1.TestCase{}
	for _, tc := range req.GetTests() {
		got[tc.GetOutcome()]++
		byName[tc.GetName()] = tc
	}
	want := map[pontusv1.TestOutcome]int{
		pontusv1.TestOutcome_TEST_OUTCOME_PASSED:  direct["passed"] + direct["xpassed"],
		pontusv1.TestOutcome_TEST_OUTCOME_FAILED:  direct["failed"],
		pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED: direct["skipped"] + direct["xfailed"],
		pontusv1.TestOutcome_TEST_OUTCOME_ERROR:   direct["error"],
	}
	for o, n := range want {
		if got[o] != n {
			t.Errorf("%v: %d, pytest itself says %d (%v)", o, got[o], n, direct)
		}
	}
	if len(req.GetTests()) != 9 {
		t.Errorf("%d tests, want 9: %v", len(req.GetTests()), req.GetTests())
	}
	check := func(name string, o pontusv1.TestOutcome, msg string) {
		t.Helper()
		tc := byName[name]
		if tc == nil {
			names := slices.Collect(func(yield func(string) bool) {
				for n := range byName {
					if !yield(n) {
						return
					}
				}
			})
			t.Errorf("no test %q among %q", name, names)
			return
		}
		if tc.GetOutcome() != o || !strings.Contains(tc.GetMessage(), msg) {
			t.Errorf("%s: %v %q, want %v with %q", name, tc.GetOutcome(), tc.GetMessage(), o, msg)
		}
		if tc.GetDuration() == nil {
			t.Errorf("%s: no duration", name)
		}
	}
	check("test_add[1-2-3]", pontusv1.TestOutcome_TEST_OUTCOME_PASSED, "")
	check("test_add[2-2-5]", pontusv1.TestOutcome_TEST_OUTCOME_FAILED, "assert 4 == 5")
	check("test_fixture", pontusv1.TestOutcome_TEST_OUTCOME_PASSED, "")
	check("test_skipped", pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, "not on this planet")
	check("test_xfail", pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, "expected failure: known bug")
	check("test_xpass", pontusv1.TestOutcome_TEST_OUTCOME_PASSED, "")
	check("test_fails", pontusv1.TestOutcome_TEST_OUTCOME_FAILED, "base is not eleven")
	check("test_in_class", pontusv1.TestOutcome_TEST_OUTCOME_PASSED, "")
	if tc := byName["test_in_class"]; tc != nil && !strings.Contains(tc.GetSuite(), "TestGroup") {
		t.Errorf("test_in_class: suite %q", tc.GetSuite())
	}
}

// While pytest runs, nothing lands in the checkout: no bytecode of the
// modules it imports, no JUnit report (written to the job's home); the
// cache is off (-p no:cacheprovider, checked in TestPytestSuite's log). A
// test lists the checkout from inside it.
func TestPytestWritesNothingIntoCheckout(t *testing.T) {
	t.Parallel()
	findPytest(t)
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(map[string]string{
		"tests/helper.py": "VALUE = 1\n",
		"tests/test_tree.py": `import os, pathlib
import helper

def test_tree():
    root = pathlib.Path(__file__).resolve().parent.parent
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts)
    print("TREE", found)
    assert found == ["tests", "tests/helper.py", "tests/test_tree.py"], found
    assert helper.VALUE == 1
`,
	})
	startRunner(t, testConfig(t, fake))
	req, log := fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, passed)
	if len(req.GetTests()) != 1 || req.GetTests()[0].GetName() != "test_tree" {
		t.Errorf("tests %v", req.GetTests())
	}
}

// Without pytest, a pytest suite is an ERROR that says so plainly. The
// interpreter is a real python3 started with -S, so that it cannot see
// the site-packages where pytest lives.
func TestPytestMissing(t *testing.T) {
	t.Parallel()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	wrapper := filepath.Join(t.TempDir(), "python-without-site")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+py+" -S \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if canImportPytest(context.Background(), wrapper) {
		t.Skip("pytest importable even without site-packages here")
	}
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(pytestSuite)
	cfg := testConfig(t, fake)
	cfg.Python = wrapper
	startRunner(t, cfg)
	req, log := fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, errorStatus)
	want := "tests/ is written for pytest (tests/conftest.py found) but pytest is not installed on runner test-runner"
	if !strings.Contains(req.GetReason(), want) || !strings.Contains(req.GetReason(), "apt-get install python3-pytest") {
		t.Errorf("reason %q, want it to say %q", req.GetReason(), want)
	}
}

// A pytest run that collects nothing, or cannot import a test module, says
// so in the build's reason; the module that failed is an ERROR case.
func TestPytestExitReasons(t *testing.T) {
	t.Parallel()
	findPytest(t)
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	empty := repo.commit(map[string]string{"tests/conftest.py": "# no fixtures\n", "tests/helper.py": "X = 1\n"})
	broken := repo.commit(map[string]string{"tests/test_broken.py": "import no_such_module\n\ndef test_x():\n    pass\n"})
	startRunner(t, testConfig(t, fake))
	req, log := fake.waitDone(fake.enqueue(repo.dir, empty))
	wantStatus(t, req, log, failed)
	if req.GetReason() != "pytest collected no tests (exit status 5)" {
		t.Errorf("reason %q; log:\n%s", req.GetReason(), log)
	}
	req, log = fake.waitDone(fake.enqueue(repo.dir, broken))
	wantStatus(t, req, log, failed)
	if !strings.Contains(req.GetReason(), "errors during collection") {
		t.Errorf("reason %q; log:\n%s", req.GetReason(), log)
	}
	if len(req.GetTests()) != 1 || req.GetTests()[0].GetOutcome() != pontusv1.TestOutcome_TEST_OUTCOME_ERROR ||
		!strings.Contains(req.GetTests()[0].GetMessage()+req.GetTests()[0].GetOutput(), "no_such_module") {
		t.Errorf("tests %v", req.GetTests())
	}
}
