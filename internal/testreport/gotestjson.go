package testreport

import (
	"encoding/json"
	"strings"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// ParseGoTestJSON reads go test -json output: test2json events, one JSON
// object a line. Each test and subtest ("TestA/sub") is a case with Suite set
// to its package; output events attach to their test. Lines that are not
// events (build errors printed as text, as Go before 1.24 and
// GODEBUG=gotestjsonbuildtext=1 do) are kept as build output of the package
// they name. A package that failed with no failing test (a build failure, a
// crash in TestMain or init) becomes one ERROR case named after the package,
// with the build and package output as its Output. A test that started but
// never ended (the binary crashed or timed out) is an ERROR.
func ParseGoTestJSON(output []byte) []*pontusv1.TestCase {
	return finish(parseGoTestJSON(string(output)))
}

type goEvent struct {
	Action      string
	Package     string
	Test        string
	Output      string
	Elapsed     *float64
	ImportPath  string
	FailedBuild string
}

type goPkg struct {
	name        string
	out         capBuf
	ended       bool
	failed      bool
	failedBuild string
	tests       []*rec
}

type goJSONParser struct {
	recs      []*rec
	tests     map[[2]string]*rec
	pkgs      map[string]*goPkg
	pkgOrder  []*goPkg
	build     map[string]*capBuf // build output by import path
	plainPkg  string             // package named by the last "# pkg" text line
	plainRest capBuf             // text lines before any "# pkg" line
	events    int
}

func parseGoTestJSON(s string) []*rec {
	p := &goJSONParser{
		tests: make(map[[2]string]*rec),
		pkgs:  make(map[string]*goPkg),
		build: make(map[string]*capBuf),
	}
	lines(s, p.line)
	if p.events == 0 {
		return nil
	}
	return p.finish()
}

func (p *goJSONParser) line(line string) {
	t := strings.TrimSpace(line)
	if strings.HasPrefix(t, "{") {
		var ev goEvent
		if json.Unmarshal([]byte(t), &ev) == nil && ev.Action != "" {
			p.events++
			p.plainPkg = ""
			p.event(&ev)
			return
		}
	}
	// Plain text mixed into the stream: build output.
	if strings.HasPrefix(line, "# ") {
		p.plainPkg = buildPkg(line[2:])
	}
	if p.plainPkg == "" {
		p.plainRest.line(line)
		return
	}
	p.buildBuf(p.plainPkg).line(line)
}

// buildPkg extracts the package from a build header or ImportPath:
// "example.com/x [example.com/x.test]" or "[example.com/x]".
func buildPkg(s string) string {
	w := firstWord(s)
	if strings.HasPrefix(w, "[") && strings.HasSuffix(w, "]") {
		w = w[1 : len(w)-1]
	}
	return w
}

func (p *goJSONParser) buildBuf(pkg string) *capBuf {
	b := p.build[pkg]
	if b == nil {
		b = &capBuf{}
		p.build[pkg] = b
	}
	return b
}

func (p *goJSONParser) pkg(name string) *goPkg {
	g := p.pkgs[name]
	if g == nil {
		g = &goPkg{name: name}
		p.pkgs[name] = g
		p.pkgOrder = append(p.pkgOrder, g)
	}
	return g
}

func (p *goJSONParser) test(pkg, name string) *rec {
	k := [2]string{pkg, name}
	r := p.tests[k]
	if r == nil {
		r = &rec{name: name, suite: pkg}
		p.tests[k] = r
		p.recs = append(p.recs, r)
		g := p.pkg(pkg)
		g.tests = append(g.tests, r)
	}
	return r
}

func (p *goJSONParser) event(ev *goEvent) {
	switch ev.Action {
	case "build-output":
		p.buildBuf(buildPkg(ev.ImportPath)).WriteString(ev.Output)
		return
	case "build-fail":
		return
	}
	g := p.pkg(ev.Package)
	if ev.Test == "" {
		switch ev.Action {
		case "output":
			g.out.WriteString(ev.Output)
		case "pass", "skip":
			g.ended = true
		case "fail":
			g.ended, g.failed = true, true
			if ev.FailedBuild != "" {
				g.failedBuild = buildPkg(ev.FailedBuild)
			}
		}
		return
	}
	switch ev.Action {
	case "run":
		r := p.test(ev.Package, ev.Test)
		if r.done { // -count=N runs a test again
			delete(p.tests, [2]string{ev.Package, ev.Test})
			p.test(ev.Package, ev.Test)
		}
	case "output":
		if !isGoFraming(ev.Output) {
			p.test(ev.Package, ev.Test).out.WriteString(ev.Output)
		}
	case "pass", "fail", "skip":
		r := p.test(ev.Package, ev.Test)
		r.done = true
		r.outcome = goOutcome(ev.Action)
		if ev.Elapsed != nil {
			r.setSeconds(*ev.Elapsed)
		}
	}
}

func goOutcome(action string) pontusv1.TestOutcome {
	switch action {
	case "pass", "PASS":
		return pontusv1.TestOutcome_TEST_OUTCOME_PASSED
	case "skip", "SKIP":
		return pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED
	}
	return pontusv1.TestOutcome_TEST_OUTCOME_FAILED
}

// isGoFraming reports whether an output line is go test's own framing
// ("=== RUN", "--- PASS: …"), which the case records already say.
func isGoFraming(s string) bool {
	t := strings.TrimLeft(s, " \x16")
	if strings.HasPrefix(t, "=== ") {
		v := t[4:]
		return strings.HasPrefix(v, "RUN") || strings.HasPrefix(v, "PAUSE") ||
			strings.HasPrefix(v, "CONT") || strings.HasPrefix(v, "NAME")
	}
	return strings.HasPrefix(t, "--- PASS: ") || strings.HasPrefix(t, "--- FAIL: ") ||
		strings.HasPrefix(t, "--- SKIP: ")
}

func (p *goJSONParser) finish() []*rec {
	for _, g := range p.pkgOrder {
		failing := false
		for _, r := range g.tests {
			finishGoTest(r)
			if rank(r.outcome) == 0 {
				failing = true
			}
		}
		if !g.failed || failing {
			continue
		}
		var build *capBuf
		for _, k := range []string{g.failedBuild, g.name, g.name + "_test"} {
			if b := p.build[k]; k != "" && b != nil {
				build = b
				break
			}
		}
		buildText := ""
		if build != nil {
			buildText = build.String()
		} else if g.failedBuild != "" || strings.Contains(g.out.String(), "[build failed]") {
			buildText = p.plainRest.String()
		}
		p.recs = append(p.recs, goPackageCase(g.name, buildText, g.out.String(), g.failedBuild != ""))
	}
	return p.recs
}

// goPackageCase is the ERROR case for a package that failed with no failing
// test.
func goPackageCase(pkg, build, out string, buildFailed bool) *rec {
	r := &rec{
		name:    pkg,
		suite:   pkg,
		outcome: pontusv1.TestOutcome_TEST_OUTCOME_ERROR,
		done:    true,
	}
	if r.name == "" {
		r.name = "(package)"
	}
	r.out.WriteString(build)
	r.out.WriteString(out)
	switch {
	case buildFailed || strings.Contains(out, "[build failed]"):
		r.message = "build failed"
	case strings.Contains(out, "[setup failed]"):
		r.message = "setup failed"
	}
	if r.message != "" {
		if d := firstDetail(build); d != "" {
			r.message += ": " + d
		}
		return r
	}
	if m, ok := goMessage(out); ok {
		r.message = m
	} else {
		r.message = "package failed with no failing test"
	}
	return r
}

// firstDetail returns the first line of build output that is not a
// "# package" header.
func firstDetail(build string) string {
	d := ""
	lines(build, func(l string) {
		if d == "" && !strings.HasPrefix(l, "#") && strings.TrimSpace(l) != "" {
			d = strings.TrimSpace(l)
		}
	})
	return d
}

// finishGoTest settles a Go test's message and outcome from its output.
func finishGoTest(r *rec) {
	if r.outcome == pontusv1.TestOutcome_TEST_OUTCOME_PASSED {
		return
	}
	out := r.out.String()
	msg, panicked := goMessage(out)
	switch {
	case !r.done:
		r.outcome = pontusv1.TestOutcome_TEST_OUTCOME_ERROR
		if !panicked {
			msg = "test did not report a result"
			if l := lastLine(out); l != "" {
				msg += "; last output: " + l
			}
		}
	case panicked:
		r.outcome = pontusv1.TestOutcome_TEST_OUTCOME_ERROR
	}
	r.message = msg
	r.done = true
}

// goMessage picks a Go test's message from its output: the first
// "panic: …" line (panicked is then true), else the last "file.go:N: …" log
// entry with its indented continuation lines.
func goMessage(out string) (msg string, panicked bool) {
	var entry []string
	entryIndent := -1
	var last []string
	lines(out, func(l string) {
		if panicked {
			return
		}
		if strings.HasPrefix(l, "panic: ") {
			msg, panicked = l, true
			return
		}
		in := indent(l)
		t := l[in:]
		if isGoLogLine(t) {
			entry, entryIndent = append(entry[:0:0], t), in
			last = entry
			return
		}
		if entryIndent >= 0 && in > entryIndent && t != "" {
			entry = append(entry, t)
			last = entry
			return
		}
		entryIndent = -1
	})
	if panicked {
		return msg, true
	}
	return strings.Join(last, "\n"), false
}

// isGoLogLine reports whether s starts like "calc_test.go:18: ".
func isGoLogLine(s string) bool {
	i := strings.Index(s, ".go:")
	if i <= 0 || strings.ContainsAny(s[:i], " \t") {
		return false
	}
	j := i + 4
	k := j
	for k < len(s) && s[k] >= '0' && s[k] <= '9' {
		k++
	}
	return k > j && strings.HasPrefix(s[k:], ": ")
}

// goEventActions are the actions test2json writes.
var goEventActions = map[string]bool{
	"start": true, "run": true, "pause": true, "cont": true, "pass": true, "bench": true,
	"fail": true, "output": true, "skip": true, "build-output": true, "build-fail": true,
}

// GoTestJSONText returns the human text a go test -json line stands for:
// the Output of a test2json event ("" for an event without output, such as
// "run" or "pass"). ok is false when line is not a test2json event; it is
// then text of its own (build errors, prints of a test command).
func GoTestJSONText(line []byte) (text string, ok bool) {
	t := strings.TrimSpace(string(line))
	if !strings.HasPrefix(t, "{") || !strings.Contains(t, `"Action"`) {
		return "", false
	}
	var ev goEvent
	if json.Unmarshal([]byte(t), &ev) != nil || !goEventActions[ev.Action] {
		return "", false
	}
	return ev.Output, true
}
