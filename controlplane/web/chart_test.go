package web_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/controlplane/web"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// The builds page draws each branch's recent builds as an SVG chart: one
// linked bar per build, oldest first, as tall as the build was long,
// coloured by status, with a name that says what it stands for; the list
// shows each commit's subject and author.
func TestHistoryCharts(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	for i, st := range []pontusv1.BuildStatus{passed, failed, passed, timedOut} {
		b := newBuild(int64(i+1), "main", st)
		b.Duration = durationpb.New(time.Duration(i+1) * time.Second)
		b.Subject = "change number " + string(rune('A'+i))
		b.Author, b.AuthorEmail = "Ada Lovelace", "ada@example.com"
		s.fake.put(b)
	}
	s.fake.put(newBuild(5, "feature/x", running))

	r := get(t, s.url+"/")
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body,
		`<section id="history"`, `role="group" aria-label="Recent builds of main, oldest first`,
		`aria-label="Recent builds of feature/x`, `href="/?branch=main&amp;repo=%2Fsrv%2Fgit%2Fdemo.git"`,
		`<a href="/builds/2" aria-label="Build #2 FAILED in 2.0s, commit `+commitN(2)[:10]+`: change number B (Ada Lovelace &lt;ada@example.com&gt;)">`,
		`last 4 builds: 1 FAILED, 1 TIMED_OUT, 2 PASSED`, `last 1 build: 1 RUNNING`,
		`<span class="subject" title="change number D">change number D</span>`, `<div class="author" title="Ada Lovelace &lt;ada@example.com&gt;">Ada Lovelace</div>`,
	)
	// Oldest on the left; the longest build reaches the top.
	bars := regexp.MustCompile(`<a href="/builds/(\d)"[^>]*><rect class="([^"]+)" x="(\d+)" y="(\d+)" width="12" height="(\d+)"`).FindAllStringSubmatch(r.body, -1)
	var got []string
	for _, m := range bars {
		got = append(got, strings.Join(m[1:], " "))
	}
	want := []string{"5 s-running 0 45 3", // feature/x's chart first: its build is the newest
		"1 s-passed 0 36 12", "2 s-failed 16 24 24", "3 s-passed 32 12 36", "4 s-timed-out 48 0 48"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("bars (id class x y height)\n%q\nwant\n%q", got, want)
	}
}

// The search box keeps its term, passes it to ListBuilds and to the
// next page's link.
func TestSearchBox(t *testing.T) {
	t.Parallel()
	s := startServer(t, web.Options{})
	for i := int64(1); i <= 3; i++ {
		b := newBuild(i, "main", passed)
		b.Subject = map[int64]string{1: "fix the parser", 2: "docs", 3: "parser: faster"}[i]
		s.fake.put(b)
	}
	r := get(t, s.url+"/?q=parser&limit=1")
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `name="q" value="parser"`, `data-search="parser"`, `href="/builds/3"`, `q=parser`, "Builds whose commit starts with")
	wantNotContains(t, r.body, `<a href="/builds/2">`)
	r = get(t, s.url+"/?q="+strings.Repeat("x", 201))
	wantStatus(t, r, http.StatusBadRequest)
}
