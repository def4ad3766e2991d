package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const (
	passed = pontusv1.BuildStatus_BUILD_STATUS_PASSED
	failed = pontusv1.BuildStatus_BUILD_STATUS_FAILED
)

// dev is a `pontus dev` process on a repository.
type dev struct {
	repo    *Repo
	url     string
	results string
	data    string
	proc    *Proc
}

func startDev(t *testing.T, repo *Repo, extra ...string) *dev {
	t.Helper()
	work := TempDir(t)
	d := &dev{repo: repo, results: filepath.Join(work, "results"), data: filepath.Join(work, "state")}
	addr := FreeAddr(t)
	d.url = "http://" + addr
	args := append([]string{"dev", "--repo", repo.Dir, "--results", d.results, "--data", d.data, "--listen", addr}, extra...)
	d.proc = Start(t, "pontus dev", work, nil, args...)
	return d
}

func TestDevPassingAndFailingCommits(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, map[string]string{"tests/test_pass.py": DemoFiles(t)["tests/test_pass.py"]})
	d := startDev(t, repo)

	// On first start the current head is built.
	first := repo.Head(t)
	b := WaitResult(t, d.results, first, 30*time.Second)
	if b.Status != passed || b.Attempt != 1 {
		t.Fatalf("first commit: %s attempt %d (%s)", b.Status, b.Attempt, b.Reason)
	}

	// A failing test on the next commit: FAILED, and the report names it.
	bad := repo.Commit(t, "add failing test", map[string]string{"tests/test_fail.py": DemoFiles(t)["tests/test_fail.py"]})
	b = WaitResult(t, d.results, bad, 20*time.Second)
	if b.Status != failed {
		t.Fatalf("failing commit: %s (%s)", b.Status, b.Reason)
	}
	human, err := os.ReadFile(filepath.Join(d.results, bad))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FAILED", "test_fail", "I will fail", "test_pass"} {
		if !strings.Contains(string(human), want) {
			t.Errorf("report lacks %q:\n%s", want, human)
		}
	}
	if len(b.Tests) < 2 || b.Tests[0].Outcome != pontusv1.TestOutcome_TEST_OUTCOME_FAILED {
		t.Errorf("per-test results, failures first: %v", b.Tests)
	}

	// The watched repository is untouched: no stray files in its tree.
	if out := Git(t, repo.Dir, "status", "--porcelain", "--ignored"); out != "" {
		t.Errorf("pontus dev wrote into the watched repository:\n%s", out)
	}
}

// The predecessor imported tests in a long-lived process and reported a
// stale pass after a test file changed.
func TestEditedTestFileIsNotStale(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, map[string]string{"tests/test_x.py": pyTest("test_x", "self.assertTrue(True)")})
	d := startDev(t, repo)
	WaitResultStatus(t, d.results, repo.Head(t), 30*time.Second, passed)
	c := repo.Commit(t, "break it", map[string]string{"tests/test_x.py": pyTest("test_x", "self.fail('now broken')")})
	b := WaitResult(t, d.results, c, 20*time.Second)
	if b.Status != failed {
		t.Fatalf("edited test reported %s, want FAILED", b.Status)
	}
}

func TestLargeOutputStoredWholeAndCapped(t *testing.T) {
	t.Parallel()
	// 1 MB of output: stored whole (the predecessor dropped anything over 1 KB).
	repo := NewRepo(t, map[string]string{"tests/test_big.py": pyTest("test_big",
		"import sys\n        for i in range(16384): sys.stderr.write('%063d\\n' % i)")})
	d := startDev(t, repo)
	c := repo.Head(t)
	WaitResultStatus(t, d.results, c, 30*time.Second, passed)
	human, err := os.ReadFile(filepath.Join(d.results, c))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(human), strings.Repeat("0", 58)+"16383\n") || !strings.Contains(string(human), strings.Repeat("0", 63)+"\n") {
		t.Fatalf("1 MB output not stored whole (report is %d bytes)", len(human))
	}
	if len(human) < 1<<20 {
		t.Fatalf("report %d bytes, want ≥ 1 MiB", len(human))
	}

	// Beyond the runner's cap (8 MiB by default) output is cut with a marker.
	c2 := repo.Commit(t, "flood", map[string]string{"tests/test_big.py": pyTest("test_big",
		"import sys\n        for i in range(150000): sys.stderr.write('%063d\\n' % i)")})
	WaitResultStatus(t, d.results, c2, 60*time.Second, passed)
	human, err = os.ReadFile(filepath.Join(d.results, c2))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(human), "truncated") || len(human) > 9<<20 {
		t.Fatalf("capped output: %d bytes, marker present=%v", len(human), strings.Contains(string(human), "truncated"))
	}
}

func pyTest(name, body string) string {
	return "import unittest\n\n\nclass T(unittest.TestCase):\n    def " + name + "(self):\n        " + body + "\n"
}
