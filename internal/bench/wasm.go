package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/pontus-ci/pontus/internal/testrun"
	"github.com/pontus-ci/pontus/plugins"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// WasmConfig configures Wasm.
type WasmConfig struct {
	// Runs is how many warm runs of the tiny plugin are timed after the
	// first (cold) one.
	Runs int
	// FibRuns is how many times the CPU-bound Go test runs natively and
	// (warm) in the sandbox for the slowdown, and the empty Go test for its
	// warm start; 0 skips the Go test module and the figures that go with
	// it (and the need for a go command).
	FibRuns int
	// TempDir is where the bench's temporary directory goes ("" = the
	// system's).
	TempDir string
}

// DefaultWasmConfig returns 100 warm runs of the tiny plugin and 11 runs
// of the Go tests each way.
func DefaultWasmConfig() WasmConfig { return WasmConfig{Runs: 100, FibRuns: 11} }

// Validate checks the configuration, naming the flag that is wrong.
func (c *WasmConfig) Validate() error {
	var errs []error
	if c.Runs < 1 || c.Runs > 100000 {
		errs = append(errs, fmt.Errorf("--runs: must be between 1 and 100000, got %d", c.Runs))
	}
	if c.FibRuns < 0 || c.FibRuns > 1000 {
		errs = append(errs, fmt.Errorf("--fib-runs: must be between 0 and 1000 (0 skips the Go test), got %d", c.FibRuns))
	}
	return errors.Join(errs...)
}

// tapOutput is what the tiny plugin prints.
const tapOutput = "TAP version 14\n1..1\nok 1 - warm start\n"

// The Go test the slowdown is measured on: fib(fibN) computed by naive
// recursion (about 7 million calls, 10-20 ms natively on a current x86-64
// core), pure CPU with no allocation and no system calls, so the ratio is
// the compiled code's. Go's wasm code makes every call and loop costly, so
// this is near the worst case for the sandbox.
const (
	fibN    = 32
	fibWant = 2178309
)

// hogLimitMiB is the memory cap of the run that allocates hogAllocMiB: it
// must end out of memory with the host's RSS growing by about the cap, not
// by what the guest asked for.
const (
	hogLimitMiB = 64
	hogAllocMiB = 128
)

// fibTest returns the test package of the benchfib module,
// tests/fib_test.go.
func fibTest() string {
	return fmt.Sprintf(`package tests

import (
	"testing"
	"time"
)

// n is a variable so that the compiler cannot fold the call.
var n = %d

func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

func TestFib(t *testing.T) {
	if got := fib(n); got != %d {
		t.Fatalf("fib(%%d) = %%d, want %d", n, got)
	}
}

// TestEmpty does nothing: its run is the module's start-up.
func TestEmpty(t *testing.T) {}

// TestSpin spins until it is killed.
func TestSpin(t *testing.T) {
	for n := 0; ; n++ {
		if n < 0 {
			t.Log(n)
		}
	}
}

// TestSleep sleeps until it is killed.
func TestSleep(t *testing.T) {
	time.Sleep(24 * time.Hour)
}

// TestAlloc touches %d MiB in 8 MiB chunks it keeps: under a smaller
// memory cap it must end out of memory.
func TestAlloc(t *testing.T) {
	var keep [][]byte
	for i := 0; i < %d/8; i++ {
		b := make([]byte, 8<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i) // make every page resident
		}
		keep = append(keep, b)
	}
	t.Logf("allocated %%d MiB", len(keep)*8)
}
`, fibN, fibWant, fibWant, hogAllocMiB, hogAllocMiB)
}

// fibArgs are the test binary's arguments on both sides: the ones
// Host.RunGoTests gives (so the sandbox run is the production one) and the
// tests to run (a -test.run pattern).
func fibArgs(run string, timeout time.Duration) []string {
	return append(plugins.GoTestArgs(timeout), "-test.run="+run, "-test.count=1")
}

// runTimeout bounds one run of a test binary, either side.
const runTimeout = 2 * time.Minute

// stopTimeout is the deadline of the spinning and the sleeping guest.
const stopTimeout = 2 * time.Second

// Wasm measures the plugins host with the runner's default configuration
// (plugins.DefaultHostConfig: guests in warm worker processes), from this
// process:
//
//   - the warm start of a tiny TAP test plugin: the whole Host.Run of a
//     module already compiled (read and hash the module, open the checkout,
//     run it in its warm worker with the sandbox's mounts, parse the TAP),
//     first once cold (compiling, starting the worker) and then Runs times
//     warm; and its worker's memory;
//   - with FibRuns > 0, the slowdown of a CPU-bound Go test (TestFib): the
//     package is compiled natively with `go test -c` and for the sandbox
//     with plugins.CompileGoTests, then the native binary runs FibRuns
//     times and the wasm one, in the host, once cold (wazero compiles it to
//     machine code) and FibRuns times warm; medians of whole runs compared,
//     and the same binary timed in a bare wazero runtime (no deadline
//     checks, cap or mounts) to show what the host's configuration adds;
//   - the warm start of the same module running only an empty test
//     (FibRuns times after its first run), and its worker's memory;
//   - how long after a stopTimeout deadline a spinning and a sleeping test
//     are stopped;
//   - the host's memory: this process's RSS after the runs, its peak growth
//     during the warm sandbox runs, and the peak growth while a guest
//     capped at hogLimitMiB tries to allocate hogAllocMiB (it must end out
//     of memory).
//
// The Go test needs the go command on PATH. The first wasip1 build of the
// standard library on a machine fills the Go build cache (tens of seconds);
// later runs reuse it.
func Wasm(ctx context.Context, cfg WasmConfig, logger *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FibRuns > 0 {
		if _, err := exec.LookPath("go"); err != nil {
			return nil, fmt.Errorf("the go command is not on PATH (%w): this bench compiles a Go test package natively and for wasip1 to compare them; install Go, or pass --fib-runs 0 to time only the warm start", err)
		}
	}
	tmp, err := os.MkdirTemp(cfg.TempDir, "pontus-bench-wasm-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	hostCfg := plugins.DefaultHostConfig()
	// An on-disk cache lets the capped run (another memory limit, so
	// another compiled module) load the machine code instead of compiling
	// the test binary again.
	hostCfg.CacheDir = filepath.Join(tmp, "cache")
	host, err := plugins.NewHost(ctx, hostCfg, daemonLogger(logger, "plugins"))
	if err != nil {
		return nil, err
	}
	defer host.Close(context.WithoutCancel(ctx))

	r := &Result{}
	warm, cold, err := warmStart(ctx, host, tmp, cfg.Runs, logger)
	if err != nil {
		return nil, err
	}
	p50 := warm.Percentile(50)
	r.say("wasm: a tiny TAP plugin (%d-byte module, 1 test) in the plugins host, whole Host.Run", len(tapModule(tapOutput)))
	r.say("  cold (compiles): %s; warm over %d runs: min %s  p50 %s  p99 %s  max %s",
		ms(cold), len(warm), ms(warm.Min()), ms(p50), ms(warm.Percentile(99)), ms(warm.Max()))
	r.add("warm_start_ms", millis(p50), 3)
	tapWorker, tapWorkerErr := largestWorker(host)
	if tapWorkerErr == nil && tapWorker.rss > 0 {
		r.say("  its warm worker process (isolation %q): %s", hostCfg.Isolation, tapWorker)
	}
	if cfg.FibRuns == 0 {
		r.add("cold_start_ms", millis(cold), 3)
		return r, nil
	}

	g, err := goTests(ctx, host, tmp, cfg.FibRuns, logger)
	if err != nil {
		return nil, err
	}
	native, sandbox, bare := g.native.Percentile(50), g.sandbox.Percentile(50), g.bare.Percentile(50)
	slowdown := float64(sandbox) / float64(native)
	coldCompile := max(g.sandboxCold-sandbox, 0)
	r.say("Go test in the sandbox: TestFib, fib(%d) by naive recursion (CPU only), module benchfib", fibN)
	note := ""
	if max(g.nativeBuild, g.wasmBuild) > 10*time.Second {
		note = " (a slow one likely built the standard library for this target and flags for the first time on this machine; it is in the Go build cache now, later runs take seconds)"
	}
	r.say("  go test -c: native %.1f s; GOOS=wasip1 via plugins.CompileGoTests %.1f s%s", g.nativeBuild.Seconds(), g.wasmBuild.Seconds(), note)
	r.say("  first Host.Run of the %.1f MiB test binary: %.2f s, of which ~%.2f s compiling it to machine code (once per module and memory cap; the host keeps it)",
		mib(g.wasmBytes), g.sandboxCold.Seconds(), coldCompile.Seconds())
	r.say("  whole runs, median of %d: native %s (min %s, max %s); sandbox warm %s (min %s, max %s): slowdown %.2fx",
		cfg.FibRuns, ms(native), ms(g.native.Min()), ms(g.native.Max()), ms(sandbox), ms(g.sandbox.Min()), ms(g.sandbox.Max()), slowdown)
	goWarm := g.goWarm.Percentile(50)
	r.say("  TestEmpty alone (the module's start-up), second and later runs, median of %d: %s (min %s, max %s)",
		len(g.goWarm), ms(goWarm), ms(g.goWarm.Min()), ms(g.goWarm.Max()))
	r.say("  deadline %s: TestSpin (a CPU loop) stopped %s after it, TestSleep %s after it",
		stopTimeout, ms(g.spinStop), ms(g.sleepStop))
	if g.worker.rss > 0 {
		r.say("  warm worker processes kept (isolation %q): %d; the Go test module's (runtime, machine code, no guest memory between runs): %s",
			hostCfg.Isolation, g.workers, g.worker)
	}
	r.say("  the same binary in a bare wazero runtime (no deadline checks, cap or mounts): %s, %.2fx native; the host's configuration adds %.2fx",
		ms(bare), float64(bare)/float64(native), float64(sandbox)/float64(bare))

	mem, memErr := readSelfMemory()
	if memErr != nil {
		r.say("host memory: not measured: %v", memErr)
	} else {
		r.say("host memory: this process's RSS %.0f MiB after the runs; peak +%.0f MiB over the %.0f MiB before the warm sandbox runs%s (guest cap %d MiB, mapped lazily)",
			mib(mem.rss), mib(g.warmPeakGrowth), mib(g.warmBase), peakNote(g.peakReset), hostCfg.MemoryLimitMiB)
		r.say("  a guest capped at %d MiB touching %d MiB ended %s: %s; host peak +%.0f MiB during it%s",
			hogLimitMiB, hogAllocMiB, g.hogStatus, g.hogReason, mib(g.hogPeakGrowth), peakNote(g.peakReset))
	}

	r.add("go_warm_start_ms", millis(goWarm), 1)
	r.add("cold_compile_s", seconds(coldCompile), 2)
	r.add("spin_stop_ms", millis(g.spinStop), 0)
	r.add("sleep_stop_ms", millis(g.sleepStop), 0)
	r.add("native_ms", millis(native), 1)
	r.add("sandbox_ms", millis(sandbox), 1)
	r.add("slowdown_x", slowdown, 2)
	if memErr == nil {
		r.add("host_rss_mb", mib(mem.rss), 0)
	}
	r.add("guest_memory_limit_mib", float64(hostCfg.MemoryLimitMiB), 0)
	if memErr == nil {
		r.add("host_peak_growth_mb", mib(g.warmPeakGrowth), 0)
		r.add("hog_peak_growth_mb", mib(g.hogPeakGrowth), 0)
	}
	r.add("bare_wazero_ms", millis(bare), 1)
	if tapWorker.rss > 0 {
		r.add("tap_worker_rss_mb", mib(tapWorker.rss), 1)
	}
	if g.worker.rss > 0 {
		r.add("go_worker_rss_mb", mib(g.worker.rss), 1)
		r.add("go_worker_vm_peak_mb", mib(g.worker.vmPeak), 0)
		if g.worker.asLimit > 0 {
			r.add("go_worker_as_limit_mb", mib(g.worker.asLimit), 0)
		}
	}
	r.add("cold_start_ms", millis(cold), 3)
	r.add("wasip1_build_s", seconds(g.wasmBuild), 1)
	return r, nil
}

func peakNote(reset bool) string {
	if reset {
		return ""
	}
	return " [VmHWM could not be reset: the peak may be an earlier phase's]"
}

// warmStart times the tiny TAP plugin: one cold run, then runs warm ones.
func warmStart(ctx context.Context, host *plugins.Host, tmp string, runs int, logger *slog.Logger) (warm Durations, cold time.Duration, err error) {
	checkout := filepath.Join(tmp, "checkout")
	if err := os.MkdirAll(filepath.Join(checkout, "tests"), 0o755); err != nil {
		return nil, 0, fmt.Errorf("create checkout: %w", err)
	}
	module := filepath.Join(tmp, "tap.wasm")
	if err := os.WriteFile(module, tapModule(tapOutput), 0o644); err != nil {
		return nil, 0, fmt.Errorf("write plugin: %w", err)
	}
	run := func() (time.Duration, error) {
		var out bytes.Buffer
		spec := testrun.Spec{
			Dir:     checkout,
			Plugin:  &testrun.Plugin{Name: "tap-tiny", Module: module, MemoryLimitMiB: 1},
			Output:  &out,
			Timeout: 30 * time.Second,
		}
		start := time.Now()
		res := host.Run(ctx, spec)
		took := time.Since(start)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if res.Status != testrun.Passed {
			return 0, fmt.Errorf("tiny plugin ended %s (%s): %s", res.Status, res.Reason, lastLines(out.String(), 5))
		}
		if len(res.Tests) != 1 || res.Tests[0].GetOutcome() != pontusv1.TestOutcome_TEST_OUTCOME_PASSED {
			return 0, fmt.Errorf("tiny plugin: want 1 passed test parsed from its TAP, got %d: %s", len(res.Tests), out.String())
		}
		return took, nil
	}
	cold, err = run()
	if err != nil {
		return nil, 0, fmt.Errorf("cold run: %w", err)
	}
	logger.Info("wasm: cold run done; timing warm runs", "cold", cold, "runs", runs)
	warm = make(Durations, 0, runs)
	for i := range runs {
		took, err := run()
		if err != nil {
			return nil, 0, fmt.Errorf("warm run %d: %w", i+1, err)
		}
		warm = append(warm, took)
	}
	return warm, cold, nil
}

// goTestFigures is what goTests measured.
type goTestFigures struct {
	nativeBuild, wasmBuild time.Duration
	wasmBytes              int64
	native, sandbox        Durations
	bare                   Durations     // in a bare wazero runtime
	sandboxCold            time.Duration // the first Host.Run, compiling
	peakReset              bool          // VmHWM could be reset before each phase
	warmBase               int64         // RSS before the warm sandbox runs
	warmPeakGrowth         int64         // VmHWM during them minus warmBase
	hogStatus              testrun.Status
	hogReason              string
	hogPeakGrowth          int64
	goWarm                 Durations // TestEmpty, warm
	spinStop, sleepStop    time.Duration
	workers                int          // warm workers after the Go runs
	worker                 workerMemory // the largest one
}

// goTests writes the benchfib module, builds it both ways and times it.
func goTests(ctx context.Context, host *plugins.Host, tmp string, runs int, logger *slog.Logger) (*goTestFigures, error) {
	checkout := filepath.Join(tmp, "benchfib")
	if err := os.MkdirAll(filepath.Join(checkout, "tests"), 0o755); err != nil {
		return nil, fmt.Errorf("create Go module: %w", err)
	}
	if err := os.WriteFile(filepath.Join(checkout, "go.mod"), []byte("module benchfib\n\ngo 1.26\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write go.mod: %w", err)
	}
	if err := os.WriteFile(filepath.Join(checkout, "tests", "fib_test.go"), []byte(fibTest()), 0o644); err != nil {
		return nil, fmt.Errorf("write fib_test.go: %w", err)
	}
	// The go command's own build cache (it may be set by $GOCACHE or
	// $XDG_CACHE_HOME, which CompileGoTests does not pass on), so the
	// standard library for wasip1 is built once per machine, not per run.
	gocache, err := goEnvValue(ctx, "GOCACHE")
	if err != nil {
		return nil, err
	}
	cacheEnv := []string{"GOCACHE=" + gocache}

	g := &goTestFigures{}
	nativeBin := filepath.Join(tmp, "native.test")
	logger.Info("wasm: building the Go test natively", "module", checkout)
	start := time.Now()
	if err := buildNative(ctx, checkout, nativeBin, cacheEnv); err != nil {
		return nil, err
	}
	g.nativeBuild = time.Since(start)
	wasmBin := filepath.Join(tmp, "fib.wasm")
	logger.Info("wasm: building the Go test for wasip1 (the first time on a machine builds the standard library: tens of seconds)")
	start = time.Now()
	if err := plugins.CompileGoTests(ctx, checkout, "tests", wasmBin, cacheEnv); err != nil {
		return nil, fmt.Errorf("build the Go test for wasip1: %w", err)
	}
	g.wasmBuild = time.Since(start)
	fi, err := os.Stat(wasmBin)
	if err != nil {
		return nil, fmt.Errorf("build the Go test for wasip1: %w", err)
	}
	g.wasmBytes = fi.Size()

	logger.Info("wasm: timing the native test binary", "runs", runs)
	for i := range runs {
		took, err := runNative(ctx, nativeBin, filepath.Join(checkout, "tests"))
		if err != nil {
			return nil, fmt.Errorf("native run %d: %w", i+1, err)
		}
		g.native = append(g.native, took)
	}

	sandboxRun := func(run string, limitMiB int) (time.Duration, testrun.Result, string, error) {
		var out bytes.Buffer
		spec := testrun.Spec{
			Dir: checkout,
			Plugin: &testrun.Plugin{Name: "benchfib", Module: wasmBin, WorkDir: "tests",
				Args: fibArgs(run, runTimeout), MemoryLimitMiB: limitMiB},
			Output:  &out,
			Timeout: runTimeout,
		}
		start := time.Now()
		res := host.Run(ctx, spec)
		took := time.Since(start)
		if err := ctx.Err(); err != nil {
			return 0, res, "", err
		}
		return took, res, out.String(), nil
	}
	fibRun := func() (time.Duration, error) {
		took, res, out, err := sandboxRun("^TestFib$", 0)
		if err != nil {
			return 0, err
		}
		if res.Status != testrun.Passed || len(res.Tests) != 1 || res.Tests[0].GetOutcome() != pontusv1.TestOutcome_TEST_OUTCOME_PASSED {
			return 0, fmt.Errorf("TestFib in the sandbox ended %s (%s) with %d test results, want passed with 1: %s", res.Status, res.Reason, len(res.Tests), lastLines(out, 10))
		}
		return took, nil
	}

	logger.Info("wasm: first sandbox run (compiles the test binary to machine code)", "module_mib", int(mib(g.wasmBytes)))
	if g.sandboxCold, err = fibRun(); err != nil {
		return nil, fmt.Errorf("cold sandbox run: %w", err)
	}
	logger.Info("wasm: timing warm sandbox runs", "runs", runs, "cold", g.sandboxCold.Round(time.Millisecond))
	g.peakReset = resetPeakRSS()
	before, memErr := readSelfMemory()
	for i := range runs {
		took, err := fibRun()
		if err != nil {
			return nil, fmt.Errorf("warm sandbox run %d: %w", i+1, err)
		}
		g.sandbox = append(g.sandbox, took)
	}
	if after, err := readSelfMemory(); memErr == nil && err == nil {
		g.warmBase = before.rss
		g.warmPeakGrowth = max(after.hwm-before.rss, 0)
	}

	logger.Info("wasm: timing warm runs of the empty test", "runs", runs)
	for i := range runs + 1 {
		took, res, out, err := sandboxRun("^TestEmpty$", 0)
		if err != nil {
			return nil, err
		}
		if res.Status != testrun.Passed || len(res.Tests) != 1 {
			return nil, fmt.Errorf("TestEmpty in the sandbox ended %s (%s) with %d test results, want passed with 1: %s", res.Status, res.Reason, len(res.Tests), lastLines(out, 10))
		}
		if i > 0 { // the first run of the module was TestFib's
			g.goWarm = append(g.goWarm, took)
		}
	}
	g.workers = len(host.IdleWorkers())
	g.worker, _ = largestWorker(host)

	for _, c := range []struct {
		test string
		stop *time.Duration
	}{{"TestSpin", &g.spinStop}, {"TestSleep", &g.sleepStop}} {
		logger.Info("wasm: running a guest past its deadline", "test", c.test, "timeout", stopTimeout)
		var out bytes.Buffer
		start := time.Now()
		res := host.Run(ctx, testrun.Spec{
			Dir: checkout,
			Plugin: &testrun.Plugin{Name: "benchfib", Module: wasmBin, WorkDir: "tests",
				Args: []string{"-test.run=^" + c.test + "$", "-test.timeout=0"}},
			Output:  &out,
			Timeout: stopTimeout,
		})
		took := time.Since(start)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if res.Status != testrun.TimedOut {
			return nil, fmt.Errorf("%s with a %s deadline ended %s (%s), want timed out: %s", c.test, stopTimeout, res.Status, res.Reason, lastLines(out.String(), 10))
		}
		*c.stop = max(took-stopTimeout, 0)
	}

	logger.Info("wasm: timing the test binary in a bare wazero runtime (compiling it once more)", "runs", runs)
	if g.bare, err = bareRuns(ctx, wasmBin, runs); err != nil {
		return nil, err
	}

	// The capped run: warm its module first (another memory cap is another
	// compiled module, loaded from the on-disk cache), so the peak measured
	// is the guest's memory, not the compiler's.
	logger.Info("wasm: running a guest that allocates past its memory cap", "cap_mib", hogLimitMiB, "allocates_mib", hogAllocMiB)
	if _, res, out, err := sandboxRun("^$", hogLimitMiB); err != nil {
		return nil, err
	} else if res.Status != testrun.Passed {
		return nil, fmt.Errorf("capped warm-up run ended %s (%s): %s", res.Status, res.Reason, lastLines(out, 10))
	}
	g.peakReset = resetPeakRSS() && g.peakReset
	before, memErr = readSelfMemory()
	_, res, out, err := sandboxRun("^TestAlloc$", hogLimitMiB)
	if err != nil {
		return nil, err
	}
	if after, err := readSelfMemory(); memErr == nil && err == nil {
		g.hogPeakGrowth = max(after.hwm-before.rss, 0)
	}
	g.hogStatus, g.hogReason = res.Status, res.Reason
	if res.Status != testrun.Errored || res.Reason != "out of memory" {
		return nil, fmt.Errorf("a guest capped at %d MiB allocating %d MiB ended %s (%s), want errored out of memory: %s",
			hogLimitMiB, hogAllocMiB, res.Status, res.Reason, lastLines(out, 10))
	}
	return g, nil
}

// workerMemory is what a warm worker process maps and holds.
type workerMemory struct {
	rss     int64 // VmRSS
	vmPeak  int64 // VmPeak: the most address space it has mapped
	asLimit int64 // its RLIMIT_AS, 0 for none
}

func (m workerMemory) String() string {
	s := fmt.Sprintf("RSS %.1f MiB, address space at most %.0f MiB", mib(m.rss), mib(m.vmPeak))
	if m.asLimit > 0 {
		s += fmt.Sprintf(" (limit %.0f MiB)", mib(m.asLimit))
	}
	return s
}

// largestWorker returns the memory of the host's warm worker process with
// the largest RSS; zero when it has none.
func largestWorker(host *plugins.Host) (workerMemory, error) {
	var most workerMemory
	for _, pid := range host.IdleWorkers() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return workerMemory{}, fmt.Errorf("read a worker's memory (needs Linux /proc): %w", err)
		}
		var m workerMemory
		for key, v := range map[string]*int64{"VmRSS": &m.rss, "VmPeak": &m.vmPeak} {
			kib, err := parseStatusKiB(string(b), key)
			if err != nil {
				return workerMemory{}, err
			}
			*v = kib << 10
		}
		if limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid)); err == nil {
			for l := range strings.Lines(string(limits)) {
				if rest, ok := strings.CutPrefix(l, "Max address space"); ok {
					if f := strings.Fields(rest); len(f) > 0 {
						m.asLimit, _ = strconv.ParseInt(f[0], 10, 64) // "unlimited": 0
					}
				}
			}
		}
		if m.rss > most.rss {
			most = m
		}
	}
	return most, nil
}

// bareRuns times the test binary in a bare wazero runtime: the compiler
// with its defaults, without the sandbox's deadline checks
// (WithCloseOnContextDone), memory cap, mounts or output capture. It is
// the engine's own floor, to tell what the host's configuration adds.
func bareRuns(ctx context.Context, wasmBin string, runs int) (Durations, error) {
	wasm, err := os.ReadFile(wasmBin)
	if err != nil {
		return nil, fmt.Errorf("bare wazero: %w", err)
	}
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(context.WithoutCancel(ctx))
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return nil, fmt.Errorf("bare wazero: instantiate WASI: %w", err)
	}
	cm, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("bare wazero: compile: %w", err)
	}
	args := append([]string{"benchfib"}, fibArgs("^TestFib$", runTimeout)...)
	var took Durations
	for i := range runs {
		var out bytes.Buffer
		mc := wazero.NewModuleConfig().WithName("").WithArgs(args...).
			WithStdout(&out).WithStderr(&out).WithSysWalltime().WithSysNanotime()
		start := time.Now()
		mod, err := rt.InstantiateModule(ctx, cm, mc)
		d := time.Since(start)
		if mod != nil {
			_ = mod.Close(context.WithoutCancel(ctx))
		}
		var exit *sys.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 0) {
			return nil, fmt.Errorf("bare wazero run %d: %w: %s", i+1, err, lastLines(out.String(), 10))
		}
		if !strings.Contains(out.String(), "--- PASS: TestFib") {
			return nil, fmt.Errorf("bare wazero run %d: TestFib did not report a pass: %s", i+1, lastLines(out.String(), 10))
		}
		took = append(took, d)
	}
	return took, nil
}

// goEnvValue returns `go env key` as the caller's go command sees it.
func goEnvValue(ctx context.Context, key string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", key)
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", key, err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" || v == "off" {
		return "", fmt.Errorf("go env %s is %q: the bench needs the Go build cache", key, v)
	}
	return v, nil
}

// buildNative compiles the test package for this machine, with the same
// guards against fetching anything that CompileGoTests sets.
func buildNative(ctx context.Context, checkout, out string, cacheEnv []string) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-trimpath", "-buildvcs=false", "-o", out, "./tests")
	cmd.Dir = checkout
	cmd.Env = append(childEnv(cacheEnv...),
		"GOTOOLCHAIN=local", "GOWORK=off", "GOPROXY=off", "GOFLAGS=", "GOOS=", "GOARCH=", "CGO_ENABLED=0")
	cmd.WaitDelay = 5 * time.Second
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the Go test natively (go test -c ./tests): %w: %s", err, lastLines(string(b), 10))
	}
	return nil
}

// runNative runs the native test binary once and times it.
func runNative(ctx context.Context, bin, dir string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, fibArgs("^TestFib$", runTimeout)...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %s", filepath.Base(bin), err, lastLines(out.String(), 10))
	}
	if !strings.Contains(out.String(), "--- PASS: TestFib") {
		return 0, fmt.Errorf("%s: TestFib did not report a pass: %s", filepath.Base(bin), lastLines(out.String(), 10))
	}
	return took, nil
}

// selfMemory is this process's resident memory, from /proc/self/status.
type selfMemory struct {
	rss int64 // VmRSS, bytes
	hwm int64 // VmHWM: peak RSS since start or the last resetPeakRSS
}

func readSelfMemory() (selfMemory, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return selfMemory{}, fmt.Errorf("read own memory (needs Linux /proc): %w", err)
	}
	rss, err := parseStatusKiB(string(b), "VmRSS")
	if err != nil {
		return selfMemory{}, err
	}
	hwm, err := parseStatusKiB(string(b), "VmHWM")
	if err != nil {
		return selfMemory{}, err
	}
	return selfMemory{rss: rss << 10, hwm: hwm << 10}, nil
}

// resetPeakRSS resets VmHWM to the current RSS (Linux: "5" to
// /proc/self/clear_refs) and reports whether it could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// parseStatusKiB returns the "<key>: <n> kB" value of /proc/<pid>/status.
func parseStatusKiB(status, key string) (int64, error) {
	for line := range strings.Lines(status) {
		rest, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse /proc status: %s line %q", key, strings.TrimSpace(line))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc status: %s: %w", key, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("parse /proc status: no %s line", key)
}

// tapModule assembles a WASI preview-1 command module that writes out to
// stdout with one fd_write and returns (exit 0). It is the binary form of:
//
//	(module
//	  (import "wasi_snapshot_preview1" "fd_write"
//	    (func $fd_write (param i32 i32 i32 i32) (result i32)))
//	  (memory (export "memory") 1)
//	  (data (i32.const 16) "<out>")
//	  (func (export "_start")
//	    (i32.store (i32.const 0) (i32.const 16))         ;; iovec.buf
//	    (i32.store (i32.const 4) (i32.const <len out>))  ;; iovec.len
//	    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
//
// Assembling it here keeps a binary out of the repository.
func tapModule(out string) []byte {
	const (
		i32      = 0x7f
		i32Const = 0x41
		i32Store = 0x36
		call     = 0x10
		drop     = 0x1a
		end      = 0x0b
	)
	const dataAt = 16
	section := func(id byte, content []byte) []byte {
		return append(append([]byte{id}, uleb(uint64(len(content)))...), content...)
	}
	name := func(s string) []byte { return append(uleb(uint64(len(s))), s...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	types := cat([]byte{2},
		[]byte{0x60, 4, i32, i32, i32, i32, 1, i32}, // fd_write
		[]byte{0x60, 0, 0})                          // _start
	imports := cat([]byte{1}, name("wasi_snapshot_preview1"), name("fd_write"), []byte{0x00, 0})
	funcs := []byte{1, 1}
	memory := []byte{1, 0x00, 1}
	exports := cat([]byte{2}, name("memory"), []byte{0x02, 0}, name("_start"), []byte{0x00, 1})
	body := cat([]byte{0}, // no locals
		[]byte{i32Const}, sleb(0), []byte{i32Const}, sleb(dataAt), []byte{i32Store, 2, 0},
		[]byte{i32Const}, sleb(4), []byte{i32Const}, sleb(int64(len(out))), []byte{i32Store, 2, 0},
		[]byte{i32Const}, sleb(1), []byte{i32Const}, sleb(0), []byte{i32Const}, sleb(1), []byte{i32Const}, sleb(8),
		[]byte{call, 0, drop, end})
	code := cat([]byte{1}, uleb(uint64(len(body))), body)
	data := cat([]byte{1, 0x00, i32Const}, sleb(dataAt), []byte{end}, name(out))

	return cat([]byte("\x00asm"), []byte{1, 0, 0, 0},
		section(1, types), section(2, imports), section(3, funcs), section(5, memory),
		section(7, exports), section(10, code), section(11, data))
}

// uleb and sleb encode LEB128 integers, unsigned and signed.
func uleb(v uint64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}

func sleb(v int64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && b&0x40 == 0) || (v == -1 && b&0x40 != 0) {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}
