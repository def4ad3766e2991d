package controlplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/controlplane/store"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Bounds of the test history calls.
const (
	defaultTestLimit  = 100
	maxTestLimit      = 10000
	defaultTestBuilds = 50
	maxTestBuilds     = 1000
	recentRuns        = 20 // TestStats.recent in ListTests
	defaultRunLimit   = 100
	maxRunLimit       = 1000
	maxTestNameBytes  = 4096
)

func checkRepoBranchFilter(repo, branch string) error {
	if repo != "" {
		if err := validate.Repo("repo", repo); err != nil {
			return invalid(err)
		}
	}
	if branch != "" {
		if err := validate.Branch("branch", branch); err != nil {
			return invalid(err)
		}
	}
	return nil
}

func (s buildService) ListTests(ctx context.Context, req *pontusv1.ListTestsRequest) (*pontusv1.ListTestsResponse, error) {
	if err := checkRepoBranchFilter(req.Repo, req.Branch); err != nil {
		return nil, err
	}
	if _, ok := pontusv1.TestSort_name[int32(req.Sort)]; !ok {
		return nil, invalidf("sort", "unknown sort %d", req.Sort)
	}
	if req.Limit < 0 || req.Limit > maxTestLimit {
		return nil, invalidf("limit", "must be between 0 and %d, got %d", maxTestLimit, req.Limit)
	}
	if req.Builds < 0 || req.Builds > maxTestBuilds {
		return nil, invalidf("builds", "must be between 0 and %d, got %d", maxTestBuilds, req.Builds)
	}
	builds := int(cmp.Or(req.Builds, defaultTestBuilds))
	runs, err := s.d.st.TestRuns(ctx, store.TestRunQuery{Repo: req.Repo, Branch: req.Branch, Builds: builds})
	if err != nil {
		return nil, readErr(err)
	}
	tests := testStats(runs, recentRuns)
	if req.FlakyOnly {
		tests = slices.DeleteFunc(tests, func(t *pontusv1.TestStats) bool { return t.Flaky == 0 })
	}
	sortTests(tests, req.Sort)
	resp := &pontusv1.ListTestsResponse{Total: int32(len(tests)), Builds: int32(countBuilds(runs))}
	resp.Tests = tests[:min(len(tests), int(cmp.Or(req.Limit, defaultTestLimit)))]
	return resp, nil
}

func (s buildService) GetTestHistory(ctx context.Context, req *pontusv1.GetTestHistoryRequest) (*pontusv1.GetTestHistoryResponse, error) {
	if err := checkRepoBranchFilter(req.Repo, req.Branch); err != nil {
		return nil, err
	}
	if req.Name == "" {
		return nil, invalidf("name", "is empty: give the test's name (and suite) as ListTests lists them")
	}
	if len(req.Name) > maxTestNameBytes || len(req.Suite) > maxTestNameBytes {
		return nil, invalidf("name", "name and suite must be at most %d bytes", maxTestNameBytes)
	}
	if req.Limit < 0 || req.Limit > maxRunLimit {
		return nil, invalidf("limit", "must be between 0 and %d, got %d", maxRunLimit, req.Limit)
	}
	limit := int(cmp.Or(req.Limit, defaultRunLimit))
	runs, err := s.d.st.TestRuns(ctx, store.TestRunQuery{Repo: req.Repo, Branch: req.Branch, Name: req.Name, Suite: req.Suite, Builds: limit})
	if err != nil {
		return nil, readErr(err)
	}
	if len(runs) == 0 {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no runs of test %q (suite %q) recorded%s", req.Name, req.Suite, where(req.Repo, req.Branch)))
	}
	// One test of one repository and suite: with none given, the newest
	// run's.
	repo, suite := runs[0].Repo, runs[0].Suite
	runs = slices.DeleteFunc(runs, func(r store.TestRun) bool { return r.Repo != repo || r.Suite != suite })
	stats := testStats(runs, 0)
	resp := &pontusv1.GetTestHistoryResponse{Test: stats[0]}
	for _, r := range runs {
		resp.Runs = append(resp.Runs, testRun(r))
	}
	return resp, nil
}

func where(repo, branch string) string {
	var parts []string
	if repo != "" {
		parts = append(parts, "in "+repo)
	}
	if branch != "" {
		parts = append(parts, "on branch "+branch)
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

func readErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeCanceled, err)
	}
	return connect.NewError(connect.CodeInternal, errors.New("store read failed"))
}

func countBuilds(runs []store.TestRun) int {
	n := 0
	for i, r := range runs {
		if i == 0 || r.BuildID != runs[i-1].BuildID {
			n++
		}
	}
	return n
}

func testRun(r store.TestRun) *pontusv1.TestRun {
	tr := &pontusv1.TestRun{BuildId: r.BuildID, Commit: r.Commit, Branch: r.Branch, Outcome: r.Outcome, Runs: r.Runs}
	if r.Duration >= 0 {
		tr.Duration = durationpb.New(r.Duration)
	}
	return tr
}

// testStats summarises runs (newest build first) per test, keeping up to
// recent runs of each in TestStats.recent (all of them when recent is 0).
func testStats(runs []store.TestRun, recent int) []*pontusv1.TestStats {
	type key struct{ repo, suite, name string }
	type acc struct {
		stats *pontusv1.TestStats
		runs  []store.TestRun
	}
	byKey := map[key]*acc{}
	var order []key
	for _, r := range runs {
		k := key{r.Repo, r.Suite, r.Name}
		a := byKey[k]
		if a == nil {
			a = &acc{stats: &pontusv1.TestStats{Repo: r.Repo, Suite: r.Suite, Name: r.Name}}
			byKey[k] = a
			order = append(order, k)
		}
		if len(a.runs) > 0 && a.runs[len(a.runs)-1].BuildID == r.BuildID {
			continue // a name listed twice in one build counts once
		}
		a.runs = append(a.runs, r)
	}
	out := make([]*pontusv1.TestStats, 0, len(order))
	for _, k := range order {
		a := byKey[k]
		st := a.stats
		var durs []time.Duration
		for i, r := range a.runs {
			switch r.Outcome {
			case pontusv1.TestOutcome_TEST_OUTCOME_PASSED:
				st.Passed++
			case pontusv1.TestOutcome_TEST_OUTCOME_FAILED:
				st.Failed++
			case pontusv1.TestOutcome_TEST_OUTCOME_FLAKY:
				st.Flaky++
			case pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED:
				st.Skipped++
			default:
				st.Errored++
			}
			if r.Duration >= 0 && r.Outcome != pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED {
				durs = append(durs, r.Duration)
			}
			if recent == 0 || i < recent {
				st.Recent = append(st.Recent, testRun(r))
			}
		}
		st.FlipRate = flipRate(a.runs)
		if len(durs) > 0 {
			slices.Sort(durs)
			m := durs[len(durs)/2]
			if len(durs)%2 == 0 {
				m = (durs[len(durs)/2-1] + m) / 2
			}
			st.MedianDuration = durationpb.New(m)
		}
		out = append(out, st)
	}
	return out
}

// flipRate is the fraction of consecutive outcomes that differ, oldest to
// newest, skips left out, a FLAKY run counting as a failure then a pass.
// runs are newest first.
func flipRate(runs []store.TestRun) float64 {
	var seq []bool // passed?
	for i := len(runs) - 1; i >= 0; i-- {
		switch runs[i].Outcome {
		case pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED:
		case pontusv1.TestOutcome_TEST_OUTCOME_PASSED:
			seq = append(seq, true)
		case pontusv1.TestOutcome_TEST_OUTCOME_FLAKY:
			seq = append(seq, false, true)
		default:
			seq = append(seq, false)
		}
	}
	if len(seq) < 2 {
		return 0
	}
	flips := 0
	for i := 1; i < len(seq); i++ {
		if seq[i] != seq[i-1] {
			flips++
		}
	}
	return float64(flips) / float64(len(seq)-1)
}

func sortTests(tests []*pontusv1.TestStats, by pontusv1.TestSort) {
	byName := func(a, b *pontusv1.TestStats) int {
		return cmp.Or(cmp.Compare(a.Repo, b.Repo), cmp.Compare(a.Suite, b.Suite), cmp.Compare(a.Name, b.Name))
	}
	median := func(t *pontusv1.TestStats) time.Duration {
		if t.MedianDuration == nil {
			return -1
		}
		return t.MedianDuration.AsDuration()
	}
	switch by {
	case pontusv1.TestSort_TEST_SORT_SLOWEST:
		slices.SortFunc(tests, func(a, b *pontusv1.TestStats) int {
			return cmp.Or(cmp.Compare(median(b), median(a)), byName(a, b))
		})
	case pontusv1.TestSort_TEST_SORT_FLAKIEST:
		slices.SortFunc(tests, func(a, b *pontusv1.TestStats) int {
			return cmp.Or(cmp.Compare(b.FlipRate, a.FlipRate), cmp.Compare(b.Flaky, a.Flaky), byName(a, b))
		})
	default:
		slices.SortFunc(tests, byName)
	}
}
