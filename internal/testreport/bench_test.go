package testreport

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// grow repeats a capture, renaming per copy with rename, until it is at
// least size bytes.
func grow(tb testing.TB, file string, size int, rename func(s string, i int) string) []byte {
	tb.Helper()
	src := string(readCapture(tb, file))
	var b bytes.Buffer
	for i := 0; b.Len() < size; i++ {
		b.WriteString(rename(src, i))
	}
	return b.Bytes()
}

// BenchmarkParse measures Parse on about 1 MB of real output: the demo
// module's go test -json capture with its packages renamed per copy, and the
// Python 3.12 unittest capture with its modules renamed per copy.
func BenchmarkParse(b *testing.B) {
	inputs := []struct {
		name  string
		in    []byte
		cases int
	}{
		{name: "gotest-json", in: grow(b, "gotest/demo-json.txt", 1<<20, func(s string, i int) string {
			return strings.ReplaceAll(s, "example.com/demo/", fmt.Sprintf("example.com/demo%d/", i))
		})},
		{name: "unittest", in: grow(b, "unittest/py3.12.txt", 1<<20, func(s string, i int) string {
			s = strings.ReplaceAll(s, "(test_", fmt.Sprintf("(r%d_test_", i))
			return strings.ReplaceAll(s, "(unittest.", fmt.Sprintf("(r%d_unittest.", i))
		})},
		{name: "gotest-v", in: grow(b, "gotest/demo-v.txt", 1<<20, func(s string, i int) string {
			return strings.ReplaceAll(s, "example.com/demo/", fmt.Sprintf("example.com/demo%d/", i))
		})},
		{name: "tap", in: grow(b, "tap/node20.tap", 1<<20, func(s string, i int) string {
			return s // each copy is a new TAP document
		})},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.in)))
			b.ReportAllocs()
			var n int
			for b.Loop() {
				n = len(Parse(in.in))
			}
			b.ReportMetric(float64(n), "cases")
		})
	}
}

// BenchmarkParseHostile feeds inputs built to hit worst cases (one huge line,
// many separators on a line, deep indentation, many tiny JSON objects);
// MB/s staying in the same range as BenchmarkParse shows the parsers stay
// linear.
func BenchmarkParseHostile(b *testing.B) {
	const size = 4 << 20
	rep := func(s string) []byte { return bytes.Repeat([]byte(s), size/len(s)) }
	inputs := []struct {
		name string
		in   []byte
	}{
		{"dots-one-line", append([]byte("test_a (m.C.test_a)"), rep(" ... test_b (m.C) ... x")...)},
		{"docstring-dots", append([]byte("test_a (m.C.test_a)\n"), rep(" ... ")...)},
		{"deep-tap", append([]byte("TAP version 14\n"), rep(strings.Repeat("    ", 200)+"# Subtest: x\n"+strings.Repeat("    ", 201)+"ok\n")...)},
		{"tap-yaml-quote", append([]byte("TAP version 14\nnot ok 1\n  ---\n  message: '"), rep("   a\n")...)},
		{"json-braces", rep(`{"Action":"output","Package":"p","Test":"T","Output":"x"}` + "\n")},
		{"go-framing", rep("=== RUN   T\n--- FAIL: T (0.00s)\n    x.go:1: y\n")},
		{"no-newlines", rep("--- FAIL: ok 1 ... ")},
		{"junit-wide", append([]byte("<testsuite>"), rep(`<testcase name="a" classname="b" time="1"><failure message="m">t</failure></testcase>`)...)},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.in)))
			for b.Loop() {
				Parse(in.in)
			}
		})
	}
}
