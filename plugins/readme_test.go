package plugins

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pontus-ci/pontus/internal/e2e"
	"github.com/pontus-ci/pontus/internal/syncbuf"
	"github.com/pontus-ci/pontus/internal/testrun"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// readmeBlock returns the fenced code block that follows marker in
// README.md.
func readmeBlock(t testing.TB, marker, lang string) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	s = s[i:]
	start := strings.Index(s, "```"+lang+"\n")
	if start < 0 {
		t.Fatalf("no ```%s block after %q", lang, marker)
	}
	s = s[start+len("```"+lang+"\n"):]
	return s[:strings.Index(s, "```")]
}

// readmeOutput returns the plain fenced block (the expected output) that
// follows the block after marker in README.md.
func readmeOutput(t testing.TB, marker string) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	s = s[i:]
	end := strings.Index(s, "```\n```\n")
	if end < 0 {
		t.Fatalf("no output block right after the block after %q", marker)
	}
	s = s[end+len("```\n```\n"):]
	return s[:strings.Index(s, "```")]
}

// TestREADMEWalkthrough follows the walkthrough step by step, offline
// (GOPROXY=off): its shell blocks run in order with the pontus binary on
// PATH, in a fresh directory; the plugin in README.md replaces the one
// pontus plugin new wrote; the outputs are the README's; the plugin built
// is configured with the README's TOML and run by a Host. The other way to
// start, a replace to this checkout's SDK, is followed too.
func TestREADMEWalkthrough(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := e2e.Binary(t)
	work, alt, demo := t.TempDir(), t.TempDir(), t.TempDir()
	env := append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"), "GOPROXY=off", "GOFLAGS=")
	// sh runs a block of the README with bash in dir and returns its
	// output and exit status.
	sh := func(dir, block string) (string, int) {
		t.Helper()
		block = strings.ReplaceAll(block, "/tmp/demo", demo)
		block = strings.ReplaceAll(block, "/path/to/pontus", root)
		cmd := exec.Command("bash", "-e", "-c", block)
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("run %q: %v", block, err)
		}
		return strings.ReplaceAll(string(out), demo, "/tmp/demo"), cmd.ProcessState.ExitCode()
	}
	must := func(dir, block string) {
		t.Helper()
		if out, code := sh(dir, block); code != 0 {
			t.Fatalf("README step %q: exit %d\n%s", block, code, out)
		}
	}
	plugin := readmeBlock(t, "**2. Write it.**", "go")

	// 1. Start it, with pontus plugin new; 2. write it.
	must(work, readmeBlock(t, "**1. Start it.**", "sh"))
	dir := filepath.Join(work, "fixme")
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(plugin), 0o644); err != nil {
		t.Fatal(err)
	}
	// 3. Try it natively.
	out, code := sh(dir, readmeBlock(t, "**3. Try it natively.**", "sh"))
	if want := readmeOutput(t, "**3. Try it natively.**"); code != 1 || out != want {
		t.Errorf("step 3: exit %d, output:\n%s\nwant exit 1 and:\n%s", code, out, want)
	}
	// 4. Build it.
	must(dir, readmeBlock(t, "**4. Build it for WebAssembly**", "sh"))
	wasm := filepath.Join(dir, "fixme.wasm")
	// 5. Run it in the sandbox.
	out, code = sh(dir, readmeBlock(t, "**5. Run it in the sandbox**", "sh"))
	if want := readmeOutput(t, "**5. Run it in the sandbox**"); code != 1 || out != want {
		t.Errorf("step 5: exit %d, output:\n%s\nwant exit 1 and:\n%s", code, out, want)
	}

	// The other start: a replace to this checkout's SDK, built with go build.
	must(alt, readmeBlock(t, "Without the `pontus` binary", "sh"))
	altDir := filepath.Join(alt, "fixme")
	if err := os.WriteFile(filepath.Join(altDir, "main.go"), []byte(plugin), 0o644); err != nil {
		t.Fatal(err)
	}
	must(altDir, "GOOS=wasip1 GOARCH=wasm go build -o fixme.wasm .")
	out, code = sh(altDir, "pontus plugin run fixme.wasm --repo /tmp/demo")
	if want := readmeOutput(t, "**5. Run it in the sandbox**"); code != 1 || out != want {
		t.Errorf("the plugin built against the checkout's SDK: exit %d, output:\n%s", code, out)
	}

	// pontus.toml's [[runner.plugins]] table.
	var cfg struct {
		Runner struct {
			Plugins []StepConfig `toml:"plugins"`
		} `toml:"runner"`
	}
	if _, err := toml.Decode(readmeBlock(t, "**6. Configure it.**", "toml"), &cfg); err != nil {
		t.Fatalf("the README's runner configuration: %v", err)
	}
	if len(cfg.Runner.Plugins) != 1 {
		t.Fatalf("README runner configuration has %d plugins", len(cfg.Runner.Plugins))
	}
	step := cfg.Runner.Plugins[0]
	if err := step.Validate(); err != nil {
		t.Fatalf("README runner configuration: %v", err)
	}
	step.Module = wasm // where we built it, rather than /opt/pontus/plugins

	repo := checkout(t, map[string]string{
		"README.md":  "# demo\n",
		"src/app.go": "package app\n\n// FIX" + "ME: handle errors\nfunc f() {}\n",
	})
	var log syncbuf.Buffer
	res := host(t).Run(t.Context(), testrun.Spec{Dir: repo, Plugin: step.Plugin(repo), Env: step.EnvList(), Output: &log, Timeout: time.Minute})
	if res.Status != testrun.Failed {
		t.Fatalf("status %v (%q), want failed:\n%s", res.Status, res.Reason, log.String())
	}
	if !strings.Contains(log.String(), `message: "line 3: // FIX`+`ME: handle errors"`) {
		t.Errorf("output:\n%s", log.String())
	}
	want := map[string]pontusv1.TestOutcome{
		"README.md":  pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"src/app.go": pontusv1.TestOutcome_TEST_OUTCOME_FAILED,
	}
	if got := outcomes(res.Tests); !mapsEqual(got, want) {
		t.Errorf("tests = %v, want %v", got, want)
	}

	// .pontus.toml's [[plugins]] table.
	var repoCfg struct {
		Plugin []StepConfig `toml:"plugins"`
	}
	if _, err := toml.Decode(readmeBlock(t, "or in the repository under test", "toml"), &repoCfg); err != nil {
		t.Fatal(err)
	}
	if len(repoCfg.Plugin) != 1 || repoCfg.Plugin[0].ValidateInRepo() != nil {
		t.Errorf("README repository configuration %+v does not validate", repoCfg.Plugin)
	}
}
