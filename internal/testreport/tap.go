package testreport

import (
	"fmt"
	"strconv"
	"strings"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// ParseTAP reads TAP (version 14, and the TAP 13 that node's test runner and
// most producers print). Each test point is a case named by its description
// ("test N" when it has none). "# SKIP" is SKIPPED; "not ok … # TODO" is
// SKIPPED with the reason as Message (a TODO is not a failure). A YAML
// diagnostic block after a test point becomes its Output, and its "message:"
// (or "error:", as node writes) its Message; "duration_ms:" its Duration.
// Subtests are 4-space-indented streams closed by a test point in the parent
// (announced by "# Subtest: name"); their cases are named "parent/child" and
// the closing point is a case too. "Bail out!" adds one ERROR case and ends
// the stream; a plan promising more (or fewer) tests than reported adds an
// ERROR case named "TAP plan" saying how many. A document ends when its plan
// is met (a trailing plan, or the last test point of a leading one): lines
// after it are not TAP until another "TAP version" line starts a new document,
// so TAP from several test files in a row reads as one list.
func ParseTAP(output []byte) []*pontusv1.TestCase {
	return finish(parseTAP(string(output)))
}

// tapStart returns the offset of the first line that starts a TAP document
// (a "TAP version" line or a plan line "1..N"), or -1: the evidence Parse
// wants before reading "ok" lines as TAP.
func tapStart(s string) int {
	start := -1
	if strings.HasPrefix(s, "TAP version ") {
		return 0
	}
	if i := strings.Index(s, "\nTAP version "); i >= 0 {
		start = i + 1
	}
	isPlan := func(rest string) bool { return rest != "" && rest[0] >= '0' && rest[0] <= '9' }
	if rest, ok := strings.CutPrefix(s, "1.."); ok && isPlan(rest) {
		return 0
	}
	limit := len(s)
	if start >= 0 {
		limit = start
	}
	for off := 0; off < limit; {
		i := strings.Index(s[off:limit], "\n1..")
		if i < 0 {
			break
		}
		off += i + 4
		if isPlan(s[off:]) {
			return off - 3
		}
	}
	return start
}

// tapMaxDepth caps subtest nesting; deeper lines count as this deep.
const tapMaxDepth = 32

type tapGroup struct {
	name   string
	parent *tapGroup
	path   string // "parent/name", once computed
	ok     bool
}

// fullPath returns the group's name prefixed by its parents', charging the
// bytes it builds to *budget; with the budget spent it returns false.
func (g *tapGroup) fullPath(budget *int) (string, bool) {
	if g.ok {
		return g.path, true
	}
	p := g.name
	if g.parent != nil {
		pp, ok := g.parent.fullPath(budget)
		if !ok {
			return "", false
		}
		p = pp + "/" + p
	}
	if len(p) > MaxName {
		p = p[:MaxName]
	}
	if *budget < len(p) {
		return "", false
	}
	*budget -= len(p)
	g.path, g.ok = p, true
	return p, true
}

type tapFrame struct {
	level       int
	group       *tapGroup // nil for the top-level stream
	subtestName string    // from "# Subtest: name"
	pendingName string    // "# Subtest:" seen here, for the next child stream
	child       *tapFrame // a closed child stream awaiting its test point
	plan        int
	hasPlan     bool
	planSkip    string
	count       int
	fresh       bool // nothing but comments seen yet
}

type tapCase struct {
	r     *rec
	group *tapGroup
	desc  string
}

type tapParser struct {
	cases      []tapCase
	stack      []*tapFrame
	yamlFor    *rec // test point that may take a YAML block
	yamlIndent int
	inYAML     bool
	yaml       capBuf
	bailed     bool
	complete   bool // the top-level plan is satisfied: the document is over
}

func parseTAP(s string) []*rec {
	return parseTAPFrom(s, 0)
}

// parseTAPFrom reads TAP starting at offset start of s.
func parseTAPFrom(s string, start int) []*rec {
	s = s[start:]
	p := &tapParser{stack: []*tapFrame{{fresh: true}}}
	lines(s, p.line)
	p.end()
	// Prefixing names with their parents' could multiply the input's size
	// on a hostile input (deep nesting, long parent names, many children):
	// the bytes built for prefixes are bounded by the input's size plus 1 MiB,
	// after which cases keep their own description only.
	budget := len(s) + 1<<20
	recs := make([]*rec, 0, len(p.cases))
	for _, c := range p.cases {
		name := c.desc
		if c.group != nil {
			if prefix, ok := c.group.fullPath(&budget); ok && budget > len(prefix) {
				budget -= len(prefix) + 1
				name = prefix + "/" + name
			}
		}
		c.r.name = name
		recs = append(recs, c.r)
	}
	return recs
}

func (p *tapParser) top() *tapFrame { return p.stack[len(p.stack)-1] }

func (p *tapParser) line(raw string) {
	if p.bailed {
		return
	}
	if p.inYAML && p.yamlLine(raw) {
		return
	}
	sp := 0
	for sp < len(raw) && raw[sp] == ' ' {
		sp++
	}
	t := strings.TrimRight(raw[sp:], " \t")
	if t == "" {
		return
	}
	if len(t) >= 9 && strings.EqualFold(t[:9], "Bail out!") {
		p.bail(strings.TrimSpace(t[9:]))
		return
	}
	if t == "---" && p.yamlFor != nil && sp == p.yamlIndent {
		p.inYAML = true
		p.yaml = capBuf{}
		return
	}
	p.yamlFor = nil
	if strings.HasPrefix(t, "TAP version ") && sp == 0 {
		// A new document (several test files' TAP one after another).
		if f := p.stack[0]; p.complete || f.count > 0 || f.hasPlan {
			p.end()
			p.stack = []*tapFrame{{fresh: true}}
			p.complete = false
		}
		return
	}
	if p.complete {
		return // after the end of the document: not TAP
	}
	level := min(sp/4, tapMaxDepth)

	if strings.HasPrefix(t, "ok") || strings.HasPrefix(t, "not ok") {
		if tp, ok := parseTestPoint(t); ok {
			p.moveTo(level)
			p.point(tp)
			return
		}
	}
	if rest, ok := strings.CutPrefix(t, "1.."); ok && rest != "" && rest[0] >= '0' && rest[0] <= '9' {
		p.moveTo(level)
		p.plan(rest)
		return
	}
	if rest, ok := strings.CutPrefix(t, "# Subtest"); ok && (rest == "" || rest[0] == ':') {
		p.moveTo(level)
		p.subtest(tapUnescape(strings.TrimSpace(strings.TrimPrefix(rest, ":"))))
		return
	}
	if strings.HasPrefix(t, "TAP version ") || strings.HasPrefix(t, "pragma ") {
		p.moveTo(level)
		return
	}
	// Comments and anything else: not part of the results.
}

// moveTo makes the frame at level the top of the stack, closing deeper
// streams and opening new ones.
func (p *tapParser) moveTo(level int) {
	for p.top().level > level {
		child := p.top()
		p.stack = p.stack[:len(p.stack)-1]
		p.closeFrame(child)
		parent := p.top()
		if parent.child != nil {
			p.unclaimed(parent.child)
		}
		parent.child = child
	}
	for p.top().level < level {
		parent := p.top()
		f := &tapFrame{
			level:       parent.level + 1,
			group:       &tapGroup{parent: parent.group},
			subtestName: parent.pendingName,
			fresh:       true,
		}
		parent.pendingName = ""
		parent.fresh = false
		p.stack = append(p.stack, f)
	}
}

// unclaimed names a child stream that no test point closed.
func (p *tapParser) unclaimed(child *tapFrame) {
	child.group.name = child.subtestName
	if child.group.name == "" {
		child.group.name = "subtest"
	}
}

// closeFrame checks a finished stream against its plan.
func (p *tapParser) closeFrame(f *tapFrame) {
	if f.child != nil {
		p.unclaimed(f.child)
		f.child = nil
	}
	if !f.hasPlan || p.bailed {
		return
	}
	r := &rec{name: "TAP plan", done: true}
	switch {
	case f.count < f.plan:
		r.outcome = pontusv1.TestOutcome_TEST_OUTCOME_ERROR
		r.message = fmt.Sprintf("plan 1..%d promised %d tests, %d reported: %d missing",
			f.plan, f.plan, f.count, f.plan-f.count)
	case f.count > f.plan:
		r.outcome = pontusv1.TestOutcome_TEST_OUTCOME_ERROR
		r.message = fmt.Sprintf("plan 1..%d promised %d tests, %d reported", f.plan, f.plan, f.count)
	case f.plan == 0 && f.planSkip != "":
		r.outcome = pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED
		r.message = f.planSkip
	default:
		return
	}
	p.cases = append(p.cases, tapCase{r: r, group: f.group, desc: r.name})
}

type testPoint struct {
	pass      bool
	num       string
	desc      string
	directive string // "skip", "todo" or ""
	reason    string
}

// parseTestPoint reads "ok 1 - desc # SKIP reason" and its variants.
func parseTestPoint(t string) (testPoint, bool) {
	var tp testPoint
	var rest string
	switch {
	case strings.HasPrefix(t, "ok"):
		tp.pass, rest = true, t[2:]
	case strings.HasPrefix(t, "not ok"):
		rest = t[6:]
	default:
		return tp, false
	}
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' && rest[0] != '#' {
		return tp, false // "okay", "not okay"
	}
	rest = strings.TrimLeft(rest, " \t")
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n > 0 && (n == len(rest) || rest[n] == ' ' || rest[n] == '\t' || rest[n] == '#') {
		tp.num, rest = rest[:n], strings.TrimLeft(rest[n:], " \t")
	}
	if rest == "-" {
		rest = ""
	} else if r, ok := strings.CutPrefix(rest, "- "); ok {
		rest = r
	}
	desc, comment := splitDirective(rest)
	tp.desc = tapUnescape(strings.TrimSpace(desc))
	comment = strings.TrimSpace(comment)
	word := comment
	if i := strings.IndexAny(comment, " \t"); i >= 0 {
		word = comment[:i]
	}
	switch strings.ToLower(word) {
	case "skip", "skipped", "skip:":
		tp.directive = "skip"
	case "todo", "todo:":
		tp.directive = "todo"
	}
	if tp.directive != "" {
		tp.reason = strings.TrimSpace(comment[len(word):])
	}
	return tp, true
}

// splitDirective splits at the first unescaped '#'.
func splitDirective(s string) (desc, comment string) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '#':
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// tapUnescape undoes TAP 14's "\#" and "\\".
func tapUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '#' || s[i+1] == '\\') {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (p *tapParser) point(tp testPoint) {
	f := p.top()
	f.fresh = false
	f.count++
	f.pendingName = ""
	desc := tp.desc
	if desc == "" {
		if tp.num != "" {
			desc = "test " + tp.num
		} else {
			desc = "test " + strconv.Itoa(f.count)
		}
	}
	if f.child != nil {
		// This point closes the subtest stream before it.
		f.child.group.name = desc
		f.child = nil
	}
	r := &rec{done: true}
	switch {
	case tp.directive == "skip":
		r.outcome, r.message = pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, tp.reason
	case tp.directive == "todo" && !tp.pass:
		r.outcome, r.message = pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, tp.reason
		if r.message == "" {
			r.message = "TODO"
		}
	case tp.pass:
		r.outcome = pontusv1.TestOutcome_TEST_OUTCOME_PASSED
		if tp.directive == "todo" {
			r.message = tp.reason
		}
	default:
		r.outcome = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
	}
	p.cases = append(p.cases, tapCase{r: r, group: f.group, desc: desc})
	p.yamlFor, p.yamlIndent = r, f.level*4+2
	if f.level == 0 && f.hasPlan && f.count >= f.plan {
		p.complete = true
	}
}

func (p *tapParser) plan(rest string) {
	f := p.top()
	f.fresh = false
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	v, err := strconv.Atoi(rest[:n])
	if err != nil {
		v = 1 << 30 // absurdly many; the plan check reports it
	}
	f.plan, f.hasPlan = v, true
	if f.level == 0 && (f.count > 0 || v == 0) {
		p.complete = true // a trailing plan (or 1..0) ends the document
	}
	if _, comment := splitDirective(rest[n:]); comment != "" {
		c := strings.TrimSpace(comment)
		if len(c) >= 4 && strings.EqualFold(c[:4], "skip") {
			f.planSkip = strings.TrimSpace(c[4:])
			if f.planSkip == "" {
				f.planSkip = "skipped"
			}
		}
	}
}

func (p *tapParser) subtest(name string) {
	f := p.top()
	if f.child != nil {
		p.unclaimed(f.child)
		f.child = nil
	}
	if f.fresh && f.group != nil && f.subtestName == "" {
		// The comment inside the child stream, 4 spaces in.
		f.subtestName = name
		return
	}
	f.pendingName = name
}

// yamlLine takes a line of a YAML block; it returns false when the line
// ends the block without belonging to it.
func (p *tapParser) yamlLine(raw string) bool {
	if strings.TrimSpace(raw) == "" {
		p.yaml.line("")
		return true
	}
	sp := 0
	for sp < len(raw) && raw[sp] == ' ' {
		sp++
	}
	if sp < p.yamlIndent {
		p.endYAML()
		return false
	}
	if sp == p.yamlIndent && strings.TrimRight(raw[sp:], " \t") == "..." {
		p.endYAML()
		return true
	}
	p.yaml.line(raw[p.yamlIndent:])
	return true
}

func (p *tapParser) endYAML() {
	r := p.yamlFor
	p.inYAML, p.yamlFor = false, nil
	if r == nil {
		return
	}
	text := strings.TrimRight(p.yaml.String(), "\n")
	p.yaml = capBuf{}
	r.out.WriteString(text)
	msg, ok := yamlScalar(text, "message")
	if !ok {
		msg, ok = yamlScalar(text, "error")
	}
	if ok && msg != "" && r.message == "" {
		r.message = msg
	}
	if d, ok := yamlScalar(text, "duration_ms"); ok {
		if ms, err := strconv.ParseFloat(d, 64); err == nil {
			r.setSeconds(ms / 1000)
		}
	}
}

func (p *tapParser) bail(reason string) {
	if p.inYAML {
		p.endYAML()
	}
	top := p.stack[0]
	msg := reason
	if msg == "" {
		msg = "bailed out"
	}
	if top.hasPlan && top.count < top.plan {
		msg += fmt.Sprintf(" (%d of %d planned tests did not run)", top.plan-top.count, top.plan)
	}
	r := &rec{name: "Bail out!", outcome: pontusv1.TestOutcome_TEST_OUTCOME_ERROR, message: msg, done: true}
	p.cases = append(p.cases, tapCase{r: r, desc: r.name})
	p.bailed = true
}

func (p *tapParser) end() {
	if p.inYAML {
		p.endYAML()
	}
	p.moveTo(0)
	p.closeFrame(p.stack[0])
	p.yamlFor = nil
}

// yamlScalar reads the top-level key's value from a YAML diagnostic block:
// plain, 'single' or "double" quoted (possibly over several lines), or a
// literal/folded block (| |- > >-).
func yamlScalar(text, key string) (string, bool) {
	prefix := key + ":"
	var found bool
	var v string
	var block []string
	blockMode := false
	quote := byte(0)
	var quoted []string
	done := false
	lines(text, func(l string) {
		if done {
			return
		}
		if !found {
			if rest, ok := strings.CutPrefix(l, prefix); ok && (rest == "" || rest[0] == ' ') {
				found = true
				v = strings.TrimSpace(rest)
				switch {
				case v != "" && (v[0] == '|' || v[0] == '>') && strings.Trim(v[1:], "+-0123456789") == "":
					blockMode = true
				case v != "" && (v[0] == '\'' || v[0] == '"') && !yamlClosed(v):
					quote = v[0]
					quoted = append(quoted, v)
				default:
					done = true
				}
			}
			return
		}
		switch {
		case blockMode:
			if l != "" && l[0] != ' ' {
				done = true
				return
			}
			block = append(block, l)
		case quote != 0:
			t := strings.TrimSpace(l)
			quoted = append(quoted, t)
			if closesQuote(t, quote) || (l != "" && l[0] != ' ') {
				done = true
			}
		}
	})
	if !found {
		return "", false
	}
	if blockMode {
		ind := -1
		for _, b := range block {
			if strings.TrimSpace(b) != "" {
				ind = indent(b)
				break
			}
		}
		for i, b := range block {
			if len(b) >= ind && ind >= 0 {
				block[i] = b[ind:]
			} else {
				block[i] = strings.TrimLeft(b, " ")
			}
		}
		return strings.TrimRight(strings.Join(block, "\n"), "\n "), true
	}
	if quote != 0 {
		v = strings.Join(quoted, " ")
	}
	return yamlUnquote(v), true
}

// yamlClosed reports whether a quoted scalar has its closing quote.
func yamlClosed(v string) bool {
	if len(v) < 2 {
		return false
	}
	q := v[0]
	if q == '\'' {
		// '' is an escaped quote inside.
		body := strings.ReplaceAll(v[1:], "''", "")
		return strings.HasSuffix(body, "'")
	}
	return v[len(v)-1] == '"' && (len(v) < 3 || v[len(v)-2] != '\\')
}

// closesQuote reports whether a continuation line of a quoted scalar ends it.
func closesQuote(t string, q byte) bool {
	n := 0
	for n < len(t) && t[len(t)-1-n] == q {
		n++
	}
	if q == '\'' {
		return n%2 == 1
	}
	return n > 0 && (len(t) == 1 || t[len(t)-2] != '\\')
}

func yamlUnquote(v string) string {
	switch {
	case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
		if u, err := strconv.Unquote(v); err == nil {
			return u
		}
		return v[1 : len(v)-1]
	}
	return v
}
