package plugins

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/testrun"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// cToolchainHint says what to install when the C test skips.
const cToolchainHint = "Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32; .ci/run installs them"

// buildC compiles a C source to a WASI command module with clang, or skips
// the test, saying why, when there is no clang that targets wasm32-wasi (no
// clang, no wasm-ld, no wasi-libc or no compiler-rt builtins for wasm32).
func buildC(t *testing.T, src string) string {
	t.Helper()
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skipf("skipped: no clang to build the C plugin (%s)", cToolchainHint)
	}
	dir := t.TempDir()
	hello := filepath.Join(dir, "hello.c")
	if err := os.WriteFile(hello, []byte("#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(clang, "--target=wasm32-wasi", "-o", filepath.Join(dir, "hello.wasm"), hello).CombinedOutput(); err != nil {
		t.Skipf("skipped: clang cannot build for wasm32-wasi (%s): %v\n%s", cToolchainHint, err, out)
	}
	wasm := filepath.Join(dir, strings.TrimSuffix(filepath.Base(src), ".c")+".wasm")
	// The command written in the source file.
	cmd := exec.Command(clang, "--target=wasm32-wasi", "-O2", "-Wall", "-Wextra", "-Werror", "-o", wasm, filepath.Base(src))
	cmd.Dir = filepath.Dir(src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", src, err, out)
	}
	return wasm
}

// TestCPlugin builds the C plugin in testdata/ctap with clang and
// wasi-libc and runs it in the sandbox: its TAP 14 is read as per-test
// results like a Go plugin's, a failing file fails the run, and a trap is
// a crash.
func TestCPlugin(t *testing.T) {
	t.Parallel()
	wasm := buildC(t, "testdata/ctap/ctap.c")
	dir := checkout(t, map[string]string{
		"README.md": "# demo\n",
		"main.c":    "int main(void) {\n\t// FIX" + "ME: say hello\n\treturn 0;\n}\n",
		"src/x.c":   "// not at the top: not checked\n",
	})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "evil")); err != nil {
		t.Fatal(err)
	}
	plugin := &testrun.Plugin{Name: "ctap", Module: wasm}
	res, out := runPlugin(t, host(t), dir, plugin, time.Minute)
	if res.Status != testrun.Failed || res.ExitCode != 1 {
		t.Errorf("status %v exit %d (%s), want failed exit 1:\n%s", res.Status, res.ExitCode, res.Reason, out)
	}
	want := map[string]pontusv1.TestOutcome{
		"README.md": pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"main.c":    pontusv1.TestOutcome_TEST_OUTCOME_FAILED,
	}
	if got := outcomes(res.Tests); !mapsEqual(got, want) {
		t.Errorf("tests = %v, want %v\n%s", got, want, out)
	}
	for _, tc := range res.Tests {
		if tc.Name == "main.c" && tc.Message != "line 2 has a marker" {
			t.Errorf("main.c message %q", tc.Message)
		}
	}

	plugin.Args = []string{"--trap"}
	res, out = runPlugin(t, host(t), dir, plugin, time.Minute)
	if res.Status != testrun.Errored || !strings.HasPrefix(res.Reason, "crashed: ") {
		t.Errorf("--trap: status %v (%s), want errored, crashed:\n%s", res.Status, res.Reason, out)
	}
}
