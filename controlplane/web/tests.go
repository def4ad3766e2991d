package web

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// The Tests pages: every test's history over recent builds of a repository
// (and branch), and one test's runs with its duration over time as an SVG
// chart drawn on the server.

// testsQuery is the query string of /tests and /tests/history.
type testsQuery struct {
	Repo, Branch string
	Flaky        bool
	Sort         string // "", "slowest", "flakiest"
	Suite, Name  string // /tests/history
}

func parseTestsQuery(q url.Values) (testsQuery, error) {
	tq := testsQuery{Suite: q.Get("suite"), Name: q.Get("name"), Flaky: q.Get("flaky") != "", Sort: q.Get("sort")}
	if s := q.Get("repo"); s != "" {
		if err := validate.Repo("repo", s); err != nil {
			return tq, err
		}
		tq.Repo = s
	}
	if s := q.Get("branch"); s != "" {
		if err := validate.Branch("branch", s); err != nil {
			return tq, err
		}
		tq.Branch = s
	}
	switch tq.Sort {
	case "", "name", "slowest", "flakiest":
	default:
		return tq, fmt.Errorf("sort: unknown order %q; use name, slowest or flakiest", tq.Sort)
	}
	return tq, nil
}

// link is the URL of a tests page with q's filters and the given test.
func (q testsQuery) link(path, suite, name string) string {
	v := url.Values{}
	for k, s := range map[string]string{"repo": q.Repo, "branch": q.Branch, "suite": suite, "name": name} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

type testsView struct {
	Repo, Branch string
	Flaky        bool
	Sort         string
	Filtered     bool
	Tests        []testRowView
	Builds       int32
	Total        int32
}

type testRowView struct {
	Name, Suite, Repo, RepoBase string
	Link                        string
	Passed, Failed, Flaky       int32
	Skipped                     int32
	FlipRate                    string
	FlipHigh                    bool
	Median                      string
	Recent                      []runMark
}

// runMark is one run in a row of small coloured marks, oldest first.
type runMark struct {
	Class, Title string
	Href, Text   string
}

func (h *handler) testsPage(w http.ResponseWriter, r *http.Request) {
	q, err := parseTestsQuery(r.URL.Query())
	if err != nil {
		h.errorPage(w, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	req := &pontusv1.ListTestsRequest{Repo: q.Repo, Branch: q.Branch, FlakyOnly: q.Flaky, Limit: 500}
	switch {
	case q.Sort == "slowest":
		req.Sort = pontusv1.TestSort_TEST_SORT_SLOWEST
	case q.Sort == "flakiest" || q.Sort == "" && q.Flaky:
		req.Sort = pontusv1.TestSort_TEST_SORT_FLAKIEST
	}
	res, err := h.svc.ListTests(r.Context(), req)
	if err != nil {
		h.svcError(w, r, "read tests", err)
		return
	}
	v := testsView{Repo: q.Repo, Branch: q.Branch, Flaky: q.Flaky, Sort: q.Sort, Builds: res.GetBuilds(), Total: res.GetTotal(),
		Filtered: q.Branch != "" || q.Flaky || q.Sort != ""}
	if req.Sort == pontusv1.TestSort_TEST_SORT_FLAKIEST {
		v.Sort = "flakiest"
	}
	for _, t := range res.GetTests() {
		row := testRowView{
			Name: t.GetName(), Suite: t.GetSuite(), Repo: t.GetRepo(), RepoBase: repoBase(t.GetRepo()),
			Link:   testsQuery{Repo: t.GetRepo(), Branch: q.Branch}.link("/tests/history", t.GetSuite(), t.GetName()),
			Passed: t.GetPassed(), Failed: t.GetFailed() + t.GetErrored(), Flaky: t.GetFlaky(), Skipped: t.GetSkipped(),
			FlipRate: fmt.Sprintf("%.0f%%", 100*t.GetFlipRate()), FlipHigh: t.GetFlipRate() > 0,
			Median: testDuration(t.GetMedianDuration().AsDuration(), t.GetMedianDuration() != nil),
		}
		runs := t.GetRecent()
		for i := len(runs) - 1; i >= 0; i-- {
			row.Recent = append(row.Recent, newRunMark(runs[i]))
		}
		v.Tests = append(v.Tests, row)
	}
	title := "Tests"
	if q.Branch != "" {
		title = q.Branch + " · tests"
	}
	h.render(w, http.StatusOK, "tests", title, "tests", v)
}

func newRunMark(r *pontusv1.TestRun) runMark {
	label := shortEnum(r.GetOutcome().String(), "TEST_OUTCOME_")
	title := fmt.Sprintf("#%d %s %s", r.GetBuildId(), shortCommit(r.GetCommit()), strings.ToUpper(label))
	if r.GetDuration() != nil {
		title += " in " + testDuration(r.GetDuration().AsDuration(), true)
	}
	if r.GetRuns() > 1 {
		title += fmt.Sprintf(" (%d runs)", r.GetRuns())
	}
	id := strconv.FormatInt(r.GetBuildId(), 10)
	return runMark{Class: "m-" + label, Title: title, Href: "/builds/" + id, Text: "#" + id}
}

type testHistoryView struct {
	Name, Suite, Repo, Branch string
	Back                      string
	Passed, Failed, Flaky     int32
	Skipped                   int32
	FlipRate, Median          string
	FailedIn                  []runMark
	Chart                     template.HTML
	Runs                      []runView
}

type runView struct {
	Build         int64
	Commit, Short string
	Branch        string
	Class, Label  string
	Runs          int32
	Duration      string
}

func (h *handler) testHistoryPage(w http.ResponseWriter, r *http.Request) {
	q, err := parseTestsQuery(r.URL.Query())
	if err == nil && q.Name == "" {
		err = fmt.Errorf("name: give the test's name, as the Tests page links it")
	}
	if err != nil {
		h.errorPage(w, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	res, err := h.svc.GetTestHistory(r.Context(), &pontusv1.GetTestHistoryRequest{
		Repo: q.Repo, Branch: q.Branch, Suite: q.Suite, Name: q.Name, Limit: 200})
	if err != nil {
		h.svcError(w, r, "read test history", err)
		return
	}
	t := res.GetTest()
	v := testHistoryView{
		Name: t.GetName(), Suite: t.GetSuite(), Repo: t.GetRepo(), Branch: q.Branch,
		Back:   testsQuery{Repo: t.GetRepo(), Branch: q.Branch}.link("/tests", "", ""),
		Passed: t.GetPassed(), Failed: t.GetFailed() + t.GetErrored(), Flaky: t.GetFlaky(), Skipped: t.GetSkipped(),
		FlipRate: fmt.Sprintf("%.0f%%", 100*t.GetFlipRate()),
		Median:   testDuration(t.GetMedianDuration().AsDuration(), t.GetMedianDuration() != nil),
		Chart:    durationChart(res.GetRuns()),
	}
	for _, run := range res.GetRuns() {
		label := shortEnum(run.GetOutcome().String(), "TEST_OUTCOME_")
		v.Runs = append(v.Runs, runView{
			Build: run.GetBuildId(), Commit: run.GetCommit(), Short: shortCommit(run.GetCommit()), Branch: run.GetBranch(),
			Class: "s-" + label, Label: label, Runs: max(run.GetRuns(), 1),
			Duration: testDuration(run.GetDuration().AsDuration(), run.GetDuration() != nil),
		})
		switch run.GetOutcome() {
		case pontusv1.TestOutcome_TEST_OUTCOME_FAILED, pontusv1.TestOutcome_TEST_OUTCOME_ERROR, pontusv1.TestOutcome_TEST_OUTCOME_FLAKY:
			v.FailedIn = append(v.FailedIn, newRunMark(run))
		}
	}
	h.render(w, http.StatusOK, "test", t.GetName()+" · test history", "tests", v)
}

// Geometry of the duration chart, in SVG user units.
const (
	histW, histH = 720, 180
	histLeft     = 64 // room for the axis labels
	histTop      = 10
	histBottom   = 20
)

// durationChart draws runs (newest first) oldest to newest as bars whose
// height is the run's duration and whose colour is its outcome; each bar
// links to its build and names it in a tooltip. Runs without a duration
// are drawn as a short grey stub.
func durationChart(runs []*pontusv1.TestRun) template.HTML {
	if len(runs) == 0 {
		return ""
	}
	var top time.Duration
	for _, r := range runs {
		if r.GetDuration() != nil {
			top = max(top, r.GetDuration().AsDuration())
		}
	}
	plotW := float64(histW - histLeft)
	plotH := float64(histH - histTop - histBottom)
	slot := min(plotW/float64(len(runs)), 40) // a few runs: narrow bars from the left
	gap := min(slot*0.2, 3)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="duration-chart" viewBox="0 0 %d %d" role="img" aria-label="duration of each run, oldest to newest">`, histW, histH)
	// Axis: the top value, zero, and a baseline.
	base := float64(histTop) + plotH
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="end">%s</text>`, histLeft-6, histTop+10, template.HTMLEscapeString(testDuration(top, top > 0)))
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="%.1f" text-anchor="end">0</text>`, histLeft-6, base)
	fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%d" x2="%d" y2="%d"/>`, histLeft, histTop, histW, histTop)
	fmt.Fprintf(&b, `<line class="base" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, histLeft, base, histW, base)
	fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d">oldest</text><text class="axis" x="%d" y="%d" text-anchor="end">newest</text>`,
		histLeft, histH-4, histW, histH-4)
	for i := range runs {
		r := runs[len(runs)-1-i] // oldest first
		label := shortEnum(r.GetOutcome().String(), "TEST_OUTCOME_")
		h := 2.0
		class := "bar-" + label
		if r.GetDuration() != nil && top > 0 {
			h = max(plotH*float64(r.GetDuration().AsDuration())/float64(top), 2)
		} else {
			class += " bar-nodur"
		}
		x := float64(histLeft) + float64(i)*slot + gap/2
		mark := newRunMark(r)
		fmt.Fprintf(&b, `<a href="%s"><rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s</title></rect></a>`,
			template.HTMLEscapeString(mark.Href), class, x, base-h, max(slot-gap, 1), h, template.HTMLEscapeString(mark.Title))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// testDuration formats a test's duration: finer than a build's.
func testDuration(d time.Duration, ok bool) string {
	switch {
	case !ok:
		return "—"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmtDuration(d)
}
