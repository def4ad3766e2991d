package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

var (
	secretsOnce sync.Once
	secretsWasm []byte
	secretsErr  error
)

// secretsPlugin builds the first-party secrets scanner for wasip1 once.
func secretsPlugin(t *testing.T) []byte {
	t.Helper()
	secretsOnce.Do(func() {
		out := filepath.Join(os.TempDir(), "pontus-e2e-secrets-"+strings.TrimPrefix(filepath.Base(Binary(t)), "pontus")+".wasm")
		cmd := exec.Command("go", "build", "-o", out, "./plugins/secrets")
		cmd.Dir = Root()
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if b, err := cmd.CombinedOutput(); err != nil {
			secretsErr = err
			t.Logf("%s", b)
			return
		}
		secretsWasm, secretsErr = os.ReadFile(out)
		os.Remove(out)
	})
	if secretsErr != nil {
		t.Fatalf("build the secrets plugin: %v", secretsErr)
	}
	return secretsWasm
}

// A repository asks (in its .pontus.toml) for a WebAssembly plugin step and
// its builds require the "wasm" label: only the runner that runs plugins
// takes them — here a sandbox-only runner (native = false) running each
// guest in its own process — and the plugin's TAP results become the
// build's per-test results.
func TestPluginStepRoutedToWasmRunner(t *testing.T) {
	t.Parallel()
	wasm := secretsPlugin(t)
	key := "-----" + "BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----" + "END RSA PRIVATE KEY-----\n"
	repo := NewRepo(t, map[string]string{
		"README.md":          "# app\n",
		"tools/secrets.wasm": string(wasm),
		".pontus.toml":       "[[plugins]]\nname = \"secrets\"\nmodule = \"tools/secrets.wasm\"\n",
		"config/deploy_key":  key,
	})
	c := newCluster(t, repo, "head", "")
	// The observer marks this repository's builds as needing plugins.
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "[observer]\n", "[observer]\nlabels = [\"wasm\"]\n", 1))
	cfg = []byte(strings.Replace(string(cfg), "[runner]\n", "[runner]\nallow_repo_config = true\n", 1))
	if err := os.WriteFile(c.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	c.startCP(t)
	// A runner that does not run plugins carries no "wasm" label.
	plainCfg := filepath.Join(c.dir, "plain.toml")
	if err := os.WriteFile(plainCfg, []byte(strings.Replace(string(cfg), "allow_repo_config = true\n",
		"allow_repo_config = true\nwasm = false\nname = \"plain\"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	Start(t, "plain runner", c.dir, nil, "runnerd", "--config", plainCfg, "--workdir", filepath.Join(c.dir, "plain"))
	c.startObserver(t)

	commit := repo.Head(t)
	WaitFor(t, "the build to wait for a wasm runner", 30*time.Second, func() (bool, string) {
		b := c.builds(t, commit)
		if len(b) == 0 {
			return false, "no build"
		}
		return strings.Contains(b[0].Reason, "no runner has labels [wasm]"), b[0].Status.String() + " " + b[0].Reason
	})

	sandboxCfg := filepath.Join(c.dir, "sandbox.toml")
	if err := os.WriteFile(sandboxCfg, []byte(strings.Replace(string(cfg), "allow_repo_config = true\n",
		"allow_repo_config = true\nnative = false\nwasm_isolation = \"process\"\nname = \"sandbox\"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	Start(t, "sandbox runner", c.dir, nil, "runnerd", "--config", sandboxCfg, "--workdir", filepath.Join(c.dir, "sandbox"))

	b := WaitResult(t, c.results, commit, 60*time.Second)
	if b.Status != failed || b.RunnerName != "sandbox" {
		t.Fatalf("build %s on %s (%s), want FAILED on the sandbox runner", b.Status, b.RunnerName, b.Reason)
	}
	var found bool
	for _, tc := range b.Tests {
		if tc.Outcome == pontusv1.TestOutcome_TEST_OUTCOME_FAILED && strings.Contains(tc.Message+tc.Output, "config/deploy_key") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no failing test names the planted key: %v", b.Tests)
	}
	for _, a := range b.Attempts {
		if a.RunnerName != "sandbox" {
			t.Errorf("attempt %d ran on %s", a.Number, a.RunnerName)
		}
	}
}
