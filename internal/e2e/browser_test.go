package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pontus-ci/pontus/internal/browsertest"
)

// The dashboard of a live `pontus dev`: a new commit's build appears and
// turns red without a reload, and its page lists the failing test first.
func TestDashboardFollowsARealBuild(t *testing.T) {
	t.Parallel()
	br := browsertest.New(t)
	repo := NewRepo(t, map[string]string{"tests/test_ok.py": pyTest("test_ok", "pass")})
	d := startDev(t, repo)
	first := WaitResult(t, d.results, repo.Head(t), 30*time.Second)

	br.Run(t, chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(chromedp.CSS("#builds")))
	br.Exec(t, "window.__sameDocument = 42")
	row := func(id int64) string { return fmt.Sprintf(`document.querySelector('#builds tr[data-id="%d"]')`, id) }
	br.WaitJS(t, row(first.Id)+`?.querySelector('.pill.s-passed')`, `document.querySelector('#builds').textContent`)

	// Wait until the page's live stream is connected before committing.
	br.WaitJS(t, `document.body.textContent.includes('live')`, `document.body.textContent.slice(0, 200)`)
	bad := repo.Commit(t, "break", map[string]string{"tests/test_bad.py": pyTest("test_bad", "self.fail('broken on purpose')")})
	b := WaitResultStatus(t, d.results, bad, 30*time.Second, failed)
	br.WaitJS(t, row(b.Id)+`?.querySelector('.pill.s-failed')`, `document.querySelector('#builds tbody').innerText`)
	if got := browsertest.Eval[int](t, br, "window.__sameDocument"); got != 42 {
		t.Fatal("the page reloaded; it should update in place")
	}

	br.Run(t, chromedp.Navigate(fmt.Sprintf("%s/builds/%d", d.url, b.Id)), chromedp.WaitVisible(chromedp.CSS("#build")))
	br.WaitJS(t, `document.querySelector('#tests')?.textContent.includes('test_bad')`, `document.body.innerText.slice(0, 500)`)
	firstTest := browsertest.Eval[string](t, br, `document.querySelector('#tests li, #tests .test, #tests tr')?.textContent || ''`)
	if !strings.Contains(firstTest, "test_bad") {
		t.Errorf("first test listed is %q, want the failing test_bad", firstTest)
	}
	br.WaitJS(t, `document.body.textContent.includes('broken on purpose')`, `document.body.innerText.slice(0, 500)`)
	br.NoExceptions(t)
}
