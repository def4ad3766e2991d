package runnerd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/pontus-ci/pontus/internal/testreport"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Events become their text whatever the write boundaries; other lines,
// partial lines included, pass unchanged.
func TestGoJSONTextWriter(t *testing.T) {
	t.Parallel()
	in := `# building
{"Time":"2026-01-01T00:00:00Z","Action":"start","Package":"m/tests"}
{"Time":"2026-01-01T00:00:00Z","Action":"run","Package":"m/tests","Test":"TestA"}
{"Time":"2026-01-01T00:00:00Z","Action":"output","Package":"m/tests","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Time":"2026-01-01T00:00:00Z","Action":"output","Package":"m/tests","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Time":"2026-01-01T00:00:00Z","Action":"pass","Package":"m/tests","Test":"TestA","Elapsed":0}
{"not":"an event"}
{"Time":"2026-01-01T00:00:00Z","Action":"output","Package":"m/tests","Output":"ok  \tm/tests\t0.01s\n"}
progress 50%`
	want := "# building\n=== RUN   TestA\n--- PASS: TestA (0.00s)\n{\"not\":\"an event\"}\nok  \tm/tests\t0.01s\nprogress 50%"
	for _, chunk := range []int{1, 7, 64, len(in)} {
		var out bytes.Buffer
		w := newGoJSONText(&out)
		for s := in; s != ""; {
			n := min(chunk, len(s))
			if _, err := w.Write([]byte(s[:n])); err != nil {
				t.Fatal(err)
			}
			s = s[n:]
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Errorf("chunks of %d:\n%q\nwant\n%q", chunk, out.String(), want)
		}
	}
}

// A build whose test command prints go test -json output logs the text of
// the run, never the raw events, and its per-test results are those of the
// events themselves.
func TestGoTestJSONBuild(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go on PATH")
	}
	files := map[string]string{
		"go.mod": "module example.com/demo\n\ngo 1.22\n",
		"tests/demo_test.go": `package tests

import "testing"

func TestGood(t *testing.T) { t.Log("all fine") }

func TestBad(t *testing.T) { t.Fatal("broken on purpose") }

func TestSkip(t *testing.T) { t.Skip("later") }

func TestTable(t *testing.T) {
	for _, name := range []string{"one", "two"} {
		t.Run(name, func(t *testing.T) {
			if name == "two" {
				t.Error("two is wrong")
			}
		})
	}
}
`,
	}
	// go test -json runs here, as the test's user with its warm build
	// cache; the build replays its real output (a cold build as step_user
	// takes a minute on a busy machine).
	src := writeTree(t, files)
	cmd := exec.Command("go", "test", "-json", "./tests/...")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	raw, _ := cmd.Output()
	direct := testreport.ParseGoTestJSON(raw)
	if len(direct) == 0 || !bytes.Contains(raw, []byte(`"Action":"output"`)) {
		t.Fatalf("no results from go test -json:\n%s", raw)
	}
	files["tests/run.json"] = string(raw)

	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(files)
	cfg := testConfig(t, fake)
	cfg.TestCommand = "cat tests/run.json; exit 1"
	startRunner(t, cfg)
	req, log := fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, failed)
	for _, s := range []string{`"Action"`, `{"Time"`} {
		if strings.Contains(log, s) {
			t.Errorf("log holds raw test2json (%s):\n%s", s, log)
		}
	}
	for _, s := range []string{"=== RUN   TestGood", "--- FAIL: TestBad", "broken on purpose", "--- SKIP: TestSkip", "--- FAIL: TestTable/two"} {
		if !strings.Contains(log, s) {
			t.Errorf("log lacks %q:\n%s", s, log)
		}
	}
	summary := func(cases []*pontusv1.TestCase) []string {
		var s []string
		for _, c := range cases {
			s = append(s, c.GetName()+" "+c.GetOutcome().String())
		}
		slices.Sort(s)
		return s
	}
	if got, want := summary(req.GetTests()), summary(direct); !slices.Equal(got, want) {
		t.Errorf("results\n%q\nwant (go test -json directly)\n%q", got, want)
	}
}

// BenchmarkGoJSONText turns 1 MB of go test -json output into text, in
// 32 KiB writes as the executor's pipe delivers it.
func BenchmarkGoJSONText(b *testing.B) {
	var in bytes.Buffer
	for i := 0; in.Len() < 1<<20; i++ {
		fmt.Fprintf(&in, `{"Time":"2026-01-01T00:00:00.000000Z","Action":"output","Package":"example.com/m","Test":"TestN%d","Output":"=== RUN   TestN%d\n"}`+"\n", i, i)
		fmt.Fprintf(&in, `{"Time":"2026-01-01T00:00:00.000000Z","Action":"pass","Package":"example.com/m","Test":"TestN%d","Elapsed":0.01}`+"\n", i)
	}
	data := in.Bytes()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		w := newGoJSONText(io.Discard)
		for p := data; len(p) > 0; {
			n := min(32<<10, len(p))
			_, _ = w.Write(p[:n])
			p = p[n:]
		}
		_ = w.Flush()
	}
}
