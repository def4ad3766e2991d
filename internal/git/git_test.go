package git

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestEnvDropsGitVariables(t *testing.T) {
	env := Env([]string{"PATH=/bin", "GIT_DIR=/elsewhere/.git", "GIT_WORK_TREE=/x", "HOME=/h"})
	for _, kv := range env {
		if strings.HasPrefix(kv, "GIT_DIR=") || strings.HasPrefix(kv, "GIT_WORK_TREE=") {
			t.Errorf("kept %s", kv)
		}
	}
	for _, want := range []string{"PATH=/bin", "HOME=/h", "GIT_TERMINAL_PROMPT=0"} {
		if !slices.Contains(env, want) {
			t.Errorf("missing %s", want)
		}
	}
}

// A hook runs with GIT_DIR set to its own repository; git calls made from
// there must still go to the directory they name.
func TestOutputIgnoresInheritedGitDir(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	a, b := t.TempDir(), t.TempDir()
	ctx := context.Background()
	for _, d := range []string{a, b} {
		if _, err := Output(ctx, d, "init", "-q", "-b", "main"); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("GIT_DIR", a+"/.git")
	top, err := Output(ctx, b, "rev-parse", "--show-toplevel")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(top, strings.TrimPrefix(b, "/private")) {
		t.Fatalf("git ran in %s, want %s", top, b)
	}
	if _, err := Output(ctx, b, "rev-parse", "--verify", "no-such-ref"); err == nil || !strings.Contains(err.Error(), "git rev-parse") {
		t.Fatalf("error does not say what failed: %v", err)
	}
}
