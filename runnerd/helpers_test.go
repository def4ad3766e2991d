package runnerd

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/git"
	"github.com/pontus-ci/pontus/internal/syncbuf"
)

// Environment of the re-executed helper process (see TestMain).
const (
	helperEnv        = "RUNNERD_TEST_HELPER"
	helperURLEnv     = "RUNNERD_TEST_URL"
	helperWorkdirEnv = "RUNNERD_TEST_WORKDIR"
	helperCommandEnv = "RUNNERD_TEST_COMMAND"
	helperTimingEnv  = "RUNNERD_TEST_TIMING" // "<timeout> <kill grace>"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

// runHelper runs a Runner in this process until it is killed: the crash test
// SIGKILLs it.
func runHelper() int {
	cfg := DefaultConfig()
	cfg.ControlPlane = dial.URLs(os.Getenv(helperURLEnv))
	cfg.Workdir = os.Getenv(helperWorkdirEnv)
	cfg.TestCommand = os.Getenv(helperCommandEnv)
	// What main does.
	cfg.Token = os.Getenv("PONTUS_RUNNER_TOKEN")
	cfg.TokenFile = os.Getenv("PONTUS_RUNNER_TOKEN_FILE")
	if timing := strings.Fields(os.Getenv(helperTimingEnv)); len(timing) == 2 {
		cfg.Timeout, _ = time.ParseDuration(timing[0])
		cfg.KillGrace, _ = time.ParseDuration(timing[1])
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := New(cfg, logger)
	if err != nil {
		logger.Error("new runner", "err", err)
		return 2
	}
	if err := r.Run(context.Background()); err != nil {
		logger.Error("run", "err", err)
		return 1
	}
	return 0
}

// testRepo is a git repository in a temporary directory.
type testRepo struct {
	t   testing.TB
	dir string
}

func newRepo(t testing.TB) *testRepo {
	t.Helper()
	return newRepoIn(t, t.TempDir())
}

// newRepoIn makes a repository in dir.
func newRepoIn(t testing.TB, dir string) *testRepo {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &testRepo{t: t, dir: dir}
	r.git("init", "--quiet", "--initial-branch=main")
	return r
}

func (r *testRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Test", "-c", "user.email=test@example.com",
		"-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"}, args...)...)
	cmd.Dir = r.dir
	cmd.Env = git.Env(os.Environ())
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (path → content; empty content removes the file),
// commits everything and returns the commit id.
func (r *testRepo) commit(files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.dir, name)
		if content == "" {
			if err := os.Remove(p); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git("add", "-A")
	r.git("commit", "--quiet", "--allow-empty", "-m", fmt.Sprintf("commit %d", time.Now().UnixNano()))
	return r.git("rev-parse", "HEAD")
}

const passingTest = `import unittest

class TestOK(unittest.TestCase):
    def test_ok(self):
        print("hello from the test")
        self.assertEqual(1 + 1, 2)

if __name__ == "__main__":
    unittest.main()
`

const failingTest = `import unittest

class TestOK(unittest.TestCase):
    def test_ok(self):
        self.assertEqual(1 + 1, 3)
`

// logSink collects the runner's log records so tests can wait for one.
type logSink struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	t     testing.TB
	ended bool
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	return len(p), nil
}

func (s *logSink) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Contains(s.buf.String(), sub)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// testConfig is a configuration for a runner of fake in a fresh workdir.
func testConfig(t testing.TB, fake *fakeCP) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ControlPlane = dial.URLs(fake.url())
	cfg.Workdir = filepath.Join(openDir(t), "work")
	cfg.Name = "test-runner"
	cfg.Timeout = time.Minute
	cfg.KillGrace = time.Second
	return cfg
}

// goStepConfig is testConfig for steps that build Go: the step user's build
// cache is new with each workdir, and compiling the testing package's
// dependencies from nothing takes over a minute on a loaded 2-core machine.
func goStepConfig(t testing.TB, fake *fakeCP) Config {
	t.Helper()
	fake.patience = 5 * time.Minute
	cfg := testConfig(t, fake)
	cfg.Timeout = 5 * time.Minute
	return cfg
}

// openDir returns a new temporary directory that every user may reach and
// write to: steps of a runner that runs as root run as its step_user.
func openDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

type testRunner struct {
	*Runner
	cancel   context.CancelFunc
	done     chan error
	logs     *logSink
	stopOnce sync.Once
}

// startRunner runs a Runner with cfg until the test ends, and fails the test
// if it does not stop within a deadline then.
func startRunner(t testing.TB, cfg Config) *testRunner {
	t.Helper()
	sink := &logSink{t: t}
	r, err := New(cfg, slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &testRunner{Runner: r, cancel: cancel, done: make(chan error, 1), logs: sink}
	go func() { tr.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		tr.stop(t)
		if t.Failed() {
			t.Logf("runner log:\n%s", sink.String())
		}
	})
	return tr
}

// stop cancels the runner and waits for Run to return nil.
func (tr *testRunner) stop(t testing.TB) {
	t.Helper()
	tr.stopOnce.Do(func() {
		tr.cancel()
		select {
		case err := <-tr.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("runner did not stop within 30s; log:\n%s", tr.logs.String())
		}
	})
}

// waitLog waits until the runner has logged sub.
func (tr *testRunner) waitLog(t testing.TB, sub string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !tr.logs.contains(sub) {
		if time.Now().After(deadline) {
			t.Fatalf("runner never logged %q; log:\n%s", sub, tr.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPID waits for a file holding a process id and returns it.
func readPID(t testing.TB, path string) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s after 60s (read: %q, %v)", path, b, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFile waits until path exists.
func waitFile(t testing.TB, path string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not created within 60s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processGone reports whether pid no longer runs (a zombie waiting for its
// reaper counts as gone: it runs nothing).
func processGone(pid int) (bool, string) {
	if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
		return true, "no such process"
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true, "no /proc entry"
	}
	// pid (comm) state ...
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] == 'Z' {
		return true, "zombie"
	}
	return false, s
}

// startHelper runs a Runner of fake in a process of its own (exe, else
// this test binary; see runHelper) with workdir, test command, environment
// and process attributes given; it is killed when the test ends. It returns
// the process and its stderr (the runner's log).
func startHelper(t testing.TB, fake *fakeCP, exe, workdir, command string, env []string, attr *syscall.SysProcAttr) (*exec.Cmd, *syncbuf.Buffer) {
	t.Helper()
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(),
		helperEnv+"=1",
		helperURLEnv+"="+fake.url(),
		helperWorkdirEnv+"="+workdir,
		helperCommandEnv+"="+command,
	), env...)
	cmd.SysProcAttr = attr
	stderr := new(syncbuf.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("runner log:\n%s", stderr.String())
		}
	})
	return cmd, stderr
}

// waitGone waits until every pid is gone.
func waitGone(t testing.TB, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for {
			gone, state := processGone(pid)
			if gone {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process %d still running: %s", pid, state)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// dirEmpty waits until dir has no entries (a job's checkout is removed right
// after its report).
func waitDirEmpty(t testing.TB, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, err := os.ReadDir(dir)
		if err == nil && len(entries) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still holds %v (%v)", dir, entries, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
