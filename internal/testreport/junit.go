package testreport

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// junitMaxDepth bounds element nesting in a JUnit file.
const junitMaxDepth = 256

// ParseJUnit reads a JUnit XML report (<testsuites>, <testsuite>, nested
// suites, <testcase classname name time> with <failure message>, <error>,
// <skipped>, <system-out>, <system-err>, and Surefire's rerun/flaky
// elements), as pytest --junitxml, Maven Surefire, node --test-reporter=junit
// and most CI tools write it. Each <testcase> is a case named by its name
// attribute, with Suite its classname (or the enclosing suite's name).
// <skipped> wins over <failure> (node writes both for a TODO), <error> is
// ERROR, <failure> or <rerunFailure> is FAILED; a test that only has
// <flakyFailure> passed in the end.
//
// It reads at most MaxInput bytes and fails on a larger input; encoding/xml
// does not expand entities, so entity-bomb documents fail as malformed. On a
// malformed or truncated document it returns the cases read before the
// problem along with the error.
func ParseJUnit(r io.Reader) ([]*pontusv1.TestCase, error) {
	recs, err := parseJUnit(r, MaxInput)
	cases := finish(recs)
	if err != nil {
		return cases, fmt.Errorf("parse junit xml: %w", err)
	}
	return cases, nil
}

// ErrTooLarge is returned (wrapped) by ParseJUnit for input over MaxInput
// bytes.
var ErrTooLarge = errors.New("input larger than 64 MiB")

// looksLikeJUnit reports whether output is an XML document that mentions
// JUnit elements.
func looksLikeJUnit(output []byte) bool {
	t := bytes.TrimLeft(output, "\ufeff \t\r\n")
	if !bytes.HasPrefix(t, []byte("<")) {
		return false
	}
	return bytes.Contains(t, []byte("<testsuite")) || bytes.Contains(t, []byte("<testcase"))
}

type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// See whether there is more: one byte over the limit is too much.
		var b [1]byte
		n, err := l.r.Read(b[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		if err == nil {
			return 0, nil
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

type junitCase struct {
	r         *rec
	skipped   bool
	errored   bool
	failed    bool
	flaky     bool
	skipMsg   string
	failMsg   string
	errMsg    string
	body      capBuf // failure/error text
	sysout    capBuf
	syserr    capBuf
	text      *capBuf // where character data goes now
	textDepth int     // depth of the element whose text that is
}

// parseJUnit reads at most limit bytes of r.
func parseJUnit(r io.Reader, limit int64) ([]*rec, error) {
	d := xml.NewDecoder(&limitedReader{r: r, n: limit})
	d.CharsetReader = charsetReader
	var (
		recs   []*rec
		suites []string // enclosing suite names
		depth  int
		cur    *junitCase
		curAt  int // depth of the open <testcase>
		seen   bool
	)
	for {
		tok, err := d.Token()
		if err != nil {
			if cur != nil {
				recs = append(recs, cur.finish())
			}
			if errors.Is(err, io.EOF) {
				if !seen {
					return nil, errors.New("no XML element found")
				}
				return recs, nil
			}
			return recs, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			seen = true
			depth++
			if depth > junitMaxDepth {
				if cur != nil {
					recs = append(recs, cur.finish())
				}
				return recs, fmt.Errorf("elements nested deeper than %d", junitMaxDepth)
			}
			name := t.Name.Local
			switch {
			case cur == nil && name == "testsuite":
				suites = append(suites, attr(t, "name"))
			case cur == nil && name == "testcase":
				suite := attr(t, "classname")
				if suite == "" && len(suites) > 0 {
					suite = suites[len(suites)-1]
				}
				cur = &junitCase{r: &rec{name: attr(t, "name"), suite: suite, done: true}}
				if cur.r.name == "" {
					cur.r.name = suite
				}
				if v := strings.ReplaceAll(attr(t, "time"), ",", ""); v != "" {
					if sec, err := strconv.ParseFloat(v, 64); err == nil {
						cur.r.setSeconds(sec)
					}
				}
				curAt = depth
			case cur != nil && depth == curAt+1:
				cur.start(name, t, depth)
			}
		case xml.EndElement:
			if cur != nil && depth == curAt {
				recs = append(recs, cur.finish())
				cur = nil
			} else if cur != nil && depth == cur.textDepth {
				cur.text, cur.textDepth = nil, 0
			} else if cur == nil && t.Name.Local == "testsuite" && len(suites) > 0 {
				suites = suites[:len(suites)-1]
			}
			depth--
		case xml.CharData:
			if cur != nil && cur.text != nil {
				cur.text.WriteString(string(t))
			}
		}
	}
}

// start handles a child element of <testcase>.
func (c *junitCase) start(name string, t xml.StartElement, depth int) {
	msg := attr(t, "message")
	var text *capBuf
	switch name {
	case "skipped":
		c.skipped = true
		c.skipMsg = msg
		if attr(t, "type") == "pytest.xfail" {
			// An xfail is SKIPPED, as unittest's expected failure is.
			c.skipMsg = strings.TrimSpace("expected failure: " + msg)
			c.skipMsg = strings.TrimSuffix(c.skipMsg, ":")
		}
		text = &c.body
	case "error", "rerunError":
		c.errored = true
		if c.errMsg == "" {
			c.errMsg = msg
		}
		text = &c.body
	case "failure", "rerunFailure":
		c.failed = true
		if c.failMsg == "" {
			c.failMsg = msg
		}
		text = &c.body
	case "flakyFailure", "flakyError":
		c.flaky = true
		text = &c.body
	case "system-out":
		text = &c.sysout
	case "system-err":
		text = &c.syserr
	default:
		return
	}
	if text.Len() > 0 {
		text.WriteString("\n")
	}
	c.text, c.textDepth = text, depth
}

func (c *junitCase) finish() *rec {
	r := c.r
	switch {
	case c.skipped:
		r.outcome, r.message = pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, c.skipMsg
	case c.errored:
		r.outcome, r.message = pontusv1.TestOutcome_TEST_OUTCOME_ERROR, c.errMsg
	case c.failed:
		r.outcome, r.message = pontusv1.TestOutcome_TEST_OUTCOME_FAILED, c.failMsg
	default:
		r.outcome = pontusv1.TestOutcome_TEST_OUTCOME_PASSED
		if c.flaky {
			r.message = "flaky: passed on a rerun"
		}
	}
	body := strings.TrimSpace(c.body.String())
	if r.message == "" && r.outcome != pontusv1.TestOutcome_TEST_OUTCOME_PASSED {
		r.message = firstLine(body)
	}
	parts := []string{body, strings.TrimSpace(c.sysout.String()), strings.TrimSpace(c.syserr.String())}
	for _, p := range parts {
		if p == "" {
			continue
		}
		if r.out.Len() > 0 {
			r.out.WriteString("\n")
		}
		r.out.WriteString(p)
	}
	return r
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// charsetReader lets the decoder read documents that declare a charset other
// than UTF-8: Latin-1 is converted, anything else is read as UTF-8 (invalid
// bytes are replaced later).
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "windows-1252", "cp1252":
		return &latin1Reader{r: input}, nil
	}
	return input, nil
}

type latin1Reader struct {
	r   io.Reader
	buf []byte
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	if len(p) < utf8.UTFMax {
		return 0, io.ErrShortBuffer
	}
	if cap(l.buf) < len(p)/2 {
		l.buf = make([]byte, len(p)/2)
	}
	in := l.buf[:len(p)/2]
	n, err := l.r.Read(in)
	out := 0
	for _, b := range in[:n] {
		out += utf8.EncodeRune(p[out:], rune(b))
	}
	return out, err
}
