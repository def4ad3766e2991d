package testreport

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite the seed corpora under testdata/fuzz from the captures")

// The fuzz property, for every parser: no panic, every case has a name and a
// known outcome, failures come first, sizes stay within the limits and the
// result marshals (valid UTF-8). Seeds live in testdata/fuzz/<FuzzName>/.

func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) { checkCases(t, Parse(in)) })
}

func FuzzParseTAP(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) { checkCases(t, ParseTAP(in)) })
}

func FuzzParseGoTestJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) { checkCases(t, ParseGoTestJSON(in)) })
}

func FuzzParseGoTestVerbose(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) { checkCases(t, ParseGoTestVerbose(in)) })
}

func FuzzParseUnittest(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) { checkCases(t, ParseUnittest(in)) })
}

func FuzzParseJUnit(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		cases, _ := ParseJUnit(bytes.NewReader(in))
		checkCases(t, cases)
	})
}

// extraSeeds are small hand-made inputs added to the captures.
var extraSeeds = map[string]map[string]string{
	"FuzzParseTAP": {
		"bailout-nested": "TAP version 14\n1..2\n# Subtest: s\n    ok 1 - x\n    Bail out! disk full\nok 1 - s\n",
		"yaml-quoted":    "1..1\nnot ok 1 - a \\# b # TODO later\n  ---\n  message: 'it''s\n    long'\n  error: |+\n    x\n  ...\n",
	},
	"FuzzParseUnittest": {
		"chain": "test_a (m.C) ... test_b (m.C) ... ok\n  test_a (m.C) (i=1) ... FAIL\n",
	},
	"FuzzParseGoTestJSON": {
		"partial": `{"Action":"run","Package":"p","Test":"T"}` + "\n# p\nx.go:1: bad\n" + `{"Action":"fail","Package":"p","FailedBuild":"p"}`,
	},
	"FuzzParseJUnit": {
		"billion-laughs": `<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]><testsuite><testcase name="&b;"/></testsuite>`,
		"latin1":         "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><testsuite><testcase name=\"caf\xe9\"><skipped/></testcase></testsuite>",
	},
}

// TestWriteFuzzCorpus regenerates the seed corpora when run with
// -write-corpus.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to rewrite testdata/fuzz")
	}
	targets := map[string][]string{
		"FuzzParse":              {"unittest/*.txt", "gotest/*.txt", "tap/*.tap", "junit/*.xml"},
		"FuzzParseTAP":           {"tap/*.tap"},
		"FuzzParseGoTestJSON":    {"gotest/*json*.txt"},
		"FuzzParseGoTestVerbose": {"gotest/*-v.txt", "gotest/*plain*.txt", "gotest/*test2json*.txt"},
		"FuzzParseUnittest":      {"unittest/*.txt"},
		"FuzzParseJUnit":         {"junit/*.xml"},
	}
	for target, globs := range targets {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		seeds := make(map[string][]byte)
		for _, g := range globs {
			files, err := filepath.Glob(filepath.Join("testdata", g))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				seeds[filepath.Base(filepath.Dir(f))+"-"+filepath.Base(f)] = b
			}
		}
		for name, s := range extraSeeds[target] {
			seeds["extra-"+name] = []byte(s)
		}
		for name, b := range seeds {
			data := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Compile-time check that the fuzz helpers use the public types.
var _ func([]byte) []*pontusv1.TestCase = Parse
