package testreport

import (
	"strconv"
	"strings"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// ParseGoTestVerbose reads go test -v text ("=== RUN", "--- PASS: TestX
// (0.00s)", indented subtests, log lines between), plain go test text (only
// failures listed, their logs indented under them), and the
// -test.v=test2json form a test binary prints when run directly — the form Go
// test binaries compiled to WebAssembly print — where framing lines start
// with byte 0x16 and "=== NAME" says whose output follows. Output lines
// attach to the test running at the time. The "ok/FAIL  package" lines set
// each case's Suite; a package that failed with no failing test (a build
// failure) becomes one ERROR case named after the package. A test that
// started but never ended is an ERROR.
func ParseGoTestVerbose(output []byte) []*pontusv1.TestCase {
	return finish(parseGoVerbose(string(output)))
}

// mayBeGoVerbose is a cheap pre-check for Parse.
func mayBeGoVerbose(s string) bool {
	return strings.Contains(s, "=== RUN") || strings.Contains(s, "--- ") ||
		strings.Contains(s, "FAIL\t")
}

type goVerboseParser struct {
	recs   []*rec
	seg    []*rec          // tests since the last package line
	byName map[string]*rec // latest test of each name in seg
	t2j    bool            // framing lines carry the 0x16 marker

	cur       *rec // where output goes
	curIndent int  // -1: any line; else only lines indented deeper
	segOut    capBuf
	buildPkg  string
	build     map[string]*capBuf
}

func parseGoVerbose(s string) []*rec {
	p := &goVerboseParser{
		byName: make(map[string]*rec),
		build:  make(map[string]*capBuf),
		t2j:    strings.Contains(s, "\x16=== ") || strings.Contains(s, "\x16--- "),
	}
	lines(s, p.line)
	p.endPackage("", "", "")
	return p.recs
}

func (p *goVerboseParser) line(line string) {
	text, framed := line, !p.t2j
	if strings.HasPrefix(line, "\x16") {
		text, framed = line[1:], true
	}
	in := indent(text)
	t := text[in:]
	if framed && p.framing(t, in) {
		p.buildPkg = ""
		return
	}
	if in == 0 {
		if pkg, status, ok := goPackageLine(t); ok {
			p.endPackage(pkg, status, t)
			return
		}
		if framed && (t == "PASS" || t == "FAIL") {
			return
		}
		if p.cur == nil && strings.HasPrefix(t, "# ") {
			p.buildPkg = buildPkg(t[2:])
		}
	}
	switch {
	case p.cur != nil && (p.curIndent < 0 || in > p.curIndent):
		p.cur.out.line(line)
	case p.cur != nil && in == 0 && strings.HasPrefix(t, "panic: "):
		// A test that panics after its --- FAIL line (plain go test).
		p.curIndent = -1
		p.cur.out.line(line)
	case p.buildPkg != "":
		b := p.build[p.buildPkg]
		if b == nil {
			b = &capBuf{}
			p.build[p.buildPkg] = b
		}
		b.line(line)
	default:
		p.segOut.line(line)
	}
}

// framing handles "=== VERB name" and "--- RESULT: name (d)" lines.
func (p *goVerboseParser) framing(t string, in int) bool {
	if rest, ok := strings.CutPrefix(t, "=== "); ok {
		verb := firstWord(rest)
		name := strings.TrimSpace(strings.TrimPrefix(strings.TrimLeft(rest, " "), verb))
		switch verb {
		case "RUN":
			if name == "" {
				return false
			}
			r := p.byName[name]
			if r == nil || r.done {
				r = p.add(name)
			}
			p.cur, p.curIndent = r, -1
		case "CONT", "NAME":
			if name == "" {
				p.cur = nil
				return true
			}
			r := p.byName[name]
			if r == nil {
				r = p.add(name)
			}
			p.cur, p.curIndent = r, -1
		case "PAUSE":
		default:
			return false
		}
		return true
	}
	rest, ok := strings.CutPrefix(t, "--- ")
	if !ok {
		return false
	}
	var out pontusv1.TestOutcome
	switch {
	case strings.HasPrefix(rest, "PASS: "):
		out = pontusv1.TestOutcome_TEST_OUTCOME_PASSED
	case strings.HasPrefix(rest, "FAIL: "):
		out = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
	case strings.HasPrefix(rest, "SKIP: "):
		out = pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED
	default:
		return false
	}
	rest = rest[len("PASS: "):]
	name, dur := rest, ""
	if i := strings.LastIndex(rest, " ("); i >= 0 && strings.HasSuffix(rest, "s)") {
		name, dur = rest[:i], rest[i+2:len(rest)-2]
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return false
	}
	r := p.byName[name]
	if r == nil || r.done {
		r = p.add(name)
	}
	r.outcome, r.done = out, true
	if sec, err := strconv.ParseFloat(dur, 64); err == nil {
		r.setSeconds(sec)
	}
	if p.cur != r {
		// Plain go test prints a failed test's log indented under it.
		p.cur, p.curIndent = r, in
	}
	return true
}

func (p *goVerboseParser) add(name string) *rec {
	r := &rec{name: name}
	p.byName[name] = r
	p.seg = append(p.seg, r)
	p.recs = append(p.recs, r)
	return r
}

// goPackageLine recognises "ok  \tpkg\t0.01s", "FAIL\tpkg [build failed]",
// "?   \tpkg\t[no test files]".
func goPackageLine(t string) (pkg, status string, ok bool) {
	for _, pre := range []string{"ok  \t", "FAIL\t", "?   \t"} {
		if rest, found := strings.CutPrefix(t, pre); found {
			pkg = firstWord(rest)
			if pkg == "" {
				return "", "", false
			}
			return pkg, strings.TrimSpace(pre), true
		}
	}
	return "", "", false
}

// endPackage closes the tests since the last package line.
// summary is the package line itself.
func (p *goVerboseParser) endPackage(pkg, status, summary string) {
	failing := false
	for _, r := range p.seg {
		r.suite = pkg
		finishGoTest(r)
		if rank(r.outcome) == 0 {
			failing = true
		}
	}
	if status == "FAIL" && !failing {
		build := ""
		if b := p.build[pkg]; b != nil {
			build = b.String()
		}
		out := p.segOut.String() + summary + "\n"
		p.recs = append(p.recs, goPackageCase(pkg, build, out, false))
	}
	p.seg = p.seg[:0]
	if len(p.byName) > 0 {
		p.byName = make(map[string]*rec) // clear would cost the map's size
	}
	p.cur = nil
	p.segOut = capBuf{}
	p.buildPkg = ""
}
