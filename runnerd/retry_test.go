package runnerd

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const (
	outcomeFlaky  = pontusv1.TestOutcome_TEST_OUTCOME_FLAKY
	outcomeFailed = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
	outcomePassed = pontusv1.TestOutcome_TEST_OUTCOME_PASSED
)

// flakyUnittest fails the first time it runs and passes after: it leaves a
// marker file in dir, outside the checkout (each run has a fresh checkout).
func flakyUnittest(dir string) string {
	return fmt.Sprintf(`import os, unittest

MARKER = %q

class TestFlaky(unittest.TestCase):
    def test_flaky(self):
        if not os.path.exists(MARKER):
            open(MARKER, "w").close()
            self.fail("first run fails")

    def test_ok(self):
        pass
`, filepath.Join(dir, "flaky-marker"))
}

const alwaysFailing = `import unittest

class TestBroken(unittest.TestCase):
    def test_broken(self):
        self.assertEqual(1, 2)
`

// findTest returns the test case whose name contains sub.
func findTest(t testing.TB, req *pontusv1.CompleteJobRequest, sub string) *pontusv1.TestCase {
	t.Helper()
	for _, tc := range req.GetTests() {
		if strings.Contains(tc.GetName(), sub) {
			return tc
		}
	}
	t.Fatalf("no test %q among %v", sub, req.GetTests())
	return nil
}

func enqueueRetries(fake *fakeCP, repo *testRepo, commit string, retries int32) jobKey {
	return fake.enqueueJob(&pontusv1.Job{Repo: repo.dir, CloneUrl: repo.dir, Branch: "main", Commit: commit,
		Settings: &pontusv1.BuildSettings{Retries: retries}})
}

// With retries, a unittest that fails once and then passes alone is FLAKY
// and the build passes; a test that fails every time stays FAILED after
// 1 + retries runs and fails the build; without retries nothing is re-run.
func TestRetryUnittest(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	startRunner(t, testConfig(t, fake))
	repo := newRepo(t)

	marker := openDir(t)
	c := repo.commit(map[string]string{"tests/test_flaky.py": flakyUnittest(marker)})
	req, log := fake.waitDone(enqueueRetries(fake, repo, c, 2))
	wantStatus(t, req, log, passed)
	if tc := findTest(t, req, "test_flaky"); tc.GetOutcome() != outcomeFlaky || tc.GetRuns() != 2 {
		t.Errorf("test_flaky %v runs %d, want FLAKY after 2 runs; log:\n%s", tc.GetOutcome(), tc.GetRuns(), log)
	}
	if tc := findTest(t, req, "test_ok"); tc.GetOutcome() != outcomePassed {
		t.Errorf("test_ok %v", tc.GetOutcome())
	}
	for _, s := range []string{
		"[pontus: retrying test_flaky (test_flaky.TestFlaky.test_flaky) (1 of 2)]",
		"-m unittest -v test_flaky.TestFlaky.test_flaky",
		"FLAKY]",
	} {
		if !strings.Contains(log, s) && !strings.Contains(log, strings.ReplaceAll(s, "-m unittest -v ", "")) {
			t.Errorf("log lacks %q:\n%s", s, log)
		}
	}
	if strings.Contains(log, "(2 of 2)") {
		t.Errorf("a test that passed on its first retry was retried again; log:\n%s", log)
	}

	marker = openDir(t)
	c = repo.commit(map[string]string{"tests/test_flaky.py": flakyUnittest(marker), "tests/test_broken.py": alwaysFailing})
	req, log = fake.waitDone(enqueueRetries(fake, repo, c, 2))
	wantStatus(t, req, log, failed)
	if tc := findTest(t, req, "test_broken"); tc.GetOutcome() != outcomeFailed || tc.GetRuns() != 3 {
		t.Errorf("test_broken %v runs %d, want FAILED after 3 runs; log:\n%s", tc.GetOutcome(), tc.GetRuns(), log)
	}
	if tc := findTest(t, req, "test_flaky"); tc.GetOutcome() != outcomeFlaky {
		t.Errorf("test_flaky %v, want FLAKY", tc.GetOutcome())
	}
	if !strings.Contains(log, "(2 of 2)]") || !strings.Contains(log, "failed all 3 runs") {
		t.Errorf("log:\n%s", log)
	}

	marker = openDir(t)
	c = repo.commit(map[string]string{"tests/test_flaky.py": flakyUnittest(marker), "tests/test_broken.py": ""})
	req, log = fake.waitDone(enqueueRetries(fake, repo, c, 0))
	wantStatus(t, req, log, failed)
	if tc := findTest(t, req, "test_flaky"); tc.GetOutcome() != outcomeFailed || tc.GetRuns() != 1 {
		t.Errorf("test_flaky %v runs %d without retries", tc.GetOutcome(), tc.GetRuns())
	}
	if strings.Contains(log, "retrying") {
		t.Errorf("retried without retries; log:\n%s", log)
	}
}

// A Go subtest that fails once is re-run alone (go test -run '^TestX$/^sub$'
// in its package); it and its parent are FLAKY and the build passes.
func TestRetryGoSubtest(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go on PATH")
	}
	fake := newFakeCP(t)
	fake.start()
	startRunner(t, goStepConfig(t, fake))
	repo := newRepo(t)
	marker := filepath.Join(openDir(t), "marker")
	c := repo.commit(map[string]string{
		"go.mod": "module example.com/demo\n\ngo 1.22\n",
		"tests/flaky_test.go": fmt.Sprintf(`package tests

import (
	"os"
	"testing"
)

func TestFlaky(t *testing.T) {
	t.Run("first try", func(t *testing.T) {
		if _, err := os.Stat(%q); err != nil {
			os.WriteFile(%[1]q, nil, 0o666)
			t.Fatal("first run fails")
		}
	})
	t.Run("steady", func(t *testing.T) {})
}

func TestSteady(t *testing.T) {}
`, marker),
	})
	req, log := fake.waitDone(enqueueRetries(fake, repo, c, 1))
	wantStatus(t, req, log, passed)
	if !strings.Contains(log, "[pontus: retrying TestFlaky/first_try (1 of 1)]") {
		t.Errorf("log:\n%s", log)
	}
	for _, name := range []string{"TestFlaky/first_try", "TestFlaky"} {
		var tc *pontusv1.TestCase
		for _, c := range req.GetTests() {
			if c.GetName() == name {
				tc = c
			}
		}
		if tc == nil || tc.GetOutcome() != outcomeFlaky || tc.GetRuns() != 2 {
			t.Errorf("%s: %v, want FLAKY after 2 runs; log:\n%s", name, tc, log)
		}
	}
	if tc := findTest(t, req, "TestSteady"); tc.GetOutcome() != outcomePassed || tc.GetRuns() != 1 {
		t.Errorf("TestSteady %v runs %d", tc.GetOutcome(), tc.GetRuns())
	}
}

// A test command whose output names no tests is re-run whole; when it then
// passes the build passes, and the step is listed as FLAKY.
func TestRetryWholeStep(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	cfg := testConfig(t, fake)
	marker := filepath.Join(openDir(t), "marker")
	cfg.TestCommand = fmt.Sprintf("if [ -e %s ]; then echo fine; else touch %[1]s; echo broken; exit 1; fi", marker)
	startRunner(t, cfg)
	repo := newRepo(t)
	c := repo.commit(map[string]string{"README": "x\n"})
	req, log := fake.waitDone(enqueueRetries(fake, repo, c, 3))
	wantStatus(t, req, log, passed)
	if len(req.GetTests()) != 1 || req.GetTests()[0].GetOutcome() != outcomeFlaky || req.GetTests()[0].GetRuns() != 2 {
		t.Errorf("tests %v; log:\n%s", req.GetTests(), log)
	}
	if !strings.Contains(log, "[pontus: retrying step tests (1 of 3)]") || strings.Contains(log, "(2 of 3)") {
		t.Errorf("log:\n%s", log)
	}
}

func TestRerunCommands(t *testing.T) {
	t.Parallel()
	goStep := step{argv: []string{"go", "test", "-json", "-run", "X", "./tests/..."}}
	unit := step{argv: []string{"python3", "-m", "unittest", "discover", "-s", "tests", "-v"}}
	for _, c := range []struct {
		st   step
		tc   *pontusv1.TestCase
		want string // "" when it cannot run alone
	}{
		{goStep, &pontusv1.TestCase{Name: "TestX", Suite: "example.com/m/tests"}, "go test -json -count=1 -run ^TestX$ example.com/m/tests"},
		{step{argv: []string{"go", "test", "-timeout", "5m", "-v", "./..."}}, &pontusv1.TestCase{Name: "TestX"}, "go test -timeout 5m -v -count=1 -run ^TestX$ ./..."},
		{goStep, &pontusv1.TestCase{Name: "TestX/a.b/c"}, `go test -json -count=1 -run ^TestX$/^a\.b$/^c$ ./tests/...`},
		{goStep, &pontusv1.TestCase{Name: "example.com/m/tests", Suite: "example.com/m/tests"}, ""},
		{unit, &pontusv1.TestCase{Name: "test_x (m.C.test_x)"}, "python3 -m unittest -v m.C.test_x"},
		{unit, &pontusv1.TestCase{Name: "test_x (m.C)"}, "python3 -m unittest -v m.C.test_x"},
		{unit, &pontusv1.TestCase{Name: "test_x (m.C.test_x) (i=2)"}, "python3 -m unittest -v m.C.test_x"},
		{unit, &pontusv1.TestCase{Name: "Doctest: m.f"}, ""},
		// A shard's modules of tests/ (shard.go; tests/ is on its PYTHONPATH).
		{step{argv: []string{"python3", "-m", "unittest", "-v", "test_a", "test_b"}}, &pontusv1.TestCase{Name: "test_x (test_a.C.test_x)"},
			"python3 -m unittest -v test_a.C.test_x"},
		{step{argv: []string{"go", "test", "-v", "-run", "^(TestA|TestB)$", "example.com/m/tests"}}, &pontusv1.TestCase{Name: "TestB", Suite: "example.com/m/tests"},
			"go test -v -count=1 -run ^TestB$ example.com/m/tests"},
		{step{argv: []string{"python3", "-m", "pytest", "-v", "--junitxml=/x.xml", "tests"}},
			&pontusv1.TestCase{Name: "tests/test_a.py::test_x[1-2]"}, "python3 -m pytest -v --junitxml=/x.xml tests/test_a.py::test_x[1-2]"},
		{step{argv: []string{"sh", "-c", "make test"}}, &pontusv1.TestCase{Name: "TestX"}, ""},
	} {
		st, ok := rerunStep(t.TempDir(), c.st, c.tc)
		got := ""
		if ok {
			got = strings.Join(st.argv, " ")
		}
		if got != c.want {
			t.Errorf("%v %q: got %q, want %q", c.st.argv, c.tc.GetName(), got, c.want)
		}
	}
}

// A pytest test (parametrized, in a class) that fails once is re-run alone by
// its node id; it is FLAKY and the build passes.
func TestRetryPytest(t *testing.T) {
	t.Parallel()
	findPytest(t)
	fake := newFakeCP(t)
	fake.start()
	startRunner(t, testConfig(t, fake))
	repo := newRepo(t)
	marker := filepath.Join(openDir(t), "marker")
	c := repo.commit(map[string]string{"tests/test_p.py": fmt.Sprintf(`import os, pytest

class TestGroup:
    @pytest.mark.parametrize("n", [1, 2])
    def test_flaky(self, n):
        if n == 2 and not os.path.exists(%q):
            open(%[1]q, "w").close()
            assert False, "first run fails"

def test_steady():
    pass
`, marker)})
	req, log := fake.waitDone(enqueueRetries(fake, repo, c, 1))
	wantStatus(t, req, log, passed)
	if tc := findTest(t, req, "test_flaky[2]"); tc.GetOutcome() != outcomeFlaky || tc.GetRuns() != 2 {
		t.Errorf("test_flaky[2] %v runs %d; log:\n%s", tc.GetOutcome(), tc.GetRuns(), log)
	}
	if !strings.Contains(log, "tests/test_p.py::TestGroup::test_flaky[2]") {
		t.Errorf("not re-run by node id; log:\n%s", log)
	}
}

// A step and its retries share the step's timeout: a retry that runs past
// what is left of it ends the build TIMED_OUT.
func TestRetryRespectsTimeout(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	cfg := testConfig(t, fake)
	cfg.Timeout = 2 * time.Second
	marker := filepath.Join(openDir(t), "marker")
	cfg.TestCommand = fmt.Sprintf("if [ -e %s ]; then sleep 30; else touch %[1]s; exit 1; fi", marker)
	startRunner(t, cfg)
	repo := newRepo(t)
	c := repo.commit(map[string]string{"README": "x\n"})
	req, log := fake.waitDone(enqueueRetries(fake, repo, c, 2))
	wantStatus(t, req, log, timedOut)
	if !strings.Contains(req.GetReason(), "while retrying step tests") || strings.Contains(log, "(2 of 2)") {
		t.Errorf("reason %q; log:\n%s", req.GetReason(), log)
	}
}

// In a shard of a Python suite, a failed test is re-run alone with the
// shard's own program (tests/ on the path) and turns FLAKY.
func TestRetryInShard(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	startRunner(t, testConfig(t, fake))
	repo := newRepo(t)
	c := repo.commit(map[string]string{
		"tests/test_flaky.py": flakyUnittest(openDir(t)),
		"tests/test_other.py": passingTest,
	})
	var flaky *pontusv1.TestCase
	for i := range 2 {
		req, log := fake.waitDone(fake.enqueueJob(&pontusv1.Job{Repo: repo.dir, CloneUrl: repo.dir, Branch: "main", Commit: c,
			ShardIndex: int32(i), ShardCount: 2, Settings: &pontusv1.BuildSettings{Retries: 1}}))
		wantStatus(t, req, log, passed)
		for _, tc := range req.GetTests() {
			if strings.HasPrefix(tc.GetName(), "test_flaky (") {
				flaky = tc
				if !strings.Contains(log, "[pontus: retrying test_flaky (test_flaky.TestFlaky.test_flaky) (1 of 1)]") {
					t.Errorf("log:\n%s", log)
				}
			}
		}
	}
	if flaky == nil || flaky.GetOutcome() != outcomeFlaky || flaky.GetRuns() != 2 {
		t.Errorf("test_flaky in its shard: %v", flaky)
	}
}
