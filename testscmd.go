package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pontus-ci/pontus/internal/buildtext"
	"github.com/pontus-ci/pontus/internal/termsafe"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// runTests is `pontus tests`: the per-test history of a repository, or one
// test's runs.
func runTests(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("tests", help{
		usage: "tests [flags] [TEST]",
		about: "Lists tests with their outcomes over recent builds: passed, failed, flaky and skipped runs,\n" +
			"flip rate (how often the outcome changed from one run to the next) and median duration.\n" +
			"With TEST (a name as listed), prints that test's runs, newest first.",
		examples: []string{"tests", "tests --flaky", "tests --branch main --slowest --limit 10",
			"tests --repo /srv/git/app.git --json", "tests TestParse/empty"},
	}, stderr)
	repo := c.fs.String("repo", "", "only tests of this `repository`")
	branch := c.fs.String("branch", "", "only runs in builds of this `branch`")
	flaky := c.fs.Bool("flaky", false, "only tests that were FLAKY at least once, flakiest first")
	slowest := c.fs.Bool("slowest", false, "slowest first (by median duration)")
	suite := c.fs.String("suite", "", "with TEST: the test's `suite` (package, class), when several have its name")
	limit := c.fs.Int("limit", 50, "at most `n` tests (or runs of TEST)")
	builds := c.fs.Int("builds", 50, "look at the newest `n` builds with test results")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return c.usage("give at most one TEST, got %d arguments", len(pos))
	}
	if *flaky && *slowest {
		return c.usage("--flaky and --slowest sort differently: give one")
	}
	client, err := c.builds()
	if err != nil {
		return err
	}
	safe := termsafe.NewWriter(stdout) // names come from tests
	defer safe.Flush()
	if len(pos) == 1 {
		res, err := client.GetTestHistory(ctx, &pontusv1.GetTestHistoryRequest{
			Repo: *repo, Branch: *branch, Suite: *suite, Name: pos[0], Limit: int32(*limit)})
		if err != nil {
			return err
		}
		if c.json {
			return printJSON(stdout, res)
		}
		printTestStats(safe, []*pontusv1.TestStats{res.Test})
		fmt.Fprintln(safe)
		tw := tabwriter.NewWriter(safe, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BUILD\tCOMMIT\tBRANCH\tOUTCOME\tRUNS\tDURATION")
		for _, r := range res.Runs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", r.BuildId, short(r.Commit), r.Branch, buildtext.Outcome(r.Outcome), r.Runs, testDuration(r.Duration.AsDuration(), r.Duration != nil))
		}
		return tw.Flush()
	}
	req := &pontusv1.ListTestsRequest{Repo: *repo, Branch: *branch, FlakyOnly: *flaky, Limit: int32(*limit), Builds: int32(*builds)}
	switch {
	case *flaky:
		req.Sort = pontusv1.TestSort_TEST_SORT_FLAKIEST
	case *slowest:
		req.Sort = pontusv1.TestSort_TEST_SORT_SLOWEST
	}
	res, err := client.ListTests(ctx, req)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, res)
	}
	if len(res.Tests) == 0 {
		what := "no test results recorded yet"
		if *flaky {
			what = "no flaky tests"
		}
		fmt.Fprintf(safe, "%s in the newest %d builds with tests\n", what, res.Builds)
		return nil
	}
	printTestStats(safe, res.Tests)
	more := ""
	if int(res.Total) > len(res.Tests) {
		more = fmt.Sprintf(" (%d shown; --limit for more)", len(res.Tests))
	}
	fmt.Fprintf(safe, "\n%s over the newest %s%s; recent runs oldest to newest: . passed  F failed  ~ flaky  s skipped  E error\n",
		buildtext.Plural(int(res.Total), "test", "tests"), buildtext.Plural(int(res.Builds), "build", "builds"), more)
	return nil
}

func printTestStats(w io.Writer, tests []*pontusv1.TestStats) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEST\tSUITE\tPASSED\tFAILED\tFLAKY\tSKIPPED\tFLIP RATE\tMEDIAN\tRECENT")
	for _, t := range tests {
		failed := t.Failed + t.Errored
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.0f%%\t%s\t%s\n", t.Name, t.Suite, t.Passed, failed, t.Flaky, t.Skipped,
			100*t.FlipRate, testDuration(t.MedianDuration.AsDuration(), t.MedianDuration != nil), recentMarks(t.Recent))
	}
	tw.Flush()
}

// recentMarks is one character per run, oldest first.
func recentMarks(runs []*pontusv1.TestRun) string {
	var b strings.Builder
	for i := len(runs) - 1; i >= 0; i-- {
		switch runs[i].Outcome {
		case pontusv1.TestOutcome_TEST_OUTCOME_PASSED:
			b.WriteByte('.')
		case pontusv1.TestOutcome_TEST_OUTCOME_FAILED:
			b.WriteByte('F')
		case pontusv1.TestOutcome_TEST_OUTCOME_FLAKY:
			b.WriteByte('~')
		case pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED:
			b.WriteByte('s')
		default:
			b.WriteByte('E')
		}
	}
	return b.String()
}

func testDuration(d time.Duration, ok bool) string {
	switch {
	case !ok:
		return "—"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}
