package runnerd

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pontus-ci/pontus/internal/testrun"
	"github.com/pontus-ci/pontus/plugins"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// planOnly is a Sandbox for tests of planning, which never runs a step.
type planOnly struct{}

func (planOnly) Run(context.Context, testrun.Spec) testrun.Result { panic("planning runs nothing") }
func (planOnly) RunGoTests(context.Context, testrun.Spec, []string) testrun.Result {
	panic("planning runs nothing")
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPlanSteps(t *testing.T) {
	runnerPlugin := plugins.StepConfig{Name: "secrets", Module: "/opt/secrets.wasm"}
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		wasm   bool
		files  map[string]string
		want   []string // describe() of each step
		reason string   // substring of the refusal
	}{
		{name: "python", files: map[string]string{"tests/test_a.py": ""}, want: []string{"python3 -m unittest discover -s tests -v"}},
		{name: "go natively", files: map[string]string{"go.mod": "module m\n", "tests/a_test.go": ""}, want: []string{"go test -v ./tests/..."}},
		{name: "go in the sandbox", wasm: true, cfg: func(c *Config) { c.SandboxGoTests = true },
			files: map[string]string{"go.mod": "module m\n", "tests/a_test.go": ""}, want: []string{"go-tests: Go tests of ./tests compiled to WebAssembly, in the sandbox"}},
		{name: "wasm test modules", wasm: true, files: map[string]string{"tests/unit.wasm": "\x00asm"},
			want: []string{"plugin unit (tests/unit.wasm), in the sandbox"}},
		{name: "runner test command wins over detection", cfg: func(c *Config) { c.TestCommand = "make test" },
			files: map[string]string{"tests/test_a.py": ""}, want: []string{"sh -c make test"}},
		{name: "runner plugins run before the tests", wasm: true, cfg: func(c *Config) { c.Plugins = []plugins.StepConfig{runnerPlugin} },
			files: map[string]string{"tests/test_a.py": ""}, want: []string{"plugin secrets (/opt/secrets.wasm), in the sandbox", "python3 -m unittest discover -s tests -v"}},
		{name: "repo config ignored unless allowed", files: map[string]string{"tests/test_a.py": "", ".pontus.toml": "test_command = \"evil\"\n"},
			want: []string{"python3 -m unittest discover -s tests -v"}},
		{name: "repo config when allowed", wasm: true, cfg: func(c *Config) { c.AllowRepoConfig = true; c.Plugins = []plugins.StepConfig{runnerPlugin} },
			files: map[string]string{".pontus.toml": "test_command = \"make check\"\n[[plugins]]\nname = \"lint\"\nmodule = \"tools/lint.wasm\"\n"},
			want:  []string{"plugin secrets (/opt/secrets.wasm), in the sandbox", "plugin lint (tools/lint.wasm), in the sandbox", "sh -c make check"}},
		{name: "repo config cannot drop the runner's plugins", wasm: true, cfg: func(c *Config) { c.AllowRepoConfig = true; c.Plugins = []plugins.StepConfig{runnerPlugin} },
			files: map[string]string{"tests/test_a.py": "", ".pontus.toml": "plugins = []\n"},
			want:  []string{"plugin secrets (/opt/secrets.wasm), in the sandbox", "python3 -m unittest discover -s tests -v"}},
		{name: "repo plugin outside the checkout refused", wasm: true, cfg: func(c *Config) { c.AllowRepoConfig = true },
			files:  map[string]string{".pontus.toml": "[[plugins]]\nname = \"x\"\nmodule = \"../../etc/x.wasm\"\n"},
			reason: ".pontus.toml: plugins[0]"},
		{name: "repo config unknown key", cfg: func(c *Config) { c.AllowRepoConfig = true },
			files: map[string]string{".pontus.toml": "tset_command = \"x\"\n"}, reason: "unknown key tset_command"},
		{name: "repo build settings are accepted (the observer applies them)", cfg: func(c *Config) { c.AllowRepoConfig = true },
			files: map[string]string{"tests/test_a.py": "", ".pontus.toml": "[build]\nretries = 1\nshards = 2\nbisect = false\nreuse = false\n"},
			want:  []string{"python3 -m unittest discover -s tests -v"}},
		{name: "repo build settings out of range refused", cfg: func(c *Config) { c.AllowRepoConfig = true },
			files: map[string]string{"tests/test_a.py": "", ".pontus.toml": "[build]\nshards = 0\n"}, reason: "build.shards: must be 1 to 64"},
		{name: "sandbox-only runner refuses native steps", wasm: true, cfg: func(c *Config) { c.Native = false },
			files: map[string]string{"tests/test_a.py": ""}, reason: "runs only sandboxed WebAssembly steps"},
		{name: "sandbox-only runner runs Go tests in the sandbox", wasm: true, cfg: func(c *Config) { c.Native = false },
			files: map[string]string{"go.mod": "module m\n", "tests/a_test.go": ""}, want: []string{"go-tests: Go tests of ./tests compiled to WebAssembly, in the sandbox"}},
		{name: "nothing to run", files: map[string]string{"README": ""}, reason: "no tests found"},
		{name: "sandbox-only runner refuses pytest", wasm: true, cfg: func(c *Config) { c.Native = false },
			files: map[string]string{"tests/conftest.py": "", "tests/test_a.py": "def test_a():\n    pass\n"}, reason: "runs only sandboxed WebAssembly steps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			r := &Runner{cfg: cfg}
			if tc.wasm {
				r.sandbox = planOnly{}
			}
			steps, why := r.planSteps(t.Context(), writeTree(t, tc.files))
			if tc.reason != "" {
				if !strings.Contains(why, tc.reason) {
					t.Fatalf("reason %q, want it to contain %q (steps %v)", why, tc.reason, steps)
				}
				return
			}
			if why != "" {
				t.Fatalf("refused: %s", why)
			}
			var got []string
			for _, s := range steps {
				got = append(got, s.describe())
			}
			if strings.Join(got, " | ") != strings.Join(tc.want, " | ") {
				t.Fatalf("steps:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// tapSandbox stands in for the WebAssembly host in a test of how steps
// combine: it prints a TAP report, as a plugin would.
type tapSandbox struct{ planOnly }

func (tapSandbox) Run(_ context.Context, spec testrun.Spec) testrun.Result {
	io.WriteString(spec.Output, "TAP version 14\n1..2\nok 1 - alpha\nnot ok 2 - beta\n")
	return testrun.Result{Status: testrun.Failed, ExitCode: 1}
}

// Each step's per-test results come from its own output: a later step that
// produces none does not count the earlier step's tests again.
func TestRunStepsKeepsEachStepsTests(t *testing.T) {
	r := &Runner{cfg: DefaultConfig(), sandbox: tapSandbox{}, exec: NewNative(nil)}
	stream := newLogStream(func(context.Context, *pontusv1.AppendLogRequest) (*pontusv1.AppendLogResponse, error) {
		return &pontusv1.AppendLogResponse{}, nil
	}, jobKey{1, 1}, 1<<20, slog.New(slog.DiscardHandler), func(error) {})
	steps := []jobStep{
		{name: "lint", plugin: &plugins.StepConfig{Name: "lint", Module: "/x.wasm"}},
		{name: "tests", native: &step{argv: []string{"pontus-no-such-tool"}, detected: true}},
	}
	res := r.runSteps(context.Background(), &pontusv1.Job{JobId: 1, Attempt: 1}, t.TempDir(), steps, stream)
	var names []string
	for _, tc := range res.Tests {
		names = append(names, tc.Name)
	}
	if strings.Join(names, ",") != "lint: beta,lint: alpha" {
		t.Fatalf("tests %q, want the plugin's two, once, failures first", names)
	}
	if res.Status != testrun.Errored || !strings.Contains(res.Reason, "tests: cannot run the tests") {
		t.Fatalf("status %v reason %q: the missing tool should error the job", res.Status, res.Reason)
	}
}
