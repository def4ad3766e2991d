package plugins

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/syncbuf"
	"github.com/pontus-ci/pontus/internal/testrun"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// goCacheEnv passes the developer's build and module caches, as a runner
// passes its own.
func goCacheEnv(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return []string{"GOCACHE=" + lines[0], "GOMODCACHE=" + lines[1]}
}

// goRepo copies testdata/gomod (module example.com/calc) into a checkout,
// under sub ("" for the root).
func goRepo(t testing.TB, sub string) string {
	t.Helper()
	dir := t.TempDir()
	dst := filepath.Join(dir, filepath.FromSlash(sub))
	err := filepath.WalkDir("testdata/gomod", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("testdata/gomod", p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRunGoTests(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode string) { testRunGoTests(t, modeHost(t, mode)) })
}

func testRunGoTests(t *testing.T, h *Host) {
	dir := goRepo(t, "")
	var out syncbuf.Buffer
	res := h.RunGoTests(context.Background(), testrun.Spec{
		Dir: dir, Plugin: &testrun.Plugin{Name: "calc tests", WorkDir: "."}, Output: &out, Timeout: 2 * time.Minute,
	}, goCacheEnv(t))
	if res.Status != testrun.Failed || res.ExitCode != 1 {
		t.Fatalf("status %v exit %d (%q), want failed 1:\n%s", res.Status, res.ExitCode, res.Reason, out.String())
	}
	got := map[string]pontusv1.TestOutcome{}
	for _, tc := range res.Tests {
		got[tc.GetName()] = tc.GetOutcome()
	}
	want := map[string]pontusv1.TestOutcome{
		"TestAdd":                pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"TestTestdataAndTempDir": pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"TestFailsOnPurpose":     pontusv1.TestOutcome_TEST_OUTCOME_FAILED,
		"TestFib":                pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED,
	}
	if !mapsEqual(got, want) {
		t.Errorf("tests = %v, want %v\noutput:\n%s", got, want, out.String())
	}
	if !strings.Contains(out.String(), "this test fails on purpose") {
		t.Errorf("output lacks the failure message:\n%s", out.String())
	}
}

func TestRunGoTestsBuildFailure(t *testing.T) {
	t.Parallel()
	dir := goRepo(t, "")
	if err := os.WriteFile(filepath.Join(dir, "broken_test.go"), []byte("package calc\n\nfunc TestBroken(t *testing.T) { undefinedThing() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	res := host(t).RunGoTests(context.Background(), testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{}, Output: &out, Timeout: 2 * time.Minute}, goCacheEnv(t))
	if res.Status != testrun.Failed || !strings.HasPrefix(res.Reason, "build failed") {
		t.Fatalf("status %v (%q), want failed \"build failed\":\n%s", res.Status, res.Reason, out.String())
	}
	if !strings.Contains(out.String(), "undefined") {
		t.Errorf("output lacks the compiler error:\n%s", out.String())
	}
}

func TestCompileGoTestsRefuses(t *testing.T) {
	t.Parallel()
	env := goCacheEnv(t)
	outFile := filepath.Join(t.TempDir(), "t.wasm")
	cases := []struct {
		name  string
		setup func(t *testing.T) (dir, pkg string)
		want  string
	}{
		{"escaping package dir", func(t *testing.T) (string, string) { return goRepo(t, ""), "../x" }, "relative path inside the checkout"},
		{"absolute package dir", func(t *testing.T) (string, string) { return goRepo(t, ""), "/etc" }, "relative path inside the checkout"},
		{"missing package dir", func(t *testing.T) (string, string) { return goRepo(t, ""), "nope" }, "not a directory"},
		{"no go.mod in the checkout", func(t *testing.T) (string, string) {
			return checkout(t, map[string]string{"x_test.go": "package x\n"}), "."
		}, "not in a Go module"},
		{"go.mod above the checkout", func(t *testing.T) (string, string) {
			dir := goRepo(t, "")
			sub := filepath.Join(dir, "inner")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			return sub, "."
		}, "outside the checkout"},
		{"replace outside the checkout", func(t *testing.T) (string, string) {
			dir := goRepo(t, "")
			appendFile(t, filepath.Join(dir, "go.mod"), "\nreplace example.com/other => ../../../elsewhere\n")
			return dir, "."
		}, "outside the checkout"},
		{"symlink out of the checkout", func(t *testing.T) (string, string) {
			dir := goRepo(t, "")
			if err := os.Symlink("/etc", filepath.Join(dir, "etc")); err != nil {
				t.Fatal(err)
			}
			return dir, "."
		}, "symbolic link etc leads outside"},
		{"toolchain the runner does not have", func(t *testing.T) (string, string) {
			dir := goRepo(t, "")
			if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/calc\n\ngo 1.99\n\ntoolchain go1.99.1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return dir, "."
		}, "GOTOOLCHAIN=local"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir, pkg := c.setup(t)
			err := CompileGoTests(context.Background(), dir, pkg, outFile, env)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			var be *BuildError
			if errors.As(err, &be) {
				msg += "\n" + string(be.Output)
			}
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q, want it to mention %q", msg, c.want)
			}
		})
	}
}

func appendFile(t testing.TB, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestGoTestArgs(t *testing.T) {
	t.Parallel()
	if got := strings.Join(GoTestArgs(0), " "); got != "-test.v=test2json -test.paniconexit0" {
		t.Errorf("GoTestArgs(0) = %q", got)
	}
	if got := strings.Join(GoTestArgs(10*time.Minute), " "); !strings.HasSuffix(got, "-test.timeout=9m30s") {
		t.Errorf("GoTestArgs(10m) = %q, want the binary's timeout 30s early", got)
	}
	if got := strings.Join(GoTestArgs(10*time.Second), " "); !strings.HasSuffix(got, "-test.timeout=9s") {
		t.Errorf("GoTestArgs(10s) = %q, want the binary's timeout 1s early", got)
	}
}

func TestFindTestModules(t *testing.T) {
	t.Parallel()
	dir := checkout(t, map[string]string{
		"tests/b.wasm":         "b",
		"tests/a.wasm":         "a",
		"tests/readme.md":      "x",
		"tests/sub/deep.wasm":  "x",
		"other/not-here.wasm":  "x",
		"tests/dir.wasm/x.txt": "a directory named .wasm",
	})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "tests", "evil.wasm")); err != nil {
		t.Fatal(err)
	}
	got, err := FindTestModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "tests", "a.wasm"), filepath.Join(dir, "tests", "b.wasm")}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("FindTestModules = %q, want %q", got, want)
	}

	if got, err := FindTestModules(t.TempDir()); err != nil || len(got) != 0 {
		t.Errorf("no tests dir: %q, %v; want nothing, no error", got, err)
	}
	linked := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "tests"), filepath.Join(linked, "tests")); err != nil {
		t.Fatal(err)
	}
	if got, err := FindTestModules(linked); err != nil || len(got) != 0 {
		t.Errorf("tests is a symlink: %q, %v; want nothing", got, err)
	}
}

// TestGoTestModule runs a test binary built with go test -c as a plain
// module, as a runner runs tests/*.wasm: the host must recognise it and
// run it verbosely, so each test is reported by name, without repeating
// a -test.v the step gives itself.
func TestGoTestModule(t *testing.T) {
	t.Parallel()
	dir := goRepo(t, "")
	module := filepath.Join(dir, "tests", "calc.wasm")
	if err := CompileGoTests(context.Background(), dir, ".", module, goCacheEnv(t)); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"calc.wasm": true, "probe": false, "tapdemo": false, "secrets": false} {
		p := module
		if name != "calc.wasm" {
			p = guest(t, name)
		}
		wasm, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := isGoTestModule(wasm); got != want {
			t.Errorf("isGoTestModule(%s) = %v, want %v", name, got, want)
		}
	}

	res, out := runPlugin(t, host(t), dir, &testrun.Plugin{Name: "calc", Module: module, WorkDir: "."}, 2*time.Minute)
	want := map[string]pontusv1.TestOutcome{
		"TestAdd":                pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"TestTestdataAndTempDir": pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"TestFailsOnPurpose":     pontusv1.TestOutcome_TEST_OUTCOME_FAILED,
		"TestFib":                pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED,
	}
	if got := outcomes(res.Tests); res.Status != testrun.Failed || !mapsEqual(got, want) {
		t.Errorf("status %v (%q), tests %v; want failed with %v\n%s", res.Status, res.Reason, got, want, out)
	}

	res, out = runPlugin(t, host(t), dir, &testrun.Plugin{Name: "calc", Module: module, WorkDir: ".", Args: []string{"-test.v", "-test.run=^TestAdd$"}}, 2*time.Minute)
	want = map[string]pontusv1.TestOutcome{"TestAdd": pontusv1.TestOutcome_TEST_OUTCOME_PASSED}
	if got := outcomes(res.Tests); res.Status != testrun.Passed || !mapsEqual(got, want) {
		t.Errorf("with -test.v: status %v (%q), tests %v; want passed with %v\n%s", res.Status, res.Reason, got, want, out)
	}
	if strings.Contains(out, "\x16") {
		t.Errorf("with -test.v given, the output has test2json framing: the host added its own -test.v\n%q", out)
	}
}

func TestGoTestRunArgs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "-test.v=test2json -test.paniconexit0 -test.timeout=54s"},
		{[]string{"-test.run=^TestA$"}, "-test.v=test2json -test.paniconexit0 -test.timeout=54s -test.run=^TestA$"},
		{[]string{"-test.v"}, "-test.paniconexit0 -test.timeout=54s -test.v"},
		{[]string{"--test.v=true", "-test.timeout", "5s"}, "-test.paniconexit0 --test.v=true -test.timeout 5s"},
	} {
		if got := strings.Join(goTestRunArgs(c.args, time.Minute), " "); got != c.want {
			t.Errorf("goTestRunArgs(%q) = %s, want %s", c.args, got, c.want)
		}
	}
}
