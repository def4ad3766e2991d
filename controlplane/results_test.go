package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const (
	passed   = pontusv1.BuildStatus_BUILD_STATUS_PASSED
	failed   = pontusv1.BuildStatus_BUILD_STATUS_FAILED
	timedOut = pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT
)

// The result files hold the newest verdict; an ERROR build writes them
// only while no verdict is there.
func TestErrorNeverReplacesAVerdict(t *testing.T) {
	t.Parallel()
	type write struct {
		id     int64
		status pontusv1.BuildStatus
	}
	for _, c := range []struct {
		name   string
		writes []write
		want   int64
	}{
		{"error after a pass", []write{{1, passed}, {2, statusError}}, 1},
		{"verdict after an error", []write{{1, statusError}, {2, failed}}, 2},
		{"older verdict after a newer error", []write{{5, statusError}, {4, passed}}, 4},
		{"newer error after an error", []write{{1, statusError}, {2, statusError}}, 2},
		{"older error after an error", []write{{2, statusError}, {1, statusError}}, 2},
		{"newest verdict wins", []write{{3, failed}, {2, passed}, {4, timedOut}, {5, statusError}}, 4},
		{"canceled is a verdict", []write{{1, passed}, {2, statusCanceled}, {3, statusError}}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := &resultWriter{dir: t.TempDir(), logs: fileLogStore(t.TempDir(), 1<<20, false)}
			for _, wr := range c.writes {
				if err := w.write(&pontusv1.Build{Id: wr.id, Commit: commitA, Status: wr.status}); err != nil {
					t.Fatal(err)
				}
			}
			if id := w.writtenID(commitA); id != c.want {
				t.Fatalf("result files are build %d's, want %d's", id, c.want)
			}
		})
	}
}

// runJob takes repo's commit through a runner to status, with log as its
// output, and returns the build id.
func runJob(t *testing.T, cp *testCP, runner, repo, commit string, status pontusv1.BuildStatus, log string) int64 {
	t.Helper()
	ctx := context.Background()
	if _, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: repo, Branch: "main", Commits: []string{commit}}); err != nil {
		t.Fatalf("ReportCommits: %v", err)
	}
	job := cp.acquire(t, runner, 5*time.Second)
	if job == nil || job.Commit != commit {
		t.Fatalf("job: %v", job)
	}
	if _, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: job.Attempt, Data: []byte(log)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: job.Attempt,
		Status: status, LogSize: int64(len(log)), Reason: "from the test"}); err != nil {
		t.Fatal(err)
	}
	return job.JobId
}

func waitResult(t *testing.T, dir, commit string, id int64) {
	t.Helper()
	w := &resultWriter{dir: dir}
	waitFor(t, fmt.Sprintf("build %d's result files", id), 10*time.Second, func() (bool, string) {
		got := w.writtenID(commit)
		return got == id, fmt.Sprintf("files of build %d", got)
	})
}

// The README's ReportCommits example names a repository that does not
// exist; its ERROR build must not replace the real repository's PASSED.
// Files are written in order, so once a later build's files are there the
// ERROR build has been dealt with.
func TestInfrastructureErrorKeepsAnotherRepositorysVerdict(t *testing.T) {
	t.Parallel()
	cp := startCP(t, testConfig(t))
	runner := cp.register(t, "r1")
	pass := runJob(t, cp, runner, "/srv/real", commitA, passed, "ok\n")
	waitResult(t, cp.cfg.ResultsDir, commitA, pass)
	runJob(t, cp, runner, "/srv/app", commitA, statusError, "clone /srv/app: fatal: repository '/srv/app' does not exist\n")
	later := runJob(t, cp, runner, "/srv/real", commitB, passed, "ok\n")
	waitResult(t, cp.cfg.ResultsDir, commitB, later)
	if got := (&resultWriter{dir: cp.cfg.ResultsDir}).writtenID(commitA); got != pass {
		t.Fatalf("result files of %s are build %d's, want the PASSED build %d's", commitA, got, pass)
	}
	report, _ := os.ReadFile(filepath.Join(cp.cfg.ResultsDir, commitA))
	if !strings.HasPrefix(string(report), "PASSED") {
		t.Fatalf("report replaced:\n%s", report)
	}
}

// Result files copy the log, so they are as private as the log (0600) unless
// results_mode says otherwise; terminal escapes in the output are
// neutralised in the report.
func TestResultFilesModeAndEscapes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"", "0640"} {
		cfg := testConfig(t)
		want := os.FileMode(0o600)
		if mode != "" {
			cfg.ResultsMode, want = mode, 0o640
		}
		cp := startCP(t, cfg)
		runner := cp.register(t, "r1")
		hostile := "ok \x1b[31mred\x1b[0m \x1b]52;c;cm0gLXJmIH4=\x07 \x1b]0;title\x1b\\ bell\x07\n"
		id := runJob(t, cp, runner, "/srv/repo", commitA, failed, hostile)
		waitResult(t, cfg.ResultsDir, commitA, id)
		for _, name := range []string{commitA, commitA + ".json"} {
			fi, err := os.Stat(filepath.Join(cfg.ResultsDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("results_mode %q: %s is %v, want %v", mode, name, fi.Mode().Perm(), want)
			}
		}
		report, _ := os.ReadFile(filepath.Join(cfg.ResultsDir, commitA))
		if strings.ContainsAny(string(report), "\x1b\x07") || !strings.Contains(string(report), "ok red   bell^G") {
			t.Errorf("report holds terminal escapes:\n%q", report)
		}
	}
}

func TestResultsModeIsValidated(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"0755", "0400", "rw", "04644", ""} {
		cfg := DefaultConfig()
		cfg.ResultsMode = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "results_mode") {
			t.Errorf("results_mode %q: %v", bad, err)
		}
	}
}

// A results_dir that cannot be written (here its path is a file, which
// refuses even root) loses no build: the store keeps it, /metrics shows the
// failure, health stays SERVING, and the files appear once the directory
// can be written again.
func TestUnwritableResultsDirIsRetried(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	if err := os.WriteFile(cfg.ResultsDir, []byte("in the way\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := serveCP(t, cfg)
	runner := cp.register(t, "r1")
	id := runJob(t, &cp.testCP, runner, "/srv/repo", commitA, passed, "ok\n")
	waitFor(t, "the failure in /metrics", 10*time.Second, func() (bool, string) {
		m := metricsText(t, cp, nil)
		failing, _ := series(m, "pontus_result_writes_failing")
		errs, _ := series(m, "pontus_result_write_errors_total")
		return failing == 1 && errs >= 1, fmt.Sprintf("failing=%v errors=%v", failing, errs)
	})
	checkHealth(t, cp, "", "SERVING")
	if b := cp.build(t, id); b.Status != passed {
		t.Fatalf("build %d is %s in the store", id, b.Status)
	}

	if err := os.Remove(cfg.ResultsDir); err != nil {
		t.Fatal(err)
	}
	waitResult(t, cfg.ResultsDir, commitA, id)
	waitFor(t, "the failure to clear in /metrics", 10*time.Second, func() (bool, string) {
		failing, _ := series(metricsText(t, cp, nil), "pontus_result_writes_failing")
		return failing == 0, fmt.Sprintf("failing=%v", failing)
	})
}

// While result files cannot be written, finishing builds never waits for
// them, however many pile up: beyond the writer's queue they wait in the
// store, and all their files are written once the disk takes them again.
// (Not parallel: it shrinks the queue for the control plane it starts.)
func TestManyBuildsWaitForAnUnwritableResultsDir(t *testing.T) {
	saved := resultQueueLen
	resultQueueLen = 2
	t.Cleanup(func() { resultQueueLen = saved })
	cfg := testConfig(t)
	if err := os.WriteFile(cfg.ResultsDir, []byte("in the way\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cp := startCP(t, cfg)
	runner := cp.register(t, "r1")
	ids := map[string]int64{}
	for i := range 8 {
		commit := fmt.Sprintf("%040x", 0xf00+i)
		ids[commit] = runJob(t, cp, runner, "/srv/repo", commit, passed, "ok\n")
	}
	if err := os.Remove(cfg.ResultsDir); err != nil {
		t.Fatal(err)
	}
	for commit, id := range ids {
		waitResult(t, cfg.ResultsDir, commit, id)
	}
	cp.stop()
}

// The human report names the commit by subject, author and date, counts
// the tests with plurals right, and keeps test names in one column
// whatever the outcome.
func TestHumanReportFormat(t *testing.T) {
	t.Parallel()
	committed := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	b := &pontusv1.Build{
		Id: 3, Status: pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT, Commit: strings.Repeat("c", 40),
		Subject: "fix the parser", Author: "Ada Lovelace", AuthorEmail: "ada@example.com",
		CommittedAt: timestamppb.New(committed), Reason: "timed out after 3s",
		Tests: []*pontusv1.TestCase{
			{Name: "a", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FAILED, Message: "boom\nsecond line"},
			{Name: "b", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_ERROR},
			{Name: "c", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, Message: "later"},
			{Name: "d", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FLAKY},
			{Name: "e", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED},
			{Name: "f", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED},
		},
	}
	got := string(humanReport(b, []byte("the log\n")))
	for _, want := range []string{
		"TIMED_OUT " + b.Commit + "\nfix the parser\n\n",
		"status:   TIMED_OUT\n", "subject:  fix the parser\n", "author:   Ada Lovelace <ada@example.com>\n",
		"date:     2026-12-03T12:00:00Z\n", "reason:   timed out after 3s\n",
		"tests:    2 passed, 1 failed, 1 error, 1 skipped, 1 flaky\n",
		"FAILED  a\n        boom\n        second line\n", "ERROR   b\n", "SKIPPED c\n        later\n", "FLAKY   d\n", "PASSED  e\n",
		"--- output ---\nthe log\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "TIMED OUT") || strings.Contains(got, "errors") {
		t.Errorf("report:\n%s", got)
	}
}
