// Package git runs the git command for Pontus. Git is always invoked with an
// argument vector, never through a shell; callers put "--" before any
// user-supplied revision or path. The environment is scrubbed of GIT_*
// variables (a hook sets GIT_DIR, which would point every call at the wrong
// repository) and git never prompts.
package git

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Command returns a git command that runs in dir with a clean environment.
func Command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = Env(os.Environ())
	return cmd
}

// Env returns environ without GIT_* variables, plus the settings Pontus
// wants for every git call.
func Env(environ []string) []string {
	env := make([]string, 0, len(environ)+4)
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GIT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		// Never fetch missing objects of a partial clone behind our back:
		// reads must not write into a repository or reach the network.
		"GIT_NO_LAZY_FETCH=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=true",
		"GIT_CONFIG_NOSYSTEM=1",
		"LC_ALL=C",
	)
}

// Output runs git in dir and returns its standard output without the
// trailing newline. A failure's error carries git's standard error.
func Output(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := Command(ctx, dir, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("git %s: %w", args[0], ctx.Err())
		}
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, msg)
	}
	return strings.TrimRight(stdout.String(), "\n"), nil
}
