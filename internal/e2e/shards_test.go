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

// slowSuite is n Python test modules whose one test sleeps for secs seconds.
func slowSuite(n int, secs float64) map[string]string {
	files := map[string]string{}
	for i := range n {
		m := fmt.Sprintf("test_slow%d", i)
		files["tests/"+m+".py"] = fmt.Sprintf("import time\nimport unittest\n\n\nclass Slow(unittest.TestCase):\n    def test_sleep(self):\n        time.sleep(%g)\n", secs)
	}
	return files
}

// startNamedRunner starts a runner with its own name and capacity.
func (c *cluster) startNamedRunner(t *testing.T, name string, capacity int) *Proc {
	t.Helper()
	cfg := filepath.Join(c.dir, "runner-"+name+".toml")
	body := fmt.Sprintf("[runner]\ncontrolplane = %q\nworkdir = %q\nname = %q\ncapacity = %d\n",
		c.url, filepath.Join(c.dir, "runner-"+name), name, capacity)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	p := Start(t, "runner "+name, c.dir, nil, "runnerd", "--config", cfg)
	c.runners = append(c.runners, p)
	return p
}

// reportSharded reports the repository's head as the observer would, with
// settings.shards = shards.
func (c *cluster) reportSharded(t *testing.T, commit string, shards int32) *pontusv1.Build {
	t.Helper()
	hc, err := dial.HTTPClient(dial.Config{URL: c.url})
	if err != nil {
		t.Fatal(err)
	}
	res, err := pontusv1connect.NewObserverServiceClient(hc, c.url).ReportCommits(context.Background(),
		&pontusv1.ReportCommitsRequest{Repo: c.repo.Dir, Branch: "main", Commits: []string{commit},
			Settings: &pontusv1.BuildSettings{Shards: shards}})
	if err != nil {
		t.Fatalf("ReportCommits: %v", err)
	}
	return res.Builds[0]
}

func (c *cluster) getBuild(t *testing.T, id int64) *pontusv1.Build {
	t.Helper()
	res, err := c.buildClient(t).GetBuild(context.Background(), &pontusv1.GetBuildRequest{BuildId: id})
	if err != nil {
		t.Fatalf("GetBuild: %v", err)
	}
	return res.Build
}

func shardStates(b *pontusv1.Build) string {
	var s []string
	for _, sh := range b.Shards {
		s = append(s, fmt.Sprintf("%d:%s@%d", sh.Index, sh.Status, sh.Attempt))
	}
	return b.Status.String() + " [" + strings.Join(s, " ") + "]"
}

// Eight one-second tests, shards = 4, two runners of capacity 2: one build
// with eight results, its four shards run at the same time.
func TestShardedBuildOnFourSlots(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, slowSuite(8, 1))
	c := newCluster(t, repo, "head", "")
	c.startCP(t)
	c.startNamedRunner(t, "a", 2)
	c.startNamedRunner(t, "b", 2)
	b := c.reportSharded(t, repo.Head(t), 4)
	if len(b.Shards) != 4 {
		t.Fatalf("reported build has %d shards", len(b.Shards))
	}
	res := WaitResult(t, c.results, repo.Head(t), 60*time.Second)
	if res.Status != passed || len(res.Tests) != 8 || len(res.Shards) != 4 {
		t.Fatalf("sharded build: %s, %d tests, %d shards", res.Status, len(res.Tests), len(res.Shards))
	}
	// The four shards ran at once: each started before any ended, on both runners.
	var lastStart, firstEnd time.Time
	runners := map[string]bool{}
	for _, s := range res.Shards {
		if s.Status != passed || s.Attempt != 1 || s.TestCount != 2 {
			t.Fatalf("shard %d: %s attempt %d, %d tests", s.Index, s.Status, s.Attempt, s.TestCount)
		}
		start, end := s.StartedAt.AsTime(), s.FinishedAt.AsTime()
		if start.After(lastStart) {
			lastStart = start
		}
		if firstEnd.IsZero() || end.Before(firstEnd) {
			firstEnd = end
		}
		runners[s.RunnerName] = true
	}
	if !lastStart.Before(firstEnd) || len(runners) != 2 {
		t.Fatalf("shards did not overlap (last start %v, first end %v) or ran on %d runners", lastStart, firstEnd, len(runners))
	}
	report, err := os.ReadFile(filepath.Join(c.results, repo.Head(t)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		if !strings.Contains(string(report), fmt.Sprintf("[pontus: shard %d of 4 ", i)) {
			t.Fatalf("report lacks shard %d's log:\n%s", i, report)
		}
	}
}

// A shard's runner SIGKILLed: only that shard runs again, elsewhere; the
// other shards keep their first attempt. A canceled sharded build stops on
// every runner.
func TestShardedBuildLosesOneShard(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, slowSuite(3, 4))
	c := newCluster(t, repo, "head", "")
	c.startCP(t)
	procs := map[string]*Proc{}
	for _, name := range []string{"a", "b", "c"} {
		procs[name] = c.startNamedRunner(t, name, 1)
	}
	b := c.reportSharded(t, repo.Head(t), 3)
	var victim *pontusv1.Shard
	WaitFor(t, "three running shards", 30*time.Second, func() (bool, string) {
		cur := c.getBuild(t, b.Id)
		for _, s := range cur.Shards {
			if s.Status != pontusv1.BuildStatus_BUILD_STATUS_RUNNING {
				return false, shardStates(cur)
			}
		}
		victim = cur.Shards[1]
		return true, ""
	})
	if err := syscall.Kill(procs[victim.RunnerName].Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.startNamedRunner(t, "d", 1)
	res := WaitResult(t, c.results, repo.Head(t), 60*time.Second)
	if res.Status != passed || len(res.Tests) != 3 {
		t.Fatalf("build: %s with %d tests (%s)", res.Status, len(res.Tests), shardStates(res))
	}
	for _, s := range res.Shards {
		want := int32(1)
		if s.Index == victim.Index {
			want = 2
		}
		if s.Attempt != want || s.Status != passed {
			t.Fatalf("shard %d: attempt %d %s, want attempt %d (killed shard %d)", s.Index, s.Attempt, s.Status, want, victim.Index)
		}
	}
	if lost := res.Shards[victim.Index].Attempts[0]; lost.RunnerName != victim.RunnerName || !strings.Contains(lost.Reason, "runner lost") {
		t.Fatalf("lost attempt: %v", lost)
	}

	// Cancel: every shard stops, the build is CANCELED.
	next := repo.Commit(t, "again", map[string]string{"x.txt": "1"})
	nb := c.reportSharded(t, next, 3)
	WaitFor(t, "a running shard", 30*time.Second, func() (bool, string) {
		cur := c.getBuild(t, nb.Id)
		return cur.Status == pontusv1.BuildStatus_BUILD_STATUS_RUNNING, shardStates(cur)
	})
	if _, err := c.buildClient(t).CancelBuild(context.Background(), &pontusv1.CancelBuildRequest{BuildId: nb.Id}); err != nil {
		t.Fatal(err)
	}
	done := WaitResultStatus(t, c.results, next, 30*time.Second, pontusv1.BuildStatus_BUILD_STATUS_CANCELED)
	for _, s := range done.Shards {
		if s.Status != pontusv1.BuildStatus_BUILD_STATUS_CANCELED {
			t.Fatalf("after cancel: %s", shardStates(done))
		}
	}
}

// The control plane SIGKILLed while three shards run and started again:
// the runners keep their shards (same attempt), and the build ends with
// every test.
func TestShardedBuildSurvivesControlPlaneRestart(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, slowSuite(3, 3))
	c := newCluster(t, repo, "head", "")
	c.startCP(t)
	for _, name := range []string{"a", "b", "c"} {
		c.startNamedRunner(t, name, 1)
	}
	b := c.reportSharded(t, repo.Head(t), 3)
	WaitFor(t, "three running shards", 30*time.Second, func() (bool, string) {
		cur := c.getBuild(t, b.Id)
		for _, s := range cur.Shards {
			if s.Status != pontusv1.BuildStatus_BUILD_STATUS_RUNNING {
				return false, shardStates(cur)
			}
		}
		return true, ""
	})
	c.cp.Kill()
	c.startCP(t)
	res := WaitResult(t, c.results, repo.Head(t), 60*time.Second)
	if res.Status != passed || len(res.Tests) != 3 {
		t.Fatalf("build: %s with %d tests (%s)", res.Status, len(res.Tests), shardStates(res))
	}
	for _, s := range res.Shards {
		if s.Attempt != 1 {
			t.Fatalf("shard %d ran %d times across the restart (%s)", s.Index, s.Attempt, shardStates(res))
		}
	}
}
