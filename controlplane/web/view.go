package web

import (
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pontus-ci/pontus/internal/buildtext"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// parsePages parses each page together with the layout. The templates are
// embedded, so an error here is a programming error caught by the tests.
func parsePages() map[string]*template.Template {
	pages := map[string]*template.Template{}
	for _, name := range []string{"builds", "build", "runners", "signin", "error", "bounce", "tests", "test"} {
		pages[name] = template.Must(template.New(name).ParseFS(templateFS,
			"templates/layout.html", "templates/parts.html", "templates/"+name+".html"))
	}
	return pages
}

// statusNames are the status filter values people type, in display order.
var statusNames = []struct {
	Value  string
	Status pontusv1.BuildStatus
}{
	{"queued", pontusv1.BuildStatus_BUILD_STATUS_QUEUED},
	{"leased", pontusv1.BuildStatus_BUILD_STATUS_LEASED},
	{"running", pontusv1.BuildStatus_BUILD_STATUS_RUNNING},
	{"passed", pontusv1.BuildStatus_BUILD_STATUS_PASSED},
	{"failed", pontusv1.BuildStatus_BUILD_STATUS_FAILED},
	{"error", pontusv1.BuildStatus_BUILD_STATUS_ERROR},
	{"timed_out", pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT},
	{"canceled", pontusv1.BuildStatus_BUILD_STATUS_CANCELED},
}

// parseStatus accepts "failed", "timed-out", "BUILD_STATUS_FAILED", … in any case.
func parseStatus(s string) (pontusv1.BuildStatus, bool) {
	k := strings.ToLower(strings.ReplaceAll(s, "-", "_"))
	k = strings.TrimPrefix(k, "build_status_")
	for _, n := range statusNames {
		if n.Value == k {
			return n.Status, true
		}
	}
	return 0, false
}

// shortEnum turns BUILD_STATUS_TIMED_OUT into "timed_out", and any
// *_UNSPECIFIED into "unknown" (as app.js does).
func shortEnum(s, prefix string) string {
	w := strings.ToLower(strings.TrimPrefix(s, prefix))
	if w == "unspecified" {
		return "unknown"
	}
	return w
}

func statusClass(s pontusv1.BuildStatus) string {
	return "s-" + strings.ReplaceAll(shortEnum(s.String(), "BUILD_STATUS_"), "_", "-")
}

// statusLabel is a status as the API, the CLI and the result files spell
// it: TIMED_OUT (mirrored by label in app.js).
func statusLabel(s pontusv1.BuildStatus) string {
	return buildtext.Status(s)
}

// cancelable reports whether CancelBuild can still stop a build in status s.
func cancelable(s pontusv1.BuildStatus) bool {
	switch s {
	case pontusv1.BuildStatus_BUILD_STATUS_QUEUED, pontusv1.BuildStatus_BUILD_STATUS_LEASED,
		pontusv1.BuildStatus_BUILD_STATUS_RUNNING:
		return true
	}
	return false
}

func terminal(s pontusv1.BuildStatus) bool {
	switch s {
	case pontusv1.BuildStatus_BUILD_STATUS_PASSED, pontusv1.BuildStatus_BUILD_STATUS_FAILED,
		pontusv1.BuildStatus_BUILD_STATUS_ERROR, pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT,
		pontusv1.BuildStatus_BUILD_STATUS_CANCELED:
		return true
	}
	return false
}

// fmtDuration is mirrored by fmtDur in app.js.
func fmtDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// fmtAge is mirrored by fmtAge in app.js.
func fmtAge(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

// stamp is a point in time as the templates show it: an age that app.js
// keeps current, with the exact time as a tooltip.
type stamp struct {
	ISO   string // RFC 3339, for <time datetime>
	Age   string
	Title string
}

func newStamp(ts *timestamppb.Timestamp, now time.Time) stamp {
	if ts == nil || !ts.IsValid() {
		return stamp{}
	}
	t := ts.AsTime()
	return stamp{ISO: t.Format(time.RFC3339Nano), Age: fmtAge(now.Sub(t)), Title: t.Format("2006-01-02 15:04:05 UTC")}
}

func durationOf(d *durationpb.Duration) (time.Duration, bool) {
	if d == nil || !d.IsValid() {
		return 0, false
	}
	return d.AsDuration(), true
}

// repoBase is the last path element of a repository path or URL, without ".git".
func repoBase(repo string) string {
	r := strings.TrimRight(repo, "/")
	r = strings.TrimSuffix(r, ".git")
	if i := strings.LastIndexAny(r, "/:"); i >= 0 && i < len(r)-1 {
		r = r[i+1:]
	}
	if r == "" {
		return repo
	}
	return r
}

func shortCommit(c string) string {
	if len(c) > 10 {
		return c[:10]
	}
	return c
}

func runnerOf(name, id string) string {
	switch {
	case name != "":
		return name
	case id != "":
		return id
	}
	return "—"
}

// buildRow is one build as the list shows it; app.js builds the same row
// from JSON (function row).
type buildRow struct {
	ID          int64
	Commit      string
	Short       string
	Branch      string
	Repo        string
	RepoBase    string
	Status      string // enum name, e.g. BUILD_STATUS_FAILED
	StatusClass string
	StatusLabel string
	Attempt     string
	Runner      string
	Duration    string
	Since       string // RFC 3339 start of a running build without a final duration
	Created     stamp
	Reason      string
	ShowReason  bool
	Subject     string // the commit's subject line
	Author      string // its author's name (or email)
	AuthorFull  string // "Name <email>"
	// Culprit is the first failing commit a culprit search named.
	Culprit string
}

func newBuildRow(b *pontusv1.Build, now time.Time) buildRow {
	st := b.GetStatus()
	row := buildRow{
		ID:          b.GetId(),
		Commit:      b.GetCommit(),
		Short:       shortCommit(b.GetCommit()),
		Branch:      b.GetBranch(),
		Repo:        b.GetRepo(),
		RepoBase:    repoBase(b.GetRepo()),
		Status:      st.String(),
		StatusClass: statusClass(st),
		StatusLabel: statusLabel(st),
		Attempt:     "—",
		Runner:      runnerOf(b.GetRunnerName(), b.GetRunnerId()),
		Duration:    "—",
		Created:     newStamp(b.GetCreatedAt(), now),
		Reason:      b.GetReason(),
		ShowReason:  b.GetReason() != "" && (st != pontusv1.BuildStatus_BUILD_STATUS_PASSED || b.GetReusedBuild() != 0),
		Culprit:     b.GetCulprit(),
		Subject:     b.GetSubject(),
		Author:      b.GetAuthor(),
		AuthorFull:  buildtext.Author(b),
	}
	if row.Author == "" {
		row.Author = b.GetAuthorEmail()
	}
	if b.GetAttempt() > 0 {
		row.Attempt = strconv.Itoa(int(b.GetAttempt()))
	}
	if d, ok := durationOf(b.GetDuration()); ok {
		row.Duration = fmtDuration(d)
	} else if s := b.GetStartedAt(); s.IsValid() && !terminal(st) {
		row.Since = s.AsTime().Format(time.RFC3339Nano)
		row.Duration = fmtDuration(now.Sub(s.AsTime()))
	}
	return row
}

type statusOption struct {
	Value    string
	Label    string
	Selected bool
}

type buildsView struct {
	Search     string
	Charts     []chartView
	Branch     string
	Repo       string
	StatusEnum string // BUILD_STATUS_… or ""
	Limit      int32
	Before     int64
	Statuses   []statusOption
	Filtered   bool
	Builds     []buildRow
	Older      string // URL of the next page, when there may be one
}

type attemptView struct {
	Number      int32
	Runner      string
	StatusClass string
	StatusLabel string
	Started     stamp
	Ended       stamp
	Reason      string
	Lost        bool
}

type testView struct {
	Name     string
	Suite    string
	Class    string
	Label    string
	Duration string
	Runs     string // "2 runs" when retried
	Message  string
	Line     string // first line of Message
	Output   string
	Open     bool
}

type buildView struct {
	buildRow
	Committed    stamp
	Terminal     bool
	AttemptText  string
	ExitCode     string
	Labels       []string
	Started      stamp
	Finished     stamp
	Attempts     []attemptView
	Shards       [][2]string // a sharded build's shards when the page was made (label, text)
	Tests        []testView
	Summary      string
	LogTruncated bool
	Dropped      int64
	CancelAsked  bool
	Cancelable   bool // the page shows a Cancel button (app.js hides it when the build ends)
	Bisection    string
	ReusedBuild  int64 // the build whose verdict this one took
	BisectOf     int64 // the failed build whose culprit this one helps find
}

// outcomeRank orders tests: failures first, passes last (mirrored in app.js).
func outcomeRank(o pontusv1.TestOutcome) int {
	switch o {
	case pontusv1.TestOutcome_TEST_OUTCOME_FAILED:
		return 0
	case pontusv1.TestOutcome_TEST_OUTCOME_ERROR:
		return 1
	case pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED:
		return 3
	case pontusv1.TestOutcome_TEST_OUTCOME_PASSED:
		return 4
	}
	return 2
}

// maxOpenFailures is how many failing tests start expanded.
const maxOpenFailures = 5

func attemptText(attempt, max int32) string {
	switch {
	case attempt <= 0:
		return "—"
	case max > 0:
		return fmt.Sprintf("%d of %d", attempt, max)
	}
	return strconv.Itoa(int(attempt))
}

func isLost(a *pontusv1.Attempt, current int32) bool {
	return a.GetNumber() < current || strings.Contains(strings.ToLower(a.GetReason()), "runner lost")
}

// testSummary is the summary pontus show prints ("3 passed, 1 failed, 2
// errors"); mirrored by summary in app.js.
func testSummary(tests []*pontusv1.TestCase) string {
	return buildtext.Summary(tests)
}

func newBuildView(b *pontusv1.Build, now time.Time) buildView {
	st := b.GetStatus()
	v := buildView{
		buildRow:     newBuildRow(b, now),
		Terminal:     terminal(st),
		AttemptText:  attemptText(b.GetAttempt(), b.GetMaxAttempts()),
		ExitCode:     "—",
		Labels:       b.GetLabels(),
		Started:      newStamp(b.GetStartedAt(), now),
		Finished:     newStamp(b.GetFinishedAt(), now),
		Summary:      testSummary(b.GetTests()),
		LogTruncated: b.GetLogTruncated(),
		Dropped:      b.GetOutputDroppedBytes(),
		CancelAsked:  b.GetCancelRequested() && !terminal(st),
		Cancelable:   cancelable(st),
		Committed:    newStamp(b.GetCommittedAt(), now),
		Bisection:    b.GetBisection(),
		ReusedBuild:  b.GetReusedBuild(),
		BisectOf:     b.GetBisectOf(),
	}
	v.ShowReason = b.GetReason() != ""
	if v.Terminal {
		v.ExitCode = strconv.Itoa(int(b.GetExitCode()))
		if b.GetExitCode() == -1 {
			v.ExitCode = "-1 (killed or never run)"
		}
	}
	v.Shards = buildtext.ShardRows(b)
	for _, a := range b.GetAttempts() {
		v.Attempts = append(v.Attempts, attemptView{
			Number:      a.GetNumber(),
			Runner:      runnerOf(a.GetRunnerName(), a.GetRunnerId()),
			StatusClass: statusClass(a.GetStatus()),
			StatusLabel: statusLabel(a.GetStatus()),
			Started:     newStamp(a.GetStartedAt(), now),
			Ended:       newStamp(a.GetEndedAt(), now),
			Reason:      a.GetReason(),
			Lost:        isLost(a, b.GetAttempt()),
		})
	}
	tests := slices.Clone(b.GetTests())
	slices.SortStableFunc(tests, func(x, y *pontusv1.TestCase) int {
		return outcomeRank(x.GetOutcome()) - outcomeRank(y.GetOutcome())
	})
	failures := 0
	for _, t := range tests {
		o := t.GetOutcome()
		bad := o == pontusv1.TestOutcome_TEST_OUTCOME_FAILED || o == pontusv1.TestOutcome_TEST_OUTCOME_ERROR
		if bad {
			failures++
		}
		tv := testView{
			Name:    t.GetName(),
			Suite:   t.GetSuite(),
			Class:   "s-" + shortEnum(o.String(), "TEST_OUTCOME_"),
			Label:   buildtext.Outcome(o),
			Message: t.GetMessage(),
			Line:    strings.TrimSpace(strings.SplitN(t.GetMessage(), "\n", 2)[0]),
			Output:  t.GetOutput(),
			Open:    bad && failures <= maxOpenFailures,
		}
		if tv.Name == "" {
			tv.Name = "(unnamed)"
		}
		if d, ok := durationOf(t.GetDuration()); ok {
			tv.Duration = fmtDuration(d)
		}
		if t.GetRuns() > 1 {
			tv.Runs = fmt.Sprintf("%d runs", t.GetRuns())
		}
		v.Tests = append(v.Tests, tv)
	}
	return v
}

type runnerView struct {
	ID         string
	Name       string
	Labels     []string
	StateClass string
	StateLabel string
	Version    string
	Capacity   string
	Builds     []int64
	LastSeen   stamp
	Registered stamp
}

func newRunnerView(r *pontusv1.Runner, now time.Time) runnerView {
	state := shortEnum(r.GetState().String(), "RUNNER_STATE_")
	return runnerView{
		ID:         r.GetId(),
		Name:       r.GetName(),
		Labels:     r.GetLabels(),
		StateClass: "s-" + state,
		StateLabel: strings.ToUpper(state), // as pontus runners prints it
		Version:    r.GetVersion(),
		Capacity:   fmt.Sprintf("%d / %d", len(r.GetBuildIds()), r.GetCapacity()),
		Builds:     r.GetBuildIds(),
		LastSeen:   newStamp(r.GetLastSeen(), now),
		Registered: newStamp(r.GetRegisteredAt(), now),
	}
}
