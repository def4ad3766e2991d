package runnerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"connectrpc.com/connect"
	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/plugins"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	def := DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.ControlPlane = "ftp://x" }, "runner.controlplane"},
		{func(c *Config) { c.Workdir = "" }, "runner.workdir"},
		{func(c *Config) { c.Name = "bad\x00name" }, "runner.name"},
		{func(c *Config) { c.Labels = []string{"ok", "-bad"} }, "runner.labels[1]"},
		{func(c *Config) { c.Capacity = 0 }, "runner.capacity"},
		{func(c *Config) { c.Timeout = 0 }, "runner.timeout"},
		{func(c *Config) { c.KillGrace = -time.Second }, "runner.kill_grace"},
		{func(c *Config) { c.OutputLimitMiB = 0 }, "runner.output_limit_mib"},
		{func(c *Config) { c.TestCommand = "a\x00b" }, "runner.test_command"},
		{func(c *Config) { c.StepUser = "root" }, "runner.step_user"},
		{func(c *Config) { c.StepUser = "" }, "runner.step_user"},
	} {
		c := DefaultConfig()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("want an error naming %s, got %v", tc.want, err)
		}
		if _, err := New(c, nil); err == nil {
			t.Errorf("New accepted a config with a bad %s", tc.want)
		}
	}
}

func TestStepEnv(t *testing.T) {
	t.Parallel()
	environ := []string{"HOME=/home/ci", "PONTUS_RUNNER_TOKEN=x", "PONTUS_OBSERVER_TOKEN=y", "PONTUS_USER_TOKEN=z",
		"PONTUS_CONFIG=/etc/pontus.toml", "PONTUS=1", "CI=", "GOCACHE=/cache", "PATH=/bin", "PYTHONUNBUFFERED=0"}
	job := &pontusv1.Job{Commit: strings.Repeat("a", 40), Branch: "main", BuildId: 7, Attempt: 2, Repo: "/src/demo"}
	got := stepEnv(environ, job, []string{"PYTHONUNBUFFERED=1", "EXTRA=1"})
	want := []string{"HOME=/home/ci", "GOCACHE=/cache", "PATH=/bin", "PYTHONUNBUFFERED=0",
		"CI=true", "PONTUS=true", "PONTUS_COMMIT=" + job.Commit, "PONTUS_BRANCH=main", "PONTUS_BUILD_ID=7",
		"PONTUS_JOB_ATTEMPT=2", "PONTUS_REPO=/src/demo", "EXTRA=1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stepEnv (-want +got):\n%s", diff)
	}
}

func TestTestStep(t *testing.T) {
	t.Parallel()
	write := func(dir string, files ...string) string {
		for _, f := range files {
			p := filepath.Join(dir, f)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte("x"), 0o644)
		}
		return dir
	}
	for _, tc := range []struct {
		files []string
		want  []string
	}{
		{[]string{"tests/test_a.py", "go.mod", "tests/a_test.go"}, []string{"python3", "-m", "unittest", "discover", "-s", "tests", "-v"}},
		{[]string{"go.mod", "tests/a_test.go"}, []string{"go", "test", "-v", "./tests/..."}},
		{[]string{"tests/a_test.go"}, nil},
		{[]string{"go.mod", "tests/a.go"}, nil},
		{[]string{"test_a.py", "tests/README"}, nil},
		{[]string{"tests/sub.py/x"}, nil},
	} {
		st, ok := detectTests(write(t.TempDir(), tc.files...))
		if ok != (tc.want != nil) || !slices.Equal(st.argv, tc.want) {
			t.Errorf("%v: got %v %v, want %v", tc.files, st.argv, ok, tc.want)
		}
	}
}

func TestStoredSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err error
		n   int64
		ok  bool
	}{
		{connect.NewError(connect.CodeOutOfRange, errors.New("offset 90 beyond the end: stored size 42")), 42, true},
		{connect.NewError(connect.CodeOutOfRange, errors.New("log incomplete (stored size 7 of 9)")), 7, true},
		{connect.NewError(connect.CodeOutOfRange, errors.New("log incomplete")), 0, false},
		{errors.New("stored size 99999999999999999999999"), 0, false},
	} {
		if n, ok := storedSize(tc.err); n != tc.n || ok != tc.ok {
			t.Errorf("%v: %d %v, want %d %v", tc.err, n, ok, tc.n, tc.ok)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	msg := "git clone: fatal: repository 'https://bot:tok3n@git.example.com/r.git/' not found (https://bot:tok3n@git.example.com/r.git)"
	got := redact(msg, "https://bot:tok3n@git.example.com/r.git")
	if strings.Contains(got, "tok3n") || strings.Contains(got, "bot:") {
		t.Errorf("redact: %s", got)
	}
	if got := redact("plain /srv/r.git", "/srv/r.git"); got != "plain /srv/r.git" {
		t.Errorf("redact: %s", got)
	}
}

func TestTrimTests(t *testing.T) {
	t.Parallel()
	var tests []*pontusv1.TestCase
	for i := range 100 {
		tests = append(tests, &pontusv1.TestCase{Name: fmt.Sprint(i), Output: strings.Repeat("x", 100<<10)})
	}
	tests = append(tests, nil, &pontusv1.TestCase{})
	got := trimTests(tests)
	total := 0
	for _, tc := range got {
		total += len(tc.Output) + len(tc.Message)
	}
	if len(got) != 100 || total > maxTestsOutput || len(got[0].Output) > maxTestText+len("…") {
		t.Errorf("%d tests, %d bytes of text, first output %d bytes", len(got), total, len(got[0].Output))
	}

	// Too many: failures are kept, and the list fits a message.
	tests = nil
	for i := range 150000 {
		o := pontusv1.TestOutcome_TEST_OUTCOME_PASSED
		if i%1000 == 999 {
			o = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
		}
		tests = append(tests, &pontusv1.TestCase{Name: fmt.Sprintf("TestNumber%06d/with_a_longish_subtest_name", i), Outcome: o})
	}
	got = trimTests(tests)
	failures := 0
	for _, tc := range got {
		if tc.Outcome == pontusv1.TestOutcome_TEST_OUTCOME_FAILED {
			failures++
		}
	}
	size := proto.Size(&pontusv1.CompleteJobRequest{Tests: got})
	if len(got) > maxTests || size > maxTestsBytes+1<<10 || failures != 150 || len(got) < 50000 {
		t.Errorf("kept %d tests (%d failures) in %d bytes", len(got), failures, size)
	}
}

// retry waits bo.Next() between failures: 50–100 ms, 100–200 ms, 200–400 ms…
// up to 5 s, and stops at once when its context ends.
func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var at []time.Duration
		err := retry(t.Context(), dial.NewBackoff(backoffMin, backoffMax), func(context.Context) error {
			at = append(at, time.Since(start))
			if len(at) < 10 {
				return errors.New("unavailable")
			}
			return nil
		}, nil)
		if err != nil || len(at) != 10 {
			t.Fatalf("retry: %v after %d calls", err, len(at))
		}
		for i := 1; i < len(at); i++ {
			d := min(backoffMin<<(i-1), backoffMax)
			if gap := at[i] - at[i-1]; gap < d/2 || gap > d {
				t.Errorf("wait %d was %v, want %v–%v", i, gap, d/2, d)
			}
		}

		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		go func() { time.Sleep(time.Minute); cancel() }()
		err = retry(ctx, dial.NewBackoff(backoffMin, backoffMax), func(context.Context) error { calls++; return errors.New("down") }, nil)
		if !errors.Is(err, context.Canceled) || time.Since(start) > at[9]+time.Minute+time.Millisecond {
			t.Errorf("retry after cancel: %v at %v", err, time.Since(start))
		}
		// A minute of 5 s waits (after the first few short ones) is 12–24 calls.
		if calls < 12 || calls > 30 {
			t.Errorf("%d calls in a minute", calls)
		}
	})
}

// The heartbeater sends nothing while idle, one heartbeat every interval
// ±20 % while jobs are held (naming them), retries failures with backoff
// without waiting longer than an interval, and stops when idle again.
func TestHeartbeatTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const iv = 2 * time.Second
		var mu sync.Mutex
		var held []*pontusv1.JobRef
		var beats []time.Time
		var sent [][]*pontusv1.JobRef
		failing := false
		changed := make(chan struct{}, 1)
		h := &heartbeater{
			interval: func() time.Duration { return iv },
			held: func() []*pontusv1.JobRef {
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(held)
			},
			changed: changed,
			beat: func(_ context.Context, refs []*pontusv1.JobRef) error {
				mu.Lock()
				defer mu.Unlock()
				beats = append(beats, time.Now())
				sent = append(sent, refs)
				if failing {
					return errors.New("unavailable")
				}
				return nil
			},
			logger: slog.New(slog.DiscardHandler),
		}
		setHeld := func(refs ...*pontusv1.JobRef) {
			mu.Lock()
			held = refs
			mu.Unlock()
			select {
			case changed <- struct{}{}:
			default:
			}
		}
		count := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(beats)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { h.run(ctx); close(done) }()

		time.Sleep(time.Hour)
		if n := count(); n != 0 {
			t.Fatalf("%d heartbeats while idle", n)
		}

		busy := time.Now()
		setHeld(&pontusv1.JobRef{JobId: 1, Attempt: 1}, &pontusv1.JobRef{JobId: 2, Attempt: 3})
		time.Sleep(20*iv + iv/2)
		mu.Lock()
		if len(beats) < 17 || len(beats) > 25 {
			t.Errorf("%d heartbeats in %v at interval %v", len(beats), 20*iv, iv)
		}
		prev := busy
		for i, b := range beats {
			if gap := b.Sub(prev); gap < iv*8/10 || gap > iv*12/10 {
				t.Errorf("heartbeat %d came %v after the last, want %v ±20%%", i, gap, iv)
			}
			prev = b
		}
		if len(sent[0]) != 2 || sent[0][1].GetAttempt() != 3 {
			t.Errorf("heartbeat named %v", sent[0])
		}
		failing = true
		n := len(beats)
		mu.Unlock()

		// Failures are retried sooner than the interval, with growing waits.
		time.Sleep(iv*12/10 + iv)
		mu.Lock()
		if retries := len(beats) - n - 1; retries < 3 {
			t.Errorf("%d retries within %v of a failed heartbeat", retries, iv)
		}
		for i := n + 1; i < len(beats); i++ {
			if gap := beats[i].Sub(beats[i-1]); gap > iv*12/10 {
				t.Errorf("retry waited %v, longer than an interval", gap)
			}
		}
		failing = false
		mu.Unlock()

		setHeld()
		time.Sleep(iv * 2)
		synctest.Wait()
		n = count()
		time.Sleep(time.Hour)
		if count() != n {
			t.Errorf("heartbeats went on while idle: %d then %d", n, count())
		}
		cancel()
		<-done
	})
}

// Output is sent within a second of being written, at once when a chunk
// fills or the runner writes a line of its own; the log arrives whole.
func TestLogStreamFlushing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []byte
		var at []time.Time
		appendLog := func(_ context.Context, req *pontusv1.AppendLogRequest) (*pontusv1.AppendLogResponse, error) {
			mu.Lock()
			defer mu.Unlock()
			if req.Offset != int64(len(got)) {
				return nil, connect.NewError(connect.CodeOutOfRange, fmt.Errorf("stored size %d", len(got)))
			}
			if len(req.Data) > logChunk {
				t.Errorf("chunk of %d bytes", len(req.Data))
			}
			got = append(got, req.Data...)
			at = append(at, time.Now())
			return &pontusv1.AppendLogResponse{Size: int64(len(got))}, nil
		}
		calls := func() int { mu.Lock(); defer mu.Unlock(); return len(at) }
		s := newLogStream(appendLog, jobKey{1, 1}, 1<<20, slog.New(slog.DiscardHandler), nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()

		s.Printf("[pontus: header]")
		synctest.Wait()
		if calls() != 1 {
			t.Fatalf("the header was not sent at once: %d calls", calls())
		}
		out := s.Output()
		start := time.Now()
		io.WriteString(out, "a little output\n")
		time.Sleep(logFlushEvery - time.Millisecond)
		synctest.Wait()
		if calls() != 1 {
			t.Errorf("small output sent before the flush interval")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if calls() != 2 {
			t.Fatalf("small output not sent after %v: %d calls", time.Since(start), calls())
		}
		out.Write(make([]byte, logChunk+10))
		synctest.Wait()
		if calls() != 3 {
			t.Errorf("a full chunk was not sent at once: %d calls", calls())
		}
		out.Write(make([]byte, 2<<20)) // beyond the 1 MiB cap
		s.EndOutput()
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if !slices.Equal(got, s.Bytes()) || s.Dropped() != int64(logChunk+10+2<<20-(1<<20-len("a little output\n"))) {
			t.Errorf("got %d bytes of %d; dropped %d", len(got), s.Size(), s.Dropped())
		}
		mu.Unlock()
		if !strings.HasSuffix(string(s.Bytes()), fmt.Sprintf("\x00\n[pontus: output truncated: %d bytes dropped]\n", s.Dropped())) {
			t.Errorf("log ends %q", tail(s.Bytes()))
		}
		cancel()
		<-done
	})
}

// A stale attempt stops the stream and tells the job.
func TestLogStreamStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		appendLog := func(context.Context, *pontusv1.AppendLogRequest) (*pontusv1.AppendLogResponse, error) {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("attempt 1 is stale"))
		}
		dead := make(chan error, 1)
		s := newLogStream(appendLog, jobKey{1, 1}, 1<<20, slog.New(slog.DiscardHandler), func(err error) { dead <- err })
		go s.Run(t.Context())
		s.Printf("header")
		if err := s.Flush(t.Context()); !errors.Is(err, errStale) {
			t.Errorf("flush: %v", err)
		}
		if err := <-dead; !errors.Is(err, errStale) {
			t.Errorf("onDead: %v", err)
		}
	})
}

// Hammer: writers, rewinds and flushes at once, against a control plane
// that now and then forgets the tail of the log; the log arrives whole.
func TestLogStreamHammer(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var stored []byte
	calls := 0
	appendLog := func(_ context.Context, req *pontusv1.AppendLogRequest) (*pontusv1.AppendLogResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls%7 == 0 && len(stored) > 100 {
			stored = stored[:len(stored)-100]
		}
		if req.Offset > int64(len(stored)) {
			return nil, connect.NewError(connect.CodeOutOfRange, fmt.Errorf("stored size %d", len(stored)))
		}
		if end := req.Offset + int64(len(req.Data)); end > int64(len(stored)) {
			stored = append(stored, req.Data[int64(len(stored))-req.Offset:]...)
		}
		return &pontusv1.AppendLogResponse{Size: int64(len(stored))}, nil
	}
	s := newLogStream(appendLog, jobKey{1, 1}, 1<<30, slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.Run(ctx)
	out := s.Output()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				fmt.Fprintf(out, "writer %d line %d\n", w, i)
				if i%500 == 0 {
					s.Rewind(int64(i))
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if err := s.Flush(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	s.EndOutput()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(stored, s.Bytes()) || strings.Count(string(stored), "\n") != 8*2000 {
		t.Errorf("stored %d bytes, %d lines; the stream holds %d", len(stored), strings.Count(string(stored), "\n"), s.Size())
	}
}

// The [runner] table decodes into Config; durations are strings.
func TestConfigTOML(t *testing.T) {
	t.Parallel()
	const doc = `
controlplane = "https://ci.example.com"
token_file = "/etc/pontus/runner.token"
workdir = "/var/lib/pontus"
name = "build-1"
labels = ["linux", "pool=big"]
capacity = 4
test_command = "make test"
timeout = "15m"
kill_grace = "10s"
output_limit_mib = 16
junit = ["reports/*.xml"]
allow_repo_config = true
`
	cfg := DefaultConfig()
	md, err := toml.Decode(doc, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if u := md.Undecoded(); len(u) != 0 {
		t.Errorf("undecoded keys: %v", u)
	}
	want := Config{ControlPlane: "https://ci.example.com", TokenFile: "/etc/pontus/runner.token", Workdir: "/var/lib/pontus",
		Name: "build-1", Labels: []string{"linux", "pool=big"}, Capacity: 4, TestCommand: "make test",
		Timeout: 15 * time.Minute, KillGrace: 10 * time.Second, OutputLimitMiB: 16, JUnit: []string{"reports/*.xml"}, AllowRepoConfig: true, StepUser: DefaultStepUser,
		Native: true, WASM: true, WASMMemoryLimitMiB: DefaultWASMMemoryLimitMiB, WASMIsolation: plugins.IsolationProcess}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("decoded config (-want +got):\n%s", diff)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
	if _, err := toml.Decode(`token = "x"`, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "" {
		t.Error("the token was read from the TOML")
	}
}

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"**/TEST-*.xml", "TEST-a.xml", true},
		{"**/TEST-*.xml", "target/surefire-reports/TEST-a.xml", true},
		{"**/junit*.xml", "junit.xml", true},
		{"**/junit*.xml", "out/junit-report.xml", true},
		{"**/test-results/**/*.xml", "build/test-results/test/TEST-x.xml", true},
		{"**/test-results/**/*.xml", "test-results/x.xml", true},
		{"**/TEST-*.xml", "TEST-a.json", false},
		{"reports/*.xml", "reports/a.xml", true},
		{"reports/*.xml", "reports/sub/a.xml", false},
	} {
		if got := matchGlob(tc.pattern, tc.name); got != tc.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestJUnitReportsInCheckout(t *testing.T) {
	dir := t.TempDir()
	report := `<?xml version="1.0"?><testsuite name="s"><testcase classname="a.B" name="ok" time="0.1"/>` +
		`<testcase classname="a.B" name="bad"><failure message="boom">trace</failure></testcase></testsuite>`
	if err := os.MkdirAll(filepath.Join(dir, "target", "surefire-reports"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "target", "surefire-reports", "TEST-a.B.xml"), []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	// A symlink to a report outside the checkout is not followed.
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "junit-evil.xml")); err != nil {
		t.Fatal(err)
	}
	tests := junitTests(dir, DefaultJUnit())
	if len(tests) != 2 || tests[0].Name == "" || tests[0].Outcome != pontusv1.TestOutcome_TEST_OUTCOME_FAILED || tests[0].Message != "boom" {
		t.Fatalf("junit tests: %v", tests)
	}
	if junitTests(dir, nil) != nil {
		t.Fatal("no patterns should find nothing")
	}
}

func TestAllowedRepository(t *testing.T) {
	pats := []string{"https://git.example.com/team/*", "/srv/git/**"}
	for url, want := range map[string]bool{
		"https://git.example.com/team/app":       true,
		"https://git.example.com/team/app/extra": false,
		"https://git.example.com/other/app":      false,
		"/srv/git/a/b.git":                       true,
		"/srv/gitx/a":                            false,
		"/etc":                                   false,
	} {
		if got := allowedRepository(url, pats); got != want {
			t.Errorf("allowedRepository(%q) = %v, want %v", url, got, want)
		}
	}
	if !allowedRepository("/anything", nil) {
		t.Error("no patterns should allow every repository")
	}
}
