package controlplane

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/controlplane/store"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Flip rate counts changes between consecutive runs, oldest to newest,
// skips left out and a FLAKY run counting as a failure then a pass; the
// median duration ignores runs without one.
func TestTestStats(t *testing.T) {
	t.Parallel()
	const (
		P = pontusv1.TestOutcome_TEST_OUTCOME_PASSED
		F = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
		K = pontusv1.TestOutcome_TEST_OUTCOME_FLAKY
		S = pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED
	)
	// runs builds a test's runs from outcomes given oldest first, returned
	// newest first as the store does.
	runs := func(name string, os ...pontusv1.TestOutcome) []store.TestRun {
		var out []store.TestRun
		for i := len(os) - 1; i >= 0; i-- {
			out = append(out, store.TestRun{BuildID: int64(i + 1), Repo: "/r", Name: name, Outcome: os[i],
				Duration: time.Duration(i+1) * time.Second})
		}
		return out
	}
	for _, c := range []struct {
		outcomes []pontusv1.TestOutcome
		flip     float64
		median   time.Duration
	}{
		{[]pontusv1.TestOutcome{P, P, P}, 0, 2 * time.Second},
		{[]pontusv1.TestOutcome{F, F}, 0, 1500 * time.Millisecond},
		{[]pontusv1.TestOutcome{K, K}, 1, 1500 * time.Millisecond},  // F P F P
		{[]pontusv1.TestOutcome{P, F, P, F, P}, 1, 3 * time.Second}, // alternates
		{[]pontusv1.TestOutcome{K, P, P}, 1.0 / 3, 2 * time.Second}, // F P P P
		{[]pontusv1.TestOutcome{P, S, F}, 1, 2 * time.Second},       // P F; the skip has no say
		{[]pontusv1.TestOutcome{P}, 0, time.Second},
	} {
		st := testStats(runs("T", c.outcomes...), 2)
		if len(st) != 1 {
			t.Fatalf("%v: %d tests", c.outcomes, len(st))
		}
		got := st[0]
		if diff := got.FlipRate - c.flip; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%v: flip rate %v, want %v", c.outcomes, got.FlipRate, c.flip)
		}
		if got.MedianDuration.AsDuration() != c.median {
			t.Errorf("%v: median %v, want %v", c.outcomes, got.MedianDuration.AsDuration(), c.median)
		}
		if want := min(len(c.outcomes), 2); len(got.Recent) != want || got.Recent[0].BuildId != int64(len(c.outcomes)) {
			t.Errorf("%v: recent %v", c.outcomes, got.Recent)
		}
	}

	all := append(append(runs("b", P, P, K), runs("a", F, P)...), runs("c", P, P)...)
	all[len(all)-1].Duration = time.Hour
	tests := testStats(all, 0)
	order := func(by pontusv1.TestSort) string {
		sortTests(tests, by)
		s := ""
		for _, t := range tests {
			s += t.Name
		}
		return s
	}
	for by, want := range map[pontusv1.TestSort]string{
		pontusv1.TestSort_TEST_SORT_UNSPECIFIED: "abc",
		pontusv1.TestSort_TEST_SORT_FLAKIEST:    "abc", // a: F P (1), b: P P F P (2/3)
		pontusv1.TestSort_TEST_SORT_SLOWEST:     "cba",
	} {
		if got := order(by); got != want {
			t.Errorf("sort %v: %s, want %s", by, got, want)
		}
	}
}

// A job handed out carries its build's settings; its FLAKY results are
// accepted, kept in the history and summarised by ListTests and
// GetTestHistory; bad requests are invalid_argument, an unknown test
// not_found.
func TestListTestsAndHistoryRPCs(t *testing.T) {
	cp := startCP(t, testConfig(t))
	ctx := context.Background()
	runner := cp.register(t, "r")
	for i, commit := range []string{commitA, commitB} {
		if _, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main",
			Commits: []string{commit}, Settings: &pontusv1.BuildSettings{Retries: 2, Shards: 1}}); err != nil {
			t.Fatal(err)
		}
		job := cp.acquire(t, runner, 5*time.Second)
		if job == nil || job.GetSettings().GetRetries() != 2 {
			t.Fatalf("job %v: want settings with retries 2", job)
		}
		outcome := pontusv1.TestOutcome_TEST_OUTCOME_FLAKY
		if i == 1 {
			outcome = pontusv1.TestOutcome_TEST_OUTCOME_PASSED
		}
		if _, err := cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: job.Attempt,
			Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED, Tests: []*pontusv1.TestCase{
				{Name: "TestFlaky", Suite: "pkg", Outcome: outcome, Runs: 2, Duration: durationpb.New(time.Duration(i+1) * time.Millisecond)},
				{Name: "TestOK", Suite: "pkg", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED},
			}}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := cp.builds.ListTests(ctx, &pontusv1.ListTestsRequest{Repo: "/srv/repo", FlakyOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tests) != 1 || res.Builds != 2 || res.Tests[0].Name != "TestFlaky" || res.Tests[0].Flaky != 1 || res.Tests[0].Passed != 1 ||
		res.Tests[0].FlipRate < 0.49 || res.Tests[0].FlipRate > 0.51 || res.Tests[0].MedianDuration.AsDuration() != 1500*time.Microsecond {
		t.Errorf("ListTests --flaky: %v", res)
	}
	h, err := cp.builds.GetTestHistory(ctx, &pontusv1.GetTestHistoryRequest{Name: "TestFlaky"})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Runs) != 2 || h.Runs[0].BuildId != 2 || h.Runs[1].Outcome != pontusv1.TestOutcome_TEST_OUTCOME_FLAKY || h.Runs[1].Runs != 2 || h.Test.Suite != "pkg" {
		t.Errorf("GetTestHistory: %v", h)
	}
	_, err = cp.builds.GetTestHistory(ctx, &pontusv1.GetTestHistoryRequest{Name: "TestNope"})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("unknown test: %v", err)
	}
	for name, req := range map[string]*pontusv1.ListTestsRequest{
		"bad branch": {Branch: "a..b"}, "bad repo": {Repo: "-x"}, "bad sort": {Sort: 42},
		"limit": {Limit: -1}, "builds": {Builds: 100000},
	} {
		if _, err := cp.builds.ListTests(ctx, req); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("ListTests %s: %v, want invalid_argument", name, err)
		}
	}
	for name, req := range map[string]*pontusv1.GetTestHistoryRequest{
		"no name": {}, "long name": {Name: strings.Repeat("x", 5000)}, "limit": {Name: "T", Limit: 5000},
	} {
		if _, err := cp.builds.GetTestHistory(ctx, req); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("GetTestHistory %s: %v, want invalid_argument", name, err)
		}
	}
}

// The history's cost: writing a finished build of 1,000 tests (its build
// row and 1,000 history rows in one group commit), and ListTests' read and
// summary over 50 such builds.
func BenchmarkTestHistory(b *testing.B) {
	st, err := store.OpenSQLite(b.TempDir()+"/pontus.db", store.SQLiteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	mk := func(id int64) *pontusv1.Build {
		bd := &pontusv1.Build{Id: id, Repo: "/r", Branch: "main", Commit: strings.Repeat("a", 40), Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED}
		for i := range 1000 {
			bd.Tests = append(bd.Tests, &pontusv1.TestCase{Name: fmt.Sprintf("TestCase%04d", i), Suite: "example.com/pkg",
				Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED, Duration: durationpb.New(time.Duration(i) * time.Millisecond)})
		}
		return bd
	}
	for id := int64(1); id <= 50; id++ {
		if err := st.Enqueue(store.Mutation{PutBuild: mk(id)}).Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("write-1000-tests", func(b *testing.B) {
		id := int64(1000)
		for b.Loop() {
			id++
			if err := st.Enqueue(store.Mutation{PutBuild: mk(id)}).Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("query-50-builds-of-1000", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.TestRuns(ctx, store.TestRunQuery{Repo: "/r", Builds: 50}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("list-50-builds-of-1000", func(b *testing.B) {
		for b.Loop() {
			runs, err := st.TestRuns(ctx, store.TestRunQuery{Repo: "/r", Builds: 50})
			if err != nil || len(runs) != 50000 {
				b.Fatalf("%d runs, %v", len(runs), err)
			}
			sortTests(testStats(runs, recentRuns), pontusv1.TestSort_TEST_SORT_FLAKIEST)
		}
	})
}
