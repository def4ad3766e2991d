package plugins

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"
)

// Isolation modes (HostConfig.Isolation).
const (
	// IsolationProcess runs guests in warm worker processes of the host
	// (its own executable re-executed as GuestCommand), one run at a time
	// each, with close-on-context-done off, and kills a worker's process
	// group when its run's deadline passes or the run is cancelled. The
	// default on Unix systems.
	IsolationProcess = "process"
	// IsolationInProcess runs guests in the host's own process, with
	// wazero's close-on-context-done to stop them at their deadline (guest
	// CPU ~7x slower). The default where process isolation is unavailable.
	IsolationInProcess = "inprocess"
)

// defaultIsolation is DefaultHostConfig's isolation.
func defaultIsolation() string {
	if processIsolation {
		return IsolationProcess
	}
	return IsolationInProcess
}

// The worker process protocol. A Host in IsolationProcess mode starts
//
//	<os.Executable()> __wasm-guest        (environment: only workerEnv)
//
// in a process group of its own, with a parent-death SIGKILL on Linux. Any
// program that imports this package becomes a worker when started that
// way: the package's init function recognises the argument and the
// variable together, serves as a worker and exits, before the program's
// main (or a test binary's tests) runs.
//
// The host writes JSON values on the worker's stdin: first a workerLoad
// (the module to load from the on-disk compilation cache, its memory cap),
// then one workerRun per run (checkout, arguments, final environment,
// scratch directory, limits). The worker answers on its stdout with
// frames, each a kind byte, a big-endian uint32 length and the payload:
// frameLoaded once (JSON workerLoaded), then per run any number of
// frameOutput (the guest's stdout and stderr, in order) and one
// frameReport (JSON guestReport). Its stderr carries its own diagnostics
// (a Go runtime "out of memory" among them). It exits 0 when its stdin
// ends, 2 on a bad request, 3 when the module could not be loaded.
const (
	// GuestCommand is the first argument of a worker process.
	GuestCommand = "__wasm-guest"
	// GuestEnv is set to "1" in a worker process's (otherwise empty)
	// environment.
	GuestEnv = "PONTUS_WASM_GUEST"
)

// Frame kinds, worker to host.
const (
	frameLoaded = 'L'
	frameOutput = 'O'
	frameReport = 'R'
)

// Warm workers: how many are kept, and for how long.
const (
	// maxIdlePerModule is how many idle workers are kept per compiled
	// module (module and memory cap); more run at once when runs of one
	// module overlap, and the extra ones are killed when they finish.
	maxIdlePerModule = 2
	// maxIdleWorkers is how many idle workers a Host keeps in all; the
	// least recently used are killed beyond it.
	maxIdleWorkers = 8
	// workerIdleTimeout is how long an idle worker is kept.
	workerIdleTimeout = 10 * time.Minute
	// maxWorkerRuns is how many runs one worker serves before it is
	// retired, bounding whatever a long-lived process accumulates.
	maxWorkerRuns = 1000
	// addressSpaceHeadroom is what a worker may map beyond what it maps
	// once loaded plus the guest's memory cap: one run's wazero instance
	// state (tables: at most 32 MiB), Go heap growth (the Go runtime
	// reserves address space 64 MiB at a time), output buffers, the
	// stacks of OS threads started later (Linux, RLIMIT_AS). A 5 MB Go
	// test module's worker maps ~1.6 GiB once loaded, mostly address
	// space the Go runtime reserves, and its runs stayed within the cap
	// plus 150 MiB of that (pontus bench wasm). It holds only because
	// workerEnv and workerMaxProcs keep what each thread maps small and
	// the threads few.
	addressSpaceHeadroom = 512 << 20
	// workerMaxProcs caps a worker's GOMAXPROCS. A worker runs one guest
	// at a time, on one goroutine; more Ps only make the Go runtime start
	// more OS threads (the GC runs a mark worker on every idle P), each
	// mapping a stack (in cgo builds the pthread default, RLIMIT_STACK:
	// 8 MiB) out of the address space headroom. Uncapped, a worker on a
	// machine with dozens of CPUs would map more than the headroom for
	// thread stacks alone.
	workerMaxProcs = 2
)

const (
	// maxFrame bounds a frame the host reads; outputChunk is the largest
	// output frame a worker writes; maxTrapText bounds the trap message
	// (with wazero's wasm stack trace) in a report.
	maxFrame    = 1 << 20
	outputChunk = 64 << 10
	maxTrapText = 64 << 10
	// maxWorkerStderr is how much of a worker's own stderr the host keeps
	// for its diagnostics.
	maxWorkerStderr = 16 << 10
	// workerWaitDelay bounds the wait for a killed worker's pipes.
	workerWaitDelay = 5 * time.Second
)

// workerLoad is the first request a worker reads: the module to load.
type workerLoad struct {
	Dir              string `json:"dir"`    // checkout of the run that started the worker
	Module           string `json:"module"` // absolute path, read like readModule
	SHA256           string `json:"sha256"` // of the module the host compiled
	MemoryLimitPages uint32 `json:"memory_limit_pages"`
	CacheDir         string `json:"cache_dir"` // wazero's cache directory itself
	// AddressSpaceHeadroom is added to the worker's mapped size once
	// loaded and the memory cap to make its RLIMIT_AS; 0 sets none (tests
	// make it negative).
	AddressSpaceHeadroom int64 `json:"address_space_headroom"`
}

// workerLoaded is the worker's answer to workerLoad.
type workerLoaded struct {
	Error  string  `json:"error,omitempty"`
	LoadMS float64 `json:"load_ms"`
	// AddressSpaceLimit is the RLIMIT_AS the worker set, 0 for none.
	AddressSpaceLimit int64 `json:"address_space_limit,omitempty"`
}

// workerRun is one run's request.
type workerRun struct {
	Dir     string      `json:"dir"` // checkout, mounted at /src
	Sandbox sandboxSpec `json:"sandbox"`
}

// guestReport is how a run ended, as a worker reports it.
type guestReport struct {
	// Error is set when the guest did not start; the rest is then empty.
	Error string `json:"error,omitempty"`
	// Exited: _start ended with proc_exit(ExitCode) (a Go guest always
	// does). Neither Exited nor Trap: _start returned, exit code 0.
	Exited   bool   `json:"exited,omitempty"`
	ExitCode uint32 `json:"exit_code,omitempty"`
	// Trap is the error of a _start that trapped (capped).
	Trap     string   `json:"trap,omitempty"`
	MemBytes uint64   `json:"mem_bytes"`
	Notes    []string `json:"notes,omitempty"`
}

// workerEnv is a worker process's whole environment. MALLOC_ARENA_MAX=1
// is for glibc's malloc in cgo builds (pontus and its test binaries are):
// without it, every OS thread the worker's Go runtime starts after
// loading (GC workers, a goroutine blocked in a system call) gets a
// malloc arena of its own as cgo's thread start calls malloc: 64 MiB of
// address space each, 128 MiB while it is created, up to 8 per CPU. Four
// to seven such threads used up the headroom of a worker running a
// trivial guest, and the worker died "out of memory" (its guest memory
// mapping refused, then the Go heap's; 2 in 14 runs of the root
// package's plugin tests). Only cgo's thread bookkeeping calls malloc in
// a worker, so one arena serves it as well.
func workerEnv() []string {
	return []string{GuestEnv + "=1", "MALLOC_ARENA_MAX=1"}
}

// workerOutOfMemory is the error of a run whose worker's Go runtime ran
// out of memory (see worker.failure); classify calls the run out of
// memory.
type workerOutOfMemory struct{ error }

func (e *workerOutOfMemory) Unwrap() error { return e.error }

// errGuestStopped is what a worker killed for its run's deadline or a
// cancellation reports; classify turns it into TimedOut or Canceled.
var errGuestStopped = errors.New("worker process killed")

func init() {
	if len(os.Args) == 2 && os.Args[1] == GuestCommand && os.Getenv(GuestEnv) == "1" {
		if runtime.GOMAXPROCS(0) > workerMaxProcs {
			runtime.GOMAXPROCS(workerMaxProcs)
		}
		os.Exit(workerMain(context.Background(), os.Stdin, os.Stdout, os.Stderr))
	}
}

// worker is one worker process as the host sees it.
type worker struct {
	key     moduleKey
	pid     int
	stdin   *os.File
	enc     *json.Encoder
	stderr  *capWriter
	loaded  chan []byte   // the frameLoaded payload
	report  chan []byte   // a frameReport payload
	dead    chan struct{} // closed when the frame stream has ended
	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // set before exited is closed

	mu  sync.Mutex
	out io.Writer // the current run's output

	// Guarded by the host's mu.
	runs     int
	lastUsed time.Time
	idle     *time.Timer // while idle: drops it after workerIdleTimeout
}

// kill kills the worker's process group (it was started with Setpgid).
func (w *worker) kill() {
	_ = killGroup(w.pid)
}

func (w *worker) setOutput(out io.Writer) {
	w.mu.Lock()
	w.out = out
	w.mu.Unlock()
}

// readFrames reads the worker's frames until its stdout ends, then closes
// dead. A malformed frame kills the worker.
func (w *worker) readFrames(r io.ReadCloser) {
	defer close(w.dead)
	defer r.Close()
	br := bufio.NewReaderSize(r, outputChunk+5)
	var hdr [5]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > maxFrame {
			w.kill()
			return
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return
		}
		switch hdr[0] {
		case frameOutput:
			w.mu.Lock()
			out := w.out
			w.mu.Unlock()
			_, _ = out.Write(buf)
		case frameLoaded, frameReport:
			ch := w.loaded
			if hdr[0] == frameReport {
				ch = w.report
			}
			select {
			case ch <- append([]byte(nil), buf...):
			default: // not asked for: a broken worker
				w.kill()
				return
			}
		default:
			w.kill()
			return
		}
	}
}

// failure describes a worker that ended without a report: its exit status
// and the line of its stderr that says why. oom is whether that line is
// the Go runtime's own fatal "out of memory" (it could not map memory
// within the address space limit); a worker that died any other way (a
// signal, a thread it could not start, a panic whose message merely
// mentions memory) did not run out of memory.
func (w *worker) failure() (msg string, oom bool) {
	select {
	case <-w.exited:
	case <-time.After(workerWaitDelay):
	}
	msg = "ended without a result"
	if w.waitErr != nil {
		msg = w.waitErr.Error()
	}
	stderr, _, _ := w.stderr.result()
	if l := goOutOfMemory(stderr); l != "" {
		return msg + ": " + strings.TrimPrefix(l, "runtime: "), true
	}
	if l := firstLine(string(stderr)); l != "" {
		msg += ": " + l
	}
	return msg, false
}

// startWorker starts a worker for key and waits until it has loaded the
// module (or ctx ends, which kills it).
func (h *Host) startWorker(ctx context.Context, key moduleKey, load workerLoad) (*worker, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the host executable to start a worker process: %w", err)
	}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create worker pipe: %w", err)
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return nil, fmt.Errorf("create worker pipe: %w", err)
	}
	w := &worker{
		key:    key,
		stdin:  stdinW,
		enc:    json.NewEncoder(stdinW),
		stderr: &capWriter{dst: io.Discard, limit: maxWorkerStderr},
		loaded: make(chan []byte, 1),
		report: make(chan []byte, 1),
		dead:   make(chan struct{}),
		exited: make(chan struct{}),
		out:    io.Discard,
	}
	cmd := exec.Command(exe, GuestCommand)
	cmd.Env = workerEnv()
	cmd.Dir = "/"
	cmd.Stdin = stdinR
	cmd.Stdout = stdoutW
	cmd.Stderr = w.stderr
	cmd.SysProcAttr = guestProcAttr()
	cmd.WaitDelay = workerWaitDelay
	err = cmd.Start()
	stdinR.Close()
	stdoutW.Close()
	if err != nil {
		stdinW.Close()
		stdoutR.Close()
		return nil, fmt.Errorf("start worker process %s: %w", exe, err)
	}
	w.pid = cmd.Process.Pid
	if h.onGuestStart != nil {
		h.onGuestStart(w.pid)
	}
	go w.readFrames(stdoutR)
	go func() {
		w.waitErr = cmd.Wait()
		w.stdin.Close()
		close(w.exited)
	}()

	if err := w.enc.Encode(load); err != nil {
		w.kill()
		msg, _ := w.failure()
		return nil, fmt.Errorf("worker process: send the module to load: %w (%s)", err, msg)
	}
	select {
	case raw := <-w.loaded:
		var l workerLoaded
		if err := json.Unmarshal(raw, &l); err != nil {
			w.kill()
			return nil, fmt.Errorf("worker process: bad answer to the load request: %w", err)
		}
		if l.Error != "" {
			w.kill()
			return nil, errors.New(l.Error)
		}
		h.logger.DebugContext(ctx, "worker process started", "pid", w.pid, "memory_limit_mib", key.pages/16,
			"load_ms", l.LoadMS, "address_space_limit_mib", l.AddressSpaceLimit>>20)
		return w, nil
	case <-w.dead:
		w.kill()
		msg, _ := w.failure()
		return nil, fmt.Errorf("worker process %s while loading the module", msg)
	case <-ctx.Done():
		w.kill()
		return nil, context.Cause(ctx)
	}
}

// takeWorker returns an idle worker for key, or starts one.
func (h *Host) takeWorker(ctx context.Context, key moduleKey, load workerLoad) (w *worker, warm bool, err error) {
	h.mu.Lock()
	for ws := h.idle[key]; len(ws) > 0; ws = h.idle[key] {
		w = ws[len(ws)-1] // the most recently used: the others may time out
		h.removeIdleLocked(w)
		select {
		case <-w.dead: // died while idle
			w.kill()
			w = nil
			continue
		default:
		}
		h.mu.Unlock()
		return w, true, nil
	}
	h.mu.Unlock()
	w, err = h.startWorker(ctx, key, load)
	return w, false, err
}

// putWorker takes a worker back after a run: kept idle when reuse says
// its run ended cleanly and the pool has room, else killed.
func (h *Host) putWorker(w *worker, reuse bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.runs++
	w.lastUsed = time.Now()
	if _, compiled := h.modules[w.key]; !reuse || h.closed || !compiled || w.runs >= h.maxWorkerRuns {
		w.kill()
		return
	}
	select {
	case <-w.dead:
		w.kill()
		return
	default:
	}
	if h.idle == nil {
		h.idle = make(map[moduleKey][]*worker)
	}
	h.idle[w.key] = append(h.idle[w.key], w)
	h.idleCount++
	w.idle = time.AfterFunc(h.workerIdleTimeout, func() { h.dropIdleWorker(w) })
	if ws := h.idle[w.key]; len(ws) > h.maxIdlePerModule {
		h.killIdleLocked(ws[0])
	}
	for h.idleCount > h.maxIdleWorkers {
		var old *worker
		for _, ws := range h.idle {
			if len(ws) > 0 && (old == nil || ws[0].lastUsed.Before(old.lastUsed)) {
				old = ws[0]
			}
		}
		h.killIdleLocked(old)
	}
}

// dropIdleWorker kills w if it is still idle (its idle time is up).
func (h *Host) dropIdleWorker(w *worker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, x := range h.idle[w.key] {
		if x == w {
			h.killIdleLocked(w)
			return
		}
	}
}

// dropWorkersLocked kills the idle workers of a module the host no longer
// keeps. h.mu must be held.
func (h *Host) dropWorkersLocked(key moduleKey) {
	for len(h.idle[key]) > 0 {
		h.killIdleLocked(h.idle[key][0])
	}
}

func (h *Host) killIdleLocked(w *worker) {
	h.removeIdleLocked(w)
	w.kill()
}

func (h *Host) removeIdleLocked(w *worker) {
	ws := h.idle[w.key]
	for i, x := range ws {
		if x == w {
			h.idle[w.key] = append(ws[:i:i], ws[i+1:]...)
			h.idleCount--
			break
		}
	}
	if len(h.idle[w.key]) == 0 {
		delete(h.idle, w.key)
	}
	if w.idle != nil {
		w.idle.Stop()
		w.idle = nil
	}
}

// closeWorkers kills the idle workers and waits for them until ctx ends
// (Close, once no run is left).
func (h *Host) closeWorkers(ctx context.Context) error {
	h.mu.Lock()
	var all []*worker
	for _, ws := range h.idle {
		all = append(all, ws...)
	}
	for _, w := range all {
		h.killIdleLocked(w)
	}
	h.mu.Unlock()
	for _, w := range all {
		select {
		case <-w.exited:
		case <-ctx.Done():
			return fmt.Errorf("wait for worker processes to exit: %w", context.Cause(ctx))
		}
	}
	return nil
}

// runInWorker runs one guest in a worker for key, started if none is idle:
// run on its stdin, its output copied into out, and its process group
// killed when runCtx is done. The caller gives the worker back with
// putWorker (w is nil when none could be had).
func (h *Host) runInWorker(runCtx context.Context, key moduleKey, load workerLoad, run workerRun, out io.Writer) (g guestOutcome, w *worker) {
	start := time.Now()
	w, warm, err := h.takeWorker(runCtx, key, load)
	for {
		if err != nil {
			if runCtx.Err() != nil {
				return guestOutcome{callErr: errGuestStopped}, nil
			}
			return guestOutcome{setupErr: err}, nil
		}
		if !warm {
			g.load = time.Since(start)
		}
		// Set before the run is sent: the worker may answer at once.
		w.setOutput(out)
		if err = w.enc.Encode(run); err == nil {
			break
		}
		w.setOutput(io.Discard)
		w.kill()
		if !warm {
			msg, _ := w.failure()
			return guestOutcome{setupErr: fmt.Errorf("worker process: send the run: %w (%s)", err, msg)}, w
		}
		// A warm worker that died since its last run: start a new one.
		warm = false
		w, err = h.startWorker(runCtx, key, load)
	}
	// Output the reader gets after the run is over is dropped.
	defer w.setOutput(io.Discard)
	stopped := func() guestOutcome {
		w.kill()
		select { // let the output already written reach out
		case <-w.dead:
		case <-time.After(workerWaitDelay):
		}
		return guestOutcome{callErr: errGuestStopped, load: g.load}
	}
	select {
	case raw := <-w.report:
		var rep guestReport
		if err := json.Unmarshal(raw, &rep); err != nil {
			w.kill()
			return guestOutcome{callErr: fmt.Errorf("worker process: bad report: %w", err), load: g.load}, w
		}
		g.memBytes, g.notes = rep.MemBytes, rep.Notes
		switch {
		case rep.Error != "":
			g.setupErr = errors.New(rep.Error)
		case rep.Trap != "":
			g.callErr = errors.New(rep.Trap)
		case rep.Exited:
			g.callErr = sys.NewExitError(rep.ExitCode)
		}
		return g, w
	case <-runCtx.Done():
		return stopped(), w
	case <-w.dead:
		if runCtx.Err() != nil {
			return stopped(), w
		}
		msg, oom := w.failure()
		h.logger.WarnContext(runCtx, "worker process ended during a run", "pid", w.pid, "err", msg)
		err := fmt.Errorf("worker process %s", msg)
		if oom {
			err = &workerOutOfMemory{err}
		}
		return guestOutcome{callErr: err, load: g.load}, w
	}
}

// workerMain is a worker process: it loads the module workerLoad names
// from the on-disk compilation cache the host filled, sets its address
// space limit, then runs each workerRun in a fresh instance and sandbox
// with close-on-context-done off (the host kills the process at the
// deadline), writing the output and the report as frames to stdout. It
// returns the process's exit status; stderr gets only its diagnostics.
func workerMain(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) int {
	dec := json.NewDecoder(stdin)
	dec.DisallowUnknownFields()
	fw := &frameWriter{w: stdout}
	var load workerLoad
	if err := dec.Decode(&load); err != nil {
		fmt.Fprintf(stderr, "pontus %s: read the load request on stdin: %v\n", GuestCommand, err)
		return 2
	}
	st, loaded := loadWorker(ctx, load)
	if err := fw.frame(frameLoaded, loaded); err != nil {
		fmt.Fprintf(stderr, "pontus %s: write to the host: %v\n", GuestCommand, err)
		return 1
	}
	if loaded.Error != "" {
		fmt.Fprintf(stderr, "pontus %s: %s\n", GuestCommand, loaded.Error)
		return 3
	}
	defer st.rt.Close(context.WithoutCancel(ctx))
	for {
		var run workerRun
		err := dec.Decode(&run)
		if errors.Is(err, io.EOF) {
			return 0 // the host is done with this worker, or gone
		}
		if err != nil {
			fmt.Fprintf(stderr, "pontus %s: read a run request on stdin: %v\n", GuestCommand, err)
			return 2
		}
		if err := fw.frame(frameReport, st.run(ctx, run, fw)); err != nil {
			fmt.Fprintf(stderr, "pontus %s: write to the host: %v\n", GuestCommand, err)
			return 1
		}
	}
}

// workerState is what a worker keeps between runs: the runtime and the
// compiled module, nothing of a run.
type workerState struct {
	rt wazero.Runtime
	cm wazero.CompiledModule
}

func loadWorker(ctx context.Context, req workerLoad) (*workerState, workerLoaded) {
	fail := func(format string, args ...any) (*workerState, workerLoaded) {
		return nil, workerLoaded{Error: fmt.Sprintf(format, args...)}
	}
	switch {
	case req.CacheDir == "" || !filepath.IsAbs(req.CacheDir):
		return fail("compilation cache dir %q is not an absolute path", req.CacheDir)
	case req.MemoryLimitPages == 0 || req.MemoryLimitPages > MaxMemoryLimitMiB*16:
		return fail("memory limit of %d pages is outside 1..%d", req.MemoryLimitPages, MaxMemoryLimitMiB*16)
	}
	start := time.Now()
	wasm, err := readModule(req.Dir, req.Module)
	if err != nil {
		return fail("%v", err)
	}
	if sum := sha256.Sum256(wasm); hex.EncodeToString(sum[:]) != req.SHA256 {
		return fail("plugin module %s changed since the host compiled it", req.Module)
	}
	primeWazeroVersion()
	cache, err := wazero.NewCompilationCacheWithDir(req.CacheDir)
	if err != nil {
		return fail("open compilation cache %s: %v", req.CacheDir, err)
	}
	rt, err := newRuntime(ctx, req.MemoryLimitPages, false, cache)
	if err != nil {
		return fail("%v", err)
	}
	cm, err := compileModule(ctx, rt, wasm)
	if err != nil {
		_ = rt.Close(ctx)
		return fail("%v", err)
	}
	loaded := workerLoaded{LoadMS: float64(time.Since(start)) / float64(time.Millisecond)}
	// Loading (reading the module, the machine code from the cache) left
	// garbage behind: return it to the OS before the worker waits. This
	// collection starts the GC's worker threads: measuring what the
	// worker maps after it counts their stacks.
	debug.FreeOSMemory()
	if req.AddressSpaceHeadroom != 0 {
		limit, err := limitAddressSpace(int64(req.MemoryLimitPages)<<16 + req.AddressSpaceHeadroom)
		if err != nil {
			_ = rt.Close(ctx)
			return fail("limit the worker's address space: %v", err)
		}
		loaded.AddressSpaceLimit = limit
	}
	return &workerState{rt: rt, cm: cm}, loaded
}

// run runs one guest in a fresh instance with a fresh sandbox.
func (st *workerState) run(ctx context.Context, req workerRun, out io.Writer) guestReport {
	s := req.Sandbox
	switch {
	case s.Scratch == "" || !filepath.IsAbs(s.Scratch):
		return guestReport{Error: fmt.Sprintf("scratch dir %q is not an absolute path", s.Scratch)}
	case s.MaxOpenFiles <= 0 || s.TmpLimitBytes <= 0 || s.TmpMaxFiles <= 0:
		return guestReport{Error: "sandbox limits must be positive"}
	}
	root, err := os.OpenRoot(req.Dir)
	if err != nil {
		return guestReport{Error: fmt.Sprintf("open checkout: %v", err)}
	}
	defer root.Close()
	g := runSandboxed(ctx, st.rt, st.cm, root, s, out)
	rep := guestReport{MemBytes: g.memBytes, Notes: g.notes}
	var exit *sys.ExitError
	switch {
	case g.setupErr != nil:
		rep.Error = g.setupErr.Error()
	case g.callErr == nil:
	case errors.As(g.callErr, &exit):
		rep.Exited, rep.ExitCode = true, exit.ExitCode()
	default:
		rep.Trap = g.callErr.Error()
		if len(rep.Trap) > maxTrapText {
			rep.Trap = rep.Trap[:maxTrapText] + "\n[truncated]"
		}
	}
	return rep
}

// frameWriter writes frames to the host. As an io.Writer it frames what
// the guest writes as output.
type frameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (f *frameWriter) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		n := min(len(rest), outputChunk)
		if err := f.write(frameOutput, rest[:n]); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	return len(p), nil
}

// frame writes v as one JSON frame.
func (f *frameWriter) frame(kind byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return f.write(kind, b)
}

func (f *frameWriter) write(kind byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	b := make([]byte, 5, 5+len(p))
	b[0] = kind
	binary.BigEndian.PutUint32(b[1:], uint32(len(p)))
	_, f.err = f.w.Write(append(b, p...))
	return f.err
}

// IdleWorkers returns the process ids of the warm workers waiting for a
// run (IsolationProcess), for measuring what they cost.
func (h *Host) IdleWorkers() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var pids []int
	for _, ws := range h.idle {
		for _, w := range ws {
			pids = append(pids, w.pid)
		}
	}
	return pids
}
