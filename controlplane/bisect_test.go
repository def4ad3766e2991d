package controlplane

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// hexID is a commit (or tree) id made of n.
func hexID(n int) string { return fmt.Sprintf("%040x", n) }

// reportHead reports head alone, as an observer in head mode does after a
// burst of pushes: the commits it skipped since after, and head's tree.
func (cp *testCP) reportHead(t testing.TB, head, tree, after string, skipped []string, s *pontusv1.BuildSettings) *pontusv1.Build {
	t.Helper()
	res, err := cp.observer.ReportCommits(context.Background(), &pontusv1.ReportCommitsRequest{
		Repo: "/srv/repo", Branch: "main", Commits: []string{head}, Skipped: skipped, SkippedAfter: after,
		Details: []*pontusv1.CommitInfo{{Id: head, Tree: tree}}, Settings: s,
	})
	if err != nil {
		t.Fatalf("ReportCommits: %v", err)
	}
	return res.Builds[0]
}

// run takes the next job and completes it: FAILED when failing says so.
func (cp *testCP) run(t testing.TB, runner string, failing func(commit string) bool) *pontusv1.Job {
	t.Helper()
	job := cp.acquire(t, runner, 2*time.Second)
	if job == nil {
		return nil
	}
	status := pontusv1.BuildStatus_BUILD_STATUS_PASSED
	tests := []*pontusv1.TestCase{{Name: "test_a", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED}}
	if failing(job.Commit) {
		status = pontusv1.BuildStatus_BUILD_STATUS_FAILED
		tests[0].Outcome = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
	}
	if _, err := cp.runners.CompleteJob(context.Background(), &pontusv1.CompleteJobRequest{
		JobId: job.JobId, Attempt: job.Attempt, Status: status, Tests: tests}); err != nil {
		t.Fatalf("CompleteJob: %v", err)
	}
	return job
}

// bisect runs the bisection builds of failed build id until its culprit
// is named, and returns the commits they built.
func (cp *testCP) bisect(t testing.TB, runner string, id int64, failing func(string) bool) []string {
	t.Helper()
	var built []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		b := cp.build(t, id)
		if b.Culprit != "" {
			return built
		}
		if time.Now().After(deadline) {
			t.Fatalf("no culprit after %d bisection builds: %v", len(built), b)
		}
		job := cp.acquire(t, runner, 300*time.Millisecond)
		if job == nil {
			continue
		}
		if b := cp.build(t, job.JobId); b.BisectOf != id {
			t.Fatalf("build %d of %s is not marked as bisecting build %d", b.Id, b.Commit, id)
		}
		st := pontusv1.BuildStatus_BUILD_STATUS_PASSED
		if failing(job.Commit) {
			st = pontusv1.BuildStatus_BUILD_STATUS_FAILED
		}
		if _, err := cp.runners.CompleteJob(context.Background(), &pontusv1.CompleteJobRequest{
			JobId: job.JobId, Attempt: job.Attempt, Status: st}); err != nil {
			t.Fatalf("CompleteJob: %v", err)
		}
		built = append(built, job.Commit)
	}
}

// line is eight commits after a passing one (0); the third (3) breaks the
// tests, and stays broken.
func line() (base string, skipped []string, head string, failing func(string) bool) {
	for i := 1; i < 8; i++ {
		skipped = append(skipped, hexID(i))
	}
	return hexID(0), skipped, hexID(8), func(c string) bool { return c >= hexID(3) }
}

// failedHead reports the line's passing base and then its failing head
// with the seven commits between as skipped (with settings s), runs both
// (of a sharded head, its first shard), and returns the failed build.
func (cp *testCP) failedHead(t testing.TB, r string, s *pontusv1.BuildSettings) (*pontusv1.Build, func(string) bool) {
	t.Helper()
	base, skipped, head, failing := line()
	cp.reportHead(t, base, hexID(100), "", nil, nil)
	cp.run(t, r, failing)
	f := cp.reportHead(t, head, hexID(108), base, skipped, s)
	if j := cp.run(t, r, failing); s.GetShards() <= 1 && j.JobId != f.Id {
		t.Fatalf("ran build %d, want the head's %d", j.JobId, f.Id)
	}
	return f, failing
}

// waitQueuedBisection waits until the only queued build is one that
// bisects build id, and returns it.
func (cp *testCP) waitQueuedBisection(t testing.TB, id int64) *pontusv1.Build {
	t.Helper()
	var bisection *pontusv1.Build
	waitFor(t, "a bisection build", 5*time.Second, func() (bool, string) {
		res, _ := cp.builds.ListBuilds(context.Background(), &pontusv1.ListBuildsRequest{Status: statusQueued})
		if bs := res.GetBuilds(); len(bs) == 1 && bs[0].BisectOf == id {
			bisection = bs[0]
			return true, ""
		}
		return false, fmt.Sprint(res.GetBuilds())
	})
	return bisection
}

func TestBisectionNamesTheFirstFailingCommit(t *testing.T) {
	cp := startCP(t, testConfig(t))
	r := cp.register(t, "r")
	base, skipped, head, failing := line()
	cp.reportHead(t, base, hexID(100), "", nil, nil)
	cp.run(t, r, failing)
	f := cp.reportHead(t, head, hexID(108), base, skipped, nil)
	if j := cp.run(t, r, failing); j.JobId != f.Id {
		t.Fatalf("ran build %d, want the head's %d", j.JobId, f.Id)
	}
	bisected := cp.bisect(t, r, f.Id, failing)
	b := cp.build(t, f.Id)
	if b.Culprit != hexID(3) {
		t.Fatalf("culprit %s, want %s", b.Culprit, hexID(3))
	}
	if len(bisected) > 4 {
		t.Errorf("%d bisection builds (%v), want at most ⌈log₂ 8⌉ + 1 = 4", len(bisected), bisected)
	}
	t.Logf("culprit found with %d builds: %s", len(bisected), b.Bisection)
	waitFor(t, "culprit in the result files", 5*time.Second, func() (bool, string) {
		human, _ := os.ReadFile(filepath.Join(cp.cfg.ResultsDir, head))
		js, _ := os.ReadFile(filepath.Join(cp.cfg.ResultsDir, head+".json"))
		return strings.Contains(string(human), "culprit: "+hexID(3)) && strings.Contains(string(js), `"culprit": "`+hexID(3)+`"`),
			string(human)
	})
	// The culprit is known: reporting more of the branch, or a search
	// that would start over, builds nothing more.
	if j := cp.acquire(t, r, 200*time.Millisecond); j != nil {
		t.Fatalf("build %d of %s after the culprit was found", j.JobId, j.Commit)
	}
}

func TestBisectionBuildsWaitBehindNewCommits(t *testing.T) {
	cp := startCP(t, testConfig(t))
	r := cp.register(t, "r")
	f, failing := cp.failedHead(t, r, nil)
	cp.waitQueuedBisection(t, f.Id)
	// A new commit comes in: it runs first.
	fresh := cp.reportHead(t, hexID(9), hexID(109), "", nil, nil)
	if j := cp.run(t, r, failing); j.JobId != fresh.Id {
		t.Fatalf("ran build %d (%s) before the new commit's build %d", j.JobId, j.Commit, fresh.Id)
	}
	if j := cp.run(t, r, failing); cp.build(t, j.JobId).BisectOf != f.Id {
		t.Fatalf("then ran build %d, not the bisection", j.JobId)
	}
}

func TestBisectionSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	cp := startCP(t, cfg)
	r := cp.register(t, "r")
	f, failing := cp.failedHead(t, r, nil)
	cp.run(t, r, failing) // the first bisection build; its end queues the next
	cp.stop()

	cp2 := startCP(t, cfg)
	r2 := cp2.register(t, "r2")
	cp2.bisect(t, r2, f.Id, failing)
	if got := cp2.build(t, f.Id).Culprit; got != hexID(3) {
		t.Fatalf("culprit %s after restart, want %s", got, hexID(3))
	}
}

func TestCancelOfFailedBuildCancelsItsSearch(t *testing.T) {
	cp := startCP(t, testConfig(t))
	r := cp.register(t, "r")
	f, _ := cp.failedHead(t, r, nil)
	cp.waitQueuedBisection(t, f.Id)
	res, err := cp.builds.CancelBuild(context.Background(), &pontusv1.CancelBuildRequest{BuildId: f.Id})
	if err != nil {
		t.Fatal(err)
	}
	if res.Build.Bisection != "canceled" || res.Build.Status != pontusv1.BuildStatus_BUILD_STATUS_FAILED {
		t.Fatalf("canceled search: %v", res.Build)
	}
	if j := cp.acquire(t, r, 200*time.Millisecond); j != nil {
		t.Fatalf("build %d of %s ran after its search was canceled", j.JobId, j.Commit)
	}
}

// The previous head failed too: the branch was broken already, so there
// is nothing to search (and ERROR does not start a search at all).
func TestNoSearchWhenTheBranchWasBroken(t *testing.T) {
	cp := startCP(t, testConfig(t))
	r := cp.register(t, "r")
	base, skipped, head, _ := line()
	all := func(string) bool { return true }
	cp.reportHead(t, base, hexID(100), "", nil, nil)
	cp.run(t, r, all)
	f := cp.reportHead(t, head, hexID(108), base, skipped, nil)
	cp.run(t, r, all)
	waitFor(t, "the search to stop", 5*time.Second, func() (bool, string) {
		b := cp.build(t, f.Id)
		return strings.HasPrefix(b.Bisection, "not searched"), b.Bisection
	})
	if j := cp.acquire(t, r, 200*time.Millisecond); j != nil {
		t.Fatalf("build %d of %s for a branch already broken", j.JobId, j.Commit)
	}
}

func TestSameTreeTakesTheVerdict(t *testing.T) {
	cp := startCP(t, testConfig(t))
	r := cp.register(t, "r")
	tree := hexID(100)
	first := cp.reportHead(t, hexID(1), tree, "", nil, nil)
	cp.run(t, r, func(string) bool { return true }) // FAILED

	// A revert to the same tree: FAILED at once, without a job.
	again := cp.reportHead(t, hexID(2), tree, "", nil, nil)
	want := fmt.Sprintf("reused: build %d (commit %s)", first.Id, hexID(1))
	if again.Status != pontusv1.BuildStatus_BUILD_STATUS_FAILED || again.Reason != want ||
		again.ReusedBuild != first.Id || again.ReusedCommit != hexID(1) || len(again.Tests) != 1 {
		t.Fatalf("reused build: %v", again)
	}
	waitFor(t, "reused in the result files", 5*time.Second, func() (bool, string) {
		human, _ := os.ReadFile(filepath.Join(cp.cfg.ResultsDir, hexID(2)))
		return strings.Contains(string(human), want), string(human)
	})
	if j := cp.acquire(t, r, 200*time.Millisecond); j != nil {
		t.Fatalf("a reused verdict ran: build %d", j.JobId)
	}
	// Reporting it again names the same build.
	if b := cp.reportHead(t, hexID(2), tree, "", nil, nil); b.Id != again.Id {
		t.Fatalf("second report made build %d, want %d", b.Id, again.Id)
	}

	// Reuse off, other labels or other retries: it runs.
	off := cp.reportHead(t, hexID(3), tree, "", nil, &pontusv1.BuildSettings{Shards: 1, Bisect: true})
	retries := cp.reportHead(t, hexID(4), tree, "", nil, &pontusv1.BuildSettings{Shards: 1, Reuse: true, Retries: 1})
	for _, b := range []*pontusv1.Build{off, retries} {
		if b.Status != statusQueued || b.ReusedBuild != 0 {
			t.Errorf("build %d not queued: %v", b.Id, b)
		}
	}
	// TriggerBuild always runs.
	tr, err := cp.builds.TriggerBuild(context.Background(), &pontusv1.TriggerBuildRequest{Commit: hexID(2)})
	if err != nil || tr.Build.Status != statusQueued || tr.Build.ReusedBuild != 0 {
		t.Fatalf("trigger: %v %v", tr, err)
	}
	var ran []int64
	for j := cp.acquire(t, r, 200*time.Millisecond); j != nil; j = cp.acquire(t, r, 200*time.Millisecond) {
		ran = append(ran, j.JobId)
		if _, err := cp.runners.CompleteJob(context.Background(), &pontusv1.CompleteJobRequest{
			JobId: j.JobId, Attempt: j.Attempt, Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []int64{off.Id, retries.Id, tr.Build.Id}; !slices.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
}

// Whatever the number of untested commits and wherever the culprit is,
// bisection names it within ⌈log₂ n⌉ builds when the previous head's
// verdict is known (as here), ⌈log₂ n⌉ + 1 when that must be built too.
func TestBisectionBound(t *testing.T) {
	for _, n := range []int{2, 3, 5, 8, 13} {
		for _, k := range slices.Compact([]int{1, (n + 1) / 2, n}) {
			t.Run(fmt.Sprintf("%d commits, culprit %d", n, k), func(t *testing.T) {
				t.Parallel()
				cp := startCP(t, testConfig(t))
				r := cp.register(t, "r")
				failing := func(c string) bool { return c >= hexID(k) }
				cp.reportHead(t, hexID(0), hexID(100), "", nil, nil)
				cp.run(t, r, failing)
				var skipped []string
				for i := 1; i < n; i++ {
					skipped = append(skipped, hexID(i))
				}
				f := cp.reportHead(t, hexID(n), hexID(200), hexID(0), skipped, nil)
				cp.run(t, r, failing)
				built := cp.bisect(t, r, f.Id, failing)
				if got := cp.build(t, f.Id).Culprit; got != hexID(k) {
					t.Fatalf("culprit %s, want %s", got, hexID(k))
				}
				if bound := bits.Len(uint(n - 1)); len(built) > bound {
					t.Errorf("%d builds (%v), want at most %d", len(built), built, bound)
				}
			})
		}
	}
}

// A skipped commit whose tree was tested already takes that verdict as its
// bisection build, without a job.
func TestBisectionReusesKnownTrees(t *testing.T) {
	cp := startCP(t, testConfig(t))
	r := cp.register(t, "r")
	base, skipped, head, failing := line()
	cp.reportHead(t, base, hexID(100), "", nil, nil)
	cp.run(t, r, failing)
	// The fourth commit (the first the search builds) has the head's tree.
	details := []*pontusv1.CommitInfo{{Id: head, Tree: hexID(108)}}
	for _, c := range skipped {
		tree := hexID(200 + len(details))
		if c == hexID(4) {
			tree = hexID(108)
		}
		details = append(details, &pontusv1.CommitInfo{Id: c, Tree: tree, Subject: "change " + c[38:]})
	}
	res, err := cp.observer.ReportCommits(context.Background(), &pontusv1.ReportCommitsRequest{
		Repo: "/srv/repo", Branch: "main", Commits: []string{head}, Skipped: skipped, SkippedAfter: base, Details: details,
	})
	if err != nil {
		t.Fatal(err)
	}
	f := res.Builds[0]
	cp.run(t, r, failing)
	built := cp.bisect(t, r, f.Id, failing)
	if slices.Contains(built, hexID(4)) {
		t.Errorf("commit 4 was built, though its tree had a verdict: %v", built)
	}
	if got := cp.build(t, f.Id).Culprit; got != hexID(3) {
		t.Fatalf("culprit %s, want %s", got, hexID(3))
	}
	b, err := cp.builds.GetBuild(context.Background(), &pontusv1.GetBuildRequest{Commit: hexID(4)})
	if err != nil || b.Build.ReusedBuild != f.Id || b.Build.BisectOf != f.Id || b.Build.Subject != "change 04" {
		t.Fatalf("commit 4's bisection build: %v %v", b, err)
	}
}

// Canceling a queued sharded bisection build ends its search, naming why,
// as canceling an unsharded one does: the search is not left waiting for a
// build that will never end.
func TestCancelOfQueuedShardedBisectionBuildStopsTheSearch(t *testing.T) {
	cp := startCP(t, testConfig(t))
	r := cp.register(t, "r")
	f, failing := cp.failedHead(t, r, &pontusv1.BuildSettings{Shards: 2, Bisect: true})
	cp.run(t, r, failing)
	bisection := cp.waitQueuedBisection(t, f.Id)
	if len(bisection.Shards) != 2 {
		t.Fatalf("bisection build %d has %d shards, want 2", bisection.Id, len(bisection.Shards))
	}
	if _, err := cp.builds.CancelBuild(context.Background(), &pontusv1.CancelBuildRequest{BuildId: bisection.Id}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the search stopped", 5*time.Second, func() (bool, string) {
		b := cp.build(t, f.Id)
		return strings.HasPrefix(b.Bisection, "stopped: bisection build") && strings.HasSuffix(b.Bisection, "ended canceled"), b.Bisection
	})
}
