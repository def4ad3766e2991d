package web_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/proto"
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
	for _, want := range []string{"FAILED", "#3", commitN(3)[:10], "main", "demo", "runner-one", "2.3s"} {
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
	br.WaitJS(t, `document.getElementById('tsum').textContent === '1 passed, 1 failed, 1 skipped'`, `document.getElementById('tsum').textContent`)
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

// shotButtons is the build page with its Re-run and Cancel buttons.
const shotButtons = "/tmp/pontus-web-buttons.png"

// waitFake waits until cond holds for the fake's recorded calls; on timeout
// it reports what the fake saw.
func waitFake(t testing.TB, f *fakeBuilds, what string, cond func(triggers []*pontusv1.TriggerBuildRequest, cancels []*pontusv1.CancelBuildRequest, listings int) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		tr, cn, ls := f.calls()
		if cond(tr, cn, ls) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; the fake saw TriggerBuild %v, CancelBuild %v, %d ListRunners", what, tr, cn, ls)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBrowserBuildActions(t *testing.T) {
	s := startServer(t, web.Options{})
	br := browsertest.New(t)
	b := newBuild(5, "feature/login", running)
	b.Attempts = []*pontusv1.Attempt{{Number: 1, RunnerName: "runner-one", Status: running, StartedAt: b.StartedAt}}
	s.fake.put(newBuild(4, "main", passed))
	s.fake.put(b)
	s.fake.appendLog(5, "$ go test ./tests/...\n=== RUN   TestAlpha\n")

	br.Run(t, chromedp.Navigate(s.url+"/builds/5"), chromedp.WaitVisible(chromedp.CSS("#cancel")), chromedp.WaitVisible(chromedp.CSS("#rerun")))
	br.Exec(t, "window.__sameDocument = 5")
	waitStreams(t, s.fake, 0, 1)
	br.WaitJS(t, `document.getElementById('log').textContent.includes('TestAlpha')`, `document.getElementById('log').textContent`)
	br.Screenshot(t, shotButtons)

	// Cancel: both buttons are disabled while the call is in flight.
	const stateJS = `[document.getElementById('actmsg').className, document.getElementById('actmsg').textContent,
		document.getElementById('cancel').disabled, document.getElementById('rerun').disabled,
		document.getElementById('cancel').hidden, document.getElementById('pill').textContent].join(' | ')`
	release := s.fake.holdActions()
	br.Run(t, chromedp.Click(chromedp.CSS("#cancel")))
	br.WaitJS(t, `document.getElementById('cancel').disabled && document.getElementById('rerun').disabled &&
		document.getElementById('actmsg').textContent === 'canceling…'`, stateJS)
	waitFake(t, s.fake, "CancelBuild of build 5", func(_ []*pontusv1.TriggerBuildRequest, c []*pontusv1.CancelBuildRequest, _ int) bool {
		return len(c) == 1 && c[0].GetBuildId() == 5
	})
	release()

	// The running build now waits for its runner; the page says so.
	br.WaitJS(t, `document.getElementById('actmsg').textContent === 'cancel requested…' && !document.getElementById('cancel').disabled`, stateJS)
	br.WaitJS(t, `!document.getElementById('cancelnote').hidden`, `document.getElementById('cancelnote').outerHTML`)
	br.WaitJS(t, `document.getElementById('reason').textContent === 'cancel requested; waiting for the runner to stop it'`, `document.getElementById('reason').outerHTML`)

	// The runner stops it: CANCELED arrives live and Cancel goes away.
	s.fake.appendLog(5, "canceled\n")
	s.fake.update(5, func(b *pontusv1.Build) {
		b.Status, b.Reason, b.CancelRequested = canceled, "canceled", false
		b.FinishedAt, b.Duration, b.ExitCode = timestamppb.Now(), durationpb.New(3*time.Second), -1
	})
	br.WaitJS(t, `document.getElementById('pill').classList.contains('s-canceled')`, stateJS)
	br.WaitJS(t, `document.getElementById('cancel').hidden && document.getElementById('cancelnote').hidden &&
		document.getElementById('actmsg').textContent === ''`, stateJS)
	if same := browsertest.Eval[int](t, br, "window.__sameDocument"); same != 5 {
		t.Fatal("the build page was reloaded; cancel must update it in place")
	}

	// Re-run of the finished build: a new queued build, and the browser goes
	// to its page.
	br.Run(t, chromedp.Click(chromedp.CSS("#rerun")))
	br.WaitJS(t, `location.pathname === '/builds/6' && document.getElementById('build')?.dataset.id === '6'`, `location.pathname + ' ' + document.getElementById('actmsg')?.textContent`)
	waitFake(t, s.fake, "TriggerBuild of build 5's commit", func(tr []*pontusv1.TriggerBuildRequest, _ []*pontusv1.CancelBuildRequest, _ int) bool {
		return len(tr) == 1
	})
	tr, _, _ := s.fake.calls()
	if got := tr[0]; got.GetCommit() != b.GetCommit() || got.GetRepo() != b.GetRepo() || got.GetBranch() != b.GetBranch() {
		t.Errorf("TriggerBuild got commit %q repo %q branch %q; want %q %q %q",
			got.GetCommit(), got.GetRepo(), got.GetBranch(), b.GetCommit(), b.GetRepo(), b.GetBranch())
	}
	br.WaitJS(t, `document.getElementById('pill').classList.contains('s-queued') && !document.getElementById('cancel').hidden`, stateJS)

	// An API error is shown beside the buttons, which work again after it.
	s.fake.setErr(connect.NewError(connect.CodeUnavailable, errors.New("store is closing")))
	br.Run(t, chromedp.Click(chromedp.CSS("#cancel")))
	br.WaitJS(t, `document.getElementById('actmsg').textContent === 'Cancel failed: store is closing' &&
		document.getElementById('actmsg').classList.contains('error') && !document.getElementById('cancel').disabled &&
		!document.getElementById('rerun').disabled`, stateJS)
	s.fake.setErr(nil)

	// Canceling a queued build ends it at once.
	br.Run(t, chromedp.Click(chromedp.CSS("#cancel")))
	br.WaitJS(t, `document.getElementById('pill').classList.contains('s-canceled') && document.getElementById('cancel').hidden`, stateJS)
	br.WaitJS(t, `document.getElementById('actmsg').textContent === '' && document.getElementById('reason').textContent === 'canceled before it ran'`, stateJS)
	if _, c, _ := s.fake.calls(); len(c) != 3 || c[2].GetBuildId() != 6 {
		t.Errorf("CancelBuild calls %v, want the third for build 6", c)
	}
	br.NoExceptions(t)
}

func TestBrowserRunnersLive(t *testing.T) {
	s := startServer(t, web.Options{})
	br := browsertest.New(t)
	now := time.Now()
	one := &pontusv1.Runner{Id: "r-1", Name: "builder-a", Capacity: 2, Version: "v0.1.0", Labels: []string{"linux"},
		State: pontusv1.RunnerState_RUNNER_STATE_IDLE, LastSeen: timestamppb.New(now), RegisteredAt: timestamppb.New(now)}
	s.fake.setRunners([]*pontusv1.Runner{one})

	row := func(id string) string { return fmt.Sprintf(`document.querySelector('#runners tr[data-id="%s"]')`, id) }
	br.Run(t, chromedp.Navigate(s.url+"/runners"), chromedp.WaitVisible(chromedp.CSS("#runners")))
	// The first poll comes 2 s after the page: mark the server-rendered row
	// to see that polls keep a row whose content did not change.
	br.Exec(t, "window.__sameDocument = 3; "+row("r-1")+".__kept = true")
	const tableJS = `document.querySelector('#runners tbody').innerText`

	// A runner registers: its row appears without a reload.
	two := &pontusv1.Runner{Id: "r-2", Name: "builder-b", Capacity: 1, Version: "v0.2.0",
		State: pontusv1.RunnerState_RUNNER_STATE_BUSY, BuildIds: []int64{7}, LastSeen: timestamppb.New(now)}
	s.fake.setRunners([]*pontusv1.Runner{one, two})
	br.WaitJS(t, row("r-2")+`?.querySelector('.pill.s-busy')`, tableJS)
	text := browsertest.Eval[string](t, br, row("r-2")+`.textContent`)
	for _, want := range []string{"builder-b", "BUSY", "1 / 1", "#7", "r-2", "v0.2.0", "just now"} {
		if !strings.Contains(text, want) {
			t.Errorf("new runner row %q lacks %q", text, want)
		}
	}
	if href := browsertest.Eval[string](t, br, row("r-2")+`.querySelector('a').getAttribute('href')`); href != "/builds/7" {
		t.Errorf("current build link %q, want /builds/7", href)
	}

	if !browsertest.Eval[bool](t, br, `!!`+row("r-1")+`.__kept`) {
		t.Error("a poll replaced the unchanged server-rendered row; it should keep it")
	}

	// Its build ends: idle, no current builds.
	two = proto.CloneOf(two)
	two.State, two.BuildIds = pontusv1.RunnerState_RUNNER_STATE_IDLE, nil
	s.fake.setRunners([]*pontusv1.Runner{one, two})
	br.WaitJS(t, row("r-2")+`?.querySelector('.pill.s-idle') && `+row("r-2")+`.cells[3].textContent === '—'`, tableJS)

	// Only the last-seen time of r-1 moves: the row is kept, its age updated.
	one = proto.CloneOf(one)
	one.LastSeen = timestamppb.New(now.Add(-5 * time.Minute))
	s.fake.setRunners([]*pontusv1.Runner{one, two})
	br.WaitJS(t, row("r-1")+`?.cells[7].textContent === '5m ago'`, tableJS)
	if !browsertest.Eval[bool](t, br, `!!`+row("r-1")+`.__kept`) {
		t.Error("a change of last seen alone replaced the row; it should update in place")
	}

	// A runner that goes away loses its row; with none, the empty note shows.
	s.fake.setRunners([]*pontusv1.Runner{two})
	br.WaitJS(t, `!`+row("r-1")+` && `+row("r-2"), tableJS)
	s.fake.setRunners(nil)
	br.WaitJS(t, `!document.querySelector('#runners tr[data-id]') && !document.querySelector('#runners tr.empty').hidden`, tableJS)

	// A hidden page does not poll; shown again, it catches up at once. Hide
	// it just after a poll, so none is in flight when the runners change.
	_, _, n := s.fake.calls()
	waitFake(t, s.fake, "the next ListRunners", func(_ []*pontusv1.TriggerBuildRequest, _ []*pontusv1.CancelBuildRequest, listings int) bool {
		return listings > n
	})
	br.Exec(t, `Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
		document.dispatchEvent(new Event('visibilitychange'))`)
	_, _, before := s.fake.calls()
	s.fake.setRunners([]*pontusv1.Runner{one})
	// An observation window longer than two poll intervals, not a wait for
	// an event: nothing may happen in it.
	time.Sleep(4500 * time.Millisecond)
	if _, _, after := s.fake.calls(); after != before {
		t.Errorf("the hidden page called ListRunners %d times", after-before)
	}
	if browsertest.Eval[bool](t, br, `!!`+row("r-1")) {
		t.Error("the hidden page updated")
	}
	br.Exec(t, `delete document.visibilityState; document.dispatchEvent(new Event('visibilitychange'))`)
	br.WaitJS(t, row("r-1"), tableJS)
	if live := browsertest.Eval[string](t, br, `document.getElementById('live').textContent`); live != "live" {
		t.Errorf("live indicator %q", live)
	}
	if same := browsertest.Eval[int](t, br, "window.__sameDocument"); same != 3 {
		t.Fatal("the runners page was reloaded; it must update in place")
	}
	br.NoExceptions(t)
}
