package testreport

import (
	"strings"
	"unicode"
	"unicode/utf8"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// ParseUnittest reads the output of Python's unittest run verbosely
// (python3 -m unittest discover -v, which prints on stderr; stdout mixed in is
// tolerated). Each "test_x (mod.Class.test_x) ... result" line is a case, named
// as printed, with Suite "mod.Class"; subtests ("test_x (…) (i=2)") are cases
// of their own. The FAIL/ERROR blocks after the run give each failing case its
// traceback (Output) and exception (Message); a block naming a test with no
// line of its own (a setUpClass error) adds a case. A test that started but
// reported no result is an ERROR.
func ParseUnittest(output []byte) []*pontusv1.TestCase {
	return finish(parseUnittest(string(output)))
}

const (
	utSepEq   = "======================================================================"
	utSepDash = "----------------------------------------------------------------------"
)

// mayBeUnittest is a cheap pre-check for Parse.
func mayBeUnittest(s string) bool {
	return strings.Contains(s, " ... ") || strings.Contains(s, utSepEq)
}

type utState int

const (
	utVerbose utState = iota // result lines
	utHeader                 // after a ==== line: "FAIL: desc" expected
	utDesc                   // docstring lines of a block, until ----
	utBody                   // traceback, until ==== or ----
)

type utParser struct {
	recs       []*rec
	byName     map[string]*rec
	state      utState
	pending    *rec // started, result not yet seen
	pendingDoc bool // the next line should be "docstring ... result"
	block      *rec
	blockKind  pontusv1.TestOutcome
	blockBody  capBuf
	descLines  int
}

func parseUnittest(s string) []*rec {
	p := &utParser{byName: make(map[string]*rec)}
	lines(s, p.line)
	p.endBlock()
	return p.finish()
}

func (p *utParser) line(line string) {
	switch p.state {
	case utHeader:
		if p.header(line) {
			return
		}
		p.state = utVerbose
	case utDesc:
		switch {
		case line == utSepDash:
			p.state = utBody
			return
		case line == utSepEq:
			p.endBlock()
			p.state = utHeader
			return
		case p.descLines < 3:
			p.descLines++
			return
		}
		p.endBlock()
		p.state = utVerbose
	case utBody:
		switch line {
		case utSepEq:
			p.endBlock()
			p.state = utHeader
		case utSepDash:
			p.endBlock()
			p.state = utVerbose
		default:
			p.blockBody.line(line)
		}
		return
	}
	if line == utSepEq {
		p.pending, p.pendingDoc = nil, false
		p.state = utHeader
		return
	}
	p.verbose(strings.TrimRight(line, " \t"))
}

// header reads "FAIL: desc", "ERROR: desc" or "UNEXPECTED SUCCESS: desc".
func (p *utParser) header(line string) bool {
	var kind pontusv1.TestOutcome
	var desc string
	switch {
	case strings.HasPrefix(line, "FAIL: "):
		kind, desc = pontusv1.TestOutcome_TEST_OUTCOME_FAILED, line[len("FAIL: "):]
	case strings.HasPrefix(line, "ERROR: "):
		kind, desc = pontusv1.TestOutcome_TEST_OUTCOME_ERROR, line[len("ERROR: "):]
	case strings.HasPrefix(line, "UNEXPECTED SUCCESS: "):
		// Listed one per line after a single ==== line, with no traceback.
		r := p.lookup(strings.TrimSpace(line[len("UNEXPECTED SUCCESS: "):]))
		r.outcome, r.done = pontusv1.TestOutcome_TEST_OUTCOME_FAILED, true
		if r.message == "" {
			r.message = "unexpected success"
		}
		return true
	default:
		return false
	}
	desc = strings.TrimSpace(desc)
	if desc == "" {
		return false
	}
	p.block = p.lookup(desc)
	p.blockKind = kind
	p.blockBody = capBuf{}
	p.descLines = 0
	p.state = utDesc
	return true
}

// lookup finds the case a block names, or adds one.
func (p *utParser) lookup(desc string) *rec {
	if r := p.byName[desc]; r != nil {
		return r
	}
	r := &rec{name: desc, base: desc}
	if d, ok := cutDesc(desc); ok {
		r.base = d.base
		r.suite = d.suite
	}
	p.add(r)
	return r
}

func (p *utParser) add(r *rec) {
	p.recs = append(p.recs, r)
	p.byName[r.name] = r
}

func (p *utParser) endBlock() {
	r := p.block
	if r == nil {
		return
	}
	p.block = nil
	body := strings.TrimRight(p.blockBody.String(), " \t\r\n")
	p.blockBody = capBuf{}
	r.outcome, r.done = p.blockKind, true
	if msg := tracebackMessage(body); msg != "" {
		r.message = msg
	}
	if r.out.Len() > 0 && body != "" {
		r.out.WriteString("\n")
	}
	r.out.WriteString(body)
}

// tracebackMessage returns the exception a traceback ends with
// ("AssertionError: 1 != 2", possibly several lines).
func tracebackMessage(body string) string {
	i := strings.LastIndex(body, "Traceback (most recent call last):")
	if i < 0 {
		return lastLine(body)
	}
	rest := body[i:]
	// Skip the Traceback line and the indented frames.
	for {
		nl := strings.IndexByte(rest, '\n')
		if nl < 0 {
			return ""
		}
		rest = rest[nl+1:]
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			break
		}
	}
	// unittest -b appends the captured streams after the exception.
	for _, marker := range []string{"\nStdout:\n", "\nStderr:\n"} {
		if j := strings.Index(rest, marker); j >= 0 {
			rest = rest[:j]
		}
	}
	return strings.TrimSpace(rest)
}

// verbose handles a line outside the FAIL/ERROR blocks; trailing blanks are
// already trimmed.
func (p *utParser) verbose(line string) {
	if p.pendingDoc {
		p.pendingDoc = false
		r := p.pending
		if rest, ok := splitDoc(line); ok {
			r.weak = false
			p.after(r, rest)
			return
		}
	}
	if r := p.pending; r != nil {
		if out, msg, ok := parseResult(strings.TrimLeft(line, " \t")); ok {
			p.resolve(r, out, msg)
			return
		}
	}
	if p.descs(line) {
		return
	}
	if r := p.pending; r != nil {
		r.out.line(line) // the test's own output, between its name and result
	}
}

// splitDoc splits a docstring line "Adds two numbers ... ok" after its
// " ... ", preferring a split whose remainder is a result.
func splitDoc(line string) (string, bool) {
	first := -1
	for off := 0; ; {
		i := strings.Index(line[off:], " ... ")
		if i < 0 {
			break
		}
		i += off
		if first < 0 {
			first = i
		}
		if _, _, ok := parseResult(line[i+5:]); ok {
			return line[i+5:], true
		}
		off = i + 5
	}
	if first < 0 {
		if strings.HasSuffix(line, " ...") { // "doc ... " with the blank trimmed
			return "", true
		}
		return "", false
	}
	return line[first+5:], true
}

// descs reads one or more "desc ... " at the start of line (Python 3.10
// prints a test whose subtests failed with no result, so the next test's
// description follows on the same line). It reports whether line began with a
// description.
func (p *utParser) descs(line string) bool {
	d, ok := cutDesc(line)
	if !ok {
		return false
	}
	p.pending, p.pendingDoc = nil, false
	for {
		r := &rec{name: d.desc, base: d.base, suite: d.suite}
		p.add(r)
		if !d.dots {
			// "test_x (m.C.test_x)" alone: the docstring line follows.
			r.weak = true
			p.pending, p.pendingDoc = r, true
			return true
		}
		rest := d.rest
		if rest == "" {
			p.pending = r
			return true
		}
		if out, msg, ok := parseResult(rest); ok {
			p.resolve(r, out, msg)
			return true
		}
		next, ok := cutDesc(rest)
		if !ok {
			// The test printed something before its result.
			r.out.line(rest)
			p.pending = r
			return true
		}
		d = next
	}
}

// after handles what follows " ... " on a docstring line.
func (p *utParser) after(r *rec, rest string) {
	if rest == "" {
		p.pending = r
		return
	}
	if out, msg, ok := parseResult(rest); ok {
		p.resolve(r, out, msg)
		return
	}
	if p.descs(rest) {
		return
	}
	r.out.line(rest)
	p.pending = r
}

func (p *utParser) resolve(r *rec, out pontusv1.TestOutcome, msg string) {
	r.outcome, r.message, r.done = out, msg, true
	r.weak = false
	if p.pending == r {
		p.pending, p.pendingDoc = nil, false
	}
}

// parseResult recognises what unittest prints after " ... ".
func parseResult(s string) (pontusv1.TestOutcome, string, bool) {
	switch s {
	case "ok":
		return pontusv1.TestOutcome_TEST_OUTCOME_PASSED, "", true
	case "FAIL":
		return pontusv1.TestOutcome_TEST_OUTCOME_FAILED, "", true
	case "ERROR":
		return pontusv1.TestOutcome_TEST_OUTCOME_ERROR, "", true
	case "expected failure":
		return pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, "expected failure", true
	case "unexpected success":
		return pontusv1.TestOutcome_TEST_OUTCOME_FAILED, "unexpected success", true
	case "skipped":
		return pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, "", true
	}
	if r, ok := strings.CutPrefix(s, "skipped "); ok && len(r) >= 2 {
		q := r[0]
		if (q == '\'' || q == '"') && r[len(r)-1] == q {
			return pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, pyUnquote(r[1 : len(r)-1]), true
		}
	}
	return 0, "", false
}

// pyUnquote undoes the common escapes of a Python repr() string.
func pyUnquote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return strings.NewReplacer(`\\`, `\`, `\'`, `'`, `\"`, `"`, `\n`, "\n", `\t`, "\t").Replace(s)
}

// utDesc is a parsed test description at the start of a line.
type utDescr struct {
	desc  string // "test_x (m.C.test_x) (i=2)", as printed
	base  string // "test_x (m.C.test_x)"
	suite string // "m.C"
	dots  bool   // followed by " ... "
	rest  string // after " ... "
}

// cutDesc parses "name (dotted.path)[ subtest] ... rest" or, without the
// dots, a line that is exactly "name (dotted.path)[ subtest]". The path may
// be empty: a module's own doctest prints as "module ()", then
// "Doctest: module ... ok" on the next line.
func cutDesc(line string) (utDescr, bool) {
	lead := indent(line)
	s := line[lead:]
	n := identLen(s)
	if n == 0 || !strings.HasPrefix(s[n:], " (") {
		return utDescr{}, false
	}
	name := s[:n]
	pstart := n + 2
	i := pstart
	// A doctest of a whole module prints as "module ()": no path.
	for !strings.HasPrefix(s[pstart:], ")") {
		m := identLen(s[i:])
		if m == 0 {
			return utDescr{}, false
		}
		i += m
		if i < len(s) && s[i] == '.' {
			i++
			continue
		}
		break
	}
	if i >= len(s) || s[i] != ')' {
		return utDescr{}, false
	}
	path := s[pstart:i]
	k := i + 1 // end of "name (path)"
	d := utDescr{base: s[:k], suite: path}
	if strings.HasSuffix(path, "."+name) {
		d.suite = path[:len(path)-len(name)-1]
	}
	okSuffix := func(suf string) bool {
		return suf == "" || strings.HasPrefix(suf, " (") || strings.HasPrefix(suf, " [")
	}
	if j := strings.Index(s[k:], " ... "); j >= 0 {
		if !okSuffix(s[k : k+j]) {
			return utDescr{}, false
		}
		d.desc, d.dots, d.rest = s[:k+j], true, s[k+j+5:]
		return d, true
	}
	if strings.HasSuffix(s, " ...") && okSuffix(s[k:len(s)-4]) { // "desc ... " trimmed
		d.desc, d.dots = s[:len(s)-4], true
		return d, true
	}
	suf := s[k:]
	if !okSuffix(suf) || (suf != "" && !strings.HasSuffix(suf, ")") && !strings.HasSuffix(suf, "]")) {
		return utDescr{}, false
	}
	d.desc = s
	return d, true
}

// identLen returns the length of the Python identifier at the start of s.
func identLen(s string) int {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		ok := r == '_' || unicode.IsLetter(r) || (i > 0 && unicode.IsDigit(r))
		if !ok || r == utf8.RuneError {
			break
		}
		i += size
	}
	return i
}

// finish resolves tests that never reported a result.
func (p *utParser) finish() []*rec {
	parents := make(map[string]bool)
	for _, r := range p.recs {
		if r.base != "" && r.name != r.base {
			parents[r.base] = true
		}
	}
	out := p.recs[:0]
	for _, r := range p.recs {
		if !r.done {
			if r.weak || (r.name == r.base && parents[r.base]) {
				// A bare line that was not a test after all, or a test
				// whose subtests carry its results.
				continue
			}
			r.outcome = pontusv1.TestOutcome_TEST_OUTCOME_ERROR
			r.message = "no result reported (the test run ended before this test finished)"
		}
		out = append(out, r)
	}
	return out
}
