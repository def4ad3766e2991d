package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/pontus-ci/pontus/internal/testreport"
	"github.com/pontus-ci/pontus/internal/testrun"
)

// logPlugin is the log attribute naming a plugin step.
const logPlugin = "plugin"

// errHostClosed is the cause of the contexts of runs Close stops.
var errHostClosed = errors.New("plugin host closed (runner stopping)")

const (
	// maxCompiled is how many compiled modules a Host keeps in memory; the
	// least recently used idle ones are closed beyond it (the on-disk cache
	// still has them).
	maxCompiled = 32
	// maxRuntimes is how many wazero runtimes (one per memory limit) a Host
	// keeps; the least recently used idle ones are closed beyond it.
	maxRuntimes = 8
	// compileWorkers is how many goroutines compile one module. wazero
	// checks the context between functions only when compiling with more
	// than one.
	compileWorkers = 2
	// cachePruneEvery is how often, at most, a running Host prunes the
	// on-disk compilation cache (after a compile, the only time it grows).
	cachePruneEvery = time.Hour
)

// Host runs WebAssembly test plugins. It is safe for concurrent use: runs
// share compiled modules but nothing else.
type Host struct {
	cfg    HostConfig
	logger *slog.Logger
	cache  wazero.CompilationCache // on disk under CacheDir, else in memory
	// cacheSub is the wazero-version subdirectory of CacheDir the cache
	// lives in ("" without CacheDir); worker processes open it too.
	cacheSub string
	// ctx is the host's own context, cancelled by Close with errHostClosed:
	// compiles run under it, not under the context of the run that asked
	// first, so that one cancelled run does not fail the others waiting for
	// the same module.
	ctx    context.Context
	cancel context.CancelCauseFunc

	maxCompiled int // compiled modules kept; the constant, lowered by tests
	maxRuntimes int // idle runtimes kept; the constant, lowered by tests
	// beforeCompile, when set (by tests), is called by each compile before
	// it starts.
	beforeCompile func()
	// onGuestStart, when set (by tests), is called with the pid of each
	// worker process (IsolationProcess) once it has started.
	onGuestStart func(pid int)
	// The warm-worker limits: the constants, lowered by tests.
	maxIdlePerModule  int
	maxIdleWorkers    int
	workerIdleTimeout time.Duration
	maxWorkerRuns     int
	asHeadroom        int64 // addressSpaceHeadroom
	// tmpCache is the temporary compilation cache of a process-isolated
	// host without CacheDir, removed by Close.
	tmpCache string

	mu        sync.Mutex
	closed    bool
	runtimes  map[uint32]*runtimeEntry // by memory limit in pages
	modules   map[moduleKey]*moduleEntry
	clock     uint64                             // for LRU
	active    map[uint64]context.CancelCauseFunc // runs in flight, by id
	nextRun   uint64
	runs      sync.WaitGroup
	compiles  sync.WaitGroup
	lastPrune time.Time // of the on-disk cache
	pruning   bool
	idle      map[moduleKey][]*worker // warm workers waiting for a run, oldest first
	idleCount int
}

// runtimeEntry is the wazero runtime for one memory limit. users counts
// the runs holding one of its modules and the compiles in progress in it:
// only a runtime without users is closed.
type runtimeEntry struct {
	pages    uint32
	rt       wazero.Runtime
	users    int
	lastUsed uint64
}

// moduleKey names one compiled module: wazero fixes the memory limit per
// runtime, so the same bytes under two limits are two compiled modules
// (sharing one on-disk cache entry).
type moduleKey struct {
	pages uint32
	hash  [sha256.Size]byte
}

type moduleEntry struct {
	ready chan struct{} // closed when compiled or err is set
	rt    *runtimeEntry
	// compiled is the module, for runs in the host's process. With
	// IsolationProcess it is closed once compiled (the workers load it from
	// the on-disk cache) and ok alone says it compiled.
	compiled wazero.CompiledModule
	ok       bool
	err      error
	users    int
	lastUsed uint64
}

// NewHost returns a Host. It creates cfg.CacheDir (0700) when set and
// refuses one that others can write: the cache holds machine code the host
// will execute. It prunes the cache (cfg.CacheMaxAge, cfg.CacheLimitMiB)
// before returning, and again at most hourly while it runs. With
// IsolationProcess and no CacheDir, the workers load compiled modules from
// a private temporary directory, removed by Close.
func NewHost(ctx context.Context, cfg HostConfig, logger *slog.Logger) (_ *Host, err error) {
	primeWazeroVersion()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("plugin host config: %w", err)
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Host{
		cfg:               cfg,
		logger:            logger,
		maxCompiled:       maxCompiled,
		maxRuntimes:       maxRuntimes,
		maxIdlePerModule:  maxIdlePerModule,
		maxIdleWorkers:    maxIdleWorkers,
		workerIdleTimeout: workerIdleTimeout,
		maxWorkerRuns:     maxWorkerRuns,
		asHeadroom:        addressSpaceHeadroom,
		runtimes:          make(map[uint32]*runtimeEntry),
		modules:           make(map[moduleKey]*moduleEntry),
		active:            make(map[uint64]context.CancelCauseFunc),
	}
	if cfg.CacheDir == "" && cfg.Isolation == IsolationProcess {
		// Workers load compiled modules from disk: without a configured
		// cache, use a private one for the host's lifetime.
		tmp, err := os.MkdirTemp("", "pontus-wasm-cache-")
		if err != nil {
			return nil, fmt.Errorf("create a compilation cache dir for worker processes: %w", err)
		}
		defer func() {
			if err != nil {
				os.RemoveAll(tmp)
			}
		}()
		h.tmpCache = tmp
		cfg.CacheDir = tmp
		h.cfg.CacheDir = tmp
	}
	if cfg.CacheDir != "" {
		dir, err := cacheDir(cfg.CacheDir)
		if err != nil {
			return nil, err
		}
		h.pruneCache(ctx)
		h.lastPrune = time.Now()
		cache, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, fmt.Errorf("open compilation cache %s: %w", dir, err)
		}
		h.cache = cache
		h.cacheSub = dir
	} else {
		// Shared by the runtimes, so that a module compiled for one memory
		// limit is not compiled again for another.
		h.cache = wazero.NewCompilationCache()
	}
	h.ctx, h.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	logger.DebugContext(ctx, "plugin host ready", "isolation", cfg.Isolation, "cache_dir", cfg.CacheDir,
		"memory_limit_mib", cfg.MemoryLimitMiB, "output_limit_mib", cfg.OutputLimitMiB,
		"max_open_files", cfg.MaxOpenFiles, "tmp_limit_mib", cfg.TmpLimitMiB)
	return h, nil
}

// cacheDir prepares the private cache directory and returns the
// subdirectory for this wazero version. wazero keys its cache by its own
// version, which reads "dev" when it is not built into a main module (Go
// issue 33976); a subdirectory per module version keeps an upgraded runner
// from loading machine code an older wazero wrote.
func cacheDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create plugin cache dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("stat plugin cache dir: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("plugin cache dir %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("plugin cache dir %s is writable by group or others (mode %v); it holds executable code, make it 0700", dir, fi.Mode().Perm())
	}
	version := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/tetratelabs/wazero" {
				version = m.Version
				if m.Replace != nil {
					version = m.Replace.Version + "-replaced"
				}
			}
		}
	}
	sub := filepath.Join(dir, "wazero-"+strings.NewReplacer("/", "_", "\\", "_").Replace(version))
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return "", fmt.Errorf("create plugin cache dir: %w", err)
	}
	return sub, nil
}

// Close stops the host: runs and compiles still in flight are cancelled
// (runs end Canceled, "plugin host closed") and waited for until ctx is
// done, then the runtimes and compiled modules are released. Runs started
// after Close end Errored. It is idempotent.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.cancel(errHostClosed)
	for _, cancel := range h.active {
		cancel(errHostClosed)
	}
	h.mu.Unlock()

	var errs []error
	stopped := make(chan struct{})
	go func() {
		h.runs.Wait()
		h.compiles.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("wait for plugin runs to stop: %w", context.Cause(ctx)))
	}

	if err := h.closeWorkers(ctx); err != nil {
		errs = append(errs, err)
	}
	h.mu.Lock()
	runtimes := h.runtimes
	h.runtimes = nil
	h.modules = nil
	h.mu.Unlock()
	for _, re := range runtimes {
		if err := re.rt.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close wazero runtime: %w", err))
		}
	}
	if err := h.cache.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close compilation cache: %w", err))
	}
	if h.tmpCache != "" {
		if err := os.RemoveAll(h.tmpCache); err != nil {
			errs = append(errs, fmt.Errorf("remove compilation cache: %w", err))
		}
	}
	return errors.Join(errs...)
}

// runtimeLocked returns the runtime for a memory limit, creating it (with
// WASI) on first use. h.mu must be held.
func (h *Host) runtimeLocked(pages uint32) (*runtimeEntry, error) {
	if re, ok := h.runtimes[pages]; ok {
		return re, nil
	}
	// In-process runs need close-on-context-done to stop a CPU-bound
	// guest at its deadline. With process isolation the host's runtimes
	// only compile (filling the on-disk cache the worker processes load
	// from), so they must use the workers' setting, which is part
	// of wazero's cache key.
	rt, err := newRuntime(h.ctx, pages, h.cfg.Isolation != IsolationProcess, h.cache)
	if err != nil {
		return nil, err
	}
	re := &runtimeEntry{pages: pages, rt: rt}
	h.runtimes[pages] = re
	return re, nil
}

// newRuntime returns a wazero runtime with WASI for guests capped at pages
// of linear memory. closeOnDone is wazero's WithCloseOnContextDone: the
// only way to stop a guest in a CPU loop from inside the process, at a cost
// of ~7x in guest CPU (notes/wasm.md); process isolation turns it off and
// kills the process instead.
func newRuntime(ctx context.Context, pages uint32, closeOnDone bool, cache wazero.CompilationCache) (wazero.Runtime, error) {
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(pages).
		// Reserve the whole limit up front: without it a growing guest
		// makes the host copy its memory, and host RSS reached 3-4x the
		// guest's (notes/wasm.md §2b).
		WithMemoryCapacityFromMax(true).
		WithCloseOnContextDone(closeOnDone).
		WithCompilationCache(cache)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	return rt, nil
}

// acquire returns the compiled module for (pages, wasm), compiling it once
// however many runs ask at the same time. The compile runs under the
// host's context; a caller whose ctx ends stops waiting for it, the
// others keep waiting. Call release when done with it.
func (h *Host) acquire(ctx context.Context, pages uint32, hash [sha256.Size]byte, wasm []byte) (*moduleEntry, bool, error) {
	key := moduleKey{pages: pages, hash: hash}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, false, errors.New("plugin host is closed")
	}
	re, err := h.runtimeLocked(pages)
	if err != nil {
		h.mu.Unlock()
		return nil, false, err
	}
	h.clock++
	e, cached := h.modules[key]
	if !cached {
		e = &moduleEntry{ready: make(chan struct{}), rt: re}
		h.modules[key] = e
		re.users++ // for the compile
		h.compiles.Add(1)
		go h.compile(key, e, wasm)
	}
	e.users++
	e.lastUsed = h.clock
	re.users++
	re.lastUsed = h.clock
	h.evictRuntimesLocked()
	h.mu.Unlock()

	select {
	case <-e.ready:
	case <-ctx.Done():
		h.release(key, e)
		return nil, cached, ctx.Err()
	}
	if e.err != nil {
		h.release(key, e)
		return nil, cached, e.err
	}
	return e, cached, nil
}

// compile compiles e's module under the host's context (so only Close
// cancels it), then prunes the on-disk cache if it is time.
func (h *Host) compile(key moduleKey, e *moduleEntry, wasm []byte) {
	defer h.compiles.Done()
	if h.beforeCompile != nil {
		h.beforeCompile()
	}
	cm, err := compileModule(experimental.WithCompilationWorkers(h.ctx, compileWorkers), e.rt.rt, wasm)
	if err == nil && h.cfg.Isolation == IsolationProcess {
		// The workers load the machine code from the on-disk cache: the
		// host need not keep a copy.
		_ = cm.Close(h.ctx)
		cm = nil
	}
	h.mu.Lock()
	e.compiled, e.ok, e.err = cm, err == nil, err
	if err != nil && h.modules[key] == e {
		// Do not remember failures: the next run retries.
		delete(h.modules, key)
	}
	e.rt.users--
	h.evictRuntimesLocked()
	h.mu.Unlock()
	close(e.ready)
	if err == nil {
		h.maybePruneCache()
	}
}

// release drops a use of e and closes the least recently used idle
// modules beyond maxCompiled and idle runtimes beyond maxRuntimes.
func (h *Host) release(key moduleKey, e *moduleEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.users--
	e.rt.users--
	if h.closed {
		return
	}
	for len(h.modules) > h.maxCompiled {
		var oldKey moduleKey
		var old *moduleEntry
		for k, m := range h.modules {
			if m.users == 0 && m.ok && (old == nil || m.lastUsed < old.lastUsed) {
				oldKey, old = k, m
			}
		}
		if old == nil {
			break
		}
		delete(h.modules, oldKey)
		h.dropWorkersLocked(oldKey)
		if old.compiled != nil {
			_ = old.compiled.Close(h.ctx)
		}
	}
	h.evictRuntimesLocked()
}

// evictRuntimesLocked closes the least recently used runtimes nobody uses
// beyond maxRuntimes, with their compiled modules. h.mu must be held.
func (h *Host) evictRuntimesLocked() {
	if h.closed {
		return
	}
	for len(h.runtimes) > h.maxRuntimes {
		var old *runtimeEntry
		for _, re := range h.runtimes {
			if re.users == 0 && (old == nil || re.lastUsed < old.lastUsed) {
				old = re
			}
		}
		if old == nil {
			return
		}
		for k, m := range h.modules {
			if k.pages == old.pages {
				delete(h.modules, k)
				h.dropWorkersLocked(k)
				if m.compiled != nil {
					// The compilation cache is shared: without this the
					// engine would keep the machine code.
					_ = m.compiled.Close(h.ctx)
				}
			}
		}
		delete(h.runtimes, old.pages)
		if err := old.rt.Close(h.ctx); err != nil {
			h.logger.WarnContext(h.ctx, "close idle wazero runtime", "memory_limit_mib", old.pages/16, "err", err)
		}
	}
}

// compileModule compiles wasm, its tables bounded (boundTables), and
// checks it is a WASI command module.
func compileModule(ctx context.Context, rt wazero.Runtime, wasm []byte) (wazero.CompiledModule, error) {
	cm, err := rt.CompileModule(ctx, boundTables(wasm))
	if err != nil {
		return nil, fmt.Errorf("compile module: %w", err)
	}
	if err := checkModule(cm); err != nil {
		_ = cm.Close(ctx)
		return nil, err
	}
	return cm, nil
}

// checkModule refuses modules that are not WASI preview-1 commands: every
// import must come from wasi_snapshot_preview1 (the host offers nothing
// else, and an unknown import would only fail later with a vaguer error),
// and _start must be exported.
func checkModule(cm wazero.CompiledModule) error {
	for _, f := range cm.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod != wasi_snapshot_preview1.ModuleName {
			return fmt.Errorf("module imports function %q from module %q: a plugin may import only from %s", name, mod, wasi_snapshot_preview1.ModuleName)
		}
	}
	for _, m := range cm.ImportedMemories() {
		if mod, name, _ := m.Import(); mod != wasi_snapshot_preview1.ModuleName {
			return fmt.Errorf("module imports memory %q from module %q: a plugin may import only from %s", name, mod, wasi_snapshot_preview1.ModuleName)
		}
	}
	if _, ok := cm.ExportedFunctions()["_start"]; !ok {
		return errors.New("module exports no _start function: a plugin must be a WASI command module (GOOS=wasip1 go build), not a reactor or library")
	}
	return nil
}

// readModule reads a plugin module. A module inside the checkout is read
// through an os.Root on the checkout, so a committed symbolic link cannot
// make the host read (and hash, and report errors about) a host file.
func readModule(checkout, module string) ([]byte, error) {
	if module == "" {
		return nil, errors.New("plugin module path is empty")
	}
	if !filepath.IsAbs(module) {
		return nil, fmt.Errorf("plugin module path %q is not absolute", module)
	}
	var f *os.File
	var err error
	if rel, rerr := filepath.Rel(checkout, module); checkout != "" && rerr == nil && filepath.IsLocal(rel) {
		var root *os.Root
		root, err = os.OpenRoot(checkout)
		if err != nil {
			return nil, fmt.Errorf("open checkout: %w", err)
		}
		defer root.Close()
		f, err = root.Open(rel)
	} else {
		f, err = os.Open(module)
	}
	if err != nil {
		return nil, fmt.Errorf("open plugin module: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat plugin module: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("plugin module %s is not a regular file", module)
	}
	if fi.Size() > MaxModuleBytes {
		return nil, fmt.Errorf("plugin module %s is %s, more than the %s the host loads", module, formatBytes(fi.Size()), formatBytes(MaxModuleBytes))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxModuleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read plugin module: %w", err)
	}
	if len(data) > MaxModuleBytes {
		return nil, fmt.Errorf("plugin module %s grew past %s while being read", module, formatBytes(MaxModuleBytes))
	}
	return data, nil
}

// guestWorkDir resolves the working directory, relative to the checkout:
// the given one (which must be a directory inside it), else "tests" when it
// exists, else the root.
func guestWorkDir(root *os.Root, wd string) (string, error) {
	if wd == "" {
		if fi, err := root.Stat("tests"); err == nil && fi.IsDir() {
			return "tests", nil
		}
		return ".", nil
	}
	if !localPath(wd) {
		return "", fmt.Errorf("plugin workdir %q must be a relative path inside the checkout (no '..')", wd)
	}
	fi, err := root.Stat(filepath.FromSlash(wd))
	if err != nil {
		return "", fmt.Errorf("plugin workdir %q: %w", wd, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("plugin workdir %q is not a directory", wd)
	}
	return path.Clean(wd), nil
}

// guestEnv builds the guest's environment: the step's (already
// allow-listed by the runner) minus anything that looks like a Pontus
// credential or that the host sets itself, plus PWD, HOME, TMPDIR and a
// GOMEMLIMIT a little under the memory cap (so a Go guest collects garbage
// before it hits the wall).
func (h *Host) guestEnv(ctx context.Context, env []string, pwd string, limitMiB int) [][2]string {
	var out [][2]string
	seen := map[string]bool{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok || k == "" || strings.ContainsRune(kv, 0):
			h.logger.WarnContext(ctx, "plugin environment entry dropped: malformed", "entry_len", len(kv))
			continue
		case credentialName(k):
			h.logger.WarnContext(ctx, "plugin environment entry dropped: looks like a Pontus credential", "key", k)
			continue
		case k == "PWD" || k == "HOME" || k == "TMPDIR":
			continue
		}
		seen[k] = true
		out = append(out, [2]string{k, v})
	}
	out = append(out, [2]string{"PWD", pwd}, [2]string{"HOME", "/tmp"}, [2]string{"TMPDIR", "/tmp"})
	if !seen["GOMEMLIMIT"] {
		out = append(out, [2]string{"GOMEMLIMIT", fmt.Sprintf("%dMiB", limitMiB*9/10)})
	}
	return out
}

// Run runs spec.Plugin in the sandbox and reports how it ended, with the
// per-test results parsed from its output. It satisfies the runner's
// executor interface.
//
// A Go test binary (GOOS=wasip1 go test -c; see isGoTestModule) is
// recognised from its bytes and run with GoTestArgs(spec.Timeout) before
// spec.Plugin.Args, less the flags those args set themselves, so each test
// and subtest is reported by name.
//
// spec.Timeout bounds the guest's run; compiling a module the host has not
// seen (seconds, once per module) does not count against it, but ctx
// bounds everything. Problems before the guest starts (no plugin, an
// unreadable or refused module, a bad workdir) end Errored with the reason;
// the output gets a "[pontus] plugin not run: ..." line too.
func (h *Host) Run(ctx context.Context, spec testrun.Spec) testrun.Result {
	w := &capWriter{dst: outputOrDiscard(spec.Output), limit: h.cfg.OutputLimitMiB << 20}
	if spec.Plugin == nil {
		return h.refuse(w, "not a plugin step (testrun.Spec.Plugin is nil)")
	}
	name := spec.Plugin.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(spec.Plugin.Module), ".wasm")
	}
	logger := h.logger.With(logPlugin, name)
	started := time.Now()

	// Register the run so that Close can stop it and wait for it.
	ctx, cancelRun := context.WithCancelCause(ctx)
	defer cancelRun(nil)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return h.refuse(w, "plugin host is closed")
	}
	id := h.nextRun
	h.nextRun++
	h.active[id] = cancelRun
	h.runs.Add(1)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.active, id)
		h.mu.Unlock()
		h.runs.Done()
	}()

	limitMiB := spec.Plugin.MemoryLimitMiB
	if limitMiB == 0 {
		limitMiB = h.cfg.MemoryLimitMiB
	}
	if limitMiB < 0 || limitMiB > MaxMemoryLimitMiB {
		return h.refuse(w, fmt.Sprintf("plugin memory limit %d MiB is outside 1..%d", limitMiB, MaxMemoryLimitMiB))
	}
	if len(spec.Plugin.Args) > maxArgs {
		return h.refuse(w, fmt.Sprintf("plugin has %d arguments, more than %d", len(spec.Plugin.Args), maxArgs))
	}
	for i, a := range spec.Plugin.Args {
		if strings.ContainsRune(a, 0) {
			return h.refuse(w, fmt.Sprintf("plugin argument %d contains a NUL byte", i+1))
		}
	}
	pages := uint32(limitMiB) * 16 // 64 KiB pages

	if spec.Dir == "" {
		return h.refuse(w, "no checkout directory (testrun.Spec.Dir is empty)")
	}
	wasm, err := readModule(spec.Dir, spec.Plugin.Module)
	if err != nil {
		return h.refuse(w, err.Error())
	}
	hash := sha256.Sum256(wasm)
	if err := checkWasm(wasm); err != nil {
		return h.refuse(w, fmt.Sprintf("plugin %s: %v", name, err))
	}
	args := spec.Plugin.Args
	goTest := isGoTestModule(wasm)
	if goTest {
		args = goTestRunArgs(args, spec.Timeout)
	}
	root, err := os.OpenRoot(spec.Dir)
	if err != nil {
		return h.refuse(w, fmt.Sprintf("open checkout: %v", err))
	}
	defer root.Close()
	wd, err := guestWorkDir(root, spec.Plugin.WorkDir)
	if err != nil {
		return h.refuse(w, err.Error())
	}
	pwd := path.Join("/src", wd)

	scratch, err := os.MkdirTemp("", "pontus-plugin-")
	if err != nil {
		return h.refuse(w, fmt.Sprintf("create scratch dir: %v", err))
	}
	defer func() {
		if err := os.RemoveAll(scratch); err != nil {
			logger.WarnContext(ctx, "remove plugin scratch dir", "dir", scratch, "err", err)
		}
	}()

	compileStart := time.Now()
	entry, cached, err := h.acquire(ctx, pages, hash, wasm)
	if err != nil {
		if ctx.Err() != nil {
			return testrun.Result{Status: testrun.Canceled, ExitCode: -1, Reason: "canceled before the plugin started: " + context.Cause(ctx).Error()}
		}
		return h.refuse(w, fmt.Sprintf("plugin %s (sha256 %s): %v", name, hex.EncodeToString(hash[:8]), err))
	}
	defer h.release(moduleKey{pages: pages, hash: hash}, entry)
	compileTime := time.Since(compileStart)

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if spec.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, spec.Timeout)
	}
	defer cancel()

	sb := sandboxSpec{
		Name:          name,
		Args:          args,
		Env:           h.guestEnv(ctx, spec.Env, pwd, limitMiB),
		Scratch:       scratch,
		MaxOpenFiles:  h.cfg.MaxOpenFiles,
		TmpLimitBytes: int64(h.cfg.TmpLimitMiB) << 20,
		TmpMaxFiles:   h.cfg.TmpMaxFiles,
	}
	runStart := time.Now()
	var g guestOutcome
	var wk *worker
	if h.cfg.Isolation == IsolationProcess {
		load := workerLoad{
			Dir: spec.Dir, Module: spec.Plugin.Module, SHA256: hex.EncodeToString(hash[:]),
			MemoryLimitPages: pages, CacheDir: h.cacheSub, AddressSpaceHeadroom: h.asHeadroom,
		}
		g, wk = h.runInWorker(runCtx, moduleKey{pages: pages, hash: hash}, load, workerRun{Dir: spec.Dir, Sandbox: sb}, w)
	} else {
		g = runSandboxed(runCtx, entry.rt.rt, entry.compiled, root, sb, w)
	}
	var res testrun.Result
	switch {
	case g.setupErr == nil:
		res = h.finish(ctx, runCtx, spec, w, logger, g.callErr, g.memBytes, limitMiB, started, g.notes)
	case runCtx.Err() != nil:
		res = h.finish(ctx, runCtx, spec, w, logger, g.setupErr, 0, limitMiB, started, g.notes)
	default:
		res = h.refuse(w, fmt.Sprintf("plugin %s: %v", name, g.setupErr))
	}
	attrs := []any{"status", res.Status.String(), "exit_code", res.ExitCode, "reason", res.Reason,
		"isolation", h.cfg.Isolation, "reused_compiled", cached, "compile", compileTime, "load", g.load,
		"run", time.Since(runStart), "memory_mib", g.memBytes >> 20, "tests", len(res.Tests), "go_test", goTest}
	if wk != nil {
		// A worker is used again only after a run that ended on its own,
		// within every limit.
		clean := g.setupErr == nil && res.Reason == "" && (res.Status == testrun.Passed || res.Status == testrun.Failed)
		attrs = append(attrs, "worker_pid", wk.pid, "worker_runs", wk.runs+1, "worker_kept", clean)
		h.putWorker(wk, clean)
	}
	logger.InfoContext(ctx, "plugin finished", attrs...)
	return res
}

// memorySize returns the size of a module's memory, 0 for a module without
// one: wazero then returns a nil *MemoryInstance in a non-nil api.Memory.
func memorySize(mod api.Module) uint64 {
	m := mod.Memory()
	if m == nil {
		return 0
	}
	if v := reflect.ValueOf(m); v.Kind() == reflect.Pointer && v.IsNil() {
		return 0
	}
	return uint64(m.Size())
}

// refuse ends a run that could not start.
func (h *Host) refuse(w *capWriter, reason string) testrun.Result {
	w.marker("plugin not run: %s", reason)
	return testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: reason}
}

// finish classifies the end of a run, notes it (and the sandbox limits the
// guest reached) in the output and the reason, and parses the per-test
// results.
func (h *Host) finish(ctx, runCtx context.Context, spec testrun.Spec, w *capWriter, logger *slog.Logger, callErr error, memBytes uint64, limitMiB int, started time.Time, limitNotes []string) testrun.Result {
	kept, dropped, tail := w.result()
	res := classify(ctx, runCtx, callErr, tail, memBytes, uint64(limitMiB)<<20, spec.Timeout, time.Since(started))
	switch {
	case res.Status == testrun.Errored && strings.HasPrefix(res.Reason, "crashed"):
		w.marker("plugin %s: %v", res.Reason, callErr) // with wazero's wasm stack trace
	case res.Status != testrun.Passed && res.Status != testrun.Failed:
		w.marker("plugin %s", res.Reason)
	}
	notes := slices.Clone(limitNotes)
	if dropped > 0 {
		notes = append(notes, fmt.Sprintf("output capped at %s: %s dropped", formatBytes(int64(h.cfg.OutputLimitMiB)<<20), formatBytes(dropped)))
	}
	for _, note := range notes {
		w.marker("%s", note)
		if res.Reason == "" {
			res.Reason = note
		} else {
			res.Reason += "; " + note
		}
	}
	if w.dstErr != nil {
		logger.WarnContext(ctx, "plugin output writer failed; output after the error was not forwarded", "err", w.dstErr)
	}
	res.Tests = testreport.Parse(kept)
	return res
}

// classify maps how _start returned to a testrun.Result (without Tests).
//
//   - nil or exit code 0: Passed;
//   - runCtx done (wazero then reports exit code 0xefffffff or 0xffffffff,
//     or a trap): TimedOut, or Canceled when the caller cancelled or Close
//     stopped the run. Those exit codes from a guest that called proc_exit
//     with them itself, before the deadline, are just exit codes: Failed;
//   - exit 2 with the Go runtime's fatal "out of memory" at the end of the
//     output, a trap while the memory is at its cap, or a worker process
//     whose own Go runtime ran out of memory (workerOutOfMemory): Errored
//     "out of memory";
//   - exit 2 after the Go testing package's own "panic: test timed out":
//     TimedOut;
//   - any other exit code: Failed;
//   - any other error (a trap): Errored "crashed: <trap>".
func classify(ctx, runCtx context.Context, callErr error, tail []byte, memBytes, limitBytes uint64, timeout, elapsed time.Duration) testrun.Result {
	stopped := func() testrun.Result {
		if errors.Is(context.Cause(runCtx), errHostClosed) {
			return testrun.Result{Status: testrun.Canceled, ExitCode: -1, Reason: errHostClosed.Error()}
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return testrun.Result{Status: testrun.Canceled, ExitCode: -1, Reason: "canceled"}
		}
		d := timeout
		if d <= 0 {
			d = elapsed.Round(time.Millisecond)
		}
		return testrun.Result{Status: testrun.TimedOut, ExitCode: -1, Reason: fmt.Sprintf("timed out after %s", d)}
	}
	if callErr == nil {
		return testrun.Result{Status: testrun.Passed, ExitCode: 0}
	}
	var exit *sys.ExitError
	if errors.As(callErr, &exit) {
		code := exit.ExitCode()
		switch {
		case (code == sys.ExitCodeDeadlineExceeded || code == sys.ExitCodeContextCanceled) && runCtx.Err() != nil:
			return stopped()
		case code == 0:
			return testrun.Result{Status: testrun.Passed, ExitCode: 0}
		case code == 2 && goOutOfMemory(tail) != "":
			return testrun.Result{Status: testrun.Errored, ExitCode: 2, Reason: "out of memory"}
		case code == 2 && strings.Contains(string(tail), "panic: test timed out after"):
			return testrun.Result{Status: testrun.TimedOut, ExitCode: 2, Reason: "timed out: " + firstLineWith(tail, "panic: test timed out after")}
		}
		return testrun.Result{Status: testrun.Failed, ExitCode: int(code)}
	}
	if runCtx.Err() != nil {
		return stopped()
	}
	msg := firstLine(callErr.Error())
	var oom *workerOutOfMemory
	if errors.As(callErr, &oom) || (limitBytes > 0 && memBytes >= limitBytes-limitBytes/20) {
		return testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: "out of memory"}
	}
	return testrun.Result{Status: testrun.Errored, ExitCode: -1, Reason: "crashed: " + msg}
}

// goOutOfMemory returns the line with which a Go program's runtime said
// it ran out of memory ("fatal error: out of memory", "fatal error:
// runtime: out of memory", "runtime: out of memory: cannot allocate ..."),
// or "" when out contains none: output that merely mentions "out of
// memory" is not one.
func goOutOfMemory(out []byte) string {
	for l := range strings.Lines(string(out)) {
		l = strings.TrimSpace(l)
		for _, p := range []string{"runtime: out of memory", "fatal error: out of memory", "fatal error: runtime: out of memory"} {
			if strings.HasPrefix(l, p) {
				return l
			}
		}
	}
	return ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

func firstLineWith(b []byte, substr string) string {
	s := string(b)
	i := strings.Index(s, substr)
	if i < 0 {
		return ""
	}
	return strings.TrimPrefix(firstLine(s[i:]), "panic: ")
}

// primeWazeroVersion runs once before any runtime or compilation cache is
// made: wazero (v1.12) records its own version in an unsynchronised variable
// the first time it makes a file cache or a compiling engine, so two hosts
// starting at once would race on it. Opening one throwaway file cache here
// records it while nothing else runs wazero.
var primeWazeroVersion = sync.OnceFunc(func() {
	dir, err := os.MkdirTemp("", "pontus-wazero-")
	if err != nil {
		return
	}
	defer os.RemoveAll(dir)
	if c, err := wazero.NewCompilationCacheWithDir(dir); err == nil {
		_ = c.Close(context.Background())
	}
})
