package testreport

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// TestEdgeCases covers forms the captures do not show, each as a small
// input written out here.
func TestEdgeCases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		parse func([]byte) []*pontusv1.TestCase
		in    string
		want  []row
	}{
		{
			name:  "unittest/killed mid-test",
			parse: ParseUnittest,
			in:    "test_a (m.C.test_a) ... ok\ntest_b (m.C.test_b) ... ",
			want: []row{
				{"ERROR", "test_b (m.C.test_b)", "m.C", "no result reported (the test run ended before this test finished)"},
				{"PASSED", "test_a (m.C.test_a)", "m.C", ""},
			},
		},
		{
			name:  "unittest/docstring containing dots and a quote in the skip reason",
			parse: ParseUnittest,
			in: "test_a (m.C.test_a)\nWait ... then check ... ok\n" +
				"test_b (m.C.test_b) ... skipped \"it's broken\"\n" +
				"test_c (m.C.test_c) ... skipped 'a \\'quoted\\' reason'\n",
			want: []row{
				{"PASSED", "test_a (m.C.test_a)", "m.C", ""},
				{"SKIPPED", "test_b (m.C.test_b)", "m.C", "it's broken"},
				{"SKIPPED", "test_c (m.C.test_c)", "m.C", "a 'quoted' reason"},
			},
		},
		{
			name:  "unittest/lines that only look like tests",
			parse: ParseUnittest,
			in:    "Total (all files)\n\t\tTestSlow (1s)\nRan 3 tests in 0.1s\nFAILED (failures=1)\nok\n",
			want:  []row{},
		},
		{
			name:  "unittest/several unexpected successes and a chained exception",
			parse: ParseUnittest,
			in: "test_a (m.C.test_a) ... unexpected success\ntest_b (m.C.test_b) ... unexpected success\ntest_c (m.C.test_c) ... ERROR\n\n" +
				utSepEq + "\nERROR: test_c (m.C.test_c)\n" + utSepDash + "\n" +
				"Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\nKeyError: 'k'\n\n" +
				"During handling of the above exception, another exception occurred:\n\n" +
				"Traceback (most recent call last):\n  File \"x.py\", line 3, in test_c\n    h()\nValueError: second\n\n" +
				utSepEq + "\nUNEXPECTED SUCCESS: test_a (m.C.test_a)\nUNEXPECTED SUCCESS: test_b (m.C.test_b)\n" +
				utSepDash + "\nRan 3 tests in 0.001s\n\nFAILED (errors=1, unexpected successes=2)\n",
			want: []row{
				{"FAILED", "test_a (m.C.test_a)", "m.C", "unexpected success"},
				{"FAILED", "test_b (m.C.test_b)", "m.C", "unexpected success"},
				{"ERROR", "test_c (m.C.test_c)", "m.C", "ValueError: second"},
			},
		},
		{
			name:  "go json/garbage lines, a repeated test, a test that never ends",
			parse: ParseGoTestJSON,
			in: "go: downloading example.com/x v1.0.0\n" +
				`{"Action":"run","Package":"p","Test":"TestA"}` + "\n" +
				"{not json at all\n" +
				`{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.5}` + "\n" +
				`{"Action":"run","Package":"p","Test":"TestA"}` + "\n" +
				`{"Action":"fail","Package":"p","Test":"TestA","Elapsed":"oops"}` + "\n" +
				`{"Action":"run","Package":"p","Test":"TestB"}` + "\n" +
				`{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:3: working\n"}` + "\n",
			want: []row{
				// The second run's "fail" has a bad Elapsed: not an event,
				// so that run never ended.
				{"ERROR", "TestA", "p", "test did not report a result"},
				{"ERROR", "TestB", "p", "test did not report a result; last output: b_test.go:3: working"},
				{"PASSED", "TestA", "p", ""},
			},
		},
		{
			name:  "go json/package fails with no failing test",
			parse: ParseGoTestJSON,
			in: `{"Action":"start","Package":"p"}` + "\n" +
				`{"Action":"output","Package":"p","Output":"TestMain: cannot connect\n"}` + "\n" +
				`{"Action":"output","Package":"p","Output":"FAIL\tp\t0.01s\n"}` + "\n" +
				`{"Action":"fail","Package":"p","Elapsed":0.01}` + "\n",
			want: []row{
				{"ERROR", "p", "p", "package failed with no failing test"},
			},
		},
		{
			name:  "go verbose/parallel tests with CONT and PAUSE",
			parse: ParseGoTestVerbose,
			in: "=== RUN   TestA\n=== PAUSE TestA\n=== RUN   TestB\n=== PAUSE TestB\n=== CONT  TestA\n" +
				"    a_test.go:5: from A\n=== CONT  TestB\n    b_test.go:5: from B\n--- FAIL: TestB (0.10s)\n" +
				"--- PASS: TestA (0.20s)\nFAIL\nFAIL\tp\t0.3s\n",
			want: []row{
				{"FAILED", "TestB", "p", "b_test.go:5: from B"},
				{"PASSED", "TestA", "p", ""},
			},
		},
		{
			name:  "go verbose/test2json marker: unmarked framing text is output",
			parse: ParseGoTestVerbose,
			in:    "\x16=== RUN   TestA\n--- FAIL: TestFake (0.00s)\n\x16--- PASS: TestA (0.00s)\n",
			want:  []row{{"PASSED", "TestA", "", ""}},
		},
		{
			name:  "go verbose/build failure alone",
			parse: ParseGoTestVerbose,
			in:    "# p\n./a.go:3:1: syntax error: non-declaration statement outside function body\nFAIL\tp [build failed]\nFAIL\n",
			want: []row{
				{"ERROR", "p", "p", "build failed: ./a.go:3:1: syntax error: non-declaration statement outside function body"},
			},
		},
		{
			name:  "tap/plan at the end, no numbers, no descriptions",
			parse: ParseTAP,
			in:    "ok\nnot ok\nok - third\n1..3\n",
			want: []row{
				{"FAILED", "test 2", "", ""},
				{"PASSED", "test 1", "", ""},
				{"PASSED", "third", "", ""},
			},
		},
		{
			name:  "tap/missing and skipped-everything plans",
			parse: ParseTAP,
			in:    "TAP version 14\n1..4\nok 1 - a\nok 2 - b\nTAP version 14\n1..0 # SKIP no display\n",
			want: []row{
				{"ERROR", "TAP plan", "", "plan 1..4 promised 4 tests, 2 reported: 2 missing"},
				{"PASSED", "a", "", ""},
				{"PASSED", "b", "", ""},
				{"SKIPPED", "TAP plan", "", "no display"},
			},
		},
		{
			name:  "tap/bail out inside a subtest",
			parse: ParseTAP,
			in:    "TAP version 14\n1..2\n# Subtest: s\n    ok 1 - x\n    Bail out! disk full\nok 1 - s\n",
			want: []row{
				{"ERROR", "Bail out!", "", "disk full (2 of 2 planned tests did not run)"},
				{"PASSED", "s/x", "", ""},
			},
		},
		{
			name:  "tap/unterminated yaml and okay-is-not-ok",
			parse: ParseTAP,
			in:    "1..2\nnot ok 1 - a\n  ---\n  message: \"two\\nlines\"\nokay this is prose\nok 2 - b\n",
			want: []row{
				{"FAILED", "a", "", "two\nlines"},
				{"PASSED", "b", "", ""},
			},
		},
		{
			name:  "tap/todo that passes",
			parse: ParseTAP,
			in:    "ok 1 - fixed already # TODO remove the marker\n",
			want:  []row{{"PASSED", "fixed already", "", "remove the marker"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tt.parse([]byte(tt.in))
			checkCases(t, got)
			if diff := cmp.Diff(tt.want, rows(got), cmp.Comparer(func(a, b []row) bool {
				return len(a) == 0 && len(b) == 0 || cmp.Equal([]row(a), []row(b))
			})); diff != "" {
				t.Errorf("cases (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOutputCap(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`{"Action":"run","Package":"p","Test":"TestBig"}` + "\n")
	for i := range 400 {
		b.WriteString(`{"Action":"output","Package":"p","Test":"TestBig","Output":"line `)
		b.WriteString(strings.Repeat("x", 500))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(`\n"}` + "\n")
	}
	b.WriteString(`{"Action":"output","Package":"p","Test":"TestBig","Output":"    big_test.go:9: the end\n"}` + "\n")
	b.WriteString(`{"Action":"fail","Package":"p","Test":"TestBig"}` + "\n")
	got := Parse([]byte(b.String()))
	checkCases(t, got)
	if len(got) != 1 {
		t.Fatalf("got %d cases, want 1", len(got))
	}
	out := got[0].GetOutput()
	if len(out) > MaxOutput+128 {
		t.Errorf("Output is %d bytes, over MaxOutput", len(out))
	}
	if !strings.HasPrefix(out, "line xxx") || !strings.HasSuffix(out, "big_test.go:9: the end\n") || !strings.Contains(out, "bytes omitted") {
		t.Errorf("Output does not keep head and tail with a note: %q … %q", out[:40], out[len(out)-60:])
	}
	if got[0].GetMessage() != "big_test.go:9: the end" {
		t.Errorf("Message = %q", got[0].GetMessage())
	}
}

func TestInvalidUTF8(t *testing.T) {
	t.Parallel()
	in := "--- FAIL: Test\xff\xfeBad (0.00s)\n    x_test.go:1: caf\xe9\nFAIL\tp\xc3\t0.1s\n"
	got := ParseGoTestVerbose([]byte(in))
	checkCases(t, got) // marshals only if every string is valid UTF-8
	if len(got) != 1 || got[0].GetName() != "Test\uFFFDBad" {
		t.Errorf("got %v", rows(got))
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	cases := []*pontusv1.TestCase{
		{Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED},
		{Outcome: pontusv1.TestOutcome_TEST_OUTCOME_PASSED},
		{Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FAILED},
		{Outcome: pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED},
		{Outcome: pontusv1.TestOutcome_TEST_OUTCOME_ERROR},
		{Outcome: pontusv1.TestOutcome_TEST_OUTCOME_UNSPECIFIED},
		nil,
	}
	p, f, s, e := Summary(cases)
	if [4]int{p, f, s, e} != [4]int{2, 1, 1, 3} {
		t.Errorf("Summary = %d %d %d %d, want 2 1 1 3", p, f, s, e)
	}
}

func TestJUnitBadInput(t *testing.T) {
	t.Parallel()
	lol := `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<testsuite><testcase name="a"/><testcase name="&lol9;"/></testsuite>`
	tests := []struct {
		name      string
		in        string
		wantCases int
	}{
		{"billion laughs", lol, 1},
		{"truncated", `<testsuites><testsuite name="s"><testcase name="a" classname="c"/><testcase name="b"><failure message="m">tra`, 2},
		{"deep nesting", strings.Repeat("<a>", 10000), 0},
		{"not xml", "hello", 0},
		{"unclosed attribute", `<testsuite><testcase name="a`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cases, err := ParseJUnit(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("ParseJUnit(%s) succeeded, want an error", tt.name)
			}
			if !strings.HasPrefix(err.Error(), "parse junit xml: ") {
				t.Errorf("error %q does not say what failed", err)
			}
			checkCases(t, cases)
			if len(cases) != tt.wantCases {
				t.Errorf("got %d cases before the error, want %d: %v", len(cases), tt.wantCases, rows(cases))
			}
		})
	}
}

func TestJUnitTooLarge(t *testing.T) {
	t.Parallel()
	// The cap is MaxInput for ParseJUnit; a small one here keeps the test
	// fast, with documents just under and just over it.
	const limit = 64 << 10
	doc := func(body int64) io.Reader {
		return io.MultiReader(
			strings.NewReader(`<testsuite><testcase name="a"/><testcase name="big"><system-out>`),
			io.LimitReader(repeatReader('x'), body),
			strings.NewReader("</system-out></testcase></testsuite>"))
	}
	const frame = int64(len(`<testsuite><testcase name="a"/><testcase name="big"><system-out>` + "</system-out></testcase></testsuite>"))
	recs, err := parseJUnit(doc(limit-frame), limit)
	if err != nil || len(recs) != 2 {
		t.Fatalf("document of exactly the limit: %d cases, err %v; want 2 cases, no error", len(recs), err)
	}
	recs, err = parseJUnit(doc(limit-frame+1), limit)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	cases := finish(recs)
	checkCases(t, cases)
	if len(cases) < 1 || cases[0].GetName() != "a" {
		t.Errorf("cases before the cap: %v", rows(cases))
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestJUnitLatin1(t *testing.T) {
	t.Parallel()
	in := []byte("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><testsuite name=\"s\"><testcase name=\"caf\xe9\"><failure message=\"na\xefve\"/></testcase></testsuite>")
	cases, err := ParseJUnit(bytes.NewReader(in))
	if err != nil {
		t.Fatalf("ParseJUnit: %v", err)
	}
	want := []row{{"FAILED", "café", "s", "naïve"}}
	if diff := cmp.Diff(want, rows(cases)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
