package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pontus-ci/pontus/internal/e2e"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// The tests below run `pontus plugin ...` either through run (in this
// process) or through the built pontus binary, on real git repositories,
// with real wasip1 modules built by `pontus plugin build`. Compiled
// modules land in the user's wazero cache of pontus plugin run, so only
// the first run on a machine compiles them.

// probesTest is a Go test package built with `pontus plugin build` into a
// go test -c module: each test is one probe, chosen with -test.run.
const probesTest = `package probes

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestPasses(t *testing.T) {}

func TestSubtests(t *testing.T) {
	t.Run("ok", func(t *testing.T) {})
	t.Run("fails", func(t *testing.T) { t.Error("this one fails") })
}

func TestSandbox(t *testing.T) {
	if got := os.Getenv("FOO"); got != "bar" {
		t.Errorf("FOO=%q, want bar (from --env)", got)
	}
	for _, kv := range os.Environ() {
		if strings.Contains(kv, "TOKEN") || strings.HasPrefix(kv, "HOST_") {
			t.Errorf("the invoking environment leaked: %s", kv)
		}
	}
	if data, err := os.ReadFile("/src/evil"); err == nil {
		t.Errorf("read a host file through a committed symbolic link: %q", data)
	}
}

func TestMarker(t *testing.T) {
	data, err := os.ReadFile("/src/marker")
	if err != nil || string(data) != os.Getenv("WANT") {
		t.Errorf("marker %q (%v), want %q", data, err, os.Getenv("WANT"))
	}
}

var sink int

func TestSpin(t *testing.T) {
	for {
		sink++
	}
}

func TestSleep(t *testing.T) { time.Sleep(time.Hour) }

func TestHog(t *testing.T) {
	var keep [][]byte
	for {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = byte(i)
		}
		keep = append(keep, b)
	}
}
`

// pontus runs `pontus args...` in this process and returns the exit
// status, stdout and stderr.
func pontus(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// buildProbes builds probesTest with `pontus plugin build` and returns the
// module's path.
func buildProbes(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "probes")
	writeFiles(t, dir, map[string]string{
		"go.mod":         "module example.com/probes\n\ngo 1.22\n",
		"probes_test.go": probesTest,
	})
	out := filepath.Join(t.TempDir(), "probes.test.wasm")
	if code, stdout, stderr := pontus(t, "plugin", "build", dir, "-o", out); code != 0 {
		t.Fatalf("pontus plugin build: exit %d\n%s%s", code, stdout, stderr)
	}
	return out
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// jsonResult parses the output of pontus plugin run --json.
func jsonResult(t *testing.T, stdout string) *pontusv1.Build {
	t.Helper()
	var b pontusv1.Build
	if err := protojson.Unmarshal([]byte(stdout), &b); err != nil {
		t.Fatalf("--json output is not a Build: %v\n%s", err, stdout)
	}
	return &b
}

func testOutcomes(b *pontusv1.Build) map[string]string {
	m := map[string]string{}
	for _, tc := range b.Tests {
		m[tc.Name] = strings.TrimPrefix(tc.Outcome.String(), "TEST_OUTCOME_")
	}
	return m
}

// TestPluginAuthorLoop is a plugin author's first minutes, with the built
// binary in a fresh directory: plugin new, plugin build (default output
// name, no network), plugin run on a repository, text and JSON.
func TestPluginAuthorLoop(t *testing.T) {
	t.Parallel()
	bin := e2e.Binary(t)
	work := t.TempDir()
	repo := e2e.NewRepo(t, map[string]string{"README.md": "# demo\n", "src/a.go": "package a\n"})
	pontus := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GOPROXY=off") // offline
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := pontus("plugin", "new", "my-check")
	if err != nil {
		t.Fatalf("plugin new: %v\n%s", err, out)
	}
	for _, f := range []string{"go.mod", "main.go", "sdk/go.mod", "sdk/sdk.go", "sdk/walk.go"} {
		if _, err := os.Stat(filepath.Join(work, "my-check", f)); err != nil {
			t.Errorf("plugin new wrote no %s: %v", f, err)
		}
	}
	if out, err := pontus("plugin", "new", "my-check"); err == nil || !strings.Contains(out, "already exists") {
		t.Errorf("plugin new over an existing plugin: %v\n%s", err, out)
	}

	if out, err := pontus("plugin", "build", "my-check"); err != nil || !strings.Contains(out, "built plugin my-check.wasm") {
		t.Fatalf("plugin build: %v\n%s", err, out)
	}
	out, err = pontus("plugin", "run", "my-check.wasm", "--repo", repo.Dir)
	if err != nil {
		t.Fatalf("plugin run: %v\n%s", err, out)
	}
	for _, want := range []string{"TAP version 14", "PASSED  checkout is readable", "passed: 1 test"} {
		if !strings.Contains(out, want) {
			t.Errorf("plugin run output lacks %q:\n%s", want, out)
		}
	}

	cmd := exec.Command(bin, "plugin", "run", "--json", "--repo", repo.Dir, "my-check.wasm")
	cmd.Dir = work
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("plugin run --json: %v", err)
	}
	b := jsonResult(t, string(stdout))
	if b.Status != pontusv1.BuildStatus_BUILD_STATUS_PASSED || testOutcomes(b)["checkout is readable"] != "PASSED" {
		t.Errorf("plugin run --json: %v", b)
	}
}

// TestPluginRunSandbox runs the probes with the built binary, whose own
// environment holds a token, against a repository that commits a symbolic
// link to a host file: only --env reaches the guest, the link leads
// nowhere.
func TestPluginRunSandbox(t *testing.T) {
	t.Parallel()
	bin := e2e.Binary(t)
	probes := buildProbes(t)
	secret := filepath.Join(t.TempDir(), "secret.txt")
	writeFiles(t, filepath.Dir(secret), map[string]string{"secret.txt": "TOPSECRET"})
	repo := e2e.NewRepo(t, map[string]string{"README.md": "# demo\n"})
	if err := os.Symlink(secret, filepath.Join(repo.Dir, "evil")); err != nil {
		t.Fatal(err)
	}
	e2e.Git(t, repo.Dir, "add", "evil")
	e2e.Git(t, repo.Dir, "commit", "-q", "-m", "evil link")

	for _, commit := range []string{"", "HEAD"} {
		// Flags before and after the module; the module's own arguments after --.
		args := []string{"plugin", "run", "--env", "FOO=bar", probes, "--repo", repo.Dir, "--timeout", "1m"}
		if commit != "" {
			args = append(args, "--commit", commit)
		}
		cmd := exec.Command(bin, append(args, "--", "-test.run", "^TestSandbox$", "-test.v")...)
		cmd.Env = append(os.Environ(), "PONTUS_RUNNER_TOKEN=s3cret-token", "HOST_VARIABLE=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestSandbox") {
			t.Errorf("commit %q: %v\n%s", commit, err, out)
		}
		if strings.Contains(string(out), "TOPSECRET") || strings.Contains(string(out), "s3cret-token") {
			t.Errorf("commit %q: a secret in the output:\n%s", commit, out)
		}
	}
}

// TestPluginRunEndings checks how each way a run ends is said and what
// status pontus plugin run exits with.
func TestPluginRunEndings(t *testing.T) {
	t.Parallel()
	probes := buildProbes(t)
	repo := e2e.NewRepo(t, map[string]string{"README.md": "# demo\n"})
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		last     string // the start of the last line
		contains string
	}{
		{"passed", []string{"--", "-test.run", "^TestPasses$"}, 0, "passed: ", ""},
		{"failed", []string{"--", "-test.run", "^TestSubtests$"}, 1, "failed: ", "this one fails"},
		{"spinning", []string{"--timeout", "2s", "--", "-test.run", "^TestSpin$"}, 3, "timed out after 2s", ""},
		{"sleeping", []string{"--timeout", "2s", "--", "-test.run", "^TestSleep$"}, 3, "timed out", ""},
		{"memory hog", []string{"--memory", "64MiB", "--", "-test.run", "^TestHog$"}, 4, "error: out of memory", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := pontus(t, append([]string{"plugin", "run", probes, "--repo", repo.Dir}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, stdout, stderr)
			}
			trimmed := strings.TrimRight(stdout, "\n")
			if last := trimmed[strings.LastIndex(trimmed, "\n")+1:]; !strings.HasPrefix(last, tc.last) {
				t.Errorf("last line %q, want %q...\n%s", last, tc.last, stdout)
			}
			if !strings.Contains(stdout, tc.contains) {
				t.Errorf("output lacks %q:\n%s", tc.contains, stdout)
			}
		})
	}
}

// TestPluginRunCrash: a guest that traps is said to have crashed. The
// module is the C plugin of plugins/testdata/ctap, built with clang.
func TestPluginRunCrash(t *testing.T) {
	t.Parallel()
	if out, err := exec.Command("clang", "--version").CombinedOutput(); err != nil {
		t.Skipf("skipped: no clang to build the C plugin (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32): %v %s", err, out)
	}
	wasm := filepath.Join(t.TempDir(), "ctap.wasm")
	cmd := exec.Command("clang", "--target=wasm32-wasi", "-O2", "-o", wasm, "ctap.c")
	cmd.Dir = filepath.Join("plugins", "testdata", "ctap")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("skipped: clang cannot build for wasm32-wasi (Debian: apt-get install lld wasi-libc libclang-rt-dev-wasm32): %v\n%s", err, out)
	}
	repo := e2e.NewRepo(t, map[string]string{"README.md": "# demo\n"})
	code, stdout, stderr := pontus(t, "plugin", "run", wasm, "--repo", repo.Dir)
	if code != 0 || !strings.Contains(stdout, "PASSED  README.md") {
		t.Errorf("ctap: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = pontus(t, "plugin", "run", wasm, "--repo", repo.Dir, "--", "--trap")
	if code != exitPluginError || !strings.HasSuffix(stdout, "\nerror: crashed: wasm error: unreachable\n") {
		t.Errorf("ctap --trap: exit %d, want %d and a last line saying it crashed\n%s%s", code, exitPluginError, stdout, stderr)
	}
}

// TestPluginRunGoTestNames: a go test -c module run by pontus plugin run
// reports every test and subtest by name. The plugin host recognises such
// modules and runs them verbosely; until that is in (it is another
// change), this test fails.
func TestPluginRunGoTestNames(t *testing.T) {
	t.Parallel()
	probes := buildProbes(t)
	repo := e2e.NewRepo(t, map[string]string{"README.md": "# demo\n"})
	code, stdout, stderr := pontus(t, "plugin", "run", probes, "--repo", repo.Dir, "--json", "--", "-test.run", "^(TestPasses|TestSubtests)$")
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s", code, stderr)
	}
	got := testOutcomes(jsonResult(t, stdout))
	want := map[string]string{"TestPasses": "PASSED", "TestSubtests": "FAILED", "TestSubtests/ok": "PASSED", "TestSubtests/fails": "FAILED"}
	for name, outcome := range want {
		if got[name] != outcome {
			t.Errorf("test %s: %q, want %q (all: %v)\n%s", name, got[name], outcome, got, stderr)
		}
	}
}

// TestPluginRunCommit runs against a clean checkout of an older commit,
// while the working tree has uncommitted changes, and leaves the
// repository as it was.
func TestPluginRunCommit(t *testing.T) {
	t.Parallel()
	probes := buildProbes(t)
	repo := e2e.NewRepo(t, map[string]string{"marker": "one"})
	first := repo.Head(t)
	repo.Commit(t, "second", map[string]string{"marker": "two"})
	writeFiles(t, repo.Dir, map[string]string{"marker": "dirty"})
	status := e2e.Git(t, repo.Dir, "status", "--porcelain")

	for _, tc := range []struct{ commit, want string }{{"", "dirty"}, {"HEAD", "two"}, {first, "one"}, {"HEAD~1", "one"}} {
		args := []string{"plugin", "run", probes, "--repo", repo.Dir, "--env", "WANT=" + tc.want}
		if tc.commit != "" {
			args = append(args, "--commit", tc.commit)
		}
		code, stdout, stderr := pontus(t, append(args, "--", "-test.run", "^TestMarker$")...)
		if code != 0 {
			t.Errorf("--commit %q: exit %d\n%s%s", tc.commit, code, stdout, stderr)
		}
	}
	if got := e2e.Git(t, repo.Dir, "status", "--porcelain"); got != status {
		t.Errorf("git status after the runs:\n%s\nwant:\n%s", got, status)
	}
	if got := e2e.Git(t, repo.Dir, "worktree", "list"); strings.Count(got, "\n") != 0 {
		t.Errorf("worktrees left behind:\n%s", got)
	}
}

// TestPluginUsage: bad invocations exit 2 and say what is wrong.
func TestPluginUsage(t *testing.T) {
	t.Parallel()
	repo := e2e.NewRepo(t, map[string]string{"README.md": "# demo\n"})
	mod := filepath.Join(t.TempDir(), "x.wasm")
	writeFiles(t, filepath.Dir(mod), map[string]string{"x.wasm": "\x00asm"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"plugin"}, "Usage:"},
		{[]string{"plugin", "frob"}, `unknown subcommand "frob"`},
		{[]string{"plugin", "run", "--repo", repo.Dir}, "give the module to run"},
		{[]string{"plugin", "run", mod}, "--repo DIR is required"},
		{[]string{"plugin", "run", mod + ".missing", "--repo", repo.Dir}, "is not a module file"},
		{[]string{"plugin", "run", mod, "--repo", mod}, "is not a directory"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--memory", "12XB"}, `unknown unit "XB"`},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--memory", "0"}, "positive whole number"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--memory", "5GiB"}, "more than a wasm32 guest can address"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--timeout", "soon"}, "not a duration"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--timeout", "-1s"}, "must be positive"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--env", "lower=x"}, "must match [A-Z_][A-Z0-9_]*"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--env", "PONTUS_RUNNER_TOKEN=x"}, "looks like a Pontus credential"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--env", "NOVALUE"}, "is not KEY=VALUE"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--workdir", "../x"}, "workdir"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--commit", "no-such-branch"}, "no such commit"},
		{[]string{"plugin", "run", mod, "--repo", t.TempDir(), "--commit", "HEAD"}, "git repository"},
		{[]string{"plugin", "run", mod, "--repo", repo.Dir, "--frob"}, "flag provided but not defined: -frob"},
		{[]string{"plugin", "build"}, "give exactly one package directory"},
		{[]string{"plugin", "build", repo.Dir + "/missing"}, "is not a directory"},
		{[]string{"plugin", "build", repo.Dir, "-o", "x.exe"}, "name the module FILE.wasm"},
		{[]string{"plugin", "new"}, "give exactly one directory"},
	} {
		code, stdout, stderr := pontus(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("pontus %s: exit %d, want 2 with %q\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, tc.want, stdout, stderr)
		}
	}

	// A file that is not a module is a run that could not start.
	code, stdout, _ := pontus(t, "plugin", "run", mod, "--repo", repo.Dir)
	if code != exitPluginError || !strings.Contains(stdout, "error: ") {
		t.Errorf("a broken module: exit %d, want %d\n%s", code, exitPluginError, stdout)
	}
}

// TestPluginBuildRefuses: pontus plugin build explains what it cannot
// build.
func TestPluginBuildRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod":      "module example.com/lib\n\ngo 1.22\n",
		"lib/lib.go":  "package lib\n",
		"bad/main.go": "package main\n\nfunc main() { undefined() }\n",
		// Like a runner, plugin build refuses a replace leading out of the module.
		"escape/go.mod":  "module example.com/escape\n\ngo 1.22\n\nreplace example.com/x => ../../elsewhere\n",
		"escape/main.go": "package main\n\nfunc main() {}\n",
	})
	for _, tc := range []struct{ dir, want string }{
		{"lib", "neither a main package (a plugin) nor a package with tests"},
		{"bad", "go build ./bad failed"},
		{".", "no Go files"},
		{"escape", "outside the checkout"},
	} {
		code, stdout, stderr := pontus(t, "plugin", "build", filepath.Join(dir, tc.dir), "-o", filepath.Join(dir, "out.wasm"))
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("plugin build %s: exit %d, want an error with %q\n%s%s", tc.dir, code, tc.want, stdout, stderr)
		}
	}
}

// TestParseInterspersed: flags may come before, between and after the
// positional arguments; "--" ends them.
func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args      []string
		pos, repo string
	}{
		{[]string{"a.wasm", "--repo", "r"}, "a.wasm", "r"},
		{[]string{"--repo", "r", "a.wasm"}, "a.wasm", "r"},
		{[]string{"a.wasm", "x", "--repo=r", "y"}, "a.wasm x y", "r"},
		{[]string{"a.wasm", "--repo", "r", "--", "--repo", "s"}, "a.wasm --repo s", "r"},
	} {
		var out bytes.Buffer
		fs := newClientFlags("t", help{}, &out).fs
		repo := fs.String("repo", "", "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil || strings.Join(pos, " ") != tc.pos || *repo != tc.repo {
			t.Errorf("%q: positional %q, repo %q, err %v; want %q, %q", tc.args, pos, *repo, err, tc.pos, tc.repo)
		}
	}
}

func TestParseMiB(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{"256": 256, "256MiB": 256, "64M": 64, "1GiB": 1024, "2g": 2048, "4GiB": 4096} {
		if got, err := parseMiB(in); err != nil || got != want {
			t.Errorf("parseMiB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-5MiB", "1.5GiB", "5GiB", "12KiB", "MiB", "1e3"} {
		if got, err := parseMiB(in); err == nil {
			t.Errorf("parseMiB(%q) = %d, want an error", in, got)
		}
	}
}
