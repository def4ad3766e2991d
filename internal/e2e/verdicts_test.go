package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// listBuilds returns the control plane's builds, newest first.
func listBuilds(t *testing.T, url string) []*pontusv1.Build {
	t.Helper()
	code, body, err := Curl(context.Background(), url, "pontus.v1.BuildService/ListBuilds", `{"limit":100}`)
	if err != nil || code != 200 {
		t.Fatalf("ListBuilds: %d %v %s", code, err, body)
	}
	res := new(pontusv1.ListBuildsResponse)
	if err := protojson.Unmarshal([]byte(body), res); err != nil {
		t.Fatal(err)
	}
	return res.Builds
}

// cli runs a pontus client command against url and returns its output.
func cli(t *testing.T, url string, args ...string) string {
	t.Helper()
	cmd := exec.Command(Binary(t), append([]string{args[0], "--controlplane", url}, args[1:]...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pontus %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// push makes commits in a clone of repo and brings them into repo's main
// at once, as a push does: one move of the branch.
func push(t *testing.T, repo *Repo, commits []map[string]string) []string {
	t.Helper()
	clone := &Repo{Dir: filepath.Join(t.TempDir(), "clone")}
	Git(t, filepath.Dir(clone.Dir), "clone", "-q", repo.Dir, clone.Dir)
	var ids []string
	for i, files := range commits {
		ids = append(ids, clone.Commit(t, fmt.Sprintf("change %d", i+1), files))
	}
	Git(t, repo.Dir, "fetch", "-q", clone.Dir, "main")
	Git(t, repo.Dir, "merge", "-q", "--ff-only", "FETCH_HEAD")
	return ids
}

// Eight commits pushed at once to a branch watched in head mode, the third
// breaking a test: the head fails, and bisection names the third as the
// culprit with at most ⌈log₂ 8⌉ + 1 = 4 more builds.
func TestDevNamesTheCulpritOfABurst(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, map[string]string{"tests/test_x.py": pyTest("test_x", "self.assertTrue(True)")})
	d := startDev(t, repo, "--quiet")
	base := repo.Head(t)
	WaitResultStatus(t, d.results, base, 30*time.Second, passed)

	var burst []map[string]string
	for i := 1; i <= 8; i++ {
		files := map[string]string{"step.txt": fmt.Sprint(i)}
		if i == 3 {
			files["tests/test_x.py"] = pyTest("test_x", "self.fail('broken by the third commit')")
		}
		burst = append(burst, files)
	}
	ids := push(t, repo, burst)
	head, culprit := ids[7], ids[2]
	WaitResultStatus(t, d.results, head, 30*time.Second, failed)
	var b *pontusv1.Build
	WaitFor(t, "the culprit", 60*time.Second, func() (bool, string) {
		var err error
		b, err = ReadResult(d.results, head)
		if err != nil {
			return false, err.Error()
		}
		return b.Culprit != "", b.Bisection
	})
	if b.Culprit != culprit {
		t.Fatalf("culprit %s, want the third commit %s (%s)", b.Culprit, culprit, b.Bisection)
	}
	human, err := os.ReadFile(filepath.Join(d.results, head))
	if err != nil || !strings.Contains(string(human), "culprit: "+culprit+"\n") {
		t.Errorf("report lacks the culprit line: %v\n%s", err, human)
	}
	if out := cli(t, d.url, "show", head); !strings.Contains(out, "culprit: "+culprit+"\n") {
		t.Errorf("pontus show lacks the culprit line:\n%s", out)
	}
	if out := cli(t, d.url, "builds"); !strings.Contains(out, "culprit: "+culprit[:10]) || !strings.Contains(out, fmt.Sprintf("bisecting build %d", b.Id)) {
		t.Errorf("pontus builds names neither the culprit nor the bisection builds:\n%s", out)
	}
	extra := 0
	for _, lb := range listBuilds(t, d.url) {
		if lb.BisectOf == b.Id {
			extra++
		}
	}
	if extra == 0 || extra > 4 {
		t.Errorf("%d bisection builds, want 1 to 4", extra)
	}
	t.Logf("culprit found with %d extra builds (%s)", extra, b.Bisection)
}

// A revert of a breaking commit has the tree of the last passing commit:
// it takes that verdict at once, without running; pontus trigger runs it.
func TestDevRevertReusesTheVerdict(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, map[string]string{"tests/test_x.py": pyTest("test_x", "self.assertTrue(True)")})
	d := startDev(t, repo, "--quiet")
	good := repo.Head(t)
	first := WaitResultStatus(t, d.results, good, 30*time.Second, passed)
	bad := repo.Commit(t, "break", map[string]string{"tests/test_x.py": pyTest("test_x", "self.fail('broken')")})
	WaitResultStatus(t, d.results, bad, 30*time.Second, failed)

	Git(t, repo.Dir, "revert", "--no-edit", bad)
	revert := repo.Head(t)
	b := WaitResultStatus(t, d.results, revert, 30*time.Second, passed)
	want := fmt.Sprintf("reused: build %d (commit %s)", first.Id, good)
	if b.Reason != want || b.ReusedBuild != first.Id || b.Attempt != 0 || b.RunnerName != "" || len(b.Tests) != 1 {
		t.Fatalf("revert: %s attempt %d on %q (%s), want %q without a job", b.Status, b.Attempt, b.RunnerName, b.Reason, want)
	}
	human, err := os.ReadFile(filepath.Join(d.results, revert))
	if err != nil || !strings.Contains(string(human), want) {
		t.Errorf("report lacks %q: %v\n%s", want, err, human)
	}
	if out := cli(t, d.url, "show", revert); !strings.Contains(out, want) {
		t.Errorf("pontus show lacks %q:\n%s", want, out)
	}

	// pontus trigger always runs for real.
	cli(t, d.url, "trigger", revert)
	WaitFor(t, "the triggered build to run", 30*time.Second, func() (bool, string) {
		b, err := ReadResult(d.results, revert)
		if err != nil {
			return false, err.Error()
		}
		return b.Id != 0 && b.Attempt == 1 && b.Status == passed, fmt.Sprintf("build %d %s attempt %d", b.Id, b.Status, b.Attempt)
	})
}

// With [observer] reuse = false, a revert runs.
func TestDevReuseOff(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, map[string]string{"tests/test_x.py": pyTest("test_x", "self.assertTrue(True)")})
	cfg := filepath.Join(t.TempDir(), "pontus.toml")
	if err := os.WriteFile(cfg, []byte("[observer]\nreuse = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDev(t, repo, "--quiet", "--config", cfg)
	WaitResultStatus(t, d.results, repo.Head(t), 30*time.Second, passed)
	change := repo.Commit(t, "change", map[string]string{"notes.txt": "x"})
	WaitResultStatus(t, d.results, change, 30*time.Second, passed)
	Git(t, repo.Dir, "revert", "--no-edit", change)
	revert := repo.Head(t)
	b := WaitResultStatus(t, d.results, revert, 30*time.Second, passed)
	if b.ReusedBuild != 0 || b.Attempt != 1 {
		t.Fatalf("with reuse off the revert did not run: attempt %d (%s)", b.Attempt, b.Reason)
	}
}

// pontus dev killed in the middle of a culprit search and started again on
// the same data: the search resumes and names the culprit.
func TestDevCulpritSearchSurvivesRestart(t *testing.T) {
	t.Parallel()
	slow := func(body string) string { return pyTest("test_x", "import time; time.sleep(0.5)\n        "+body) }
	repo := NewRepo(t, map[string]string{"tests/test_x.py": slow("self.assertTrue(True)")})
	d := startDev(t, repo, "--quiet")
	WaitResultStatus(t, d.results, repo.Head(t), 30*time.Second, passed)
	var burst []map[string]string
	for i := 1; i <= 8; i++ {
		files := map[string]string{"step.txt": fmt.Sprint(i)}
		if i == 3 {
			files["tests/test_x.py"] = slow("self.fail('broken by the third commit')")
		}
		burst = append(burst, files)
	}
	ids := push(t, repo, burst)
	head := ids[7]
	b := WaitResultStatus(t, d.results, head, 30*time.Second, failed)
	if !strings.HasPrefix(b.Bisection, "searching") {
		t.Fatalf("the failed head does not say it is searching: %q", b.Bisection)
	}
	d.proc.Kill()

	addr := FreeAddr(t)
	d.url = "http://" + addr
	d.proc = Start(t, "pontus dev (restarted)", filepath.Dir(d.results), nil,
		"dev", "--repo", repo.Dir, "--results", d.results, "--data", d.data, "--listen", addr, "--quiet")
	WaitFor(t, "the culprit after the restart", 60*time.Second, func() (bool, string) {
		b, err := ReadResult(d.results, head)
		if err != nil {
			return false, err.Error()
		}
		return b.Culprit != "", b.Bisection
	})
	if b, _ := ReadResult(d.results, head); b.Culprit != ids[2] {
		t.Fatalf("culprit %s after the restart, want the third commit %s", b.Culprit, ids[2])
	}
}
