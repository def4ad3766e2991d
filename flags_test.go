package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every command shows its usage, with an example, on -h, and exits 0.
func TestEveryCommandHasHelpWithExample(t *testing.T) {
	t.Parallel()
	for _, c := range commands() {
		args := []string{c.name, "-h"}
		switch c.name {
		case "plugin":
			args = []string{"plugin", "run", "-h"}
		case "bench":
			args = []string{"bench", "idle", "-h"}
		}
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), args, &stdout, &stderr)
		if code != 0 || !strings.Contains(stderr.String(), "Usage: pontus "+c.name) ||
			!strings.Contains(stderr.String(), "Examples:\n  pontus "+c.name) {
			t.Errorf("pontus %s: exit %d, want 0 and a usage with an example; stderr:\n%s", strings.Join(args, " "), code, stderr.String())
		}
	}
	for _, args := range [][]string{{"plugin", "-h"}, {"bench", "-h"}, {"plugin", "build", "-h"}, {"plugin", "new", "-h"}} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "Examples:") {
			t.Errorf("pontus %s: exit %d, want 0 and examples; stderr:\n%s", strings.Join(args, " "), code, stderr.String())
		}
	}
}

// Flags come before or after the arguments for every command, "--" ends
// them, and a command line that is wrong exits 2 naming the problem.
// Commands run against a live control plane where they need one.
func TestFlagsAnywhereForEveryCommand(t *testing.T) {
	url := serveTestControlPlane(t)
	commit := strings.Repeat("c", 40)
	dir := t.TempDir()
	tested := map[string]bool{}
	for _, tc := range []struct {
		cmd  string
		args []string
		code int
		want string // in stdout+stderr
	}{
		{"notify", []string{"notify", commit, "--repo", "/srv/app", "--controlplane", url, "--branch", "main"}, 0, "build 1"},
		{"builds", []string{"builds", "--controlplane", url, "--limit", "5", "--json"}, 0, commit},
		{"builds", []string{"builds", "main", "--controlplane", url}, 2, `unexpected argument "main"`},
		{"show", []string{"show", commit[:7], "--json", "--controlplane", url, "--exit-status"}, 3, commit},
		{"show", []string{"show", "--controlplane", url, "--", commit[:7]}, 0, commit},
		{"show", []string{"show", commit[:7], "extra", "--controlplane", url}, 2, "give one BUILD|COMMIT"},
		{"show", []string{"show", commit[:7], "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"logs", []string{"logs", "1", "--controlplane", url}, 0, ""},
		{"runners", []string{"runners", "--controlplane", url, "--json"}, 0, "{"},
		{"runners", []string{"runners", "x", "--controlplane", url}, 2, `unexpected argument "x"`},
		{"trigger", []string{"trigger", commit[:8], "--controlplane", url, "--branch", "main"}, 0, "build 2 queued"},
		{"cancel", []string{"cancel", "#2", "--controlplane", url, "--json"}, 0, "CANCELED"},
		{"tests", []string{"tests", "--controlplane", url, "--flaky"}, 0, "no flaky tests"},
		{"tests", []string{"tests", "TestX", "--controlplane", url, "--suite", "pkg"}, 1, "not_found"},
		{"tests", []string{"tests", "a", "b", "--controlplane", url}, 2, "give at most one TEST"},
		{"tests", []string{"tests", "--flaky", "--slowest", "--controlplane", url}, 2, "give one"},
		{"version", []string{"version", "extra"}, 2, `unexpected argument "extra"`},
		{"config", []string{"config", "check", "pontus.toml", "--bogus"}, 2, "-bogus"},
		{"config", []string{"config", "check", "pontus.toml"}, 0, "pontus.toml: ok"},
		{"backup", []string{"backup", "stray", "--to", dir + "/b", "--data", dir + "/d"}, 2, `unexpected argument "stray"`},
		{"bench", []string{"bench", "idle", "stray", "--duration", "1s"}, 2, `unexpected argument "stray"`},
		{"plugin", []string{"plugin", "new", dir + "/p", "--bogus"}, 2, "-bogus"},
		{"dev", []string{"dev", "stray", "--listen", "127.0.0.1:0"}, 2, `unexpected argument "stray"`},
		{"controlplane", []string{"controlplane", "stray", "--listen", "127.0.0.1:0"}, 2, `unexpected argument "stray"`},
		{"runnerd", []string{"runnerd", "--workdir", dir, "stray"}, 2, `unexpected argument "stray"`},
		{"observerd", []string{"observerd", "--repo", dir, "stray"}, 2, `unexpected argument "stray"`},
	} {
		tested[tc.cmd] = true
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tc.args, &stdout, &stderr)
		if out := stdout.String() + stderr.String(); code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("pontus %s: exit %d, want %d with %q; output:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
	// Every command is in the table above.
	for _, c := range commands() {
		if !tested[c.name] {
			t.Errorf("pontus %s has no case in TestFlagsAnywhereForEveryCommand", c.name)
		}
	}
}
