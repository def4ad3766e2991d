package testreport

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Doctests run by unittest (doctest.DocTestSuite from load_tests) print
// "module ()" or "func (module)" and then "Doctest: module.func ... ok":
// every one is a case, as many as unittest says it ran.
func TestUnittestDoctests(t *testing.T) {
	t.Parallel()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	dir := t.TempDir()
	files := map[string]string{
		"tests/mymod.py": `"""A module with doctests.

>>> 1 + 1
2
"""


def add(a, b):
    """Add.

    >>> add(1, 2)
    3
    """
    return a + b


def bad():
    """
    >>> bad()
    1
    """
    return 2


class Box:
    def size(self):
        """
        >>> Box().size()
        0
        """
        return 0
`,
		"tests/test_doc.py": `import doctest
import unittest

import mymod


def load_tests(loader, tests, ignore):
    tests.addTests(doctest.DocTestSuite(mymod))
    return tests


class T(unittest.TestCase):
    def test_x(self):
        pass
`,
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(py, "-m", "unittest", "discover", "-s", "tests", "-v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, _ := cmd.CombinedOutput()
	m := regexp.MustCompile(`(?m)^Ran (\d+) tests?`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no Ran line:\n%s", out)
	}
	ran, _ := strconv.Atoi(string(m[1]))

	cases := ParseUnittest(out)
	checkCases(t, cases)
	if len(cases) != ran {
		t.Fatalf("%d cases, unittest ran %d:\n%v\n%s", len(cases), ran, rows(cases), out)
	}
	want := map[string]pontusv1.TestOutcome{
		"mymod ()":                   pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"add (mymod)":                pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"bad (mymod)":                pontusv1.TestOutcome_TEST_OUTCOME_FAILED,
		"size (mymod.Box)":           pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"test_x (test_doc.T.test_x)": pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
	}
	for _, c := range cases {
		o, ok := want[c.GetName()]
		if !ok {
			t.Errorf("unexpected case %q", c.GetName())
			continue
		}
		if c.GetOutcome() != o {
			t.Errorf("%s: %v, want %v", c.GetName(), c.GetOutcome(), o)
		}
		delete(want, c.GetName())
	}
	for name := range want {
		t.Errorf("no case %q in %v", name, rows(cases))
	}
}
