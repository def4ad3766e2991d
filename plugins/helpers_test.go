package plugins

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/syncbuf"
	"github.com/pontus-ci/pontus/internal/testrun"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// The guests are real wasip1 modules built from Go sources once per test
// binary (the wasip1 standard library compiles once into GOCACHE, so later
// runs take a second or two). wazero's compilation cache lives in one
// directory for the whole test binary, so each module is compiled to
// machine code once.
var (
	guestsOnce sync.Once
	guestsDir  string
	guestsErr  error

	sharedCacheDir string

	sharedHostsMu sync.Mutex
	sharedHosts   = map[string]*Host{} // by isolation mode
)

// modes are the isolation modes every probe and limit test runs in.
var modes = []string{IsolationProcess, IsolationInProcess}

// guestPackages are built into guestsDir under their last path element.
var guestPackages = []string{
	"./testdata/probe",
	"./testdata/tapdemo",
	"./testdata/badimport",
	"./secrets",
	"./configcheck",
}

func TestMain(m *testing.M) {
	// A Host with IsolationProcess re-executes this test binary as its
	// worker processes: the package's init serves them before TestMain.
	if dir := os.Getenv(testHostEnv); dir != "" {
		os.Exit(testHostMain(dir))
	}
	if os.Getenv(testThreadsEnv) != "" {
		os.Exit(testThreadsMain())
	}
	dir, err := os.MkdirTemp("", "pontus-plugins-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedCacheDir = testCacheDir(dir)
	guestsDir = filepath.Join(dir, "guests")
	code := m.Run()
	for _, h := range sharedHosts {
		_ = h.Close(context.Background())
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// testCacheDir returns the wazero compilation cache the tests share. It
// persists between test runs (in the user's cache directory, like GOCACHE)
// because compiling the guests to machine code takes 5-15 s each under the
// race detector; entries are keyed by module hash, so a stale one is never
// used, and entries older than two weeks are pruned. Without a user cache
// directory it falls back to a temporary one.
func testCacheDir(tmp string) string {
	base, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(tmp, "cache")
	}
	dir := filepath.Join(base, "pontus-test", "plugins-wazero")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return filepath.Join(tmp, "cache")
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && time.Since(fi.ModTime()) > 14*24*time.Hour {
				_ = os.Remove(p)
			}
		}
		return nil
	})
	return dir
}

// guest returns the path of a built guest module ("probe", "tapdemo", ...).
func guest(t testing.TB, name string) string {
	t.Helper()
	guestsOnce.Do(func() {
		start := time.Now()
		if guestsErr = os.MkdirAll(guestsDir, 0o755); guestsErr != nil {
			return
		}
		// Read the sources the go command compiles, so that go test's
		// result cache notices when they change.
		for _, dir := range append([]string{"./sdk"}, guestPackages...) {
			files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
			for _, f := range files {
				_, _ = os.ReadFile(f)
			}
		}
		args := append([]string{"build", "-o", guestsDir + string(filepath.Separator)}, guestPackages...)
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		out, err := cmd.CombinedOutput()
		if err != nil {
			guestsErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "built %d wasip1 guests in %s\n", len(guestPackages), time.Since(start).Round(time.Millisecond))
	})
	if guestsErr != nil {
		t.Fatal(guestsErr)
	}
	return filepath.Join(guestsDir, name)
}

// host returns the Host with the default configuration shared by the
// tests that need no special limits.
func host(t testing.TB) *Host {
	t.Helper()
	return modeHost(t, DefaultHostConfig().Isolation)
}

// modeHost returns the Host shared by the tests that need no special
// limits, in one isolation mode.
func modeHost(t testing.TB, mode string) *Host {
	t.Helper()
	sharedHostsMu.Lock()
	defer sharedHostsMu.Unlock()
	if h := sharedHosts[mode]; h != nil {
		return h
	}
	h, err := NewHost(context.Background(), HostConfig{CacheDir: sharedCacheDir, Isolation: mode}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	sharedHosts[mode] = h
	return h
}

// forModes runs test once per isolation mode, as parallel subtests.
func forModes(t *testing.T, test func(t *testing.T, mode string)) {
	t.Helper()
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			test(t, mode)
		})
	}
}

// newHost returns a Host of its own, sharing the on-disk cache, closed at
// the end of the test.
func newHost(t testing.TB, cfg HostConfig) *Host {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = sharedCacheDir
	}
	h, err := NewHost(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("close host: %v", err)
		}
	})
	return h
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// checkout makes a directory standing in for a job's checkout, with the
// given files ("path": "contents").
func checkout(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runPlugin runs a module in dir and returns the result and the output. It
// fails the test if Run does not return within a minute, reporting the
// output seen so far.
func runPlugin(t testing.TB, h *Host, dir string, p *testrun.Plugin, timeout time.Duration, env ...string) (testrun.Result, string) {
	t.Helper()
	return runPluginCtx(t, context.Background(), h, dir, p, timeout, env...)
}

func runPluginCtx(t testing.TB, ctx context.Context, h *Host, dir string, p *testrun.Plugin, timeout time.Duration, env ...string) (testrun.Result, string) {
	t.Helper()
	var out syncbuf.Buffer
	done := make(chan testrun.Result, 1)
	go func() {
		done <- h.Run(ctx, testrun.Spec{Dir: dir, Plugin: p, Env: env, Output: &out, Timeout: timeout})
	}()
	select {
	case res := <-done:
		return res, out.String()
	case <-time.After(time.Minute + timeout):
		t.Fatalf("Run did not return within %s; output so far:\n%s", time.Minute+timeout, tail(out.String()))
		return testrun.Result{}, ""
	}
}

// probe runs the probe guest with args and returns its RESULT line.
func probe(t testing.TB, h *Host, dir string, args ...string) (string, testrun.Result, string) {
	t.Helper()
	res, out := runPlugin(t, h, dir, &testrun.Plugin{Name: "probe", Module: guest(t, "probe"), Args: args}, 30*time.Second)
	for _, l := range strings.Split(out, "\n") {
		if r, ok := strings.CutPrefix(l, "RESULT "); ok {
			return r, res, out
		}
	}
	t.Fatalf("probe %v printed no RESULT line (status %v, reason %q):\n%s", args, res.Status, res.Reason, tail(out))
	return "", res, out
}

func tail(s string) string {
	if len(s) > 4000 {
		return "…" + s[len(s)-4000:]
	}
	return s
}

// outcomes maps test names to outcomes, for comparing.
func outcomes(tests []*pontusv1.TestCase) map[string]pontusv1.TestOutcome {
	m := map[string]pontusv1.TestOutcome{}
	for _, tc := range tests {
		m[tc.GetName()] = tc.GetOutcome()
	}
	return m
}

// countingWriter counts bytes, keeping only the first max of them.
type countingWriter struct {
	mu   sync.Mutex
	n    int64
	head bytes.Buffer
	max  int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += int64(len(p))
	if room := w.max - w.head.Len(); room > 0 {
		w.head.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)
