// Package git runs the git command for Pontus. Git is always invoked with an
// argument vector, never through a shell; callers put "--" before any
// user-supplied revision or path. The environment is scrubbed of GIT_*
// variables (a hook sets GIT_DIR, which would point every call at the wrong
// repository) and git never prompts.
//
// Every call ignores what a repository could use to run code or reach
// elsewhere: hooks (core.hooksPath=/dev/null, whatever the repository's
// config says), the fsmonitor daemon, the system config, and transports
// other than file, git, http(s) and ssh (GIT_ALLOW_PROTOCOL, which also
// binds submodules and redirects). The user's global config is read, since
// it is where an operator keeps credential helpers.
package git

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// safeArgs come before every command's own arguments; "-c" settings win
// over any file's.
var safeArgs = []string{
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.fsmonitor=false",
}

// Command returns a git command that runs in dir with a clean environment.
func Command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", append(append([]string{}, safeArgs...), args...)...)
	cmd.Dir = dir
	cmd.Env = Env(os.Environ())
	return cmd
}

// Env returns environ without GIT_* variables, plus the settings Pontus
// wants for every git call.
func Env(environ []string) []string {
	env := make([]string, 0, len(environ)+8)
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
		"GIT_ALLOW_PROTOCOL=file:git:http:https:ssh",
		"LC_ALL=C",
	)
}

// Error is a git command that failed: which one, how, and what git said.
type Error struct {
	// Command is git's subcommand ("clone", "fetch").
	Command string
	// Err is how it ended (an *exec.ExitError).
	Err error
	// Stderr is git's standard error, trimmed and capped.
	Stderr string
}

func (e *Error) Error() string { return fmt.Sprintf("git %s: %v: %s", e.Command, e.Err, e.Stderr) }

func (e *Error) Unwrap() error { return e.Err }

// Message is what git said in one line: its "fatal:" and "error:" lines
// joined, else its first line, else how it ended.
func (e *Error) Message() string {
	var said []string
	for _, line := range strings.Split(e.Stderr, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "fatal:") || strings.HasPrefix(line, "error:") {
			said = append(said, line)
		}
	}
	if len(said) > 0 {
		return strings.Join(said, "; ")
	}
	if first, _, _ := strings.Cut(strings.TrimSpace(e.Stderr), "\n"); first != "" {
		return first
	}
	return e.Err.Error()
}

// Output runs git in dir and returns its standard output without the
// trailing newline. A failure's error is an *Error carrying git's standard
// error, unless ctx ended (then it wraps ctx.Err()).
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
		return "", &Error{Command: args[0], Err: err, Stderr: msg}
	}
	return strings.TrimRight(stdout.String(), "\n"), nil
}
