package testreport

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"google.golang.org/protobuf/proto"
)

// row is what the capture tests compare: outcome, name, suite, message.
type row struct {
	Outcome string
	Name    string
	Suite   string
	Message string
}

func rows(cases []*pontusv1.TestCase) []row {
	out := make([]row, 0, len(cases))
	for _, c := range cases {
		out = append(out, row{
			Outcome: strings.TrimPrefix(c.GetOutcome().String(), "TEST_OUTCOME_"),
			Name:    c.GetName(),
			Suite:   c.GetSuite(),
			Message: c.GetMessage(),
		})
	}
	return out
}

func readCapture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatalf("read capture: %v", err)
	}
	return b
}

// checkCases asserts the properties every parser result must have: a name,
// a known outcome, failures first, and a message that marshals.
func checkCases(tb testing.TB, cases []*pontusv1.TestCase) {
	tb.Helper()
	seenPass := false
	for i, c := range cases {
		if c.GetName() == "" {
			tb.Fatalf("case %d has no name: %v", i, c)
		}
		switch c.GetOutcome() {
		case pontusv1.TestOutcome_TEST_OUTCOME_PASSED, pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED:
			seenPass = true
		case pontusv1.TestOutcome_TEST_OUTCOME_FAILED, pontusv1.TestOutcome_TEST_OUTCOME_ERROR:
			if seenPass {
				tb.Fatalf("case %d (%q, %v) comes after a passing or skipped case", i, c.GetName(), c.GetOutcome())
			}
		default:
			tb.Fatalf("case %d (%q) has outcome %v", i, c.GetName(), c.GetOutcome())
		}
		if len(c.GetOutput()) > MaxOutput+128 || len(c.GetMessage()) > MaxMessage+8 || len(c.GetName()) > MaxName+8 {
			tb.Fatalf("case %d exceeds the size limits: name %d, message %d, output %d bytes",
				i, len(c.GetName()), len(c.GetMessage()), len(c.GetOutput()))
		}
	}
	if _, err := proto.Marshal(&pontusv1.Build{Tests: cases}); err != nil {
		tb.Fatalf("marshal cases: %v", err)
	}
}

// unittestRows is what the src/unittest suite prints, failures first. name
// spells a test's description the way the Python version does.
func unittestRows(name func(method, class string) string) []row {
	r := func(outcome, method, class, msg string) row {
		return row{outcome, name(method, class), class, msg}
	}
	return []row{
		r("ERROR", "test_broken", "unittest.loader._FailedTest", "ModuleNotFoundError: No module named 'does_not_exist'"),
		r("FAILED", "test_docstring_fail", "test_fail.TestFail", "AssertionError: False is not true : was false"),
		r("ERROR", "test_error", "test_fail.TestFail", "RuntimeError: boom\nsecond line"),
		r("FAILED", "test_fail", "test_fail.TestFail", "AssertionError: 1 != 2"),
		r("FAILED", "test_subtests", "test_fail.TestFail", "AssertionError: 2 not less than 2"),
		r("FAILED", "test_unexpected_success", "test_pass.TestPass", "unexpected success"),
		{"ERROR", "setUpClass (test_setup.TestSetUpClass)", "test_setup.TestSetUpClass", "ValueError: cannot set up"},
		r("PASSED", "test_logs", "test_fail.TestFail", ""),
		r("SKIPPED", "test_skip_in_body", "test_fail.TestSkipClass", "skipped from the body"),
		r("PASSED", "test_docstring", "test_pass.TestPass", ""),
		r("SKIPPED", "test_expected_failure", "test_pass.TestPass", "expected failure"),
		r("PASSED", "test_pass", "test_pass.TestPass", ""),
		r("SKIPPED", "test_skipped", "test_pass.TestPass", "not on this platform"),
	}
}

func py311Name(method, class string) string {
	n := method + " (" + class + "." + method + ")"
	if method == "test_subtests" {
		n += " (i=2)"
	}
	return n
}

func py310Name(method, class string) string {
	n := method + " (" + class + ")"
	if method == "test_subtests" {
		n += " (i=2)"
	}
	return n
}

// py310Rows: 3.10 lists the unexpected success after the subtest failure,
// because it prints no result line for the test with failing subtests and
// the FAIL block adds the subtest case later.
func py310Rows() []row {
	r := unittestRows(py310Name)
	// Move test_subtests after test_unexpected_success and setUpClass: in
	// 3.10 output it is first seen in its FAIL block, after both.
	sub := r[4]
	r = append(r[:4], r[5:]...)
	r = append(r[:6], append([]row{sub}, r[6:]...)...)
	return r
}

var goDemoRows = func(suite func(pkg string) string) []row {
	calc, crash := suite("example.com/demo/calc"), suite("example.com/demo/crash")
	return []row{
		{"FAILED", "TestAddWrong", calc, "calc_test.go:18: Add(2, 2) = 4, want 5"},
		{"FAILED", "TestTable", calc, ""},
		{"FAILED", "TestTable/large", calc, "calc_test.go:36: Add(1000, 1000) = 2000, want 2001\nsecond line of the message"},
		{"ERROR", "TestPanics", crash, "panic: assignment to entry in nil map [recovered, repanicked]"},
		{"PASSED", "TestAdd", calc, ""},
		{"SKIPPED", "TestSkipped", calc, "calc_test.go:23: needs a database"},
		{"PASSED", "TestTable/small", calc, ""},
		{"SKIPPED", "TestTable/skip_me", calc, "calc_test.go:33: not today"},
		{"PASSED", "TestNested", calc, ""},
		{"PASSED", "TestNested/outer", calc, ""},
		{"PASSED", "TestNested/outer/inner", calc, ""},
		{"PASSED", "TestPrints", calc, ""},
		{"PASSED", "ExampleAdd", calc, ""},
		{"PASSED", "TestBeforePanic", crash, ""},
	}
}

func withPkg(pkg string) string { return pkg }
func noPkg(string) string       { return "" }

// demoBinaryRows is the calc package run as a test binary: no package line,
// so no suite, and no crash package.
func demoBinaryRows() []row {
	var out []row
	for _, r := range goDemoRows(noPkg) {
		if r.Name != "TestPanics" && r.Name != "TestBeforePanic" {
			out = append(out, r)
		}
	}
	return out
}

var brokenRows = []row{
	{"ERROR", "example.com/broken/broken", "example.com/broken/broken", "build failed: broken/broken_test.go:6:2: declared and not used: x"},
	{"ERROR", "example.com/broken/vetfail", "example.com/broken/vetfail", `build failed: vetfail/vetfail_test.go:9:14: fmt.Printf format %d has arg "not a number" of wrong type string`},
	{"PASSED", "TestGood", "example.com/broken/good", ""},
}

var timeoutRows = []row{
	{"ERROR", "TestSlow", "example.com/slow", "panic: test timed out after 1s"},
	{"PASSED", "TestQuick", "example.com/slow", ""},
}

func TestCaptures(t *testing.T) {
	t.Parallel()
	type parser func([]byte) []*pontusv1.TestCase
	tests := []struct {
		file   string
		parse  parser
		want   []row
		counts [4]int // passed, failed, skipped, errored
		// output checks: case name -> substrings its Output must contain
		output map[string][]string
	}{
		{
			file: "unittest/py3.11.txt", parse: ParseUnittest, want: unittestRows(py311Name), counts: [4]int{3, 4, 3, 3},
			output: map[string][]string{
				"test_fail (test_fail.TestFail.test_fail)": {"Traceback (most recent call last):", `line 8, in test_fail`, "AssertionError: 1 != 2"},
				"test_logs (test_fail.TestFail.test_logs)": {"noise on stderr"},
			},
		},
		{file: "unittest/py3.12.txt", parse: ParseUnittest, want: unittestRows(py311Name), counts: [4]int{3, 4, 3, 3}},
		{file: "unittest/py3.13.txt", parse: ParseUnittest, want: unittestRows(py311Name), counts: [4]int{3, 4, 3, 3}},
		{file: "unittest/py3.10.txt", parse: ParseUnittest, want: py310Rows(), counts: [4]int{3, 4, 3, 3}},
		{
			file: "unittest/py3.11-combined.txt", parse: ParseUnittest, want: unittestRows(py311Name), counts: [4]int{3, 4, 3, 3},
			output: map[string][]string{
				"test_fail (test_fail.TestFail.test_fail)": {"some stdout from the test", "AssertionError: 1 != 2"},
			},
		},
		{
			file: "unittest/py3.12-buffer-durations.txt", parse: ParseUnittest, want: unittestRows(py311Name), counts: [4]int{3, 4, 3, 3},
			output: map[string][]string{
				"test_fail (test_fail.TestFail.test_fail)": {"Stdout:\nsome stdout from the test"},
			},
		},
		{
			file: "gotest/demo-json.txt", parse: ParseGoTestJSON, want: goDemoRows(withPkg), counts: [4]int{8, 3, 2, 1},
			output: map[string][]string{
				"TestAddWrong":           {"calc_test.go:16: about to compare\n", "calc_test.go:18: Add(2, 2) = 4, want 5\n"},
				"TestNested/outer/inner": {"calc_test.go:45: deep"},
				"TestPrints":             {"plain stdout from a test"},
				"TestPanics":             {"goroutine ", "crash_test.go:9"},
			},
		},
		{
			file: "gotest/demo-v.txt", parse: ParseGoTestVerbose, want: goDemoRows(withPkg), counts: [4]int{8, 3, 2, 1},
			output: map[string][]string{
				"TestAddWrong": {"calc_test.go:16: about to compare\n", "calc_test.go:18: Add(2, 2) = 4, want 5\n"},
				"TestPrints":   {"plain stdout from a test"},
				"TestPanics":   {"goroutine ", "crash_test.go:9"},
			},
		},
		{
			file: "gotest/demo-plain.txt", parse: ParseGoTestVerbose,
			want: []row{
				{"FAILED", "TestAddWrong", "example.com/demo/calc", "calc_test.go:18: Add(2, 2) = 4, want 5"},
				{"FAILED", "TestTable", "example.com/demo/calc", ""},
				{"FAILED", "TestTable/large", "example.com/demo/calc", "calc_test.go:36: Add(1000, 1000) = 2000, want 2001\nsecond line of the message"},
				{"ERROR", "TestPanics", "example.com/demo/crash", "panic: assignment to entry in nil map [recovered, repanicked]"},
			},
			counts: [4]int{0, 3, 0, 1},
		},
		{file: "gotest/demo-test2json-native.txt", parse: ParseGoTestVerbose, want: demoBinaryRows(), counts: [4]int{7, 3, 2, 0}},
		{file: "gotest/demo-test2json-wasm.txt", parse: ParseGoTestVerbose, want: demoBinaryRows(), counts: [4]int{7, 3, 2, 0}},
		{
			file: "gotest/demo-test2json-wasm-notmp.txt", parse: ParseGoTestVerbose,
			want: func() []row {
				r := demoBinaryRows()
				ex := r[len(r)-1]
				ex.Outcome = "ERROR"
				ex.Message = "test did not report a result; last output: testing: open temp file: open /tmp/go-example-stdout-ExampleAdd-0.txt: Bad file number"
				return append(append(r[:3:3], ex), r[3:len(r)-1]...)
			}(),
			counts: [4]int{6, 3, 2, 1},
		},
		{
			file: "gotest/broken-json.txt", parse: ParseGoTestJSON, want: brokenRows, counts: [4]int{1, 0, 0, 2},
			output: map[string][]string{
				"example.com/broken/broken": {"undefined: undefinedThing", "undefined: y", "[build failed]"},
			},
		},
		{
			file: "gotest/broken-json-buildtext.txt", parse: ParseGoTestJSON, want: brokenRows, counts: [4]int{1, 0, 0, 2},
			output: map[string][]string{
				"example.com/broken/broken":  {"# example.com/broken/broken [example.com/broken/broken.test]", "undefined: undefinedThing"},
				"example.com/broken/vetfail": {"wrong type string"},
			},
		},
		{
			file: "gotest/broken-v.txt", parse: ParseGoTestVerbose, want: brokenRows, counts: [4]int{1, 0, 0, 2},
			output: map[string][]string{
				"example.com/broken/broken": {"undefined: undefinedThing", "FAIL\texample.com/broken/broken [build failed]"},
			},
		},
		{file: "gotest/timeout-json.txt", parse: ParseGoTestJSON, want: timeoutRows, counts: [4]int{1, 0, 0, 1},
			output: map[string][]string{"TestSlow": {"starting something slow", "running tests:"}}},
		{file: "gotest/timeout-v.txt", parse: ParseGoTestVerbose, want: timeoutRows, counts: [4]int{1, 0, 0, 1}},
		{
			file: "tap/node20.tap", parse: ParseTAP,
			want: []row{
				{"FAILED", "fails with a diff", "", "one plus one is three\n\n2 !== 3"},
				{"FAILED", "throws # with a hash", "", "bad value"},
				{"FAILED", "suite/child fails", "", "Expected values to be strictly deep-equal:\n+ actual - expected\n\n  {\n+   a: 1\n-   a: 2\n  }"},
				{"FAILED", "suite", "", "1 subtest failed"},
				{"PASSED", "adds numbers", "", ""},
				{"SKIPPED", "skipped test", "", "no network here"},
				{"SKIPPED", "todo test", "", "write the parser first"},
				{"PASSED", "suite/child passes", "", ""},
				{"PASSED", "suite/inner/grandchild passes", "", ""},
				{"PASSED", "suite/inner", "", ""},
			},
			counts: [4]int{4, 4, 2, 0},
			output: map[string][]string{
				"fails with a diff": {"failureType: 'testCodeFailure'", "operator: 'strictEqual'"},
			},
		},
		{
			file: "tap/tap14.tap", parse: ParseTAP,
			want: []row{
				{"FAILED", "first line of the input valid", "", "First line invalid"},
				{"FAILED", "parser/rejects bad input", "", "expected an error\ngot nil"},
				{"FAILED", "parser", "", ""},
				{"ERROR", "short plan/TAP plan", "", "plan 1..3 promised 3 tests, 1 reported: 2 missing"},
				{"FAILED", "short plan", "", ""},
				{"PASSED", "input file opened", "", ""},
				{"SKIPPED", "read the rest of the file", "", "no file on this system"},
				{"SKIPPED", "summarized correctly", "", "not written yet"},
				{"PASSED", "parser/parses # escaped hashes", "", ""},
				{"PASSED", "parser/nested/deep", "", ""},
				{"SKIPPED", "parser/nested/deeper", "", "not today"},
				{"PASSED", "parser/nested", "", ""},
				{"PASSED", "unnamed-first/child without a leading comment in the parent", "", ""},
				{"PASSED", "unnamed-first", "", ""},
				{"PASSED", "short plan/only one of three", "", ""},
			},
			counts: [4]int{7, 4, 3, 1},
			output: map[string][]string{
				"first line of the input valid": {"message: 'First line invalid'", "got: 'Flirble'"},
				"summarized correctly":          {"severity: todo"},
			},
		},
		{
			file: "tap/tap14-bailout.tap", parse: ParseTAP,
			want: []row{
				{"FAILED", "database handle", "", "connection refused"},
				{"ERROR", "Bail out!", "", "Couldn't connect to database. (571 of 573 planned tests did not run)"},
				{"PASSED", "connected to the network", "", ""},
			},
			counts: [4]int{1, 1, 0, 1},
		},
		{
			file: "junit/pytest.xml", parse: parseJUnitBytes,
			want: []row{
				{"FAILED", "test_docstring_fail", "tests.test_fail.TestFail", "AssertionError: False is not true : was false"},
				{"FAILED", "test_error", "tests.test_fail.TestFail", "RuntimeError: boom\nsecond line"},
				{"FAILED", "test_fail", "tests.test_fail.TestFail", "AssertionError: 1 != 2"},
				{"FAILED", "test_subtests", "tests.test_fail.TestFail", "AssertionError: 2 not less than 2"},
				{"FAILED", "test_unexpected_success", "tests.test_pass.TestPass", "Unexpected success"},
				{"FAILED", "test_add[2-2-5]", "tests.test_plain", "assert (2 + 2) == 5"},
				{"ERROR", "test_fixture_error", "tests.test_plain", `failed on setup with "RuntimeError: fixture could not start"`},
				{"PASSED", "test_logs", "tests.test_fail.TestFail", ""},
				{"SKIPPED", "test_skip_in_body", "tests.test_fail.TestSkipClass", "skipped from the body"},
				{"PASSED", "test_docstring", "tests.test_pass.TestPass", ""},
				{"SKIPPED", "test_expected_failure", "tests.test_pass.TestPass", "expected failure"},
				{"PASSED", "test_pass", "tests.test_pass.TestPass", ""},
				{"SKIPPED", "test_skipped", "tests.test_pass.TestPass", "not on this platform"},
				{"PASSED", "test_add[1-1-2]", "tests.test_plain", ""},
				{"SKIPPED", "test_xfail", "tests.test_plain", "expected failure: known bug"},
				{"SKIPPED", "test_skip", "tests.test_plain", `slow <& "quoted">`},
			},
			counts: [4]int{4, 6, 5, 1},
			output: map[string][]string{
				"test_fail": {"self.assertEqual(1, 2)", "tests/test_fail.py:8: AssertionError"},
			},
		},
		{
			file: "junit/node20.xml", parse: parseJUnitBytes,
			want: []row{
				{"FAILED", "fails with a diff", "test", "one plus one is three2 !== 3"},
				{"FAILED", "throws # with a hash", "test", "bad value"},
				{"FAILED", "child fails", "test", "Expected values to be strictly deep-equal:+ actual - expected  {+   a: 1-   a: 2  }"},
				{"PASSED", "adds numbers", "test", ""},
				{"SKIPPED", "skipped test", "test", "no network here"},
				{"SKIPPED", "todo test", "test", "write the parser first"},
				{"PASSED", "child passes", "test", ""},
				{"PASSED", "grandchild passes", "test", ""},
			},
			counts: [4]int{3, 3, 2, 0},
		},
		{
			file: "junit/surefire.xml", parse: parseJUnitBytes,
			want: []row{
				{"ERROR", "dividesByZero", "com.example.CalculatorTest", "/ by zero"},
				{"FAILED", "subtracts", "com.example.CalculatorTest", "expected: <1> but was: <-1>"},
				{"FAILED", "alwaysFailsOnRerun", "com.example.CalculatorTest", "boom"},
				{"PASSED", "addsTwoNumbers", "com.example.CalculatorTest", ""},
				{"SKIPPED", "multiplies", "com.example.CalculatorTest", "not implemented yet"},
				{"PASSED", "flakyNetwork", "com.example.CalculatorTest", "flaky: passed on a rerun"},
			},
			counts: [4]int{2, 2, 1, 1},
			output: map[string][]string{
				"dividesByZero":      {"at com.example.Calculator.divide(Calculator.java:12)", "dividing 1 by 0"},
				"alwaysFailsOnRerun": {"boom again", "stderr line two"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			in := readCapture(t, tt.file)
			got := tt.parse(in)
			checkCases(t, got)
			if diff := cmp.Diff(tt.want, rows(got)); diff != "" {
				t.Errorf("cases (-want +got):\n%s", diff)
			}
			p, f, s, e := Summary(got)
			if c := [4]int{p, f, s, e}; c != tt.counts {
				t.Errorf("Summary = passed %d, failed %d, skipped %d, errored %d; want %v", p, f, s, e, tt.counts)
			}
			// Parse detects the same format and finds the same cases.
			if diff := cmp.Diff(rows(got), rows(Parse(in))); diff != "" {
				t.Errorf("Parse differs from the format's parser (-parser +Parse):\n%s", diff)
			}
			for name, subs := range tt.output {
				c := findCase(got, name)
				if c == nil {
					t.Errorf("no case %q", name)
					continue
				}
				for _, sub := range subs {
					if !strings.Contains(c.GetOutput(), sub) {
						t.Errorf("Output of %q lacks %q; it is:\n%s", name, sub, c.GetOutput())
					}
				}
			}
		})
	}
}

func parseJUnitBytes(b []byte) []*pontusv1.TestCase {
	cases, err := ParseJUnit(bytes.NewReader(b))
	if err != nil {
		panic(err) // the captures are well-formed
	}
	return cases
}

func findCase(cases []*pontusv1.TestCase, name string) *pontusv1.TestCase {
	for _, c := range cases {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

func TestCaptureDurations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, name string
		parse      func([]byte) []*pontusv1.TestCase
		wantMillis float64 // approximate
	}{
		{"tap/node20.tap", "suite", ParseTAP, 13.471273},
		{"junit/surefire.xml", "dividesByZero", parseJUnitBytes, 11},
		{"junit/pytest.xml", "test_docstring_fail", parseJUnitBytes, 1},
		{"gotest/timeout-json.txt", "TestQuick", ParseGoTestJSON, 0},
	}
	for _, tt := range tests {
		c := findCase(tt.parse(readCapture(t, tt.file)), tt.name)
		if c == nil || c.GetDuration() == nil {
			t.Errorf("%s: case %q has no duration: %v", tt.file, tt.name, c)
			continue
		}
		got := float64(c.GetDuration().AsDuration().Microseconds()) / 1000
		if d := got - tt.wantMillis; d > 0.01 || d < -0.01 {
			t.Errorf("%s: %q took %vms, want %vms", tt.file, tt.name, got, tt.wantMillis)
		}
	}
}

// TestParseSeveralFormats: a job that ran two test commands.
func TestParseSeveralFormats(t *testing.T) {
	t.Parallel()
	in := append(readCapture(t, "unittest/py3.12.txt"), readCapture(t, "gotest/demo-v.txt")...)
	in = append(in, readCapture(t, "tap/tap14.tap")...)
	got := Parse(in)
	checkCases(t, got)
	p, f, s, e := Summary(got)
	if want := [4]int{3 + 8 + 7, 4 + 3 + 4, 3 + 2 + 3, 3 + 1 + 1}; [4]int{p, f, s, e} != want {
		t.Errorf("Summary = %v, want %v", [4]int{p, f, s, e}, want)
	}
	for _, name := range []string{"test_fail (test_fail.TestFail.test_fail)", "TestTable/large", "parser/rejects bad input"} {
		if findCase(got, name) == nil {
			t.Errorf("no case %q in the mixed output", name)
		}
	}
}

func TestParseNothing(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"",
		"hello world\n",
		"ok  \texample.com/pkg\t0.01s\n", // a passing package without -v: nothing per test
		"make: *** [all] Error 1\n",
		"<html><body>not junit</body></html>",
		`{"not":"test2json"}`,
	} {
		if got := Parse([]byte(in)); got != nil {
			t.Errorf("Parse(%q) = %v, want nil", in, got)
		}
	}
}
