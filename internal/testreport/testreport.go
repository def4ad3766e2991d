package testreport

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Limits on what one test case carries. Output keeps its first quarter and
// its last three quarters, with a note of how much was left out between;
// names and messages are cut at the limit.
const (
	// MaxOutput bounds TestCase.Output, in bytes.
	MaxOutput = 64 << 10
	// MaxMessage bounds TestCase.Message, in bytes.
	MaxMessage = 4 << 10
	// MaxName bounds TestCase.Name and TestCase.Suite, in bytes.
	MaxName = 1 << 10
	// MaxInput is how much of a JUnit XML file ParseJUnit reads.
	MaxInput = 64 << 20
)

// Parse detects which test output formats are present in output and returns
// the test cases found, failures and errors first, then the rest in the order
// seen. It returns nil when no format is recognised.
//
// An input that is an XML document with <testsuite> or <testcase> elements is
// read as JUnit XML. Otherwise Parse reads go test -json events (or, when there
// are none, go test -v / plain go test text), unittest -v output, and TAP from
// the first "TAP version" or plan ("1..N") line on, and returns them all.
func Parse(output []byte) []*pontusv1.TestCase {
	if looksLikeJUnit(output) {
		cases, _ := ParseJUnit(bytes.NewReader(output))
		if len(cases) > 0 {
			return cases
		}
		return nil
	}
	s := string(output)
	var recs []*rec
	if strings.Contains(s, `"Action"`) {
		recs = append(recs, parseGoTestJSON(s)...)
	}
	if len(recs) == 0 && mayBeGoVerbose(s) {
		recs = append(recs, parseGoVerbose(s)...)
	}
	if mayBeUnittest(s) {
		recs = append(recs, parseUnittest(s)...)
	}
	if start := tapStart(s); start >= 0 {
		recs = append(recs, parseTAPFrom(s, start)...)
	}
	return finish(recs)
}

// Summary counts cases by outcome. A case with an unknown outcome counts as
// errored.
func Summary(cases []*pontusv1.TestCase) (passed, failed, skipped, errored int) {
	for _, c := range cases {
		switch c.GetOutcome() {
		case pontusv1.TestOutcome_TEST_OUTCOME_PASSED:
			passed++
		case pontusv1.TestOutcome_TEST_OUTCOME_FAILED:
			failed++
		case pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED:
			skipped++
		default:
			errored++
		}
	}
	return passed, failed, skipped, errored
}

// rec is a test case while a parser builds it.
type rec struct {
	name    string
	suite   string
	message string
	outcome pontusv1.TestOutcome
	dur     time.Duration
	hasDur  bool
	out     capBuf
	done    bool // a result was reported for it

	// unittest bookkeeping
	weak bool   // seen only as a bare description line, no " ... " yet
	base string // "name (path)" without a subtest suffix
}

func (r *rec) setSeconds(sec float64) {
	if d, ok := seconds(sec); ok {
		r.dur, r.hasDur = d, true
	}
}

// seconds converts a duration in seconds, rejecting nonsense.
func seconds(sec float64) (time.Duration, bool) {
	if math.IsNaN(sec) || sec < 0 || sec > 1e9 {
		return 0, false
	}
	return time.Duration(sec * float64(time.Second)), true
}

// finish turns the records into sanitised test cases, failures first.
func finish(recs []*rec) []*pontusv1.TestCase {
	if len(recs) == 0 {
		return nil
	}
	cases := make([]*pontusv1.TestCase, 0, len(recs))
	for _, r := range recs {
		if r == nil {
			continue
		}
		c := &pontusv1.TestCase{
			Name:    clean(r.name, MaxName),
			Suite:   clean(r.suite, MaxName),
			Outcome: r.outcome,
			Message: clean(strings.TrimSpace(r.message), MaxMessage),
			Output:  clean(r.out.String(), MaxOutput+128),
		}
		if c.Name == "" {
			c.Name = "(unnamed)"
		}
		if c.Outcome == pontusv1.TestOutcome_TEST_OUTCOME_UNSPECIFIED {
			c.Outcome = pontusv1.TestOutcome_TEST_OUTCOME_ERROR
			if c.Message == "" {
				c.Message = "no result reported"
			}
		}
		if r.hasDur {
			c.Duration = durationpb.New(r.dur)
		}
		cases = append(cases, c)
	}
	if len(cases) == 0 {
		return nil
	}
	slices.SortStableFunc(cases, func(a, b *pontusv1.TestCase) int {
		return cmp.Compare(rank(a.Outcome), rank(b.Outcome))
	})
	return cases
}

func rank(o pontusv1.TestOutcome) int {
	switch o {
	case pontusv1.TestOutcome_TEST_OUTCOME_FAILED, pontusv1.TestOutcome_TEST_OUTCOME_ERROR:
		return 0
	}
	return 1
}

// clean cuts s to at most max bytes on a rune boundary and makes it valid
// UTF-8 (protobuf strings must be).
func clean(s string, max int) string {
	if len(s) > max {
		n := max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

// capBuf collects a test's output, keeping the first quarter of MaxOutput
// and the latest three quarters, in amortised linear time.
type capBuf struct {
	head  []byte
	tail  []byte
	total int
}

const (
	capHead = MaxOutput / 4
	capTail = MaxOutput - capHead
)

func (b *capBuf) WriteString(s string) {
	b.total += len(s)
	if n := capHead - len(b.head); n > 0 {
		n = min(n, len(s))
		b.head = append(b.head, s[:n]...)
		s = s[n:]
	}
	if len(s) == 0 {
		return
	}
	if len(s) >= capTail {
		b.tail = append(b.tail[:0], s[len(s)-capTail:]...)
		return
	}
	b.tail = append(b.tail, s...)
	if len(b.tail) > 2*capTail {
		b.tail = append(b.tail[:0], b.tail[len(b.tail)-capTail:]...)
	}
}

// line appends s and a newline.
func (b *capBuf) line(s string) {
	b.WriteString(s)
	b.WriteString("\n")
}

func (b *capBuf) Len() int { return b.total }

func (b *capBuf) String() string {
	if b.total <= MaxOutput {
		return string(b.head) + string(b.tail)
	}
	t := b.tail
	if len(t) > capTail {
		t = t[len(t)-capTail:]
	}
	omitted := b.total - len(b.head) - len(t)
	return string(b.head) + fmt.Sprintf("\n[… %d bytes omitted …]\n", omitted) + string(t)
}

// lines calls f for each line of s without its line ending.
func lines(s string, f func(line string)) {
	for len(s) > 0 {
		var line string
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			line, s = s, ""
		}
		f(strings.TrimSuffix(line, "\r"))
	}
}

// indent counts leading spaces and tabs (a tab counts as one).
func indent(s string) int {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// lastLine returns the last non-blank line of s, trimmed.
func lastLine(s string) string {
	s = strings.TrimRight(s, " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// firstWord returns s up to its first space or tab.
func firstWord(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i]
	}
	return s
}
