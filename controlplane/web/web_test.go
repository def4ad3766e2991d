package web_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pontus-ci/pontus/controlplane/web"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const (
	queued   = pontusv1.BuildStatus_BUILD_STATUS_QUEUED
	leased   = pontusv1.BuildStatus_BUILD_STATUS_LEASED
	running  = pontusv1.BuildStatus_BUILD_STATUS_RUNNING
	passed   = pontusv1.BuildStatus_BUILD_STATUS_PASSED
	failed   = pontusv1.BuildStatus_BUILD_STATUS_FAILED
	errored  = pontusv1.BuildStatus_BUILD_STATUS_ERROR
	timedOut = pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT
	canceled = pontusv1.BuildStatus_BUILD_STATUS_CANCELED
)

// noRedirect is a client that shows redirects instead of following them.
func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t testing.TB, c *http.Client, req *http.Request) response {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read %s: %v", req.URL, err)
	}
	return response{res.StatusCode, res.Header, string(b)}
}

func get(t testing.TB, rawURL string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, noRedirect(nil), req)
}

func wantStatus(t testing.TB, r response, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d, want %d; body:\n%s", r.code, code, r.body)
	}
}

func wantContains(t testing.TB, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Errorf("page does not contain %q", s)
		}
	}
}

func wantNotContains(t testing.TB, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if strings.Contains(body, s) {
			t.Errorf("page contains %q", s)
		}
	}
}

func TestBuildsPage(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	q := newBuild(1, "main", queued)
	q.Reason = "no runner has labels [wasm]"
	s.fake.put(q)
	s.fake.put(newBuild(2, "main", running))
	s.fake.put(newBuild(3, "feature/x", failed))
	s.fake.put(newBuild(4, "main", passed))
	s.fake.put(newBuild(5, "main", timedOut))

	r := get(t, s.url+"/")
	wantStatus(t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	wantContains(t, r.body,
		`<span class="pill s-queued">QUEUED</span>`, "no runner has labels [wasm]",
		`<span class="pill s-running">RUNNING</span>`, `<span class="pill s-failed">FAILED</span>`,
		`<span class="pill s-passed">PASSED</span>`, `<span class="pill s-timed-out">TIMED_OUT</span>`,
		`href="/builds/3"`, ">"+commitN(3)[:10]+"<", ">demo<", "1.5s", "runner-one", "feature/x",
		`data-since=`, // the running build's duration ticks
	)
	if strings.Contains(r.body, ">"+commitN(3)[:11]+"<") {
		t.Error("commit is not shortened to 10 characters")
	}
	// Newest first.
	if i, j := strings.Index(r.body, `data-id="5"`), strings.Index(r.body, `data-id="1"`); i < 0 || j < 0 || i > j {
		t.Errorf("builds not newest first (positions %d, %d)", i, j)
	}

	r = get(t, s.url+"/?branch=feature/x")
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `data-id="3"`, `data-branch="feature/x"`)
	wantNotContains(t, r.body, `data-id="4"`)

	r = get(t, s.url+"/?status=failed")
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `data-id="3"`, `data-status="BUILD_STATUS_FAILED"`, `<option value="failed" selected>`)
	wantNotContains(t, r.body, `data-id="4"`)

	r = get(t, s.url+"/?status=BUILD_STATUS_PASSED&limit=1")
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `data-id="4"`, `Older builds`, `before=4`)

	r = get(t, s.url+"/?branch=nothing-here")
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "No builds match these filters.")
}

func TestEmptyStates(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	wantContains(t, get(t, s.url+"/").body, "No builds yet.")
	wantContains(t, get(t, s.url+"/runners").body, "No runner has registered yet.")
}

func TestEscaping(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	const evil = `<script>alert(1)</script>`
	b := newBuild(1, evil, failed)
	b.Repo = `"><img src=x onerror=alert(2)>`
	b.Reason = `<b>bold</b>`
	b.Tests = []*pontusv1.TestCase{{
		Name: `<img src=y onerror=alert(3)>`, Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FAILED,
		Message: `</pre><script>alert(4)</script>`, Output: `<iframe src="javascript:alert(5)">`,
	}}
	b.Labels = []string{`<u>label</u>`}
	s.fake.put(b)
	s.fake.setRunners([]*pontusv1.Runner{{Id: "r<1>", Name: `<script>alert(6)</script>`, Labels: []string{"<x>"}}})

	for _, path := range []string{"/", "/builds/1", "/runners", "/?branch=" + url.QueryEscape("<script>")} {
		r := get(t, s.url+path)
		if strings.Contains(path, "?branch=") {
			// Branch names with shell metacharacters are refused, and the
			// refusal page shows the value escaped.
			wantStatus(t, r, http.StatusBadRequest)
		} else {
			wantStatus(t, r, http.StatusOK)
		}
		wantNotContains(t, r.body, "<script>", "<img src=x", "<img src=y", "<b>", "<iframe", "<u>", "<x>")
		if path == "/" {
			wantContains(t, r.body, "&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;b&gt;bold&lt;/b&gt;")
		}
	}
	// A bad query value is shown escaped in the 400 page.
	r := get(t, s.url+"/?status="+url.QueryEscape("<script>x"))
	wantStatus(t, r, http.StatusBadRequest)
	wantNotContains(t, r.body, "<script>x")
	wantContains(t, r.body, "&lt;script&gt;x")
	// Every page forbids inline script.
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func TestBuildPage(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	b := newBuild(7, "main", failed)
	b.Attempt = 2
	b.RunnerName = "runner-two"
	b.Reason = "tests failed"
	b.ExitCode = 1
	b.Labels = []string{"linux", "wasm"}
	b.Attempts = []*pontusv1.Attempt{
		{Number: 1, RunnerName: "runner-one", Status: errored, Reason: "runner lost", StartedAt: timestamppb.New(t0)},
		{Number: 2, RunnerName: "runner-two", Status: failed, StartedAt: timestamppb.New(t0.Add(time.Minute)), EndedAt: timestamppb.New(t0.Add(2 * time.Minute))},
	}
	b.Tests = []*pontusv1.TestCase{
		{Name: "TestAlpha", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED, Duration: durationpb.New(12 * time.Millisecond)},
		{Name: "TestSkipped", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, Message: "needs network"},
		{Name: "TestBroken", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FAILED, Message: "want 3, got 4\nmore", Output: "add_test.go:12: boom"},
		{Name: "TestPanics", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_ERROR, Message: "panic: nil map"},
	}
	s.fake.put(b)

	r := get(t, s.url+"/builds/7")
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body,
		"<title>FAILED · Build #7 · Pontus</title>", `id="pill">FAILED</span>`, "tests failed",
		commitN(7), "runner-two", "2 of 3", "1.5s", `<span class="chip">wasm</span>`, `id="f-exit">1<`,
		`<li class="lost"><span class="anum">#1</span>`, `<span class="tag">lost</span>`, "runner lost",
		"1 passed, 1 failed, 1 error, 1 skipped", "want 3, got 4", "add_test.go:12: boom", "12ms",
		`<details open><summary>`, `id="log"`,
	)
	order := []string{"TestBroken", "TestPanics", "TestSkipped", "TestAlpha"}
	last := -1
	for _, name := range order {
		i := strings.Index(r.body, name)
		if i < last {
			t.Errorf("tests not in order %v (failures first): %s comes too early", order, name)
		}
		last = i
	}
}

// A failed build names its culprit (page and list), a reused verdict its
// source, a bisection build the search it serves.
func TestCulpritAndReuseShown(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	b := newBuild(7, "main", failed)
	b.Culprit, b.Bisection = commitN(3), "found after 3 bisection builds"
	s.fake.put(b)
	r := newBuild(8, "main", passed)
	r.ReusedBuild, r.ReusedCommit, r.Reason = 5, commitN(5), "reused: build 5 (commit "+commitN(5)+")"
	s.fake.put(r)
	bis := newBuild(9, "main", passed)
	bis.BisectOf = 7
	s.fake.put(bis)

	page := get(t, s.url+"/builds/7")
	wantContains(t, page.body, `culprit: <span class="mono" id="culprit-id">`+commitN(3)+`</span>`, "found after 3 bisection builds")
	wantContains(t, get(t, s.url+"/builds/8").body, "reused: build 5", `<a href="/builds/5">build #5</a>`)
	wantContains(t, get(t, s.url+"/builds/9").body, "Bisecting", `<a href="/builds/7">build #7</a>`)
	list := get(t, s.url+"/")
	wantContains(t, list.body, `culprit: <span class="mono" title="`+commitN(3)+`">`+commitN(3)[:10]+`</span>`,
		`<div class="reason">reused: build 5`)
}

// The build page offers Re-run always and Cancel only while the build can
// still be stopped, with the data app.js sends to the API.
func TestBuildPageActions(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	for i, tc := range []struct {
		status     pontusv1.BuildStatus
		cancelable bool
	}{
		{queued, true}, {leased, true}, {running, true},
		{passed, false}, {failed, false}, {errored, false}, {timedOut, false}, {canceled, false},
	} {
		t.Run(tc.status.String(), func(t *testing.T) {
			id := int64(i + 1)
			b := newBuild(id, "feature/x", tc.status)
			s.fake.put(b)
			r := get(t, s.url+"/builds/"+strconv.FormatInt(id, 10))
			wantStatus(t, r, http.StatusOK)
			wantContains(t, r.body,
				`<button type="button" id="rerun"`, `id="actmsg"`,
				`data-id="`+strconv.FormatInt(id, 10)+`"`, `data-status="`+tc.status.String()+`"`,
				`data-commit="`+b.GetCommit()+`"`, `data-repo="/srv/git/demo.git"`, `data-branch="feature/x"`,
				`<p class="note" id="cancelnote" hidden>`, // no cancel asked for
			)
			if tc.cancelable {
				wantContains(t, r.body, `<button type="button" id="cancel"`)
			} else {
				wantNotContains(t, r.body, `id="cancel"`)
			}
		})
	}

	// A cancel already asked for is said at once; the button stays (asking
	// again is harmless).
	b := newBuild(50, "main", running)
	b.CancelRequested = true
	s.fake.put(b)
	r := get(t, s.url+"/builds/50")
	wantContains(t, r.body, `<p class="note" id="cancelnote">Cancel requested`, `id="cancel"`)

	// Hostile values reach the data attributes only escaped.
	b = newBuild(51, "main", running)
	b.Repo = `x" onmouseover="alert(1)`
	s.fake.put(b)
	r = get(t, s.url+"/builds/51")
	wantNotContains(t, r.body, `" onmouseover="`)
	wantContains(t, r.body, `data-repo="x&#34; onmouseover=&#34;alert(1)"`)
}

func TestBadRequestsAndNotFound(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	s.fake.put(newBuild(1, "main", passed))
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/builds/999", http.StatusNotFound, "There is no build #999."},
		{"/builds/abc", http.StatusBadRequest, "is not a positive whole number"},
		{"/builds/abcx", http.StatusBadRequest, "is not a positive whole number"},
		{"/builds/dead", http.StatusNotFound, "no such build"},
		{"/commits/12", http.StatusBadRequest, "prefix of 4 to 64"},
		{"/builds/" + commitN(1)[:7], http.StatusSeeOther, `"/builds/1"`},
		{"/commits/" + commitN(1)[:4], http.StatusSeeOther, `"/builds/1"`},
		{"/builds/0", http.StatusBadRequest, "is not a positive whole number"},
		{"/builds/-3", http.StatusBadRequest, "is not a positive whole number"},
		{"/builds/99999999999999999999", http.StatusBadRequest, "is not a positive whole number"},
		{"/nope", http.StatusNotFound, "There is no page at this address."},
		{"/builds/1/extra", http.StatusNotFound, "There is no page at this address."},
		{"/static/nope.js", http.StatusNotFound, "not found"},
		{"/?status=bogus", http.StatusBadRequest, "status: unknown status &#34;bogus&#34;; use one of queued, leased, running"},
		{"/?limit=0", http.StatusBadRequest, "limit: &#34;0&#34; is not a whole number from 1 to 1000"},
		{"/?limit=abc", http.StatusBadRequest, "limit:"},
		{"/?before=-1", http.StatusBadRequest, "before:"},
		{"/?branch=a..b", http.StatusBadRequest, "branch: branch name"},
		{"/?branch=-x", http.StatusBadRequest, "must not start with"},
		{"/?repo=-x", http.StatusBadRequest, "repo: repository"},
		{"/tests?sort=bogus", http.StatusBadRequest, "sort: unknown order &#34;bogus&#34;"},
		{"/tests?branch=a..b", http.StatusBadRequest, "branch: branch name"},
		{"/tests/history", http.StatusBadRequest, "name: give the test"},
		{"/tests/history?name=T&repo=-x", http.StatusBadRequest, "repo: repository"},
	} {
		r := get(t, s.url+tc.path)
		if r.code != tc.code || !strings.Contains(r.body, tc.want) {
			t.Errorf("GET %s: %d, want %d with %q; body:\n%s", tc.path, r.code, tc.code, tc.want, r.body)
		}
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.url+"/builds/1", nil)
	if r := do(t, noRedirect(nil), req); r.code != http.StatusMethodNotAllowed {
		t.Errorf("POST /builds/1: %d, want 405", r.code)
	}
}

func TestServiceErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	s.fake.setErr(connect.NewError(connect.CodeInternal, errors.New("open /var/lib/pontus/state.db: permission denied")))
	for _, path := range []string{"/", "/builds/1", "/runners"} {
		r := get(t, s.url+path)
		wantStatus(t, r, http.StatusInternalServerError)
		wantContains(t, r.body, "The control plane could not answer", "log has the details")
		wantNotContains(t, r.body, "/var/lib", "permission denied", "goroutine", ".go:")
	}
	s.fake.setErr(errors.New("plain error with /etc/secret path"))
	wantNotContains(t, get(t, s.url+"/").body, "/etc/secret")

	s.fake.setErr(connect.NewError(connect.CodeUnavailable, errors.New("store is closing")))
	r := get(t, s.url+"/")
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantContains(t, r.body, "store is closing")

	// The badge never breaks: unknown.
	r = get(t, s.url+"/badge.svg?branch=main")
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, ">unknown<")
}

func TestRunnersPage(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	s.fake.setRunners([]*pontusv1.Runner{
		{Id: "r-1", Name: "builder-a", Labels: []string{"linux", "wasm"}, Capacity: 2, Version: "v0.1.0",
			State: pontusv1.RunnerState_RUNNER_STATE_BUSY, BuildIds: []int64{11, 12}, LastSeen: timestamppb.New(time.Now().Add(-3 * time.Minute))},
		{Id: "r-2", Name: "builder-b", Capacity: 1, State: pontusv1.RunnerState_RUNNER_STATE_OFFLINE},
	})
	r := get(t, s.url+"/runners")
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "builder-a", "builder-b", "r-1", `<span class="chip">wasm</span>`,
		`<span class="pill s-busy">BUSY</span>`, `<span class="pill s-offline">OFFLINE</span>`,
		`href="/builds/11"`, `href="/builds/12"`, "2 / 2", "0 / 1", "3m ago", "v0.1.0",
		// app.js updates the rows in place, keyed by runner id.
		`<table id="runners"`, `<tr data-id="r-1">`, `<tr data-id="r-2">`, `<tr class="empty" hidden>`)
}

func TestBadge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		statuses []pontusv1.BuildStatus // oldest first
		text     string
		color    string
	}{
		{"no builds", nil, "unknown", "#9f9f9f"},
		{"passed", []pontusv1.BuildStatus{failed, passed}, "passing", "#4c1"},
		{"failed", []pontusv1.BuildStatus{passed, failed}, "failing", "#e05d44"},
		{"error", []pontusv1.BuildStatus{passed, errored}, "error", "#fe7d37"},
		{"timed out", []pontusv1.BuildStatus{timedOut}, "error", "#fe7d37"},
		{"newest finished wins over running", []pontusv1.BuildStatus{failed, running, queued}, "failing", "#e05d44"},
		{"only running", []pontusv1.BuildStatus{queued, leased, running}, "running", "#007ec6"},
		{"canceled is skipped", []pontusv1.BuildStatus{passed, canceled}, "passing", "#4c1"},
		{"only canceled", []pontusv1.BuildStatus{canceled}, "unknown", "#9f9f9f"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, web.Options{UserToken: "tok"}) // the badge stays public
			for i, st := range tc.statuses {
				s.fake.put(newBuild(int64(i+1), "main", st))
			}
			s.fake.put(newBuild(100, "other", passed)) // another branch does not count
			r := get(t, s.url+"/badge.svg?branch=main")
			wantStatus(t, r, http.StatusOK)
			if ct := r.header.Get("Content-Type"); ct != "image/svg+xml" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control %q", cc)
			}
			wantContains(t, r.body, "<svg", ">pontus<", ">"+tc.text+"<", `fill="`+tc.color+`"`)
		})
	}

	t.Run("repo filter and bad input", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, web.Options{})
		b := newBuild(1, "main", failed)
		b.Repo = "https://example.com/other.git"
		s.fake.put(b)
		s.fake.put(newBuild(2, "main", passed))
		wantContains(t, get(t, s.url+"/badge.svg?branch=main&repo="+url.QueryEscape(b.Repo)).body, ">failing<")
		wantContains(t, get(t, s.url+"/badge.svg?branch=main").body, ">passing<")
		for q, field := range map[string]string{"": "branch", "?branch=": "branch", "?branch=a..b": "branch", "?branch=main&repo=-x": "repo"} {
			r := get(t, s.url+"/badge.svg"+q)
			wantStatus(t, r, http.StatusBadRequest)
			wantContains(t, r.body, "<svg", ">invalid<", "<title>"+field+":")
		}
	})
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token_value"
	s := startServer(t, web.Options{UserToken: token})
	s.fake.put(newBuild(1, "main", passed))
	c := noRedirect(nil)
	newReq := func(method, path string, body io.Reader) *http.Request {
		req, err := http.NewRequestWithContext(t.Context(), method, s.url+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return req
	}

	// Pages redirect to /signin, remembering where the person was going.
	for _, path := range []string{"/", "/builds/1", "/runners", "/nope"} {
		r := do(t, c, newReq("GET", path, nil))
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.header.Get("Location"); loc != "/signin?next="+url.QueryEscape(path) {
			t.Errorf("GET %s redirects to %q", path, loc)
		}
	}
	// Scripts may send the token as a bearer header instead of the cookie.
	for hdr, want := range map[string]int{"Bearer " + token: http.StatusOK, "Bearer nope": http.StatusSeeOther, token: http.StatusSeeOther} {
		req := newReq("GET", "/builds/1", nil)
		req.Header.Set("Authorization", hdr)
		wantStatus(t, do(t, c, req), want)
	}
	// Public: the badge, static files, the sign-in form.
	for _, path := range []string{"/badge.svg?branch=main", "/static/app.js", "/static/style.css", "/signin"} {
		wantStatus(t, do(t, c, newReq("GET", path, nil)), http.StatusOK)
	}

	// A wrong token.
	r := do(t, c, newReq("POST", "/signin", strings.NewReader("token=wrong&next=%2Fbuilds%2F1")))
	wantStatus(t, r, http.StatusUnauthorized)
	wantContains(t, r.body, "That token is not right.", `value="/builds/1"`)
	if r.header.Get("Set-Cookie") != "" {
		t.Error("a wrong token set a cookie")
	}

	// The right token sets the cookie and goes where the person was going.
	r = do(t, c, newReq("POST", "/signin", strings.NewReader(url.Values{"token": {token}, "next": {"/builds/1"}}.Encode())))
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/builds/1" {
		t.Errorf("after sign-in: Location %q", loc)
	}
	res := &http.Response{Header: r.header}
	cookies := res.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	ck := cookies[0]
	if ck.Name != web.CookieName || ck.Value != token || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
		t.Errorf("cookie %+v: want %s=<token>, HttpOnly, SameSite=Strict, Path=/", ck, web.CookieName)
	}

	withCookie := func(path, value string) response {
		req := newReq("GET", path, nil)
		req.AddCookie(&http.Cookie{Name: web.CookieName, Value: value})
		return do(t, c, req)
	}
	for _, path := range []string{"/", "/builds/1", "/runners"} {
		r := withCookie(path, token)
		wantStatus(t, r, http.StatusOK)
		wantContains(t, r.body, "Sign out")
	}
	wantStatus(t, withCookie("/", "wrong"), http.StatusSeeOther)
	wantStatus(t, withCookie("/", token+"x"), http.StatusSeeOther)
	wantStatus(t, withCookie("/", ""), http.StatusSeeOther)
	// Signed in already: /signin goes straight on.
	r = withCookie("/signin?next=%2Frunners", token)
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/runners" {
		t.Errorf("signed-in /signin: Location %q", loc)
	}

	// next may only point at this site.
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		r := do(t, c, newReq("POST", "/signin", strings.NewReader(url.Values{"token": {token}, "next": {next}}.Encode())))
		if loc := r.header.Get("Location"); loc != "/" {
			t.Errorf("next=%q: Location %q, want /", next, loc)
		}
	}

	// A cross-site form post is refused.
	req := newReq("POST", "/signin", strings.NewReader("token="+token))
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := do(t, c, req); r.code != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d, want 403", r.code)
	}

	// A link followed from another site (no Strict cookie sent) gets a page
	// that reloads itself from this site instead of the sign-in form.
	req = newReq("GET", "/builds/1", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	r = do(t, c, req)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `<meta http-equiv="refresh" content="0">`)

	// Sign out clears the cookie.
	r = do(t, c, newReq("POST", "/signout", nil))
	wantStatus(t, r, http.StatusSeeOther)
	if sc := r.header.Get("Set-Cookie"); !strings.Contains(sc, web.CookieName+"=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("sign out: Set-Cookie %q", sc)
	}
}

func TestSignInFlowWithCookieJar(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{UserToken: "tok-123"})
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	// Following redirects: / → /signin form.
	r := do(t, c, mustReq(t, "GET", s.url+"/runners", nil))
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `action="/signin"`, `value="/runners"`)
	r = do(t, c, mustReq(t, "POST", s.url+"/signin", strings.NewReader("token=tok-123&next=%2Frunners")))
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "<h1>Runners</h1>")
}

func TestNoTokenNoSignIn(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	r := get(t, s.url+"/signin")
	wantStatus(t, r, http.StatusSeeOther)
	r = get(t, s.url+"/")
	wantStatus(t, r, http.StatusOK)
	wantNotContains(t, r.body, "Sign out")
}

func mustReq(t testing.TB, method, rawURL string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req
}

func TestStatic(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	page := get(t, s.url+"/").body
	for _, tc := range []struct{ name, ctype string }{
		{"app.js", "text/javascript; charset=utf-8"},
		{"style.css", "text/css; charset=utf-8"},
		{"favicon.svg", "image/svg+xml"},
	} {
		r := get(t, s.url+"/static/"+tc.name)
		wantStatus(t, r, http.StatusOK)
		if ct := r.header.Get("Content-Type"); ct != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.name, ct, tc.ctype)
		}
		etag := r.header.Get("ETag")
		if etag == "" {
			t.Fatalf("%s: no ETag", tc.name)
		}
		// Pages link the versioned URL, which may be cached for good.
		versioned := "/static/" + tc.name + "?v=" + strings.Trim(etag, `"`)
		wantContains(t, page, versioned)
		if cc := get(t, s.url+versioned).header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("%s: Cache-Control %q", versioned, cc)
		}
		req := mustReq(t, "GET", s.url+"/static/"+tc.name, nil)
		req.Header.Set("If-None-Match", etag)
		if r := do(t, noRedirect(nil), req); r.code != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: %d, want 304", tc.name, r.code)
		}
	}
	if r := get(t, s.url+"/static/"); r.code != http.StatusNotFound {
		t.Errorf("/static/ lists files: %d", r.code)
	}
}

// The brief keeps the dashboard's script small and readable, with no
// outside resources.
func TestAssetsStaySmallAndLocal(t *testing.T) {
	t.Parallel()
	js, err := os.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(js, []byte("\n")); n >= 390 {
		t.Errorf("app.js has %d lines; keep it under 390", n)
	}
	if bytes.Contains(js, []byte("innerHTML")) {
		t.Error("app.js uses innerHTML")
	}
	for _, f := range []string{"static/app.js", "static/style.css", "templates/layout.html"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("https://")) || bytes.Contains(b, []byte("//cdn")) {
			t.Errorf("%s refers to an outside resource", f)
		}
	}
}

// The dashboard shares the mux with the Connect API and must not shadow it.
func TestAPIStillServed(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	s.fake.put(newBuild(1, "main", passed))
	req := mustReq(t, "POST", s.url+"/pontus.v1.BuildService/ListBuilds", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	r := do(t, noRedirect(nil), req)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `"status":"BUILD_STATUS_PASSED"`, `"id":"1"`)
}
