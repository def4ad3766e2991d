package plugins

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/testrun"
)

// BenchmarkWarmStart measures one run of a small TAP plugin whose compiled
// module is already in the host: instantiate, Go runtime start, two tests,
// teardown; with IsolationProcess in the module's warm worker process.
func BenchmarkWarmStart(b *testing.B) {
	for _, isolation := range []string{IsolationInProcess, IsolationProcess} {
		b.Run(isolation, func(b *testing.B) { benchmarkWarmStart(b, isolation) })
	}
}

func benchmarkWarmStart(b *testing.B, isolation string) {
	h := newHost(b, HostConfig{Isolation: isolation})
	dir := checkout(b, map[string]string{"tests/hello.txt": "hello\n"})
	spec := testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: guest(b, "tapdemo")}, Output: io.Discard, Timeout: time.Minute}
	if res := h.Run(context.Background(), spec); res.Status != testrun.Passed {
		b.Fatalf("warm-up: %v (%q)", res.Status, res.Reason)
	}
	for b.Loop() {
		if res := h.Run(context.Background(), spec); res.Status != testrun.Passed {
			b.Fatalf("%v (%q)", res.Status, res.Reason)
		}
	}
}

// BenchmarkColdCompile measures loading a module into a fresh host from
// the on-disk compilation cache (what a restarted runner pays once per
// module), plus the run: with the default isolation, starting the
// module's worker process, which loads it again.
func BenchmarkColdCompile(b *testing.B) {
	dir := checkout(b, map[string]string{"tests/hello.txt": "hello\n"})
	spec := testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: guest(b, "tapdemo")}, Output: io.Discard, Timeout: time.Minute}
	if res := host(b).Run(context.Background(), spec); res.Status != testrun.Passed { // fills the disk cache
		b.Fatalf("warm-up: %v (%q)", res.Status, res.Reason)
	}
	for b.Loop() {
		h, err := NewHost(context.Background(), HostConfig{CacheDir: sharedCacheDir}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if res := h.Run(context.Background(), spec); res.Status != testrun.Passed {
			b.Fatalf("%v (%q)", res.Status, res.Reason)
		}
		_ = h.Close(context.Background())
	}
}

// BenchmarkGoTestCPU runs the CPU-heavy TestFib (Fib(FIB_N=32)) of
// testdata/gomod natively and in the sandbox, in each isolation mode, and
// reports both times and their ratio ("slowdown"), each minus the same
// binary's run with the test skipped (process or instance start, Go
// runtime init).
func BenchmarkGoTestCPU(b *testing.B) {
	for _, isolation := range []string{IsolationInProcess, IsolationProcess} {
		b.Run(isolation, func(b *testing.B) { benchmarkGoTestCPU(b, isolation) })
	}
}

func benchmarkGoTestCPU(b *testing.B, isolation string) {
	const fibN = "32"
	dir := goRepo(b, "")
	native := filepath.Join(b.TempDir(), "calc.test")
	build := exec.Command("go", "test", "-c", "-o", native, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("native build: %v\n%s", err, out)
	}
	wasm := filepath.Join(b.TempDir(), "calc.wasm")
	if err := CompileGoTests(context.Background(), dir, ".", wasm, goCacheEnv(b)); err != nil {
		b.Fatal(err)
	}
	h := newHost(b, HostConfig{Isolation: isolation})

	runNative := func(env ...string) time.Duration {
		cmd := exec.Command(native, "-test.run=^TestFib$", "-test.v")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("native: %v\n%s", err, out)
		}
		return time.Since(start)
	}
	runSandbox := func(env ...string) time.Duration {
		start := time.Now()
		res := h.Run(context.Background(), testrun.Spec{Dir: dir, Env: env, Output: io.Discard, Timeout: time.Minute,
			Plugin: &testrun.Plugin{Module: wasm, WorkDir: ".", Args: []string{"-test.v=test2json", "-test.run=^TestFib$"}}})
		if res.Status != testrun.Passed {
			b.Fatalf("sandbox: %v (%q)", res.Status, res.Reason)
		}
		return time.Since(start)
	}
	runSandbox() // compile
	var nativeBase, sandboxBase time.Duration
	for range 3 {
		nativeBase += runNative() / 3
		sandboxBase += runSandbox() / 3
	}
	var nativeFib, sandboxFib time.Duration
	n := 0
	for b.Loop() {
		nativeFib += runNative("FIB_N=" + fibN)
		sandboxFib += runSandbox("FIB_N=" + fibN)
		n++
	}
	nativeMs := float64(nativeFib/time.Duration(n)-nativeBase) / 1e6
	sandboxMs := float64(sandboxFib/time.Duration(n)-sandboxBase) / 1e6
	b.ReportMetric(nativeMs, "native-ms")
	b.ReportMetric(sandboxMs, "sandbox-ms")
	b.ReportMetric(sandboxMs/nativeMs, "slowdown")
	b.ReportMetric(float64(nativeBase)/1e6, "native-start-ms")
	b.ReportMetric(float64(sandboxBase)/1e6, "sandbox-start-ms")
}
