package plugins

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/syncbuf"
	"github.com/pontus-ci/pontus/internal/testrun"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func TestTAPPlugin(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode string) { testTAPPlugin(t, modeHost(t, mode)) })
}

func testTAPPlugin(t *testing.T, h *Host) {
	dir := checkout(t, map[string]string{"tests/hello.txt": "hello\n"})
	module := guest(t, "tapdemo")

	res, out := runPlugin(t, h, dir, &testrun.Plugin{Name: "tapdemo", Module: module}, 30*time.Second)
	if res.Status != testrun.Passed || res.ExitCode != 0 {
		t.Fatalf("passing plugin: status %v exit %d (%q), want passed exit 0:\n%s", res.Status, res.ExitCode, res.Reason, out)
	}
	want := map[string]pontusv1.TestOutcome{
		"hello.txt says hello":     pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"scratch /tmp is writable": pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
	}
	if got := outcomes(res.Tests); !mapsEqual(got, want) {
		t.Errorf("passing plugin: tests = %v, want %v\n%s", got, want, out)
	}

	res, out = runPlugin(t, h, dir, &testrun.Plugin{Name: "tapdemo", Module: module, Args: []string{"fail"}}, 30*time.Second)
	if res.Status != testrun.Failed || res.ExitCode != 1 {
		t.Fatalf("failing plugin: status %v exit %d (%q), want failed exit 1:\n%s", res.Status, res.ExitCode, res.Reason, out)
	}
	want["fails on purpose"] = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
	if got := outcomes(res.Tests); !mapsEqual(got, want) {
		t.Errorf("failing plugin: tests = %v, want %v\n%s", got, want, out)
	}
	if !strings.Contains(out, "asked to fail") {
		t.Errorf("failing plugin: output lacks the failure message:\n%s", out)
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestWorkDir(t *testing.T) {
	t.Parallel()
	withTests := checkout(t, map[string]string{"tests/hello.txt": "hello\n", "sub/dir/x": "x"})
	withoutTests := checkout(t, map[string]string{"hello.txt": "hello\n"})
	for _, c := range []struct {
		dir, workdir, want string
	}{
		{withTests, "", "/src/tests"},
		{withoutTests, "", "/src"},
		{withTests, "sub/dir", "/src/sub/dir"},
		{withTests, ".", "/src"},
	} {
		res, out := runPlugin(t, host(t), c.dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"pwd"}, WorkDir: c.workdir}, 30*time.Second)
		if !strings.Contains(out, "RESULT ok "+c.want+"\n") {
			t.Errorf("workdir %q: want cwd %s; status %v (%q):\n%s", c.workdir, c.want, res.Status, res.Reason, out)
		}
	}
	for _, bad := range []string{"../x", "/etc", "missing", "tests/hello.txt"} {
		res, out := runPlugin(t, host(t), withTests, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"pwd"}, WorkDir: bad}, 30*time.Second)
		if res.Status != testrun.Errored || !strings.Contains(res.Reason, "workdir") {
			t.Errorf("workdir %q: status %v (%q), want errored naming the workdir:\n%s", bad, res.Status, res.Reason, out)
		}
	}
}

// TestSandboxEscapes runs the probes of notes/wasm.md §2c against a
// checkout with malicious symbolic links committed in it.
func TestSandboxEscapes(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode string) { testSandboxEscapes(t, modeHost(t, mode)) })
}

func testSandboxEscapes(t *testing.T, h *Host) {
	dir := checkout(t, map[string]string{"tests/hello.txt": "hello\n"})
	for link, target := range map[string]string{
		"evil_abs":        "/etc/passwd",
		"evil_rel":        "../../../../../../../../../../etc/passwd",
		"evil_dir":        "/etc",
		"tests/evil_up":   "../../../../../../../../../../etc/passwd",
		"tests/good_link": "hello.txt", // stays inside: must keep working
	} {
		if err := os.Symlink(target, filepath.Join(dir, filepath.FromSlash(link))); err != nil {
			t.Fatal(err)
		}
	}
	// A real listener on the host that the guest must not reach.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()

	cases := []struct {
		name string
		args []string
		ok   bool   // the action must succeed (otherwise it must fail)
		want string // substring of the RESULT line
	}{
		{"in-tree file", []string{"read", "hello.txt"}, true, "hello"},
		{"in-tree symlink", []string{"read", "/src/tests/good_link"}, true, "hello"},
		{"committed absolute symlink", []string{"read", "/src/evil_abs"}, false, ""},
		{"committed relative symlink", []string{"read", "/src/evil_rel"}, false, ""},
		{"committed relative symlink in tests", []string{"read", "evil_up"}, false, ""},
		{"committed directory symlink", []string{"read", "/src/evil_dir/passwd"}, false, ""},
		{"host /etc/passwd", []string{"read", "/etc/passwd"}, false, ""},
		{"dot-dot out of /src", []string{"read", "/src/../etc/passwd"}, false, ""},
		{"dot-dot from cwd", []string{"read", "../../../etc/passwd"}, false, ""},
		{"raw path_open with dot-dot", []string{"rawopen", "../../../../etc/passwd"}, false, ""},
		{"/proc/self/environ", []string{"read", "/proc/self/environ"}, false, ""},
		{"write into /src", []string{"write", "/src/new.txt"}, false, ""},
		{"overwrite a checkout file", []string{"write", "/src/tests/hello.txt"}, false, ""},
		{"mkdir in /src", []string{"mkdir", "/src/newdir"}, false, ""},
		{"symlink in /tmp to /etc/passwd", []string{"symlink", "/etc/passwd", "/tmp/x"}, false, "not permitted"},
		{"relative symlink in /tmp", []string{"symlink", "../../../../../../etc/passwd", "/tmp/y"}, false, "not permitted"},
		{"hard link into /tmp", []string{"link", "/src/tests/hello.txt", "/tmp/h"}, false, ""},
		{"hard link inside /tmp", []string{"link", "/tmp/a", "/tmp/b"}, false, "not permitted"},
		{"scratch /tmp works", []string{"tmp"}, true, "scratch"},
		{"dial the host listener", []string{"dial", ln.Addr().String()}, false, ""},
		{"dial the internet", []string{"dial", "1.1.1.1:80"}, false, ""},
		{"dial by name", []string{"dial", "example.com:80"}, false, ""},
	}
	for _, c := range cases {
		r, res, out := probe(t, h, dir, c.args...)
		switch {
		case c.ok && !strings.HasPrefix(r, "ok"), !c.ok && !strings.HasPrefix(r, "err"):
			t.Errorf("%s: RESULT %s; want ok=%v (status %v)", c.name, r, c.ok, res.Status)
		case !strings.Contains(r, c.want):
			t.Errorf("%s: RESULT %s; want it to contain %q", c.name, r, c.want)
		case strings.Contains(out, "root:"):
			t.Errorf("%s: host /etc/passwd leaked into the output:\n%s", c.name, out)
		default:
			t.Logf("%s: %s", c.name, r)
		}
	}
	for _, p := range []string{"new.txt", "newdir"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("the guest created %s in the checkout", p)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "tests", "hello.txt")); string(data) != "hello\n" {
		t.Errorf("the guest changed tests/hello.txt: %q", data)
	}
	select {
	case <-accepted:
		t.Error("the guest connected to a listener on the host")
	default:
	}
}

// TestEnvironment is not parallel: it sets a credential in the host
// environment to prove the guest never sees it.
func TestEnvironment(t *testing.T) {
	t.Setenv("PONTUS_RUNNER_TOKEN", "host-secret-token")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "host-aws-secret")
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { testEnvironment(t, modeHost(t, mode)) })
	}
}

func testEnvironment(t *testing.T, h *Host) {
	dir := checkout(t, nil)
	res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"env"}, MemoryLimitMiB: 100},
		30*time.Second, "CI=true", "PONTUS_COMMIT=abc", "PONTUS_RUNNER_TOKEN=leaked-through-spec", "PWD=/elsewhere", "MALFORMED")
	if res.Status != testrun.Passed {
		t.Fatalf("status %v (%q):\n%s", res.Status, res.Reason, out)
	}
	line := out[strings.Index(out, "RESULT"):]
	line = line[:strings.IndexByte(line, '\n')]
	got := strings.Fields(strings.TrimPrefix(line, "RESULT ok "))
	want := []string{"CI=true", "PONTUS_COMMIT=abc", "PWD=/src", "HOME=/tmp", "TMPDIR=/tmp", "GOMEMLIMIT=90MiB"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("guest environment = %q, want %q", got, want)
	}
	for _, secret := range []string{"host-secret-token", "host-aws-secret", "leaked-through-spec"} {
		if strings.Contains(out, secret) {
			t.Errorf("guest saw %q", secret)
		}
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	forModes(t, testExitCodes)
}

func testExitCodes(t *testing.T, mode string) {
	h := modeHost(t, mode)
	dir := checkout(t, nil)
	res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"exit", "3"}}, 30*time.Second)
	if res.Status != testrun.Failed || res.ExitCode != 3 {
		t.Errorf("exit 3: status %v exit %d (%q), want failed 3:\n%s", res.Status, res.ExitCode, res.Reason, out)
	}
	// wazero's exit code for a deadline, from a guest that is not late.
	res, out = runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"exit", "4026531839"}}, 30*time.Second)
	if res.Status != testrun.Failed || res.ExitCode != 0xefffffff {
		t.Errorf("exit 0xefffffff: status %v exit %#x (%q), want failed 0xefffffff:\n%s", res.Status, res.ExitCode, res.Reason, out)
	}
}

// TestTimeouts stops a spinning and a sleeping guest at their deadline, and
// a sleeping one on cancel and on the host's Close; in process mode the
// guest's worker process and its group must be gone when Run returns.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	forModes(t, testTimeouts)
}

func testTimeouts(t *testing.T, mode string) {
	for _, action := range []string{"loop", "sleep"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			h, pids := pidHost(t, HostConfig{Isolation: mode})
			dir := checkout(t, nil)
			start := time.Now()
			res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{action}}, 2*time.Second)
			if res.Status != testrun.TimedOut || res.ExitCode != -1 || res.Reason != "timed out after 2s" {
				t.Fatalf("status %v exit %d (%q), want timed out:\n%s", res.Status, res.ExitCode, res.Reason, out)
			}
			if !strings.Contains(out, "[pontus] plugin timed out after 2s") {
				t.Errorf("output lacks the timeout marker:\n%s", out)
			}
			checkGone(t, mode, pids, 1)
			t.Logf("%s stopped after %s (timeout 2s, compile included)", action, time.Since(start).Round(time.Millisecond))
		})
	}
	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		h, pids := pidHost(t, HostConfig{Isolation: mode})
		dir := checkout(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		var out syncbuf.Buffer
		done := make(chan testrun.Result, 1)
		go func() {
			done <- h.Run(ctx, testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"sleep"}}, Output: &out, Timeout: time.Hour})
		}()
		waitFor(t, "the guest to start sleeping", func() bool { return strings.Contains(out.String(), "sleeping") })
		cancel()
		select {
		case res := <-done:
			if res.Status != testrun.Canceled || res.Reason != "canceled" {
				t.Errorf("status %v (%q), want canceled:\n%s", res.Status, res.Reason, out.String())
			}
		case <-time.After(time.Minute):
			t.Fatalf("Run did not return a minute after cancel; output:\n%s", out.String())
		}
		checkGone(t, mode, pids, 1)
	})
	t.Run("host closed", func(t *testing.T) {
		t.Parallel()
		h, pids := pidHost(t, HostConfig{Isolation: mode})
		dir := checkout(t, nil)
		var out syncbuf.Buffer
		done := make(chan testrun.Result, 1)
		go func() {
			done <- h.Run(context.Background(), testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"sleep"}}, Output: &out, Timeout: time.Hour})
		}()
		waitFor(t, "the guest to start sleeping", func() bool { return strings.Contains(out.String(), "sleeping") })
		if err := h.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
		res := <-done
		if res.Status != testrun.Canceled || res.Reason != errHostClosed.Error() {
			t.Errorf("status %v (%q), want canceled %q:\n%s", res.Status, res.Reason, errHostClosed, out.String())
		}
		checkGone(t, mode, pids, 1)
	})
}

// TestMemoryHog is not parallel so that the host's peak RSS it measures is
// its own.
func TestMemoryHog(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { testMemoryHog(t, modeHost(t, mode)) })
	}
}

func testMemoryHog(t *testing.T, h *Host) {
	const limitMiB = 128
	dir := checkout(t, nil)
	// Warm the compile for this limit first, so the RSS measured is the
	// run's, not the compiler's.
	if res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"exit", "0"}, MemoryLimitMiB: limitMiB}, 30*time.Second); res.Status != testrun.Passed {
		t.Fatalf("warm-up: %v (%q)\n%s", res.Status, res.Reason, out)
	}
	resetPeak := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	before := procStatusKiB(t, "VmRSS")

	res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"mem"}, MemoryLimitMiB: limitMiB}, time.Minute)
	if res.Status != testrun.Errored || res.Reason != "out of memory" {
		t.Fatalf("status %v exit %d (%q), want errored \"out of memory\":\n%s", res.Status, res.ExitCode, res.Reason, tail(out))
	}
	if !strings.Contains(out, "[pontus] plugin out of memory") {
		t.Errorf("output lacks the out-of-memory marker:\n%s", tail(out))
	}
	if !resetPeak {
		t.Logf("cannot reset the peak RSS (/proc/self/clear_refs); not checking it")
		return
	}
	peak := procStatusKiB(t, "VmHWM")
	grew := (peak - before) >> 10
	t.Logf("host RSS before %d MiB, peak during the run %d MiB (+%d MiB) for a %d MiB guest", before>>10, peak>>10, grew, limitMiB)
	if grew > limitMiB+256 {
		t.Errorf("host peak RSS grew by %d MiB for a %d MiB guest; want at most the limit + 256 MiB", grew, limitMiB)
	}
}

func procStatusKiB(t testing.TB, key string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("parse %s: %v", key, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", key)
	return 0
}

func TestOutputCap(t *testing.T) {
	t.Parallel()
	forModes(t, testOutputCap)
}

func testOutputCap(t *testing.T, isolation string) {
	const total = 100_000_000
	h := newHost(t, HostConfig{OutputLimitMiB: 1, Isolation: isolation})
	dir := checkout(t, nil)
	out := &countingWriter{max: 2 << 20}
	res := h.Run(context.Background(), testrun.Spec{
		Dir: dir, Plugin: &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"flood", strconv.Itoa(total)}},
		Output: out, Timeout: time.Minute,
	})
	dropped := total - 1<<20
	if res.Status != testrun.Passed {
		t.Fatalf("status %v (%q), want passed (the guest exits 0)", res.Status, res.Reason)
	}
	wantNote := fmt.Sprintf("output capped at 1 MiB: %s dropped", formatBytes(int64(dropped)))
	if res.Reason != wantNote {
		t.Errorf("reason %q, want %q", res.Reason, wantNote)
	}
	if !strings.HasSuffix(out.head.String(), "[pontus] "+wantNote+"\n") {
		t.Errorf("output does not end with the cap marker; last bytes: %q", out.head.String()[max(0, out.head.Len()-200):])
	}
	if out.n > 1<<20+200 {
		t.Errorf("%d bytes reached the output, want 1 MiB plus a marker", out.n)
	}
}

func TestRefusedModules(t *testing.T) {
	t.Parallel()
	dir := checkout(t, map[string]string{"tests/hello.txt": "hello\n", "tests/not.wasm": "not wasm at all"})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "tests", "evil.wasm")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		plugin *testrun.Plugin
		want   []string
	}{
		{"non-WASI import", &testrun.Plugin{Module: guest(t, "badimport")}, []string{`"host_secret"`, `"env"`, "wasi_snapshot_preview1"}},
		{"missing module", &testrun.Plugin{Module: filepath.Join(dir, "nope.wasm")}, []string{"open plugin module"}},
		{"relative module path", &testrun.Plugin{Module: "tests/x.wasm"}, []string{"not absolute"}},
		{"not wasm", &testrun.Plugin{Module: filepath.Join(dir, "tests", "not.wasm")}, []string{"compile module"}},
		{"symlink to a host file", &testrun.Plugin{Module: filepath.Join(dir, "tests", "evil.wasm")}, []string{"open plugin module"}},
		{"memory limit too high", &testrun.Plugin{Module: guest(t, "probe"), MemoryLimitMiB: 5000}, []string{"memory limit"}},
		{"no plugin", nil, []string{"not a plugin step"}},
	}
	for _, c := range cases {
		var out syncbuf.Buffer
		res := host(t).Run(context.Background(), testrun.Spec{Dir: dir, Plugin: c.plugin, Output: &out, Timeout: time.Minute})
		if res.Status != testrun.Errored || res.ExitCode != -1 {
			t.Errorf("%s: status %v exit %d (%q), want errored", c.name, res.Status, res.ExitCode, res.Reason)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(res.Reason, w) {
				t.Errorf("%s: reason %q lacks %q", c.name, res.Reason, w)
			}
		}
		if !strings.Contains(out.String(), "[pontus] plugin not run: ") {
			t.Errorf("%s: output lacks the marker: %q", c.name, out.String())
		}
		if strings.Contains(res.Reason, "root:") {
			t.Errorf("%s: reason leaks a host file: %q", c.name, res.Reason)
		}
	}
}

// TestConcurrentRuns hammers one host with runs of one module: each must
// pass on its own, and the module must compile once.
func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	h := newHost(t, HostConfig{})
	dir := checkout(t, map[string]string{"tests/hello.txt": "hello\n"})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			var out syncbuf.Buffer
			res := h.Run(context.Background(), testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Name: fmt.Sprint("run", i), Module: guest(t, "tapdemo")}, Output: &out, Timeout: time.Minute})
			if res.Status != testrun.Passed || len(res.Tests) != 2 {
				errs <- fmt.Errorf("run %d: status %v (%q), %d tests:\n%s", i, res.Status, res.Reason, len(res.Tests), out.String())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h.mu.Lock()
	n := len(h.modules)
	h.mu.Unlock()
	if n != 1 {
		t.Errorf("%d compiled modules after 8 runs of one module, want 1", n)
	}
	// Close stops a guest that is still running: it ends Canceled.
	running := make(chan testrun.Result, 1)
	var sleepOut syncbuf.Buffer
	go func() {
		running <- h.Run(context.Background(), testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"sleep"}}, Output: &sleepOut, Timeout: time.Hour})
	}()
	waitFor(t, "the guest to start sleeping", func() bool { return strings.Contains(sleepOut.String(), "sleeping") })
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-running:
		if res.Status != testrun.Canceled {
			t.Errorf("guest running at Close: status %v (%q), want canceled\n%s", res.Status, res.Reason, sleepOut.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("a guest running at Close did not stop within a minute")
	}
	res := h.Run(context.Background(), testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: guest(t, "tapdemo")}})
	if res.Status != testrun.Errored || !strings.Contains(res.Reason, "closed") {
		t.Errorf("run after Close: status %v (%q), want errored \"closed\"", res.Status, res.Reason)
	}
}

func TestSecretsPlugin(t *testing.T) {
	t.Parallel()
	clean := checkout(t, map[string]string{
		"README.md":        "# demo\n",
		"config/app.toml":  "[db]\npassword = \"${DB_PASSWORD}\"\n",
		"tests/hello.txt":  "hello\n",
		".git/credentials": "https://user:" + "ghp_" + strings.Repeat("Ab1", 12) + "@github.com\n",
	})
	res, out := runPlugin(t, host(t), clean, &testrun.Plugin{Name: "secrets", Module: guest(t, "secrets")}, time.Minute)
	if res.Status != testrun.Passed || len(res.Tests) != 7 {
		t.Fatalf("clean tree: status %v (%q), %d tests, want passed with 7:\n%s", res.Status, res.Reason, len(res.Tests), out)
	}

	planted := checkout(t, map[string]string{
		"README.md":         "# demo\n",
		"deploy/id_ed25519": "-----" + "BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----" + "END OPENSSH PRIVATE KEY-----\n",
		"ci/env.sh":         "export AWS_ACCESS_KEY_ID=" + "AKIA" + "Q3EGRJ5TWZ7LM2XB\n",
	})
	res, out = runPlugin(t, host(t), planted, &testrun.Plugin{Name: "secrets", Module: guest(t, "secrets")}, time.Minute)
	if res.Status != testrun.Failed || res.ExitCode != 1 {
		t.Fatalf("planted key: status %v exit %d (%q), want failed 1:\n%s", res.Status, res.ExitCode, res.Reason, out)
	}
	for _, want := range []string{"deploy/id_ed25519:1: private key block", "ci/env.sh:1: AWS access key id: AKIA****"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Q3EGRJ5TWZ7LM2XB") {
		t.Errorf("the output repeats the secret:\n%s", out)
	}
	got := outcomes(res.Tests)
	if got["private keys"] != pontusv1.TestOutcome_TEST_OUTCOME_FAILED || got["GitHub tokens"] != pontusv1.TestOutcome_TEST_OUTCOME_PASSED {
		t.Errorf("tests = %v", got)
	}
}

func TestConfigcheckPlugin(t *testing.T) {
	t.Parallel()
	dir := checkout(t, map[string]string{
		"pontus.toml":      "[runner]\ncapacity = 2\n",
		"deploy/app.toml":  "[server]\nport = 8080\nhost = \"example.org\n",
		"web/package.json": "{\"name\": \"web\"}\n",
		"tests/hello.txt":  "hello\n",
	})
	res, out := runPlugin(t, host(t), dir, &testrun.Plugin{Name: "configcheck", Module: guest(t, "configcheck")}, time.Minute)
	if res.Status != testrun.Failed {
		t.Fatalf("status %v (%q), want failed:\n%s", res.Status, res.Reason, out)
	}
	if !strings.Contains(out, "line 3, column") {
		t.Errorf("output lacks the broken line:\n%s", out)
	}
	want := map[string]pontusv1.TestOutcome{
		"deploy/app.toml":  pontusv1.TestOutcome_TEST_OUTCOME_FAILED,
		"pontus.toml":      pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
		"web/package.json": pontusv1.TestOutcome_TEST_OUTCOME_PASSED,
	}
	if got := outcomes(res.Tests); !mapsEqual(got, want) {
		t.Errorf("tests = %v, want %v", got, want)
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting a minute for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCompiledModuleEviction(t *testing.T) {
	t.Parallel()
	h := newHost(t, HostConfig{})
	h.maxCompiled = 1
	dir := checkout(t, map[string]string{"tests/hello.txt": "hello\n"})
	for _, name := range []string{"tapdemo", "probe", "tapdemo"} {
		res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, name), Args: []string{"pwd"}}, time.Minute)
		if res.Status != testrun.Passed {
			t.Fatalf("%s: status %v (%q):\n%s", name, res.Status, res.Reason, out)
		}
		h.mu.Lock()
		n := len(h.modules)
		h.mu.Unlock()
		if n != 1 {
			t.Errorf("after running %s: %d compiled modules kept, want 1", name, n)
		}
	}
}
