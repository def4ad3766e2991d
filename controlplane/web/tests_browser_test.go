package web_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/internal/browsertest"
	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/runnerd"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

const (
	shotTests = "/tmp/pontus-web-tests.png"
	shotTest  = "/tmp/pontus-web-test.png"
)

// reachable is a temporary directory every user may search (and, with
// writable, write): a runner running as root runs steps as step_user.
func reachable(t *testing.T, writable bool) string {
	t.Helper()
	dir := t.TempDir()
	mode := os.FileMode(0o755)
	if writable {
		mode = 0o777
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// The Tests pages on a real control plane whose real runner built a Go
// repository three times, retrying failures: the table lists the flaky
// test with its flip rate and recent runs, and its page draws its durations
// as an SVG chart whose bars link to the builds, the flaky one named.
func TestBrowserTestHistory(t *testing.T) {
	browsertest.ChromiumPath(t) // skips without Chromium
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go on PATH")
	}
	ctx := t.Context()
	cfg := controlplane.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.ResultsDir = filepath.Join(t.TempDir(), "results")
	srv, err := controlplane.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()

	rcfg := runnerd.DefaultConfig()
	rcfg.ControlPlane = dial.URLs(url)
	rcfg.Workdir = filepath.Join(reachable(t, false), "work")
	rcfg.Name = "history-runner"
	runner, err := runnerd.New(rcfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	rctx, rstop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- runner.Run(rctx) }()
	t.Cleanup(func() {
		rstop()
		<-ran
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})

	repo := filepath.Join(reachable(t, false), "repo")
	gitIn(t, filepath.Dir(repo), "init", "-q", "-b", "main", repo)
	marker := filepath.Join(reachable(t, true), "marker")
	files := map[string]string{
		"go.mod": "module example.com/hist\n\ngo 1.22\n",
		"tests/hist_test.go": fmt.Sprintf(`package tests

import (
	"os"
	"testing"
	"time"
)

func TestFlaky(t *testing.T) {
	time.Sleep(30 * time.Millisecond)
	if _, err := os.Stat(%q); err != nil {
		os.WriteFile(%[1]q, nil, 0o666)
		t.Fatal("first run fails")
	}
}

func TestSteady(t *testing.T) { time.Sleep(10 * time.Millisecond) }
`, marker),
	}
	hc, err := dial.HTTPClient(dial.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	obs := pontusv1connect.NewObserverServiceClient(hc, url)
	builds := pontusv1connect.NewBuildServiceClient(hc, url)
	for i := range 3 {
		files["README"] = fmt.Sprintf("build %d\n", i)
		for name, body := range files {
			p := filepath.Join(repo, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		gitIn(t, repo, "add", ".")
		gitIn(t, repo, "commit", "-qm", fmt.Sprint("commit ", i))
		commit := gitIn(t, repo, "rev-parse", "HEAD")
		if _, err := obs.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: repo, Branch: "main", Commits: []string{commit},
			Settings: &pontusv1.BuildSettings{Retries: 1, Shards: 1}}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			res, err := builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: commit, Repo: repo})
			if err == nil && res.Build.Status == pontusv1.BuildStatus_BUILD_STATUS_PASSED {
				break
			}
			if err == nil && res.Build.Status > pontusv1.BuildStatus_BUILD_STATUS_PASSED || time.Now().After(deadline) {
				t.Fatalf("build %d: %v %v", i+1, res.GetBuild().GetStatus(), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	br := browsertest.New(t)
	br.Run(t, chromedp.Navigate(url+"/tests?flaky=1"), chromedp.WaitVisible(chromedp.CSS("#testlist")))
	rows := browsertest.Eval[[]string](t, br, `[...document.querySelectorAll('#testlist tbody tr:not(.empty)')].map(r => r.innerText.replace(/\s+/g, ' ').trim())`)
	if len(rows) != 1 || !strings.Contains(rows[0], "TestFlaky") || !strings.Contains(rows[0], "33%") {
		t.Fatalf("flaky tests table: %q", rows)
	}
	marks := browsertest.Eval[[]string](t, br, `[...document.querySelectorAll('#testlist .mark')].map(m => m.className + ' ' + m.getAttribute('href'))`)
	if strings.Join(marks, ",") != "mark m-flaky /builds/1,mark m-passed /builds/2,mark m-passed /builds/3" {
		t.Errorf("recent runs: %q", marks)
	}
	br.Screenshot(t, shotTests)

	br.Run(t, chromedp.Click(chromedp.CSS("#testlist tbody a")), chromedp.WaitVisible(chromedp.CSS("#duration-chart")))
	bars := browsertest.Eval[[]string](t, br, `[...document.querySelectorAll('#duration-chart a')].map(a => a.getAttribute('href') + ' ' + a.querySelector('rect').getAttribute('class') + ' ' + (a.querySelector('rect').getBBox().height > 2))`)
	if strings.Join(bars, ",") != "/builds/1 bar-flaky true,/builds/2 bar-passed true,/builds/3 bar-passed true" {
		t.Errorf("duration chart bars: %q", bars)
	}
	if got := browsertest.Eval[string](t, br, `document.querySelector('#failed-in').innerText`); !strings.Contains(got, "#1") {
		t.Errorf("failed-in: %q", got)
	}
	if got := browsertest.Eval[string](t, br, `document.querySelector('#test-stats').innerText`); !strings.Contains(got, "2 passed") || !strings.Contains(got, "1 flaky") {
		t.Errorf("stats: %q", got)
	}
	if got := browsertest.Eval[int](t, br, `document.querySelectorAll('#runs tbody tr').length`); got != 3 {
		t.Errorf("%d runs listed, want 3", got)
	}
	br.Screenshot(t, shotTest)

	// The flaky build's own page lists the test as flaky, with its runs.
	br.Run(t, chromedp.Click(chromedp.CSS("#failed-in a")), chromedp.WaitVisible(chromedp.CSS("#tests")))
	br.WaitJS(t, `document.querySelector('#tests').innerText.includes('2 runs')`, "the flaky test's runs on its build page")
	if got := browsertest.Eval[string](t, br, `[...document.querySelectorAll('#tests li')].map(l => l.innerText.replace(/\s+/g, ' ').toLowerCase()).join(' | ')`); !strings.Contains(got, "flaky testflaky") {
		t.Errorf("build page tests: %q", got)
	}
	br.NoExceptions(t)
}
