package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pontus-ci/pontus/internal/browsertest"
)

// The dashboard of a live `pontus dev` charts the branch's builds (one
// linked bar per build, coloured by status, named in words) and finds
// builds by subject, author or commit prefix; the list shows subjects.
func TestDashboardHistoryAndSearch(t *testing.T) {
	t.Parallel()
	br := browsertest.New(t)
	repo := NewRepo(t, map[string]string{"tests/test_ok.py": pyTest("test_ok", "pass")})
	d := startDev(t, repo)
	first := WaitResult(t, d.results, repo.Head(t), 30*time.Second)
	bad := repo.Commit(t, "Break the build on purpose", map[string]string{"tests/test_bad.py": pyTest("test_bad", "self.fail('broken on purpose')")})
	b := WaitResultStatus(t, d.results, bad, 30*time.Second, failed)
	fixed := repo.Commit(t, "Mend what broke", map[string]string{"tests/test_bad.py": ""})
	last := WaitResultStatus(t, d.results, fixed, 30*time.Second, passed)

	br.Run(t, chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(chromedp.CSS("#history svg")))
	bars := browsertest.Eval[[]string](t, br, `[...document.querySelectorAll('#history svg a')].map(a => a.getAttribute('href') + ' ' + a.querySelector('rect').getAttribute('class'))`)
	want := []string{fmt.Sprintf("/builds/%d s-passed", first.Id), fmt.Sprintf("/builds/%d s-failed", b.Id), fmt.Sprintf("/builds/%d s-passed", last.Id)}
	if strings.Join(bars, "|") != strings.Join(want, "|") {
		t.Errorf("chart bars %q, want %q (oldest first)", bars, want)
	}
	name := browsertest.Eval[string](t, br, fmt.Sprintf(`document.querySelector('#history a[href="/builds/%d"]').getAttribute('aria-label')`, b.Id))
	if !strings.Contains(name, "FAILED") || !strings.Contains(name, "Break the build on purpose") || !strings.Contains(name, "Pontus Test") {
		t.Errorf("the failed build's bar is named %q", name)
	}
	if h := browsertest.Eval[float64](t, br, `document.querySelector('#history rect').getBoundingClientRect().height`); h <= 0 {
		t.Errorf("bars are not drawn (height %v)", h)
	}
	rowText := browsertest.Eval[string](t, br, fmt.Sprintf(`document.querySelector('#builds tr[data-id="%d"]').innerText`, b.Id))
	if !strings.Contains(rowText, "Break the build on purpose") || !strings.Contains(rowText, "Pontus Test") {
		t.Errorf("row %q lacks the subject or author", rowText)
	}
	br.Screenshot(t, "/tmp/pontus-e2e-history.png")

	// Search by subject, in any case: only the matching build is listed.
	br.Run(t, chromedp.SendKeys(chromedp.CSS(`input[name="q"]`), "BREAK THE"), chromedp.Click(chromedp.CSS(`form.filters button[type=submit]`)))
	br.WaitJS(t, `location.search.includes('q=BREAK')`, `location.href`)
	br.WaitJS(t, fmt.Sprintf(`document.querySelectorAll('#builds tr[data-id]').length === 1 && !!document.querySelector('#builds tr[data-id="%d"]')`, b.Id),
		`document.querySelector('#builds tbody').innerText`)
	// By commit prefix.
	br.Run(t, chromedp.Navigate(d.url+"/?q="+fixed[:7]))
	br.WaitJS(t, fmt.Sprintf(`document.querySelectorAll('#builds tr[data-id]').length === 1 && !!document.querySelector('#builds tr[data-id="%d"]')`, last.Id),
		`document.querySelector('#builds tbody').innerText`)

	// A bar leads to its build, whose page names the commit.
	br.Run(t, chromedp.Navigate(d.url+"/"), chromedp.WaitVisible(chromedp.CSS("#history svg")))
	br.Exec(t, fmt.Sprintf(`document.querySelector('#history a[href="/builds/%d"]').dispatchEvent(new MouseEvent('click', {bubbles: true}))`, b.Id))
	br.WaitJS(t, fmt.Sprintf(`location.pathname === '/builds/%d'`, b.Id), `location.href`)
	br.WaitJS(t, `document.getElementById('f-subject')?.textContent === 'Break the build on purpose'`, `document.body.innerText.slice(0, 600)`)
	br.WaitJS(t, `document.getElementById('tsum')?.textContent === '1 passed, 1 failed'`, `document.getElementById('tsum')?.textContent`)
	br.NoExceptions(t)
}

// A pytest repository under a live `pontus dev`: pontus show's tests line
// agrees with pytest run directly on the same files, and pontus builds
// lists the commit's subject.
func TestDevPytestRepository(t *testing.T) {
	t.Parallel()
	python := ""
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import pytest").Run() == nil {
			python = py
			break
		}
	}
	if python == "" {
		t.Skip("pytest is not installed (apt-get install python3-pytest)")
	}
	repo := NewRepo(t, map[string]string{
		"tests/conftest.py": "import pytest\n\n@pytest.fixture\ndef two():\n    return 2\n",
		"tests/test_calc.py": `import pytest

@pytest.mark.parametrize("n", [1, 2, 3])
def test_double(n, two):
    assert n * two == n + n

@pytest.mark.parametrize("a,b", [(1, 1), (1, 2)])
def test_equal(a, b):
    assert a == b

@pytest.mark.skip(reason="someday")
def test_later():
    pass

@pytest.mark.xfail(reason="known")
def test_known():
    assert False
`,
	})
	commit := repo.Commit(t, "Add a pytest suite with parametrized tests", nil)
	d := startDev(t, repo)
	WaitResultStatus(t, d.results, commit, 60*time.Second, failed)

	cmd := exec.Command(python, "-m", "pytest", "-p", "no:cacheprovider", "tests")
	cmd.Dir = repo.Dir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, _ := cmd.CombinedOutput()
	counts := map[string]int{}
	for _, m := range regexp.MustCompile(`(\d+) (passed|failed|skipped|xfailed|xpassed|errors?)`).FindAllStringSubmatch(string(out), -1) {
		var n int
		fmt.Sscan(m[1], &n)
		counts[strings.TrimSuffix(m[2], "s")] = n
	}
	want := fmt.Sprintf("tests: %d passed, %d failed", counts["passed"]+counts["xpassed"], counts["failed"])
	if counts["error"] > 0 {
		want += fmt.Sprintf(", %d error", counts["error"])
	}
	want += fmt.Sprintf(", %d skipped", counts["skipped"]+counts["xfailed"])

	show, err := exec.Command(Binary(t), "show", "--controlplane", d.url, commit).CombinedOutput()
	if err != nil {
		t.Fatalf("pontus show: %v\n%s", err, show)
	}
	if got := regexp.MustCompile(`tests: +`).ReplaceAllString(string(show), "tests: "); !strings.Contains(got, want+"\n") {
		t.Errorf("pontus show lacks %q (pytest itself says %v):\n%s", want, counts, show)
	}
	for _, s := range []string{"FAILED  test_equal[1-2]", "SKIPPED test_later", "Add a pytest suite with parametrized tests"} {
		if !strings.Contains(string(show), s) {
			t.Errorf("pontus show lacks %q:\n%s", s, show)
		}
	}
	list, err := exec.Command(Binary(t), "builds", "--controlplane", d.url).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "Add a pytest suite with parametrized tests") {
		t.Errorf("pontus builds (%v) lacks the subject:\n%s", err, list)
	}
}
