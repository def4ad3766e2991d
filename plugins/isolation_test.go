package plugins

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/testrun"
	"github.com/pontus-ci/pontus/internal/validate"
)

// pidHost returns a Host of its own, recording the pids of its worker
// processes (none in IsolationInProcess).
func pidHost(t testing.TB, cfg HostConfig) (*Host, *pidLog) {
	t.Helper()
	h := newHost(t, cfg)
	pids := &pidLog{}
	h.onGuestStart = pids.add
	return h, pids
}

type pidLog struct {
	mu   sync.Mutex
	pids []int
}

func (l *pidLog) add(pid int) {
	l.mu.Lock()
	l.pids = append(l.pids, pid)
	l.mu.Unlock()
}

func (l *pidLog) all() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.pids...)
}

// checkGone fails the test unless, in process mode, want worker processes
// were started and none of them, nor their process groups, still exists.
func checkGone(t testing.TB, mode string, pids *pidLog, want int) {
	t.Helper()
	if mode != IsolationProcess {
		return
	}
	all := pids.all()
	if len(all) != want {
		t.Fatalf("%d worker processes started, want %d", len(all), want)
	}
	for _, pid := range all {
		waitGone(t, pid)
	}
}

// waitGone waits until a worker process and its process group no longer
// exist: the host kills a retired worker at once but reaps it in the
// background.
func waitGone(t testing.TB, pid int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("worker process %d and its group to be gone", pid), func() bool {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) && errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH)
	})
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestIsolationConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  HostConfig
		want string // "" for valid, else the start of the reason
	}{
		{HostConfig{}, ""},
		{HostConfig{Isolation: IsolationInProcess}, ""},
		{HostConfig{Isolation: IsolationProcess}, ""},
		{HostConfig{Isolation: IsolationProcess, CacheDir: "/var/cache/pontus"}, ""},
		{HostConfig{Isolation: "vm"}, `must be "process" or "inprocess", got "vm"`},
	} {
		err := c.cfg.Validate()
		var ve *validate.Error
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.cfg, err)
		case c.want == "":
		case !errors.As(err, &ve) || ve.Field != "isolation" || !strings.HasPrefix(ve.Reason, c.want):
			t.Errorf("%+v: error %v, want isolation: %s…", c.cfg, err, c.want)
		}
	}
	if got := DefaultHostConfig().Isolation; got != IsolationProcess {
		t.Errorf("default isolation %q, want %q", got, IsolationProcess)
	}
}

// TestWorkerReuse runs a module twice: the second run must get the same
// warm worker, and nothing of the first run (its /tmp) — and the worker
// must hold none of the host's environment, lead its own process group,
// carry an address space limit, and be gone after Close.
func TestWorkerReuse(t *testing.T) {
	t.Setenv("PONTUS_RUNNER_TOKEN", "host-secret-token") // not parallel: the host's environment
	h, pids := pidHost(t, HostConfig{Isolation: IsolationProcess})
	dir := checkout(t, nil)
	if r, res, out := probe(t, h, dir, "write", "/tmp/left-behind"); !strings.HasPrefix(r, "ok") || res.Status != testrun.Passed {
		t.Fatalf("first run: RESULT %s, status %v (%q)\n%s", r, res.Status, res.Reason, out)
	}
	if r, _, _ := probe(t, h, dir, "read", "/tmp/left-behind"); !strings.HasPrefix(r, "err") {
		t.Errorf("second run read the first run's /tmp file: RESULT %s", r)
	}
	all := pids.all()
	if len(all) != 1 {
		t.Fatalf("two runs of one module started %d workers, want 1 (kept warm)", len(all))
	}
	pid := all[0]
	if !alive(pid) {
		t.Fatalf("the warm worker %d is gone", pid)
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if want := strings.Join(workerEnv(), "\x00") + "\x00"; err == nil && string(env) != want {
		t.Errorf("worker environment %q, want only %q", env, want)
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// pid (comm) state ppid pgrp ...
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 3 || f[2] != strconv.Itoa(pid) {
			t.Errorf("worker %d is in process group %v, want its own", pid, f[2:3])
		}
	}
	if limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid)); err == nil && !raceEnabled {
		for l := range strings.Lines(string(limits)) {
			if strings.HasPrefix(l, "Max address space") && strings.Contains(l, "unlimited") {
				t.Errorf("worker has no address space limit: %s", l)
			}
		}
	}
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

// TestWorkerReplaced checks that a worker whose run timed out is killed,
// and that the next run of the module gets a new one that works; so does
// the run after a warm worker was killed while idle.
func TestWorkerReplaced(t *testing.T) {
	t.Parallel()
	h, pids := pidHost(t, HostConfig{Isolation: IsolationProcess})
	dir := checkout(t, nil)
	if res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"loop"}}, time.Second); res.Status != testrun.TimedOut {
		t.Fatalf("loop: status %v (%q), want timed out\n%s", res.Status, res.Reason, out)
	}
	first := pids.all()
	if len(first) != 1 {
		t.Fatalf("%d workers started, want 1", len(first))
	}
	waitGone(t, first[0])
	if res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"exit", "0"}}, 30*time.Second); res.Status != testrun.Passed {
		t.Fatalf("run after a timeout: status %v (%q)\n%s", res.Status, res.Reason, out)
	}
	all := pids.all()
	if len(all) != 2 || !alive(all[1]) {
		t.Fatalf("workers %v after a timeout and a run, want a second one alive", all)
	}

	// A warm worker killed while idle is replaced too.
	if err := syscall.Kill(all[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, all[1])
	if res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"exit", "0"}}, 30*time.Second); res.Status != testrun.Passed {
		t.Fatalf("run after the idle worker was killed: status %v (%q)\n%s", res.Status, res.Reason, out)
	}
	if all = pids.all(); len(all) != 3 {
		t.Errorf("workers %v, want a third one after the second was killed", all)
	}
}

// TestWorkerPool checks when warm workers are dropped: beyond the number
// kept, when their module is evicted, and after their idle time.
func TestWorkerPool(t *testing.T) {
	t.Parallel()
	h, pids := pidHost(t, HostConfig{Isolation: IsolationProcess})
	h.maxIdleWorkers = 1
	dir := checkout(t, map[string]string{"tests/hello.txt": "hello\n"})
	run := func(module string, args ...string) {
		t.Helper()
		if res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, module), Args: args}, 30*time.Second); res.Status != testrun.Passed {
			t.Fatalf("%s: status %v (%q)\n%s", module, res.Status, res.Reason, out)
		}
	}
	idle := func() int { h.mu.Lock(); defer h.mu.Unlock(); return h.idleCount }

	run("tapdemo")
	run("probe", "exit", "0")
	all := pids.all()
	if len(all) != 2 || idle() != 1 {
		t.Fatalf("workers %v, idle %d; want 2 started, 1 kept", all, idle())
	}
	waitGone(t, all[0]) // the least recently used, beyond maxIdleWorkers
	if !alive(all[1]) {
		t.Errorf("the most recent worker %d was dropped", all[1])
	}

	h.mu.Lock()
	h.maxCompiled = 1
	h.mu.Unlock()
	run("tapdemo") // evicts probe's compiled module, and with it its worker
	all = pids.all()
	if len(all) != 3 {
		t.Fatalf("workers %v, want a third for tapdemo", all)
	}
	waitGone(t, all[1])

	h.mu.Lock()
	h.workerIdleTimeout = 10 * time.Millisecond
	h.mu.Unlock()
	run("tapdemo") // the warm one, idle again with the short timeout
	if all = pids.all(); len(all) != 3 {
		t.Fatalf("workers %v, want tapdemo's warm one reused", all)
	}
	waitGone(t, all[2])
	if n := idle(); n != 0 {
		t.Errorf("%d idle workers after their idle time, want 0", n)
	}
}

// TestWorkerAddressSpaceLimit gives workers an address space limit too
// small for their guest's memory: the run must end "out of memory" (the
// worker's Go runtime cannot map it) and the host must stay unharmed.
func TestWorkerAddressSpaceLimit(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("race-enabled workers set no address space limit (the race detector reserves terabytes)")
	}
	h, pids := pidHost(t, HostConfig{Isolation: IsolationProcess})
	h.asHeadroom = -192 << 20 // the limit is then 64 MiB short of the 256 MiB cap
	dir := checkout(t, nil)
	res, out := runPlugin(t, h, dir, &testrun.Plugin{Module: guest(t, "probe"), Args: []string{"exit", "0"}, MemoryLimitMiB: 256}, 30*time.Second)
	if res.Status != testrun.Errored || res.Reason != "out of memory" {
		t.Fatalf("status %v (%q), want errored \"out of memory\"\n%s", res.Status, res.Reason, tail(out))
	}
	checkGone(t, IsolationProcess, pids, 1)
}

// testThreadsEnv makes the test binary start OS threads under a worker's
// address space limit (see TestWorkerThreads).
const testThreadsEnv = "PONTUS_PLUGINS_TEST_THREADS"

// workerThreadsStarted is how many OS threads testThreadsMain starts:
// more than a worker with GOMAXPROCS capped at workerMaxProcs starts after
// its limit is set.
const workerThreadsStarted = 24

// testThreadsMain sets the address space limit a worker sets, with the
// whole headroom left, then starts workerThreadsStarted OS threads (each
// the home of a goroutine locked to it) and prints how much each added to
// what the process maps. A thread it cannot start aborts it.
func testThreadsMain() int {
	vmSize := func() int64 {
		b, _ := os.ReadFile("/proc/self/status")
		_, rest, _ := bytes.Cut(b, []byte("\nVmSize:"))
		line, _, _ := bytes.Cut(rest, []byte("\n"))
		kib, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(line)), "kB")), 10, 64)
		return kib << 10
	}
	limit, err := limitAddressSpace(addressSpaceHeadroom)
	if err != nil || limit == 0 {
		fmt.Fprintln(os.Stderr, "no address space limit:", err)
		return 3
	}
	before := vmSize()
	started := make(chan struct{})
	for range workerThreadsStarted {
		go func() {
			runtime.LockOSThread()
			started <- struct{}{}
			select {}
		}()
		<-started
	}
	fmt.Printf("%d threads added %d bytes\n", workerThreadsStarted, vmSize()-before)
	return 0
}

// TestWorkerThreads: an OS thread a worker starts after its address space
// limit is set must cost it its stack and no more. In cgo builds glibc
// gave each new thread a malloc arena of its own, 64 MiB of address space
// (128 MiB while created), and a worker whose Go runtime started a few
// threads during a trivial run died "out of memory"; workerEnv's
// MALLOC_ARENA_MAX=1 prevents it.
func TestWorkerThreads(t *testing.T) {
	t.Parallel()
	if raceEnabled {
		t.Skip("race-enabled workers set no address space limit (the race detector reserves terabytes)")
	}
	var stack syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_STACK, &stack); err == nil && stack.Cur != ^uint64(0) && stack.Cur > 16<<20 {
		t.Skipf("thread stacks of %d MiB (ulimit -s): %d of them do not fit in the headroom", stack.Cur>>20, workerThreadsStarted)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(workerEnv(), testThreadsEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("starting %d threads under a worker's address space limit: %v\n%s", workerThreadsStarted, err, out[:min(len(out), 1<<10)])
	}
	var n, added int64
	if _, err := fmt.Sscanf(string(out), "%d threads added %d bytes", &n, &added); err != nil {
		t.Fatalf("unexpected output: %v\n%s", err, out)
	}
	if perThread := added / n; perThread > 16<<20 {
		t.Errorf("each thread added %d MiB to the address space, want its stack only", perThread>>20)
	}
	t.Logf("%d threads added %d MiB", n, added>>20)
}

// tableModule assembles a WASI command module with one funcref table of
// min elements and, when max >= 0, that maximum, whose _start grows the
// table by grow elements (table.grow; the result is dropped). It is the
// binary form of:
//
//	(module
//	  (table min [max] funcref)
//	  (func (export "_start")
//	    (drop (table.grow 0 (ref.null func) (i32.const grow)))))
func tableModule(min uint32, max int64, grow uint32) []byte {
	uleb := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	section := func(id byte, body []byte) []byte {
		return append(append([]byte{id}, uleb(uint64(len(body)))...), body...)
	}
	limits := append([]byte{0}, uleb(uint64(min))...)
	if max >= 0 {
		limits = append(append([]byte{1}, uleb(uint64(min))...), uleb(uint64(max))...)
	}
	// i32.const takes a signed LEB128: grow fits in 5 bytes as an i32.
	i32 := func(v int32) []byte {
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
	body := append([]byte{0, 0xd0, 0x70, 0x41}, i32(int32(grow))...) // no locals; ref.null func; i32.const
	body = append(body, 0xfc, 15, 0, 0x41, 0x7f, 0x46)               // table.grow 0; i32.const -1; i32.eq
	body = append(body, 0x04, 0x40, 0x00, 0x0b, 0x0b)                // if; unreachable; end; end
	out := []byte("\x00asm\x01\x00\x00\x00")
	out = append(out, section(1, []byte{1, 0x60, 0, 0})...)                                           // type: func()
	out = append(out, section(3, []byte{1, 0})...)                                                    // one function
	out = append(out, section(4, append([]byte{1, 0x70}, limits...))...)                              // one funcref table
	out = append(out, section(7, append(append([]byte{1, 6}, "_start"...), 0, 0))...)                 // export
	out = append(out, section(10, append(append([]byte{1}, uleb(uint64(len(body)))...), body...))...) // code
	return out
}

// TestTableLimits runs modules whose tables could make the host allocate
// outside the memory cap. One declaring a maximum of 2^32-1 elements is
// refused before it runs; one without a maximum that grows by 2^28
// elements (2 GiB of host memory) has its growth refused (it traps); one
// within the bound grows to it and passes. The host's RSS stays where it
// was: the test is not parallel, so that the RSS it measures is its own.
func TestTableLimits(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { testTableLimits(t, mode) })
	}
}

func testTableLimits(t *testing.T, mode string) {
	h := newHost(t, HostConfig{Isolation: mode})
	dir := checkout(t, nil)
	for _, c := range []struct {
		name   string
		wasm   []byte
		reason string // "" for a pass
	}{
		{"unbounded", tableModule(1, -1, 1<<28), "crashed: wasm error: unreachable"},
		{"huge maximum", tableModule(1, 1<<32-1, 1<<28), fmt.Sprintf("table 0 of up to 4294967295 elements, more than the %d the host allows", maxTableElements)},
		{"unbounded within the bound", tableModule(1, -1, maxTableElements-1), ""},
		{"within the bound", tableModule(1, maxTableElements, maxTableElements-1), ""},
	} {
		module := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".wasm")
		if err := os.WriteFile(module, c.wasm, 0o644); err != nil {
			t.Fatal(err)
		}
		before := procStatusKiB(t, "VmRSS")
		res, out := runPlugin(t, h, dir, &testrun.Plugin{Name: c.name, Module: module, MemoryLimitMiB: 16}, 30*time.Second)
		grew := (procStatusKiB(t, "VmRSS") - before) >> 10
		switch {
		case c.reason == "" && res.Status != testrun.Passed:
			t.Errorf("%s (%d bytes): status %v (%q), want passed\n%s", c.name, len(c.wasm), res.Status, res.Reason, out)
		case c.reason != "" && (res.Status != testrun.Errored || !strings.Contains(res.Reason, c.reason)):
			t.Errorf("%s (%d bytes): status %v (%q), want errored: …%s…\n%s", c.name, len(c.wasm), res.Status, res.Reason, c.reason, out)
		}
		if grew > 256 {
			t.Errorf("%s: the host's RSS grew by %d MiB", c.name, grew)
		}
		t.Logf("%s (%d bytes): %v %q; host RSS %+d MiB", c.name, len(c.wasm), res.Status, res.Reason, grew)
	}
}

func TestWorkerMainBadRequest(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		code int
		want string
	}{
		{"not json", 2, "read the load request"},
		{`{"unknown": 1}`, 2, "unknown field"},
		{`{"cache_dir": "relative"}`, 3, "compilation cache dir \"relative\" is not an absolute path"},
	} {
		var stdout, stderr bytes.Buffer
		code := workerMain(context.Background(), strings.NewReader(c.in), &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", c.in, code, stderr.String(), c.code, c.want)
		}
		if c.code != 3 {
			continue
		}
		var l workerLoaded
		b := stdout.Bytes()
		if len(b) < 5 || b[0] != frameLoaded || json.Unmarshal(b[5:], &l) != nil || !strings.Contains(l.Error, c.want) {
			t.Errorf("%q: answer %q lacks a load frame with %q", c.in, b, c.want)
		}
	}
}

// testHostEnv makes the test binary a plugin host of its own (see
// TestWorkersDieWithHost): its value is a checkout with a probe module.
const testHostEnv = "PONTUS_PLUGINS_TEST_HOST"

// testHostMain is a host process for TestWorkersDieWithHost: it leaves one
// worker idle after a run and keeps another busy with a sleeping guest,
// prints both pids, and waits to be killed.
func testHostMain(dir string) int {
	h, err := NewHost(context.Background(), HostConfig{Isolation: IsolationProcess, CacheDir: filepath.Join(dir, "cache")}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pids := &pidLog{}
	h.onGuestStart = pids.add
	module := filepath.Join(dir, "probe.wasm")
	// Two memory caps: two compiled modules, two workers.
	spec := func(limitMiB int, args ...string) testrun.Spec {
		return testrun.Spec{Dir: dir, Plugin: &testrun.Plugin{Module: module, Args: args, MemoryLimitMiB: limitMiB}, Timeout: time.Hour}
	}
	if res := h.Run(context.Background(), spec(64, "exit", "0")); res.Status != testrun.Passed {
		fmt.Fprintln(os.Stderr, "first run:", res.Status, res.Reason)
		return 1
	}
	go h.Run(context.Background(), spec(65, "sleep"))
	for len(pids.all()) < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("workers", pids.all()[0], pids.all()[1])
	select {}
}

// TestWorkersDieWithHost SIGKILLs a host process with an idle and a busy
// worker: both must die with it.
func TestWorkersDieWithHost(t *testing.T) {
	t.Parallel()
	dir := checkout(t, nil)
	wasm, err := os.ReadFile(guest(t, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "probe.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	// Its runs' scratch directories go under the test's: a SIGKILLed
	// host leaves them behind.
	cmd.Env = append(os.Environ(), testHostEnv+"="+dir, "TMPDIR="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var idlePid, busyPid int
	if _, err := fmt.Fscanf(stdout, "workers %d %d\n", &idlePid, &busyPid); err != nil {
		t.Fatalf("read the host's workers: %v; stderr:\n%s", err, stderr.String())
	}
	if !alive(idlePid) || !alive(busyPid) {
		t.Fatalf("workers %d and %d are not both running", idlePid, busyPid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitGone(t, idlePid)
	waitGone(t, busyPid)
}
