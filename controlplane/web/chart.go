package web

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/pontus-ci/pontus/internal/buildtext"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// The history charts of the builds page: for each branch in view, its
// recent builds as bars (height by duration, colour by status), oldest on
// the left, each a link to its build with an accessible name.
const (
	maxCharts = 4  // branches charted on one page
	chartBars = 30 // builds per chart
	barWidth  = 12
	barGap    = 4
	chartH    = 48 // the tallest bar
	minBarH   = 3  // a build without a duration (still queued or running)
)

type chartView struct {
	Branch   string
	Repo     string
	RepoBase string
	Href     string // the branch's builds
	Label    string // the chart's accessible name
	Summary  string
	Width    int
	Height   int
	Bars     []barView
}

type barView struct {
	ID         int64
	X, Y, W, H int
	Class      string
	Title      string // what the bar stands for, in words
}

// chartBranches returns the (repo, branch) pairs of builds, in order of
// first appearance, at most maxCharts.
func chartBranches(builds []*pontusv1.Build) [][2]string {
	var out [][2]string
	for _, b := range builds {
		k := [2]string{b.GetRepo(), b.GetBranch()}
		if !slices.Contains(out, k) {
			out = append(out, k)
			if len(out) == maxCharts {
				break
			}
		}
	}
	return out
}

// charts reads the recent builds of each branch of builds and draws them.
// A branch whose builds cannot be read is left out: the list below still
// shows what there is.
func (h *handler) charts(ctx context.Context, builds []*pontusv1.Build) []chartView {
	var out []chartView
	for _, k := range chartBranches(builds) {
		res, err := h.svc.ListBuilds(ctx, &pontusv1.ListBuildsRequest{Repo: k[0], Branch: k[1], Limit: chartBars})
		if err != nil {
			h.log.Debug("read builds for a chart", "branch", k[1], "err", err)
			continue
		}
		out = append(out, newChart(k[0], k[1], res.GetBuilds()))
	}
	return out
}

// newChart draws builds (newest first, as ListBuilds returns them).
func newChart(repo, branch string, builds []*pontusv1.Build) chartView {
	q := url.Values{"branch": {branch}}
	if repo != "" {
		q.Set("repo", repo)
	}
	c := chartView{
		Branch: branch, Repo: repo, RepoBase: repoBase(repo), Href: "/?" + q.Encode(),
		Label:  fmt.Sprintf("Recent builds of %s, oldest first: bar height is duration, colour is status", branch),
		Height: chartH,
	}
	var longest float64
	for _, b := range builds {
		if d, ok := durationOf(b.GetDuration()); ok {
			longest = max(longest, d.Seconds())
		}
	}
	counts := map[string]int{}
	var order []string
	for i := range builds {
		b := builds[len(builds)-1-i] // oldest first
		st := statusLabel(b.GetStatus())
		if counts[st] == 0 {
			order = append(order, st)
		}
		counts[st]++
		h := minBarH
		dur := "not finished"
		if d, ok := durationOf(b.GetDuration()); ok {
			dur = "in " + fmtDuration(d)
			if longest > 0 {
				h = max(minBarH, int(d.Seconds()/longest*chartH+0.5))
			}
		}
		title := fmt.Sprintf("Build #%d %s %s, commit %s", b.GetId(), st, dur, shortCommit(b.GetCommit()))
		if s := b.GetSubject(); s != "" {
			title += ": " + s
		}
		if a := buildtext.Author(b); a != "" {
			title += " (" + a + ")"
		}
		c.Bars = append(c.Bars, barView{
			ID: b.GetId(), X: i * (barWidth + barGap), Y: chartH - h, W: barWidth, H: h,
			Class: statusClass(b.GetStatus()), Title: title,
		})
	}
	// Every chart has room for chartBars bars, so charts line up.
	c.Width = chartBars*(barWidth+barGap) - barGap
	// Worst first, as the test summary orders outcomes.
	slices.SortStableFunc(order, func(a, b string) int { return statusRank(a) - statusRank(b) })
	parts := make([]string, len(order))
	for i, st := range order {
		parts[i] = fmt.Sprintf("%d %s", counts[st], st)
	}
	c.Summary = fmt.Sprintf("last %s: %s", buildtext.Plural(len(builds), "build", "builds"), strings.Join(parts, ", "))
	return c
}

func statusRank(label string) int {
	return slices.Index([]string{"FAILED", "ERROR", "TIMED_OUT", "CANCELED", "RUNNING", "LEASED", "QUEUED", "PASSED"}, label)
}
