package observerd

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pontus-ci/pontus/internal/dial"
)

func TestFirstStartReportsOnlyHead(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	commit(t, dir, "second")
	head := commit(t, dir, "third")
	sub := filepath.Join(dir, "sub", "dir")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	repo := realpath(t, dir)

	cfg := testConfig(t, cp, sub) // a subdirectory names the same repository
	cfg.Mode = ModeEvery
	cfg.Labels = []string{"linux"}
	stop, _ := startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", head)
	stop()

	want := []report{{Repo: repo, Branch: "main", Commits: []string{head}, CloneURL: repo, Labels: []string{"linux"}}}
	if diff := cmp.Diff(want, cp.allReports()); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
}

func TestNewCommitIsReported(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	startObserver(t, testConfig(t, cp, dir))
	cp.waitCursor(t, repo, "main", c0)

	c1 := commit(t, dir, "loose ref")
	cp.waitCursor(t, repo, "main", c1)

	// With the branch in packed-refs only, a commit still shows.
	gitT(t, dir, "pack-refs", "--all", "--prune")
	c2 := commit(t, dir, "after pack-refs")
	cp.waitCursor(t, repo, "main", c2)

	if diff := cmp.Diff([]string{c0, c1, c2}, cp.commitsOf("main", 0)); diff != "" {
		t.Errorf("reported commits (-want +got):\n%s", diff)
	}
}

func TestReportsCarryCommitDetails(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	startObserver(t, testConfig(t, cp, dir))
	cp.waitCursor(t, repo, "main", headOf(t, dir, "main"))

	c1 := commit(t, dir, "Teach the parser about tabs\n\nLonger explanation.")
	cp.waitCursor(t, repo, "main", c1)
	info := cp.detailsOf(c1)
	if info == nil {
		t.Fatal("the report said nothing of the commit")
	}
	if info.GetSubject() != "Teach the parser about tabs" {
		t.Errorf("subject = %q", info.GetSubject())
	}
	if want := gitT(t, dir, "log", "-1", "--format=%an|%ae|%T", c1); info.GetAuthor()+"|"+info.GetAuthorEmail()+"|"+info.GetTree() != want {
		t.Errorf("author|email|tree = %s|%s|%s, want %s", info.GetAuthor(), info.GetAuthorEmail(), info.GetTree(), want)
	}
	if info.GetCommittedAt() == nil {
		t.Error("no commit time")
	}
}

func TestHeadModeQuickCommitsReportsNewest(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	startObserver(t, testConfig(t, cp, dir))
	cp.waitCursor(t, repo, "main", c0)

	c1 := commit(t, dir, "one")
	c2 := commit(t, dir, "two")
	cp.waitCursor(t, repo, "main", c2)

	got := cp.commitsOf("main", 1)
	if got[len(got)-1] != c2 {
		t.Errorf("last reported %s, want the newest head %s", got[len(got)-1], c2)
	}
	for _, r := range cp.allReports() {
		if len(r.Commits) != 1 {
			t.Errorf("head mode reported %d commits at once: %v", len(r.Commits), r.Commits)
		}
	}
	if !slices.Equal(got, []string{c2}) && !slices.Equal(got, []string{c1, c2}) {
		t.Errorf("reported %v, want [c2] or [c1 c2] (c1=%s c2=%s)", got, c1, c2)
	}
}

func TestEveryModeReportsEachCommitOnceInOrder(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	cfg := testConfig(t, cp, dir)
	cfg.Mode = ModeEvery
	startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", c0)

	var want []string
	for i := range 5 {
		want = append(want, commit(t, dir, fmt.Sprintf("commit %d", i)))
	}
	cp.waitCursor(t, repo, "main", want[4])

	if diff := cmp.Diff(want, cp.commitsOf("main", 1)); diff != "" {
		t.Errorf("reported commits (-want +got):\n%s", diff)
	}
}

func TestEveryModeMaxBacklogKeepsNewest(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	var all []string
	for i := range 6 {
		all = append(all, commit(t, dir, fmt.Sprintf("commit %d", i)))
	}
	cp.setCursor(repo, "main", c0)
	cfg := testConfig(t, cp, dir)
	cfg.Mode = ModeEvery
	cfg.MaxBacklog = 4
	startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", all[5])
	if diff := cmp.Diff(all[2:], cp.commitsOf("main", 0)); diff != "" {
		t.Errorf("reported commits (-want +got):\n%s", diff)
	}
}

func TestForcePushReportsNewHead(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	commit(t, dir, "one")
	c2 := commit(t, dir, "two")
	cfg := testConfig(t, cp, dir)
	cfg.Mode = ModeEvery
	startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", c2)

	// Rewrite the branch in one ref update, as a force-push does: two new
	// commits on c0, so c2 is no longer an ancestor of the head.
	tree := gitT(t, dir, "rev-parse", c0+"^{tree}")
	c3 := gitT(t, dir, "commit-tree", "-p", c0, "-m", "rewritten one", tree)
	c4 := gitT(t, dir, "commit-tree", "-p", c3, "-m", "rewritten two", tree)
	gitT(t, dir, "update-ref", "refs/heads/main", c4)
	cp.waitCursor(t, repo, "main", c4)

	if diff := cmp.Diff([]string{c4}, cp.commitsOf("main", 1)); diff != "" {
		t.Errorf("after a force-push (-want +got):\n%s", diff)
	}
}

func TestEveryModeUnknownCursorReportsHead(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	commit(t, dir, "one")
	head := commit(t, dir, "two")
	cp.setCursor(repo, "main", strings.Repeat("ab", 20)) // not in this repository
	cfg := testConfig(t, cp, dir)
	cfg.Mode = ModeEvery
	startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", head)
	if diff := cmp.Diff([]string{head}, cp.commitsOf("main", 0)); diff != "" {
		t.Errorf("reported commits (-want +got):\n%s", diff)
	}
}

func TestRestartMissesNothingRepeatsNothing(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	cfg := testConfig(t, cp, dir)
	cfg.Mode = ModeEvery

	stop, _ := startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", c0)
	c1 := commit(t, dir, "one")
	cp.waitCursor(t, repo, "main", c1)
	stop()

	// Commits while no observer runs.
	c2 := commit(t, dir, "two")
	c3 := commit(t, dir, "three")
	stop, _ = startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", c3)
	stop()

	// A restart with nothing new reports nothing.
	calls := cp.getCursorCalls()
	stop, _ = startObserver(t, cfg)
	waitFor(t, 10*time.Second, func() (bool, string) {
		n := cp.getCursorCalls()
		return n > calls, fmt.Sprintf("GetCursor calls %d, want more than %d", n, calls)
	})
	stop()

	if diff := cmp.Diff([]string{c0, c1, c2, c3}, cp.commitsOf("main", 0)); diff != "" {
		t.Errorf("reported commits (-want +got):\n%s", diff)
	}
}

func TestControlPlaneDownLosesNothing(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	cfg := testConfig(t, cp, dir)
	cfg.Mode = ModeEvery
	_, logs := startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", c0)

	cp.stop()
	want := []string{commit(t, dir, "one"), commit(t, dir, "two")}
	waitFor(t, 10*time.Second, func() (bool, string) {
		n := logs.count("report cycle failed; retrying")
		return n >= 3, fmt.Sprintf("%d failed cycles logged, want 3", n)
	})
	want = append(want, commit(t, dir, "three"))
	cp.start()

	cp.waitCursor(t, repo, "main", want[2])
	if diff := cmp.Diff(want, cp.commitsOf("main", 1)); diff != "" {
		t.Errorf("reported commits (-want +got):\n%s", diff)
	}
}

func TestControlPlaneErrorsAreRetried(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	cp.failCalls(4)
	cfg := testConfig(t, cp, dir)
	startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", c0)
	if n := cp.failsLeft(); n != 0 {
		t.Errorf("%d failures left unused", n)
	}
}

func TestRemoteRepositoryViaMirror(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	origin := filepath.Join(t.TempDir(), "origin.git")
	gitT(t, filepath.Dir(origin), "init", "--quiet", "--bare", "-b", "main", origin)
	work := newRepo(t)
	gitT(t, work, "push", "--quiet", origin, "main")
	c0 := headOf(t, work, "main")
	url := "file://" + origin

	cfg := testConfig(t, cp, url)
	cfg.PollInterval = 50 * time.Millisecond
	cfg.Mode = ModeEvery
	startObserver(t, cfg)
	cp.waitCursor(t, url, "main", c0)

	c1 := commit(t, work, "one")
	c2 := commit(t, work, "two")
	gitT(t, work, "push", "--quiet", origin, "main")
	gitT(t, work, "push", "--quiet", origin, "main:other") // not the remote HEAD: not watched
	cp.waitCursor(t, url, "main", c2)

	if diff := cmp.Diff([]string{c0, c1, c2}, cp.commitsOf("main", 0)); diff != "" {
		t.Errorf("reported commits (-want +got):\n%s", diff)
	}
	for _, r := range cp.allReports() {
		if r.Repo != url || r.CloneURL != url || r.Branch != "main" {
			t.Errorf("report %+v: want repo and clone URL %s, branch main", r, url)
		}
	}
	if _, err := os.Stat(filepath.Join(mirrorDir(cfg.DataDir, url), "HEAD")); err != nil {
		t.Errorf("no mirror under data_dir: %v", err)
	}
}

func TestGlobBranches(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	cfg := testConfig(t, cp, dir)
	cfg.Branches = []string{"main", "release/*"}
	startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", c0)

	// A new branch in a new ref directory is seen and its head reported.
	gitT(t, dir, "branch", "release/1.0")
	cp.waitCursor(t, repo, "release/1.0", c0)
	// Branches that do not match are ignored.
	gitT(t, dir, "branch", "feature")
	gitT(t, dir, "branch", "release/x/y")
	gitT(t, dir, "checkout", "--quiet", "release/1.0")
	r1 := commit(t, dir, "on release")
	cp.waitCursor(t, repo, "release/1.0", r1)
	gitT(t, dir, "checkout", "--quiet", "main")
	gitT(t, dir, "branch", "-D", "release/1.0")
	gitT(t, dir, "branch", "release/2.0")
	cp.waitCursor(t, repo, "release/2.0", c0)

	for _, r := range cp.allReports() {
		if r.Branch == "feature" || r.Branch == "release/x/y" {
			t.Errorf("reported unwatched branch %s", r.Branch)
		}
	}
	if diff := cmp.Diff([]string{c0, r1}, cp.commitsOf("release/1.0", 0)); diff != "" {
		t.Errorf("release/1.0 (-want +got):\n%s", diff)
	}
}

func TestLinkedWorktree(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	wt := filepath.Join(t.TempDir(), "wt")
	gitT(t, dir, "worktree", "add", "--quiet", "-b", "topic", wt)
	c0 := headOf(t, dir, "topic")
	repo := realpath(t, wt)
	startObserver(t, testConfig(t, cp, wt)) // HEAD of the worktree: topic
	cp.waitCursor(t, repo, "topic", c0)
	c1 := commit(t, wt, "in the worktree")
	cp.waitCursor(t, repo, "topic", c1)
	for _, r := range cp.allReports() {
		if r.Branch != "topic" {
			t.Errorf("reported branch %s, want only topic", r.Branch)
		}
	}
}

func TestBareRepository(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	bare := filepath.Join(t.TempDir(), "bare.git")
	gitT(t, filepath.Dir(bare), "init", "--quiet", "--bare", "-b", "main", bare)
	work := newRepo(t)
	gitT(t, work, "push", "--quiet", bare, "main")
	c0 := headOf(t, work, "main")
	repo := realpath(t, bare)
	startObserver(t, testConfig(t, cp, bare))
	cp.waitCursor(t, repo, "main", c0)
	c1 := commit(t, work, "pushed")
	gitT(t, work, "push", "--quiet", bare, "main")
	cp.waitCursor(t, repo, "main", c1)
}

// TestObservingLeavesGitDirUnchanged runs every git call the observer
// makes (list, look up, ancestry, rev-list), several times over because
// the control plane fails at first, and checks that the watched
// repository's .git is byte-for-byte and mtime-for-mtime unchanged.
func TestObservingLeavesGitDirUnchanged(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	commit(t, dir, "one")
	head := commit(t, dir, "two")
	cp.setCursor(repo, "main", c0)
	cp.failCalls(5)
	before := snapshot(t, filepath.Join(dir, ".git"))

	cfg := testConfig(t, cp, dir)
	cfg.Mode = ModeEvery
	cfg.PollInterval = 20 * time.Millisecond
	stop, logs := startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", head)
	waitFor(t, 10*time.Second, func() (bool, string) {
		return cp.failsLeft() == 0, "control plane failures left"
	})
	stop()
	if n := logs.count("report cycle failed; retrying"); n < 2 {
		t.Errorf("only %d failed cycles: the observer did not re-read the repository", n)
	}

	if diff := cmp.Diff(before, snapshot(t, filepath.Join(dir, ".git"))); diff != "" {
		t.Errorf("observing changed .git (-before +after):\n%s", diff)
	}
}

// TestNothingWrittenIntoWatchedRepository runs the observer with the
// defaults (repo ".", data_dir ".pontus/observer") from inside a dirty
// working tree and checks that not one file of the tree changed — no
// .pontus directory, no index refresh.
func TestNothingWrittenIntoWatchedRepository(t *testing.T) {
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	head := commit(t, dir, "two")
	// A modified tracked file (the index's stat data is stale, so any
	// index refresh would rewrite it) and an untracked one.
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "untracked"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	t.Chdir(dir)

	cfg := DefaultConfig()
	cfg.ControlPlane = dial.URLs(cp.URL())
	cfg.PollInterval = 20 * time.Millisecond
	cp.failCalls(3)
	stop, _ := startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", head)
	stop()

	if diff := cmp.Diff(before, snapshot(t, dir)); diff != "" {
		t.Errorf("observing changed the repository (-before +after):\n%s", diff)
	}
}

func TestRunFailsOnNonRepository(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	cfg := testConfig(t, cp, t.TempDir())
	o, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "git repository") {
		t.Errorf("Run on a plain directory: %v, want a 'not a git repository' error", err)
	}
}

func TestDefaultBranchFollowsHEAD(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	startObserver(t, testConfig(t, cp, dir))
	cp.waitCursor(t, repo, "main", c0)

	gitT(t, dir, "checkout", "--quiet", "-b", "topic")
	cp.waitCursor(t, repo, "topic", c0)
	c1 := commit(t, dir, "on topic")
	cp.waitCursor(t, repo, "topic", c1)
	if got := cp.commitsOf("main", 0); !slices.Equal(got, []string{c0}) {
		t.Errorf("main reported %v, want only %s", got, c0)
	}
}

func TestRefusedBranchDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	gitT(t, dir, "branch", "a")
	cp.mu.Lock()
	cp.reject = map[string]bool{"a": true}
	cp.mu.Unlock()
	cfg := testConfig(t, cp, dir)
	cfg.Branches = []string{"a", "main"}
	_, logs := startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", c0)
	c1 := commit(t, dir, "one")
	cp.waitCursor(t, repo, "main", c1)
	if n := logs.count("control plane refused the report; will retry"); n != 1 {
		t.Errorf("refusal logged %d times, want once (it is not retried until the branch moves)", n)
	}

	// When the refused branch moves, it is tried again.
	cp.mu.Lock()
	cp.reject = nil
	cp.mu.Unlock()
	gitT(t, dir, "update-ref", "refs/heads/a", c1)
	cp.waitCursor(t, repo, "a", c1)
}
