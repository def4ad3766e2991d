package web_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pontus-ci/pontus/controlplane/web"
	"github.com/pontus-ci/pontus/internal/browsertest"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Screenshots the browser test leaves for people to look at.
const (
	shotBuilds      = "/tmp/pontus-web-builds.png"
	shotBuildsPhone = "/tmp/pontus-web-builds-phone.png"
	shotBuild       = "/tmp/pontus-web-build.png"
	shotBuildPhone  = "/tmp/pontus-web-build-phone.png"
)

// waitStreams waits until the fake has at least the given number of open
// WatchBuilds and TailLog streams.
func waitStreams(t testing.TB, f *fakeBuilds, watchers, tailers int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		w, tl := f.counts()
		if w >= watchers && tl >= tailers {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d watchers and %d log tails; have %d and %d", watchers, tailers, w, tl)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rowJS(id int) string {
	return fmt.Sprintf(`document.querySelector('#builds tr[data-id="%d"]')`, id)
}

func failingTests() []*pontusv1.TestCase {
	return []*pontusv1.TestCase{
		{Name: "TestAlpha", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED, Duration: durationpb.New(3 * time.Millisecond)},
		{Name: "TestBeta", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, Message: "needs network"},
		{Name: "TestBroken", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FAILED, Duration: durationpb.New(41 * time.Millisecond),
			Message: "add_test.go:12: add(1, 2) = 4, want 3", Output: "=== RUN   TestBroken\n    add_test.go:12: add(1, 2) = 4, want 3\n--- FAIL: TestBroken (0.04s)"},
	}
}

func finish(b *pontusv1.Build, status pontusv1.BuildStatus) {
	b.Status = status
	b.Duration = durationpb.New(2300 * time.Millisecond)
	b.FinishedAt = timestamppb.Now()
	b.ExitCode = 1
	b.Reason = ""
	b.Tests = failingTests()
	b.Attempts = []*pontusv1.Attempt{{Number: 1, RunnerName: "runner-one", Status: status, StartedAt: b.StartedAt, EndedAt: b.FinishedAt}}
}

func TestBrowserLiveDashboard(t *testing.T) {
	s := startServer(t, web.Options{})
	br := browsertest.New(t)
	s.fake.put(newBuild(1, "main", passed))
	s.fake.put(newBuild(2, "feature/login", failed))
	s.fake.appendLog(2, "ok\n")

	// The recent builds page opens its WatchBuilds stream.
	br.Run(t, chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.CSS("#builds")))
	br.Exec(t, "window.__sameDocument = 42")
	waitStreams(t, s.fake, 1, 0)

	// A new QUEUED build appears without a reload, saying why it waits.
	b := newBuild(3, "main", queued)
	b.Reason = "all 1 runners busy"
	s.fake.put(b)
	br.WaitJS(t, rowJS(3)+`?.querySelector('.pill.s-queued')`, rowJS(3)+`?.outerHTML`)
	br.WaitJS(t, rowJS(3)+`.textContent.includes('all 1 runners busy')`, rowJS(3)+`.textContent`)
	first := browsertest.Eval[string](t, br, `document.querySelector('#builds tbody tr').dataset.id`)
	if first != "3" {
		t.Errorf("the new build is not the first row (first row is build %s)", first)
	}

	// RUNNING, then FAILED: the row turns blue, then red.
	s.fake.update(3, func(b *pontusv1.Build) {
		b.Status, b.Attempt, b.RunnerName, b.Reason = running, 1, "runner-one", ""
		b.StartedAt = timestamppb.Now()
	})
	br.WaitJS(t, rowJS(3)+`.querySelector('.pill.s-running')`, rowJS(3)+`.outerHTML`)
	s.fake.appendLog(3, "=== RUN   TestBroken\n--- FAIL: TestBroken (0.04s)\n")
	s.fake.update(3, func(b *pontusv1.Build) { finish(b, failed) })
	br.WaitJS(t, rowJS(3)+`.querySelector('.pill.s-failed')`, rowJS(3)+`.outerHTML`)
	color := browsertest.Eval[string](t, br, `getComputedStyle(`+rowJS(3)+`.querySelector('.pill')).color`)
	if color != "rgb(207, 34, 46)" {
		t.Errorf("failed pill colour %s, want red rgb(207, 34, 46)", color)
	}
	rowText := browsertest.Eval[string](t, br, rowJS(3)+`.textContent`)
	for _, want := range []string{"failed", "#3", commitN(3)[:10], "main", "demo", "runner-one", "2.3s"} {
		if !strings.Contains(rowText, want) {
			t.Errorf("row text %q lacks %q", rowText, want)
		}
	}

	// A hostile branch name from the stream stays text.
	evil := newBuild(4, `<img src=x onerror="window.__xss=1">`, queued)
	evil.Reason = "no runner has labels [wasm]"
	s.fake.put(evil)
	br.WaitJS(t, rowJS(4), `document.querySelector('#builds tbody').textContent`)
	xss := browsertest.Eval[string](t, br, `String(window.__xss)`)
	branchText := browsertest.Eval[string](t, br, rowJS(4)+`.querySelector('td.br').textContent`)
	if xss != "undefined" || branchText != evil.Branch {
		t.Errorf("hostile branch: window.__xss=%s, cell text %q", xss, branchText)
	}

	if same := browsertest.Eval[int](t, br, "window.__sameDocument"); same != 42 {
		t.Fatal("the page was reloaded; updates must arrive without a reload")
	}
	br.Screenshot(t, shotBuilds)
	br.Run(t, chromedp.EmulateViewport(390, 844))
	br.Screenshot(t, shotBuildsPhone)
	br.Run(t, chromedp.EmulateViewport(1280, 900))

	// The failed build's page lists the failing test first and shows its log.
	br.Run(t, chromedp.Navigate(s.url+"/builds/3"), chromedp.WaitVisible(chromedp.CSS("#build")))
	br.WaitJS(t, `document.querySelector('#tests li .tname').textContent === 'TestBroken'`, `document.querySelector('#tests').textContent`)
	br.WaitJS(t, `document.querySelector('#tests li .pill').classList.contains('s-failed')`, `document.querySelector('#tests li').outerHTML`)
	br.WaitJS(t, `document.getElementById('log').textContent.includes('--- FAIL: TestBroken')`, `document.getElementById('log').textContent`)
	br.WaitJS(t, `document.getElementById('logstate').textContent === 'end of log'`, `document.getElementById('logstate').textContent`)

	// A running build: log lines pushed by the fake appear live, and when it
	// ends, status and tests refresh without a reload.
	run := newBuild(5, "main", running)
	s.fake.put(run)
	s.fake.appendLog(5, "checkout 0123456789\n")
	br.Run(t, chromedp.Navigate(s.url+"/builds/5"), chromedp.WaitVisible(chromedp.CSS("#build")))
	br.Exec(t, "window.__sameDocument = 7")
	br.WaitJS(t, `document.getElementById('log').textContent.includes('checkout 0123456789')`, `document.getElementById('log').textContent`)
	waitStreams(t, s.fake, 0, 1)
	for _, line := range []string{"$ go test ./tests/...\n", "=== RUN   TestAlpha\n--- PASS: TestAlpha (0.00s)\n", "=== RUN   TestBroken\n    add_test.go:12: add(1, 2) = 4, want 3\n--- FAIL: TestBroken (0.04s)\n"} {
		s.fake.appendLog(5, line)
		br.WaitJS(t, fmt.Sprintf(`document.getElementById('log').textContent.endsWith(%q)`, line), `document.getElementById('log').textContent`)
	}
	br.WaitJS(t, `document.getElementById('notests').hidden === false`, `document.getElementById('tests').textContent`)
	s.fake.appendLog(5, "FAIL\texample.com/demo/tests\t0.051s\n")
	s.fake.update(5, func(b *pontusv1.Build) { finish(b, failed) })
	br.WaitJS(t, `document.getElementById('pill').classList.contains('s-failed')`, `document.getElementById('pill').outerHTML`)
	br.WaitJS(t, `document.querySelector('#tests li .tname')?.textContent === 'TestBroken'`, `document.getElementById('tests').textContent`)
	br.WaitJS(t, `document.getElementById('tsum').textContent === '1 failed · 1 passed · 1 skipped'`, `document.getElementById('tsum').textContent`)
	br.WaitJS(t, `document.getElementById('f-exit').textContent === '1'`, `document.getElementById('f-exit').textContent`)
	br.WaitJS(t, `document.getElementById('logstate').textContent === 'end of log'`, `document.getElementById('logstate').textContent`)
	log := browsertest.Eval[string](t, br, `document.getElementById('log').textContent`)
	if want := "checkout 0123456789\n$ go test ./tests/...\n"; !strings.Contains(log, want) {
		t.Errorf("log %q lacks %q: lines lost or duplicated", log, want)
	}
	if same := browsertest.Eval[int](t, br, "window.__sameDocument"); same != 7 {
		t.Fatal("the build page was reloaded; it must update in place")
	}
	br.Screenshot(t, shotBuild)
	br.Run(t, chromedp.EmulateViewport(390, 844))
	br.Screenshot(t, shotBuildPhone)
	br.NoExceptions(t)
}

func TestBrowserResyncAndReconnect(t *testing.T) {
	s := startServer(t, web.Options{})
	br := browsertest.New(t)
	s.fake.put(newBuild(1, "main", passed))
	br.Run(t, chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.CSS("#builds")))
	br.Exec(t, "window.__sameDocument = 1")
	waitStreams(t, s.fake, 1, 0)

	// Changes the watcher missed arrive after a resync message.
	s.fake.putQuietly(newBuild(2, "main", failed))
	s.fake.resync()
	br.WaitJS(t, rowJS(2)+`?.querySelector('.pill.s-failed')`, `document.querySelector('#builds tbody').textContent`)

	// A cut stream: the page re-reads the list and watches again.
	s.fake.cutStreams()
	s.fake.putQuietly(newBuild(3, "main", queued))
	br.WaitJS(t, rowJS(3), `document.querySelector('#builds tbody').textContent`)
	waitStreams(t, s.fake, 1, 0)
	s.fake.put(newBuild(4, "main", running))
	br.WaitJS(t, rowJS(4)+`?.querySelector('.pill.s-running')`, `document.querySelector('#builds tbody').textContent`)
	if same := browsertest.Eval[int](t, br, "window.__sameDocument"); same != 1 {
		t.Fatal("the page was reloaded")
	}

	// The log picks up where it was after a cut, without repeating lines.
	b := newBuild(5, "main", running)
	b.Attempts = []*pontusv1.Attempt{{Number: 1, RunnerName: "runner-one", Status: running, StartedAt: b.StartedAt}}
	s.fake.put(b)
	s.fake.appendLog(5, "line 1\n")
	br.Run(t, chromedp.Navigate(s.url+"/builds/5"), chromedp.WaitVisible(chromedp.CSS("#build")))
	const logJS = `document.getElementById('log').textContent`
	br.WaitJS(t, logJS+` === 'line 1\n'`, logJS)
	waitStreams(t, s.fake, 0, 1)
	s.fake.cutStreams()
	s.fake.appendLog(5, "line 2\n")
	br.WaitJS(t, logJS+` === 'line 1\nline 2\n'`, logJS)

	// A new attempt (the runner was lost) clears the log and marks the lost attempt.
	s.fake.newAttempt(5, "runner-two")
	s.fake.appendLog(5, "attempt 2 line 1\n")
	br.WaitJS(t, logJS+` === 'attempt 2 line 1\n'`, logJS)
	br.WaitJS(t, `document.querySelector('#attempts li.lost .tag')?.textContent === 'lost'`, `document.getElementById('attempts').textContent`)
	br.WaitJS(t, `document.getElementById('f-runner').textContent === 'runner-two'`, `document.getElementById('f-runner').textContent`)
	br.WaitJS(t, `document.getElementById('f-attempt').textContent === '2 of 3'`, `document.getElementById('f-attempt').textContent`)
	br.NoExceptions(t)
}

func TestBrowserSignIn(t *testing.T) {
	const token = "browser-token-42"
	s := startServer(t, web.Options{UserToken: token})
	br := browsertest.New(t)
	s.fake.put(newBuild(1, "main", passed))

	br.Run(t, chromedp.Navigate(s.url+"/builds/1"), chromedp.WaitVisible(chromedp.CSS("form.signin")))
	br.Run(t,
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), "wrong"),
		chromedp.Click(chromedp.CSS(`form.signin button`)),
		chromedp.WaitVisible(chromedp.CSS(`form.signin .error`)),
	)
	br.Run(t,
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token),
		chromedp.Click(chromedp.CSS(`form.signin button`)),
		chromedp.WaitVisible(chromedp.CSS("#build")),
	)
	if loc := browsertest.Eval[string](t, br, "location.pathname"); loc != "/builds/1" {
		t.Errorf("after sign-in the browser is at %s, want /builds/1", loc)
	}
	// The cookie is HttpOnly: page script cannot read the token.
	if c := browsertest.Eval[string](t, br, "document.cookie"); strings.Contains(c, token) {
		t.Errorf("document.cookie exposes the token: %q", c)
	}
	br.Run(t, chromedp.Click(chromedp.CSS(`form.signout button`)), chromedp.WaitVisible(chromedp.CSS("form.signin")))
	br.Run(t, chromedp.Navigate(s.url+"/runners"), chromedp.WaitVisible(chromedp.CSS("form.signin")))
	br.NoExceptions(t)
}
