package plugins

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
	"github.com/tetratelabs/wazero/sys"

	"github.com/pontus-ci/pontus/internal/testrun"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	live := context.Background()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	hostClosed, closeHost := context.WithCancelCause(context.Background())
	closeHost(errHostClosed)
	trap := errors.New("wasm error: unreachable\nwasm stack trace:\n\tmain.main()")
	const limit = 64 << 20

	cases := []struct {
		name        string
		ctx, runCtx context.Context
		err         error
		tail        string
		mem         uint64
		want        testrun.Result
	}{
		{"returned", live, live, nil, "", 0, testrun.Result{Status: testrun.Passed}},
		{"exit 0", live, live, sys.NewExitError(0), "", 0, testrun.Result{Status: testrun.Passed}},
		{"exit 1", live, live, sys.NewExitError(1), "FAIL\n", 0, testrun.Result{Status: testrun.Failed, ExitCode: 1}},
		{"go panic", live, live, sys.NewExitError(2), "panic: boom\n", 0, testrun.Result{Status: testrun.Failed, ExitCode: 2}},
		{"go out of memory", live, live, sys.NewExitError(2), "runtime: out of memory: cannot allocate\nfatal error: out of memory\n", 0,
			testrun.Result{Status: testrun.Errored, ExitCode: 2, Reason: "out of memory"}},
		{"go panic mentioning memory", live, live, sys.NewExitError(2), "panic: open out of memory.txt: no such file\n", 0,
			testrun.Result{Status: testrun.Failed, ExitCode: 2}},
		{"worker out of memory", live, live, &workerOutOfMemory{errors.New("worker process exit status 2: out of memory: cannot allocate 536870912-byte block (36995072 in use)")}, "", 0,
			testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: "out of memory"}},
		{"worker died otherwise", live, live, errors.New("worker process exit status 2: runtime/cgo: pthread_create failed: Resource temporarily unavailable"), "", 0,
			testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: "crashed: worker process exit status 2: runtime/cgo: pthread_create failed: Resource temporarily unavailable"}},
		{"worker panic mentioning memory", live, live, errors.New("worker process exit status 2: panic: out of memory.txt"), "", 0,
			testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: "crashed: worker process exit status 2: panic: out of memory.txt"}},
		{"go test timeout", live, live, sys.NewExitError(2), "panic: test timed out after 9s\n\trunning tests:\n", 0,
			testrun.Result{Status: testrun.TimedOut, ExitCode: 2, Reason: "timed out: test timed out after 9s"}},
		{"deadline exit code", live, expired, sys.NewExitError(sys.ExitCodeDeadlineExceeded), "", 0,
			testrun.Result{Status: testrun.TimedOut, ExitCode: -1, Reason: "timed out after 2s"}},
		{"canceled exit code", canceled, canceled, sys.NewExitError(sys.ExitCodeContextCanceled), "", 0,
			testrun.Result{Status: testrun.Canceled, ExitCode: -1, Reason: "canceled"}},
		{"guest exits with the deadline's code itself", live, live, sys.NewExitError(sys.ExitCodeDeadlineExceeded), "", 0,
			testrun.Result{Status: testrun.Failed, ExitCode: int(sys.ExitCodeDeadlineExceeded)}},
		{"guest exits with the cancellation's code itself", live, live, sys.NewExitError(sys.ExitCodeContextCanceled), "", 0,
			testrun.Result{Status: testrun.Failed, ExitCode: int(sys.ExitCodeContextCanceled)}},
		{"host closed", hostClosed, hostClosed, sys.NewExitError(sys.ExitCodeContextCanceled), "", 0,
			testrun.Result{Status: testrun.Canceled, ExitCode: -1, Reason: "plugin host closed (runner stopping)"}},
		{"trap", live, live, trap, "", 1 << 20, testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: "crashed: wasm error: unreachable"}},
		{"trap at the memory cap", live, live, trap, "", limit - 1<<20, testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: "out of memory"}},
		{"trap after the deadline", live, expired, trap, "", 0, testrun.Result{Status: testrun.TimedOut, ExitCode: -1, Reason: "timed out after 2s"}},
	}
	for _, c := range cases {
		got := classify(c.ctx, c.runCtx, c.err, []byte(c.tail), c.mem, limit, 2*time.Second, 3*time.Second)
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestCapWriter(t *testing.T) {
	t.Parallel()
	var dst strings.Builder
	w := &capWriter{dst: &dst, limit: 10}
	for _, s := range []string{"hello ", "world, ", "this is dropped"} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want all of it, no error", s, n, err)
		}
	}
	kept, dropped, tail := w.result()
	if string(kept) != "hello worl" || dropped != 18 || string(tail) != "hello world, this is dropped" {
		t.Errorf("kept %q dropped %d tail %q", kept, dropped, tail)
	}
	w.marker("note %d", 1)
	if dst.String() != "hello worl\n[pontus] note 1\n" {
		t.Errorf("forwarded %q", dst.String())
	}
	if got := formatBytes(100_000_000 - 1<<20); got != "94.4 MiB (98951424 bytes)" {
		t.Errorf("formatBytes = %q", got)
	}
}

func TestParseImports(t *testing.T) {
	t.Parallel()
	wasi, err := os.ReadFile(guest(t, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	imps, _, err := parseModule(wasi)
	if err != nil || len(imps) == 0 {
		t.Fatalf("probe imports: %v, %v", imps, err)
	}
	if err := checkWasm(wasi); err != nil {
		t.Errorf("probe refused: %v", err)
	}
	bad, err := os.ReadFile(guest(t, "badimport"))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkWasm(bad); err == nil || !strings.Contains(err.Error(), `function "host_secret" from module "env"`) {
		t.Errorf("badimport: %v", err)
	}
	component := []byte("\x00asm\x0d\x00\x01\x00")
	if err := checkWasm(component); !errors.Is(err, errComponent) {
		t.Errorf("component: %v", err)
	}
	for _, junk := range [][]byte{nil, []byte("\x00asm"), []byte("\x00asm\x01\x00\x00\x00\x02\xff"), []byte("\x00asm\x01\x00\x00\x00\x02\x05\x01\x09ab")} {
		if err := checkWasm(junk); err != nil {
			t.Errorf("checkWasm(%q) = %v; unparsable bytes are left to the compiler", junk, err)
		}
	}
}

func TestStepConfig(t *testing.T) {
	t.Parallel()
	var file struct {
		Plugin []StepConfig `toml:"plugins"`
	}
	_, err := toml.Decode(`
[[plugins]]
name = "secrets"
module = "/opt/pontus/secrets.wasm"
args = ["-skip-dirs", "testdata"]
env = { LOG_LEVEL = "debug" }
timeout = "2m"
memory_limit_mib = 256

[[plugins]]
name = "go tests"
go_tests = true
workdir = "tests"
`, &file)
	if err != nil {
		t.Fatal(err)
	}
	want := []StepConfig{
		{Name: "secrets", Module: "/opt/pontus/secrets.wasm", Args: []string{"-skip-dirs", "testdata"}, Env: map[string]string{"LOG_LEVEL": "debug"}, Timeout: 2 * time.Minute, MemoryLimitMiB: 256},
		{Name: "go tests", GoTests: true, WorkDir: "tests"},
	}
	if diff := cmp.Diff(want, file.Plugin); diff != "" {
		t.Fatalf("decoded (-want +got):\n%s", diff)
	}
	for _, c := range file.Plugin {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%s): %v", c.Name, err)
		}
	}
	p := want[0].Plugin("/checkout")
	if p.Module != "/opt/pontus/secrets.wasm" || p.MemoryLimitMiB != 256 {
		t.Errorf("Plugin() = %+v", p)
	}
	repo := StepConfig{Name: "lint", Module: "tools/lint.wasm"}
	if err := repo.ValidateInRepo(); err != nil {
		t.Errorf("ValidateInRepo: %v", err)
	}
	if p := repo.Plugin("/checkout"); p.Module != "/checkout/tools/lint.wasm" {
		t.Errorf("repo Plugin().Module = %q", p.Module)
	}
	if got := (StepConfig{Env: map[string]string{"B": "2", "A": "1"}}).EnvList(); strings.Join(got, " ") != "A=1 B=2" {
		t.Errorf("EnvList = %q", got)
	}

	good := StepConfig{Name: "x", Module: "/x.wasm"}
	bad := []struct {
		field  string
		mutate func(c *StepConfig)
		inRepo bool
	}{
		{"name", func(c *StepConfig) { c.Name = "" }, false},
		{"module", func(c *StepConfig) { c.Module = "" }, false},
		{"module", func(c *StepConfig) { c.Module = "rel/x.wasm" }, false},
		{"module", func(c *StepConfig) { c.Module = "/x.txt" }, false},
		{"module", func(c *StepConfig) { c.Module = "/abs/x.wasm" }, true},
		{"module", func(c *StepConfig) { c.Module = "../x.wasm" }, true},
		{"module", func(c *StepConfig) { c.GoTests = true }, false},
		{"args[1]", func(c *StepConfig) { c.Args = []string{"ok", "nul\x00"} }, false},
		{"env.lower", func(c *StepConfig) { c.Env = map[string]string{"lower": "x"} }, false},
		{"env.1X", func(c *StepConfig) { c.Env = map[string]string{"1X": "x"} }, false},
		{"env.PONTUS_RUNNER_TOKEN", func(c *StepConfig) { c.Env = map[string]string{"PONTUS_RUNNER_TOKEN": "x"} }, false},
		{"env.PONTUS_API_KEY", func(c *StepConfig) { c.Env = map[string]string{"PONTUS_API_KEY": "x"} }, false},
		{"env.HOME", func(c *StepConfig) { c.Env = map[string]string{"HOME": "/root"} }, false},
		{"workdir", func(c *StepConfig) { c.WorkDir = "../up" }, false},
		{"workdir", func(c *StepConfig) { c.WorkDir = "/abs" }, false},
		{"memory_limit_mib", func(c *StepConfig) { c.MemoryLimitMiB = 5000 }, false},
		{"memory_limit_mib", func(c *StepConfig) { c.MemoryLimitMiB = -1 }, false},
		{"timeout", func(c *StepConfig) { c.Timeout = -time.Second }, false},
	}
	for _, b := range bad {
		c := good
		if b.inRepo {
			c.Module = "x.wasm"
		}
		b.mutate(&c)
		validate := c.Validate
		if b.inRepo {
			validate = c.ValidateInRepo
		}
		err := validate()
		if err == nil || !strings.HasPrefix(err.Error(), b.field+": ") {
			t.Errorf("%+v: error %v, want one naming %q", c, err, b.field)
		}
	}
	if err := (StepConfig{Name: "ci", Module: "/x.wasm", Env: map[string]string{"PONTUS_COMMIT": "x", "CI": "true"}}).Validate(); err != nil {
		t.Errorf("CI metadata refused: %v", err)
	}
}

func TestHostConfig(t *testing.T) {
	t.Parallel()
	if err := DefaultHostConfig().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	for field, c := range map[string]HostConfig{
		"cache_dir":        {CacheDir: "relative"},
		"memory_limit_mib": {MemoryLimitMiB: 4097},
		"output_limit_mib": {OutputLimitMiB: -1},
		"max_open_files":   {MaxOpenFiles: -1},
		"tmp_limit_mib":    {TmpLimitMiB: 1<<20 + 1},
		"tmp_max_files":    {TmpMaxFiles: -5},
		"cache_limit_mib":  {CacheLimitMiB: -1},
		"cache_max_age":    {CacheMaxAge: time.Minute},
	} {
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), field+": ") {
			t.Errorf("%+v: %v, want an error naming %s", c, err, field)
		}
		if _, err := NewHost(context.Background(), c, nil); err == nil {
			t.Errorf("NewHost(%+v) accepted it", c)
		}
	}

	dir := filepath.Join(t.TempDir(), "cache")
	h, err := NewHost(context.Background(), HostConfig{CacheDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("cache dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	subs, _ := filepath.Glob(filepath.Join(dir, "wazero-*"))
	if len(subs) != 1 {
		t.Errorf("cache subdirectories %q, want one per wazero version", subs)
	} else {
		t.Logf("cache dir %s", filepath.Base(subs[0]))
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHost(context.Background(), HostConfig{CacheDir: open}, nil); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable cache dir: %v", err)
	}
}
