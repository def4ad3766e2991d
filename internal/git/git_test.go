package git

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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

// A repository's hooks and core.hooksPath never run, and its config
// cannot turn on the fsmonitor daemon.
func TestRepositoryCannotRunCode(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	ctx := t.Context()
	dir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "ran")
	hook := "#!/bin/sh\ntouch " + marker + "\n"
	if _, err := Output(ctx, dir, "init", "-q", "-b", "main"); err != nil {
		t.Fatal(err)
	}
	hooks := t.TempDir()
	for _, d := range []string{filepath.Join(dir, ".git", "hooks"), hooks} {
		for _, h := range []string{"pre-commit", "post-commit", "reference-transaction"} {
			if err := os.WriteFile(filepath.Join(d, h), []byte(hook), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, kv := range [][2]string{{"core.hooksPath", hooks}, {"core.fsmonitor", filepath.Join(hooks, "pre-commit")}} {
		if err := exec.Command("git", "-C", dir, "config", kv[0], kv[1]).Run(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Output(ctx, dir, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := Output(ctx, dir, "status", "--porcelain"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a hook of the repository ran")
	}
}

// A failure says what git said, in one line for a reason.
func TestErrorMessage(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := Output(t.Context(), t.TempDir(), "clone", "--quiet", "--bare", "--", missing, "x")
	var gerr *Error
	if !errors.As(err, &gerr) || gerr.Command != "clone" {
		t.Fatalf("error %T %v, want *Error", err, err)
	}
	if msg := gerr.Message(); !strings.HasPrefix(msg, "fatal: repository '"+missing+"' does not exist") || strings.Contains(msg, "\n") {
		t.Errorf("message %q", msg)
	}
}
