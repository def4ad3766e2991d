package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// testCP is a control plane served on 127.0.0.1 with clients for its
// three services.
type testCP struct {
	cfg      Config
	url      string
	runners  pontusv1connect.RunnerServiceClient
	observer pontusv1connect.ObserverServiceClient
	builds   pontusv1connect.BuildServiceClient
	server   *Server
	stop     func()
}

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	dir := t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.ResultsDir = filepath.Join(dir, "results")
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.LeaseDuration = 400 * time.Millisecond
	cfg.PollTimeout = 2 * time.Second
	return cfg
}

func startCP(t testing.TB, cfg Config) *testCP {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := New(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	cp := &testCP{cfg: cfg, url: url, server: srv}
	var once sync.Once
	cp.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(cp.stop)
	cp.connect(t, "", "", "")
	return cp
}

func (cp *testCP) connect(t testing.TB, runnerTok, observerTok, userTok string) {
	t.Helper()
	mk := func(tok string) (connect.HTTPClient, []connect.ClientOption) {
		cfg := dial.Config{URL: cp.url, Token: tok}
		hc, err := dial.HTTPClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return hc, dial.Options(cfg)
	}
	hc, o := mk(runnerTok)
	cp.runners = pontusv1connect.NewRunnerServiceClient(hc, cp.url, o...)
	hc, o = mk(observerTok)
	cp.observer = pontusv1connect.NewObserverServiceClient(hc, cp.url, o...)
	hc, o = mk(userTok)
	cp.builds = pontusv1connect.NewBuildServiceClient(hc, cp.url, o...)
}

const (
	commitA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	commitB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	commitC = "cccccccccccccccccccccccccccccccccccccccc"
)

func (cp *testCP) report(t testing.TB, branch string, labels []string, commits ...string) []*pontusv1.Build {
	t.Helper()
	res, err := cp.observer.ReportCommits(context.Background(), &pontusv1.ReportCommitsRequest{
		Repo: "/srv/repo", Branch: branch, Commits: commits, Labels: labels,
	})
	if err != nil {
		t.Fatalf("ReportCommits: %v", err)
	}
	return res.Builds
}

func (cp *testCP) register(t testing.TB, name string, labels ...string) string {
	t.Helper()
	res, err := cp.runners.Register(context.Background(), &pontusv1.RegisterRequest{Name: name, Labels: labels})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return res.RunnerId
}

func (cp *testCP) acquire(t testing.TB, runner string, wait time.Duration) *pontusv1.Job {
	t.Helper()
	res, err := cp.runners.AcquireJob(context.Background(), &pontusv1.AcquireJobRequest{RunnerId: runner, Wait: durationpb.New(wait)})
	if err != nil {
		t.Fatalf("AcquireJob: %v", err)
	}
	return res.Job
}

func (cp *testCP) build(t testing.TB, id int64) *pontusv1.Build {
	t.Helper()
	res, err := cp.builds.GetBuild(context.Background(), &pontusv1.GetBuildRequest{BuildId: id})
	if err != nil {
		t.Fatalf("GetBuild: %v", err)
	}
	return res.Build
}

// waitFor polls cond until it holds or the deadline passes, reporting the
// last state seen.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
}

func TestJobLifecycleWritesResults(t *testing.T) { bothStores(t, testJobLifecycleWritesResults) }

func testJobLifecycleWritesResults(t *testing.T, cfg Config) {
	cp := startCP(t, cfg)
	ctx := context.Background()
	builds := cp.report(t, "main", nil, commitA)
	if len(builds) != 1 || builds[0].Status != statusQueued || builds[0].Reason != "no runners registered" {
		t.Fatalf("report: %+v", builds)
	}
	runner := cp.register(t, "r1")
	job := cp.acquire(t, runner, time.Second)
	if job == nil || job.Commit != commitA || job.Attempt != 1 || job.CloneUrl != "/srv/repo" {
		t.Fatalf("job: %+v", job)
	}
	out := "test_pass (test_pass.TestPass.test_pass) ... ok\n"
	if _, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Offset: 0, Data: []byte(out)}); err != nil {
		t.Fatal(err)
	}
	// A resent chunk is harmless.
	if res, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Offset: 0, Data: []byte(out)}); err != nil || res.Size != int64(len(out)) {
		t.Fatalf("resend: %v %v", res, err)
	}
	if b := cp.build(t, job.JobId); b.Status != statusRunning {
		t.Fatalf("after first log chunk status = %s", b.Status)
	}
	// A gap is refused with the stored size.
	_, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Offset: 1000, Data: []byte("x")})
	if connect.CodeOf(err) != connect.CodeOutOfRange || !strings.Contains(err.Error(), fmt.Sprintf("stored size %d", len(out))) {
		t.Fatalf("gap: %v", err)
	}
	// Completing before the whole log arrived is refused.
	_, err = cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: 1, Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED, LogSize: 99})
	if connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("incomplete log: %v", err)
	}
	done := &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: 1, Status: pontusv1.BuildStatus_BUILD_STATUS_FAILED,
		LogSize: int64(len(out)), ExitCode: 1,
		Tests: []*pontusv1.TestCase{
			{Name: "test_pass", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED},
			{Name: "test_fail", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FAILED, Message: "AssertionError: I will fail"},
		}}
	res, err := cp.runners.CompleteJob(ctx, done)
	if err != nil {
		t.Fatal(err)
	}
	if res.Build.Tests[0].Name != "test_fail" {
		t.Errorf("failures not first: %v", res.Build.Tests)
	}
	// Repeating a successful CompleteJob succeeds.
	if _, err := cp.runners.CompleteJob(ctx, done); err != nil {
		t.Fatalf("repeat CompleteJob: %v", err)
	}
	waitFor(t, "result files", 5*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(cp.cfg.ResultsDir, commitA+".json"))
		return err == nil, fmt.Sprint(err)
	})
	human, err := os.ReadFile(filepath.Join(cp.cfg.ResultsDir, commitA))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FAILED", commitA, "FAILED  test_fail", "AssertionError: I will fail", out} {
		if !strings.Contains(string(human), want) {
			t.Errorf("human report lacks %q:\n%s", want, human)
		}
	}
	js, err := os.ReadFile(filepath.Join(cp.cfg.ResultsDir, commitA+".json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"status": "BUILD_STATUS_FAILED"`, `"attempt": 1`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("json lacks %q:\n%s", want, js)
		}
	}
	// Reporting the same commit again creates no second build.
	again := cp.report(t, "main", nil, commitA)
	if again[0].Id != job.JobId {
		t.Errorf("re-report created build %d, want existing %d", again[0].Id, job.JobId)
	}
}

func TestLongPollHandsOutAtOnce(t *testing.T) {
	cp := startCP(t, testConfig(t))
	runner := cp.register(t, "r1")
	got := make(chan *pontusv1.Job, 1)
	go func() { got <- cp.acquire(t, runner, 5*time.Second) }()
	waitFor(t, "runner to be polling", 2*time.Second, func() (bool, string) {
		res, _ := cp.builds.ListRunners(context.Background(), &pontusv1.ListRunnersRequest{})
		return len(res.GetRunners()) == 1 && res.Runners[0].State == pontusv1.RunnerState_RUNNER_STATE_IDLE, res.String()
	})
	start := time.Now()
	cp.report(t, "main", nil, commitB)
	select {
	case job := <-got:
		if job == nil || job.Commit != commitB {
			t.Fatalf("job %+v", job)
		}
		t.Logf("hand-out latency %s", time.Since(start))
	case <-time.After(3 * time.Second):
		t.Fatal("waiting runner not handed the job")
	}
}

func TestLeaseExpiryRequeuesAndFencesStaleAttempt(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxAttempts = 2
	cp := startCP(t, cfg)
	ctx := context.Background()
	b := cp.report(t, "main", nil, commitA)[0]
	dead := cp.register(t, "dead")
	job1 := cp.acquire(t, dead, time.Second)
	// The dead runner never heartbeats: its lease expires and the job is requeued.
	waitFor(t, "requeue", 3*time.Second, func() (bool, string) {
		got := cp.build(t, b.Id)
		return got.Status == statusQueued, got.Status.String()
	})
	alive := cp.register(t, "alive")
	job2 := cp.acquire(t, alive, time.Second)
	if job2 == nil || job2.Attempt != 2 {
		t.Fatalf("second attempt: %+v", job2)
	}
	// The stale attempt can neither append nor complete.
	_, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job1.JobId, Attempt: 1, Data: []byte("late")})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("stale AppendLog: %v", err)
	}
	_, err = cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job1.JobId, Attempt: 1, Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("stale CompleteJob: %v", err)
	}
	// A heartbeat from the dead runner learns it lost the job.
	hb, err := cp.runners.Heartbeat(ctx, &pontusv1.HeartbeatRequest{RunnerId: dead, Leases: []*pontusv1.JobRef{{JobId: job1.JobId, Attempt: 1}}})
	if err != nil || len(hb.Lost) != 1 {
		t.Fatalf("heartbeat of stale lease: %v %v", hb, err)
	}
	// The second attempt also dies: after max_attempts the build errors.
	waitFor(t, "runner lost", 3*time.Second, func() (bool, string) {
		got := cp.build(t, b.Id)
		return got.Status == statusError, got.Status.String() + " " + got.Reason
	})
	got := cp.build(t, b.Id)
	if !strings.Contains(got.Reason, "runner lost") || len(got.Attempts) != 2 {
		t.Fatalf("final: %s %q attempts=%d", got.Status, got.Reason, len(got.Attempts))
	}
	waitFor(t, "result of the runner-lost build", 5*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(cfg.ResultsDir, commitA+".json"))
		return err == nil, fmt.Sprint(err)
	})
}

func TestHeartbeatKeepsLeaseAndCarriesCancel(t *testing.T) {
	cp := startCP(t, testConfig(t))
	ctx := context.Background()
	b := cp.report(t, "main", nil, commitA)[0]
	r := cp.register(t, "r")
	job := cp.acquire(t, r, time.Second)
	lease := []*pontusv1.JobRef{{JobId: job.JobId, Attempt: job.Attempt}}
	for range 8 { // 8 × 100ms = twice the lease
		hb, err := cp.runners.Heartbeat(ctx, &pontusv1.HeartbeatRequest{RunnerId: r, Leases: lease})
		if err != nil || len(hb.Lost) != 0 {
			t.Fatalf("heartbeat: %v %v", hb, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := cp.build(t, b.Id); got.Status != statusRunning || got.Attempt != 1 {
		t.Fatalf("lease not kept: %s attempt %d", got.Status, got.Attempt)
	}
	if _, err := cp.builds.CancelBuild(ctx, &pontusv1.CancelBuildRequest{BuildId: b.Id}); err != nil {
		t.Fatal(err)
	}
	hb, err := cp.runners.Heartbeat(ctx, &pontusv1.HeartbeatRequest{RunnerId: r, Leases: lease})
	if err != nil || len(hb.Cancel) != 1 {
		t.Fatalf("cancel not carried: %v %v", hb, err)
	}
	if _, err := cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: 1, Status: statusCanceled, Reason: "canceled"}); err != nil {
		t.Fatal(err)
	}
	if got := cp.build(t, b.Id); got.Status != statusCanceled {
		t.Fatalf("status %s", got.Status)
	}
}

func TestPendingReasons(t *testing.T) {
	cp := startCP(t, testConfig(t))
	ctx := context.Background()
	b := cp.report(t, "main", []string{"wasm"}, commitA)[0]
	cp.register(t, "plain", "linux")
	waitReason := func(want string) {
		t.Helper()
		waitFor(t, "reason "+want, 3*time.Second, func() (bool, string) {
			got := cp.build(t, b.Id)
			return strings.Contains(got.Reason, want), got.Reason
		})
	}
	waitReason("no runner has labels [wasm]")
	wasm := cp.register(t, "w", "wasm")
	other := cp.report(t, "main", []string{"wasm"}, commitB)[0]
	job := cp.acquire(t, wasm, time.Second) // takes the older build
	if job.JobId != b.Id {
		t.Fatalf("took %d, want oldest %d", job.JobId, b.Id)
	}
	go cp.runners.Heartbeat(ctx, &pontusv1.HeartbeatRequest{RunnerId: wasm, Leases: []*pontusv1.JobRef{{JobId: job.JobId, Attempt: 1}}})
	waitFor(t, "busy reason", 3*time.Second, func() (bool, string) {
		got := cp.build(t, other.Id)
		return strings.Contains(got.Reason, "all 1 runners with labels [wasm] busy"), got.Reason
	})
}

func TestRestartKeepsQueueAndExtendsLeases(t *testing.T) {
	bothStores(t, testRestartKeepsQueueAndExtendsLeases)
}

func testRestartKeepsQueueAndExtendsLeases(t *testing.T, cfg Config) {
	cfg.LeaseDuration = time.Second
	cp := startCP(t, cfg)
	ctx := context.Background()
	cp.report(t, "main", nil, commitA, commitB)
	r := cp.register(t, "r")
	job := cp.acquire(t, r, time.Second)
	if _, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Data: []byte("started\n")}); err != nil {
		t.Fatal(err)
	}
	cp.stop()
	// Down for longer than the lease: the restart must extend it, not expire it.
	time.Sleep(cfg.LeaseDuration + 500*time.Millisecond)

	cp2 := startCP(t, cfg)
	// The queued build is still queued, the leased one still leased to r.
	res, err := cp2.builds.ListBuilds(ctx, &pontusv1.ListBuildsRequest{})
	if err != nil || len(res.Builds) != 2 {
		t.Fatalf("after restart: %v %v", res, err)
	}
	hb, err := cp2.runners.Heartbeat(ctx, &pontusv1.HeartbeatRequest{RunnerId: r, Leases: []*pontusv1.JobRef{{JobId: job.JobId, Attempt: 1}}})
	if err != nil || len(hb.Lost) != 0 {
		t.Fatalf("lease not kept across restart: %v %v", hb, err)
	}
	if b := cp2.build(t, job.JobId); b.Status != statusRunning || b.LogSize != int64(len("started\n")) {
		t.Fatalf("after restart: %s, log size %d", b.Status, b.LogSize)
	}
	running, err := cp2.builds.ListBuilds(ctx, &pontusv1.ListBuildsRequest{Status: statusRunning})
	if err != nil || len(running.Builds) != 1 || running.Builds[0].Id != job.JobId {
		t.Fatalf("ListBuilds status=RUNNING: %v %v", running, err)
	}
	r2 := cp2.register(t, "r2")
	next := cp2.acquire(t, r2, time.Second)
	if next == nil || next.Commit != commitB {
		t.Fatalf("queued build lost across restart: %+v", next)
	}
	if cur, _ := cp2.observer.GetCursor(ctx, &pontusv1.GetCursorRequest{Repo: "/srv/repo", Branch: "main"}); cur.GetCommit() != commitB {
		t.Fatalf("cursor after restart = %q", cur.GetCommit())
	}
}

func TestBadRequestsAreInvalidArgument(t *testing.T) {
	cp := startCP(t, testConfig(t))
	ctx := context.Background()
	cases := map[string]error{}
	_, cases["traversal commit"] = cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/r", Branch: "main", Commits: []string{"../../x"}})
	_, cases["shell commit"] = cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/r", Branch: "main", Commits: []string{"HEAD;touch pwned"}})
	_, cases["bad branch"] = cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/r", Branch: "-x", Commits: []string{commitA}})
	_, cases["ext transport"] = cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "ext::sh -c touch% /tmp/x", Branch: "main", Commits: []string{commitA}})
	_, cases["get traversal"] = cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: "../../etc/passwd"})
	_, cases["commit listed twice"] = cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/r", Branch: "main", Commits: []string{commitA, commitB, commitA}})
	_, cases["details of another commit"] = cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/r", Branch: "main", Commits: []string{commitA},
		Details: []*pontusv1.CommitInfo{{Id: commitB, Subject: "x"}}})
	_, cases["two-line subject"] = cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/r", Branch: "main", Commits: []string{commitA},
		Details: []*pontusv1.CommitInfo{{Id: commitA, Subject: "one\ntwo"}}})
	_, cases["bad tree"] = cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/r", Branch: "main", Commits: []string{commitA},
		Details: []*pontusv1.CommitInfo{{Id: commitA, Tree: "../x"}}})
	_, cases["too many retries"] = cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/r", Branch: "main", Commits: []string{commitA},
		Settings: &pontusv1.BuildSettings{Retries: 1000}})
	_, cases["negative offset"] = cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: 1, Attempt: 1, Offset: -1})
	_, cases["zero attempt"] = cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: 1, Attempt: 0})
	for name, err := range cases {
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: got %v, want invalid_argument", name, err)
		}
	}
	_, err := cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{BuildId: 42})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("unknown build: %v", err)
	}
	_, err = cp.runners.Heartbeat(ctx, &pontusv1.HeartbeatRequest{RunnerId: "r-nope"})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("unknown runner: %v", err)
	}
	entries, _ := os.ReadDir(cp.cfg.ResultsDir)
	if len(entries) != 0 {
		t.Errorf("results dir not empty: %v", entries)
	}
}

// What the observer says of a commit is kept with its build, across a
// restart, and a rebuild of the same commit keeps it.
func TestCommitDetailsAreStored(t *testing.T) {
	cfg := testConfig(t)
	cp := startCP(t, cfg)
	ctx := context.Background()
	when := timestamppb.New(time.Date(2026, 11, 30, 9, 15, 0, 0, time.UTC))
	tree := strings.Repeat("ab", 20)
	res, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{
		Repo: "/srv/repo", Branch: "main", Commits: []string{commitA, commitB},
		Details:  []*pontusv1.CommitInfo{{Id: commitB, Subject: "Fix the parser", Author: "Ada", AuthorEmail: "ada@example.com", CommittedAt: when, Tree: tree}},
		Settings: &pontusv1.BuildSettings{Retries: 2, Bisect: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, b := res.Builds[0], res.Builds[1]
	if a.Subject != "" || a.Settings.GetRetries() != 2 || a.Settings.GetShards() != 1 {
		t.Errorf("undescribed build: subject %q, settings %v", a.Subject, a.Settings)
	}
	check := func(b *pontusv1.Build, when string) {
		t.Helper()
		if b.Subject != "Fix the parser" || b.Author != "Ada" || b.AuthorEmail != "ada@example.com" || b.Tree != tree ||
			!b.CommittedAt.AsTime().Equal(time.Date(2026, 11, 30, 9, 15, 0, 0, time.UTC)) {
			t.Errorf("%s: details not kept: %v", when, b)
		}
	}
	check(b, "report")
	check(cp.build(t, b.Id), "GetBuild")
	cp.stop()
	cp2 := startCP(t, cfg)
	check(cp2.build(t, b.Id), "after restart")
	tr, err := cp2.builds.TriggerBuild(ctx, &pontusv1.TriggerBuildRequest{Commit: commitB})
	if err != nil {
		t.Fatal(err)
	}
	check(tr.Build, "rebuild")
	if !tr.Build.Settings.GetBisect() || tr.Build.Settings.GetRetries() != 2 {
		t.Errorf("rebuild settings = %v", tr.Build.Settings)
	}
}

func TestCurlStyleJSON(t *testing.T) {
	cp := startCP(t, testConfig(t))
	cp.report(t, "main", nil, commitA)
	resp, err := http.Post(cp.url+"/pontus.v1.BuildService/ListBuilds", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := new(strings.Builder)
	_, _ = io.Copy(body, resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(body.String(), commitA) || !strings.Contains(body.String(), "BUILD_STATUS_QUEUED") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestQueueIsBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxQueuedBuilds = 2
	cp := startCP(t, cfg)
	cp.report(t, "main", nil, commitA, commitB)
	_, err := cp.observer.ReportCommits(context.Background(), &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main", Commits: []string{commitC}})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "queue full") {
		t.Fatalf("third build: %v, want resource_exhausted", err)
	}
	// Reporting what is already queued is still fine (idempotent).
	cp.report(t, "main", nil, commitB)
}

// A re-run that finished first keeps its result files: an older build of
// the same commit finishing later does not replace them.
func TestOlderBuildDoesNotOverwriteNewerResult(t *testing.T) {
	dir := t.TempDir()
	w := &resultWriter{dir: dir, logs: fileLogStore(t.TempDir(), 1<<20, false)}
	newer := &pontusv1.Build{Id: 7, Commit: commitA, Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED}
	older := &pontusv1.Build{Id: 5, Commit: commitA, Status: pontusv1.BuildStatus_BUILD_STATUS_FAILED}
	if err := w.write(newer); err != nil {
		t.Fatal(err)
	}
	if err := w.write(older); err != nil {
		t.Fatal(err)
	}
	if id := w.writtenID(commitA); id != 7 {
		t.Fatalf("result files are build %d's, want 7's", id)
	}
	human, _ := os.ReadFile(filepath.Join(dir, commitA))
	if !strings.HasPrefix(string(human), "PASSED") {
		t.Fatalf("human report replaced: %s", human)
	}
}
