package plugins

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

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

// TestREADMEWalkthrough follows the walkthrough: the plugin in README.md is
// built for wasip1 against this SDK, configured with the README's TOML,
// and run on a checkout with a FIXME in it.
func TestREADMEWalkthrough(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	mod := t.TempDir()
	goSum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"main.go": readmeBlock(t, "`main.go`:", "go"),
		"go.mod": "module example.com/fixme\n\ngo 1.24\n\nrequire github.com/pontus-ci/pontus v0.0.0\n\n" +
			"replace github.com/pontus-ci/pontus => " + root + "\n",
		"go.sum": string(goSum),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(mod, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wasm := filepath.Join(mod, "fixme.wasm")
	build := exec.Command("go", "build", "-mod=mod", "-trimpath", "-o", wasm, ".")
	build.Dir = mod
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOPROXY=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the README's plugin: %v\n%s", err, out)
	}

	// pontus.toml's [[runner.plugins]] table.
	var cfg struct {
		Runner struct {
			Plugins []StepConfig `toml:"plugins"`
		} `toml:"runner"`
	}
	if _, err := toml.Decode(readmeBlock(t, "**4. Configure it.**", "toml"), &cfg); err != nil {
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

	dir := checkout(t, map[string]string{
		"README.md":  "# demo\n",
		"src/app.go": "package app\n\n// FIX" + "ME: handle errors\nfunc f() {}\n",
	})
	var out syncbuf.Buffer
	res := host(t).Run(t.Context(), testrun.Spec{Dir: dir, Plugin: step.Plugin(dir), Env: step.EnvList(), Output: &out, Timeout: time.Minute})
	if res.Status != testrun.Failed {
		t.Fatalf("status %v (%q), want failed:\n%s", res.Status, res.Reason, out.String())
	}
	if !strings.Contains(out.String(), `message: "line 3: // FIX`+`ME: handle errors"`) {
		t.Errorf("output:\n%s", out.String())
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
