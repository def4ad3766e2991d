package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// cluster is the three daemons started separately from one pontus.toml.
type cluster struct {
	dir, config, results, url, addr string
	repo                            *Repo
	cp, observer                    *Proc
	runners                         []*Proc
}

// newCluster writes a pontus.toml for repo. extra is appended to it.
func newCluster(t *testing.T, repo *Repo, mode, extra string) *cluster {
	t.Helper()
	c := &cluster{dir: TempDir(t), repo: repo}
	c.addr = FreeAddr(t)
	c.url = "http://" + c.addr
	c.results = filepath.Join(c.dir, "results")
	c.config = filepath.Join(c.dir, "pontus.toml")
	cfg := fmt.Sprintf(`[controlplane]
listen = %q
data_dir = %q
results_dir = %q

[runner]
controlplane = %q
workdir = %q

[observer]
controlplane = %q
repo = %q
branches = ["main"]
mode = %q
data_dir = %q
`, c.addr, filepath.Join(c.dir, "cp"), c.results, c.url, filepath.Join(c.dir, "runner"), c.url, repo.Dir, mode, filepath.Join(c.dir, "obs"))
	if err := os.WriteFile(c.config, []byte(cfg+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cluster) startCP(t *testing.T) {
	t.Helper()
	c.cp = Start(t, "controlplane", c.dir, nil, "controlplane", "--config", c.config)
	c.waitHealthy(t)
}

func (c *cluster) waitHealthy(t *testing.T) {
	t.Helper()
	WaitFor(t, "control plane health", 20*time.Second, func() (bool, string) {
		code, body, err := Curl(context.Background(), c.url, "grpc.health.v1.Health/Check", "{}")
		return err == nil && code == 200 && strings.Contains(body, "SERVING"), fmt.Sprint(code, body, err)
	})
}

func (c *cluster) startRunner(t *testing.T, name string) *Proc {
	t.Helper()
	p := Start(t, "runner "+name, c.dir, nil, "runnerd", "--config", c.config,
		"--workdir", filepath.Join(c.dir, "runner-"+name))
	c.runners = append(c.runners, p)
	return p
}

func (c *cluster) startObserver(t *testing.T) {
	t.Helper()
	c.observer = Start(t, "observer", c.dir, nil, "observerd", "--config", c.config)
}

func (c *cluster) buildClient(t *testing.T) pontusv1connect.BuildServiceClient {
	t.Helper()
	hc, err := dial.HTTPClient(dial.Config{URL: c.url})
	if err != nil {
		t.Fatal(err)
	}
	return pontusv1connect.NewBuildServiceClient(hc, c.url)
}

// builds returns every build of a commit, oldest first.
func (c *cluster) builds(t *testing.T, commit string) []*pontusv1.Build {
	t.Helper()
	res, err := c.buildClient(t).ListBuilds(context.Background(), &pontusv1.ListBuildsRequest{Limit: 1000})
	if err != nil {
		t.Fatalf("ListBuilds: %v", err)
	}
	var out []*pontusv1.Build
	for i := len(res.Builds) - 1; i >= 0; i-- {
		if res.Builds[i].Commit == commit {
			out = append(out, res.Builds[i])
		}
	}
	return out
}

func TestSeparateDaemonsFromOneConfig(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, DemoFiles(t))
	c := newCluster(t, repo, "head", "")
	c.startCP(t)
	c.startRunner(t, "a")
	c.startObserver(t)
	b := WaitResult(t, c.results, repo.Head(t), 30*time.Second)
	if b.Status != failed {
		t.Fatalf("demo repo: %s", b.Status)
	}
	fixed := repo.Commit(t, "fix", map[string]string{"tests/test_fail.py": pyTest("test_fail", "self.assertEqual(2, 2)")})
	if b := WaitResult(t, c.results, fixed, 20*time.Second); b.Status != passed {
		t.Fatalf("fixed commit: %s", b.Status)
	}
}

func TestTwoQuickCommits(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"every", "head"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			repo := NewRepo(t, map[string]string{"tests/test_ok.py": pyTest("test_ok", "pass")})
			c := newCluster(t, repo, mode, "")
			c.startCP(t)
			c.startRunner(t, "a")
			c.startObserver(t)
			WaitResult(t, c.results, repo.Head(t), 30*time.Second)
			first := repo.Commit(t, "one", map[string]string{"a.txt": "1"})
			second := repo.Commit(t, "two", map[string]string{"a.txt": "2"})
			WaitResultStatus(t, c.results, second, 20*time.Second, passed)
			if mode == "every" {
				WaitResultStatus(t, c.results, first, 20*time.Second, passed)
			}
		})
	}
}

// A runner SIGKILLed in the middle of a test: a second runner finishes the
// build; exactly one final result, the lost attempt recorded.
func TestRunnerKilledMidTest(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, map[string]string{"tests/test_slow.py": pyTest("test_slow",
		"import time, os\n        open(os.environ.get('MARK', '/dev/null'), 'a').close()\n        time.sleep(3)")})
	c := newCluster(t, repo, "head", "")
	c.startCP(t)
	first := c.startRunner(t, "first")
	c.startObserver(t)
	commit := repo.Head(t)
	client := c.buildClient(t)
	WaitFor(t, "build running on the first runner", 30*time.Second, func() (bool, string) {
		res, err := client.GetBuild(context.Background(), &pontusv1.GetBuildRequest{Commit: commit})
		if err != nil {
			return false, err.Error()
		}
		return res.Build.Status == pontusv1.BuildStatus_BUILD_STATUS_RUNNING, res.Build.Status.String()
	})
	time.Sleep(500 * time.Millisecond) // well inside the 3 s test
	killed := time.Now()
	if err := syscall.Kill(first.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Kill()
	c.startRunner(t, "second")
	b := WaitResultStatus(t, c.results, commit, 30*time.Second, passed)
	t.Logf("result from attempt %d %.1fs after the kill", b.Attempt, time.Since(killed).Seconds())
	if b.Attempt != 2 || len(b.Attempts) != 2 || !strings.Contains(b.Attempts[0].Reason, "runner lost") {
		t.Fatalf("attempt %d, attempts %v", b.Attempt, b.Attempts)
	}
	if bs := c.builds(t, commit); len(bs) != 1 {
		t.Fatalf("%d builds of the commit, want 1", len(bs))
	}
}

// The control plane SIGKILLed during a burst of commits in every mode and
// restarted: every commit gets exactly one final result.
func TestControlPlaneKilledDuringBurst(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, map[string]string{"tests/test_ok.py": pyTest("test_ok", "pass")})
	c := newCluster(t, repo, "every", "")
	c.startCP(t)
	c.startRunner(t, "a")
	c.startObserver(t)
	WaitResult(t, c.results, repo.Head(t), 30*time.Second)
	var commits []string
	for i := range 12 {
		commits = append(commits, repo.Commit(t, fmt.Sprint("burst ", i), map[string]string{"n.txt": fmt.Sprint(i)}))
		if i == 5 {
			c.cp.Kill()
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	c.startCP(t)
	for _, commit := range commits {
		WaitResultStatus(t, c.results, commit, 60*time.Second, passed)
	}
	for _, commit := range commits {
		if bs := c.builds(t, commit); len(bs) != 1 {
			t.Errorf("commit %s has %d builds, want exactly 1", commit[:10], len(bs))
		}
	}
}

// The observer killed and restarted between commits: no commit missed, none
// reported twice.
func TestObserverRestartMissesNothing(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, map[string]string{"tests/test_ok.py": pyTest("test_ok", "pass")})
	c := newCluster(t, repo, "every", "")
	c.startCP(t)
	c.startRunner(t, "a")
	c.startObserver(t)
	WaitResult(t, c.results, repo.Head(t), 30*time.Second)
	c.observer.Kill()
	var commits []string
	for i := range 4 {
		commits = append(commits, repo.Commit(t, fmt.Sprint("while down ", i), map[string]string{"n.txt": fmt.Sprint(i)}))
	}
	c.startObserver(t)
	for _, commit := range commits {
		WaitResultStatus(t, c.results, commit, 30*time.Second, passed)
	}
	c.observer.Kill()
	c.startObserver(t)
	after := repo.Commit(t, "after restart", map[string]string{"n.txt": "x"})
	WaitResultStatus(t, c.results, after, 30*time.Second, passed)
	for _, commit := range append(commits, after) {
		if bs := c.builds(t, commit); len(bs) != 1 {
			t.Errorf("commit %s has %d builds, want exactly 1", commit[:10], len(bs))
		}
	}
}

// One observer process watches several repositories (`repos`), each built
// on its own.
func TestObserverWatchesSeveralRepositories(t *testing.T) {
	t.Parallel()
	a := NewRepo(t, map[string]string{"tests/test_a.py": pyTest("test_a", "pass")})
	b := NewRepo(t, map[string]string{"tests/test_b.py": pyTest("test_b", "self.fail('b fails')")})
	c := newCluster(t, a, "head", "")
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "[observer]\n", fmt.Sprintf("[observer]\nrepos = [%q, %q]\n", a.Dir, b.Dir), 1))
	if err := os.WriteFile(c.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	c.startCP(t)
	c.startRunner(t, "a")
	c.startObserver(t)
	if r := WaitResult(t, c.results, a.Head(t), 30*time.Second); r.Status != passed || r.Repo != a.Dir {
		t.Fatalf("repo a: %s %s", r.Status, r.Repo)
	}
	if r := WaitResult(t, c.results, b.Head(t), 30*time.Second); r.Status != failed || r.Repo != b.Dir {
		t.Fatalf("repo b: %s %s", r.Status, r.Repo)
	}
	next := b.Commit(t, "fix b", map[string]string{"tests/test_b.py": pyTest("test_b", "pass")})
	if r := WaitResult(t, c.results, next, 30*time.Second); r.Status != passed {
		t.Fatalf("repo b after the fix: %s", r.Status)
	}
}
