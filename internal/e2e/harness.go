// Package e2e is the end-to-end test harness: it builds the real pontus
// binary, makes real git repositories, starts real daemon processes on
// 127.0.0.1 and waits for result files, so tests read as stories.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pontus-ci/pontus/internal/syncbuf"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the pontus binary once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "pontus-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pontus")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Root returns the repository root (for examples/).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Repo is a git repository in a temp dir.
type Repo struct {
	Dir string
}

// Git runs git in dir and fails the test on error.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Pontus Test", "GIT_AUTHOR_EMAIL=test@pontus.invalid",
		"GIT_COMMITTER_NAME=Pontus Test", "GIT_COMMITTER_EMAIL=test@pontus.invalid", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// NewRepo makes a repository on branch main whose first commit holds files.
func NewRepo(t testing.TB, files map[string]string) *Repo {
	t.Helper()
	r := &Repo{Dir: filepath.Join(t.TempDir(), "repo")}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, r.Dir, "init", "-q", "-b", "main")
	r.Commit(t, "initial", files)
	return r
}

// DemoFiles returns examples/demo/tests as a file map.
func DemoFiles(t testing.TB) map[string]string {
	t.Helper()
	files := map[string]string{}
	base := filepath.Join(Root(), "examples", "demo")
	err := filepath.WalkDir(filepath.Join(base, "tests"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(base, p)
		files[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// Commit writes files (path → content; "" deletes) and commits them,
// returning the commit id.
func (r *Repo) Commit(t testing.TB, msg string, files map[string]string) string {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(r.Dir, p)
		if content == "" {
			os.Remove(full)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	Git(t, r.Dir, "add", "-A")
	Git(t, r.Dir, "commit", "-q", "--allow-empty", "-m", msg)
	return r.Head(t)
}

// Head returns the current commit id.
func (r *Repo) Head(t testing.TB) string {
	t.Helper()
	return Git(t, r.Dir, "rev-parse", "HEAD")
}

// TempDir is t.TempDir() that every user may search, down from /: a runner
// that runs as root runs its steps as an unprivileged step_user, which must
// reach the runner's workdir.
func TempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// FreeAddr returns a free 127.0.0.1 port address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Proc is a running pontus process.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

// Start runs the pontus binary with args in dir. The process is killed at
// the end of the test; its output is logged if the test failed.
func Start(t testing.TB, name, dir string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Dir = dir
	return StartCmd(t, name, cmd, env)
}

// StartCmd starts cmd (with env added to this process's environment) as
// Start does.
func StartCmd(t testing.TB, name string, cmd *exec.Cmd, env []string) *Proc {
	t.Helper()
	cmd.Env = append(os.Environ(), env...)
	p := &Proc{Name: name, cmd: cmd, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.Output())
		}
	})
	return p
}

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit.
func (p *Proc) Stop(t testing.TB, timeout time.Duration) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return errors.New("did not stop in time")
	}
}

// Done is closed when the process exits.
func (p *Proc) Done() <-chan struct{} { return p.done }

// WaitFor polls cond until it holds, failing with the last state seen.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ReadResult parses results/<commit>.json if it exists.
func ReadResult(resultsDir, commit string) (*pontusv1.Build, error) {
	data, err := os.ReadFile(filepath.Join(resultsDir, commit+".json"))
	if err != nil {
		return nil, err
	}
	b := new(pontusv1.Build)
	if err := protojson.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("parse %s.json: %w", commit, err)
	}
	return b, nil
}

// WaitResult waits for a commit's result file and returns the build.
func WaitResult(t testing.TB, resultsDir, commit string, timeout time.Duration) *pontusv1.Build {
	t.Helper()
	var b *pontusv1.Build
	WaitFor(t, "result of "+commit, timeout, func() (bool, string) {
		var err error
		b, err = ReadResult(resultsDir, commit)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return b
}

// WaitResultStatus waits until the commit's result has a status in want.
func WaitResultStatus(t testing.TB, resultsDir, commit string, timeout time.Duration, want ...pontusv1.BuildStatus) *pontusv1.Build {
	t.Helper()
	var b *pontusv1.Build
	WaitFor(t, fmt.Sprintf("result of %s in %v", commit, want), timeout, func() (bool, string) {
		var err error
		b, err = ReadResult(resultsDir, commit)
		if err != nil {
			return false, err.Error()
		}
		for _, w := range want {
			if b.Status == w {
				return true, ""
			}
		}
		return false, b.Status.String()
	})
	return b
}

// Curl posts a JSON body to a unary RPC like curl does and returns the
// status code and body.
func Curl(ctx context.Context, url, procedure, body string, header ...string) (int, string, error) {
	args := []string{"-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "Content-Type: application/json", "--data", body}
	for _, h := range header {
		args = append(args, "-H", h)
	}
	args = append(args, url+"/"+procedure)
	out, err := exec.CommandContext(ctx, "curl", args...).Output()
	if err != nil {
		return 0, "", err
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndex(s, "\n")
	var code int
	fmt.Sscanf(s[i+1:], "%d", &code)
	return code, s[:max(i, 0)], nil
}
