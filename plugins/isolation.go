package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"
)

// Isolation modes (HostConfig.Isolation).
const (
	// IsolationInProcess runs guests in the host's own process, with
	// wazero's close-on-context-done to stop them at their deadline. The
	// default.
	IsolationInProcess = "inprocess"
	// IsolationProcess runs each guest in a child process (the host's own
	// executable re-executed as GuestCommand), with close-on-context-done
	// off, and kills the child's process group at the deadline.
	IsolationProcess = "process"
)

// The guest process protocol. A Host in IsolationProcess mode runs
//
//	<os.Executable()> __wasm-guest        (environment: only PONTUS_WASM_GUEST=1)
//
// with the run's description as one JSON object on stdin, the guest's
// stdout and stderr both going to the child's stdout, the child's own
// diagnostics to its stderr, and file descriptor 3 (the first of
// exec.Cmd.ExtraFiles) for the result: one JSON object written when the
// guest has ended. The child's exit status is 0 when that result describes
// a guest run (whatever the guest's own exit code), 3 when the guest could
// not be started (the result's "error" says why), 2 for an unreadable run
// description and 1 when the result could not be written. A child killed
// or dying without a result is a crash, unless the host killed it for the
// deadline or a cancellation.
//
// The executable must route the request to GuestMain: the pontus binary
// has the hidden subcommand GuestCommand, and a test binary (or any other
// program embedding this package that sets IsolationProcess) must call
// GuestMain from its main or TestMain when the environment variable
// GuestEnv is "1".
const (
	// GuestCommand is the first argument of a guest process.
	GuestCommand = "__wasm-guest"
	// GuestEnv is set to "1" in a guest process's (otherwise empty)
	// environment.
	GuestEnv = "PONTUS_WASM_GUEST"
)

const (
	// guestFD is the file descriptor of a guest process's result.
	guestFD = 3
	// maxGuestRequest bounds the run description a guest process reads.
	maxGuestRequest = 4 << 20
	// maxGuestReport bounds the result the host reads; maxTrapText the
	// trap message (with wazero's wasm stack trace) in it.
	maxGuestReport = 256 << 10
	maxTrapText    = 64 << 10
	// maxGuestStderr is how much of a guest process's own stderr the host
	// keeps for its diagnostics.
	maxGuestStderr = 16 << 10
	// guestWaitDelay bounds the wait for the child's output pipes once it
	// has exited or been killed.
	guestWaitDelay = 5 * time.Second
)

// guestRequest is the run description a guest process reads on stdin.
type guestRequest struct {
	Dir              string      `json:"dir"`    // checkout, mounted at /src
	Module           string      `json:"module"` // absolute path, read like readModule
	SHA256           string      `json:"sha256"` // of the module the host compiled
	MemoryLimitPages uint32      `json:"memory_limit_pages"`
	CacheDir         string      `json:"cache_dir"` // wazero's cache directory itself
	Sandbox          sandboxSpec `json:"sandbox"`
}

// guestReport is the result a guest process writes on guestFD.
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
	// LoadMS is how long loading the compiled module took.
	LoadMS float64 `json:"load_ms"`
}

// errGuestStopped is what a guest process killed for its deadline or a
// cancellation reports; classify turns it into TimedOut or Canceled.
var errGuestStopped = errors.New("guest process killed")

// runProcess runs one guest in a child process (IsolationProcess): req
// on its stdin, its stdout copied into w, and its process group killed
// when runCtx is done.
func (h *Host) runProcess(runCtx context.Context, logger *slog.Logger, req guestRequest, w io.Writer) guestOutcome {
	exe, err := os.Executable()
	if err != nil {
		return guestOutcome{setupErr: fmt.Errorf("find the host executable to run the guest process: %w", err)}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return guestOutcome{setupErr: fmt.Errorf("encode guest process request: %w", err)}
	}
	resultR, resultW, err := os.Pipe()
	if err != nil {
		return guestOutcome{setupErr: fmt.Errorf("create guest result pipe: %w", err)}
	}
	defer resultR.Close()
	stderr := &capWriter{dst: io.Discard, limit: maxGuestStderr}

	cmd := exec.CommandContext(runCtx, exe, GuestCommand)
	cmd.Env = []string{GuestEnv + "=1"}
	cmd.Dir = req.Sandbox.Scratch
	cmd.Stdin = bytes.NewReader(body)
	cmd.Stdout = w
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{resultW} // fd 3 == guestFD
	cmd.SysProcAttr = guestProcAttr()
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = guestWaitDelay
	start := time.Now()
	err = cmd.Start()
	resultW.Close()
	if err != nil {
		return guestOutcome{setupErr: fmt.Errorf("start guest process %s: %w", exe, err)}
	}
	if h.onGuestStart != nil {
		h.onGuestStart(cmd.Process.Pid)
	}
	reportc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(resultR, maxGuestReport))
		_, _ = io.Copy(io.Discard, resultR) // never block the child
		reportc <- b
	}()
	waitErr := cmd.Wait()
	raw := <-reportc
	childErr, _, _ := stderr.result()

	var rep guestReport
	if len(raw) == 0 || json.Unmarshal(raw, &rep) != nil {
		if runCtx.Err() != nil {
			return guestOutcome{callErr: errGuestStopped}
		}
		logger.WarnContext(runCtx, "guest process ended without a result", "err", waitErr,
			"took", time.Since(start), "stderr", string(childErr))
		msg := "no result"
		if waitErr != nil {
			msg = waitErr.Error()
		}
		if l := firstLine(string(childErr)); l != "" {
			msg += ": " + l
		}
		return guestOutcome{callErr: fmt.Errorf("guest process: %s", msg)}
	}
	g := guestOutcome{memBytes: rep.MemBytes, notes: rep.Notes, load: time.Duration(rep.LoadMS * float64(time.Millisecond))}
	switch {
	case rep.Error != "":
		g.setupErr = errors.New(rep.Error)
	case rep.Trap != "":
		g.callErr = errors.New(rep.Trap)
	case rep.Exited:
		g.callErr = sys.NewExitError(rep.ExitCode)
	}
	return g
}

// GuestMain is the guest process (IsolationProcess): it reads a run
// description from stdin, loads the module from the on-disk compilation
// cache the host filled, runs it in the same sandbox as an in-process run
// (with close-on-context-done off: the host kills the process at the
// deadline) with the guest's stdout and stderr both written to stdout, and
// writes the result as JSON to result. It returns the process's exit
// status; see GuestCommand for the protocol. stderr gets only the guest
// process's own diagnostics.
//
// The pontus binary calls it from its hidden GuestCommand subcommand, with
// result os.NewFile(3, ...). Programs embedding this package with
// IsolationProcess must do the same when started with GuestEnv=1.
func GuestMain(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, result io.Writer) int {
	var req guestRequest
	dec := json.NewDecoder(io.LimitReader(stdin, maxGuestRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fmt.Fprintf(stderr, "pontus %s: read the run description on stdin: %v\n", GuestCommand, err)
		return 2
	}
	rep := guestRun(ctx, req, stdout)
	b, err := json.Marshal(rep)
	if err == nil {
		_, err = result.Write(b)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pontus %s: write the result: %v\n", GuestCommand, err)
		return 1
	}
	if rep.Error != "" {
		fmt.Fprintf(stderr, "pontus %s: %s\n", GuestCommand, rep.Error)
		return 3
	}
	return 0
}

// guestRun loads and runs the module of req, writing its output to out.
func guestRun(ctx context.Context, req guestRequest, out io.Writer) guestReport {
	fail := func(format string, args ...any) guestReport {
		return guestReport{Error: fmt.Sprintf(format, args...)}
	}
	switch {
	case req.CacheDir == "" || !filepath.IsAbs(req.CacheDir):
		return fail("compilation cache dir %q is not an absolute path", req.CacheDir)
	case req.MemoryLimitPages == 0 || req.MemoryLimitPages > MaxMemoryLimitMiB*16:
		return fail("memory limit of %d pages is outside 1..%d", req.MemoryLimitPages, MaxMemoryLimitMiB*16)
	case req.Sandbox.Scratch == "" || !filepath.IsAbs(req.Sandbox.Scratch):
		return fail("scratch dir %q is not an absolute path", req.Sandbox.Scratch)
	case req.Sandbox.MaxOpenFiles <= 0 || req.Sandbox.TmpLimitBytes <= 0 || req.Sandbox.TmpMaxFiles <= 0:
		return fail("sandbox limits must be positive")
	}
	start := time.Now()
	wasm, err := readModule(req.Dir, req.Module)
	if err != nil {
		return fail("%v", err)
	}
	if sum := sha256.Sum256(wasm); hex.EncodeToString(sum[:]) != req.SHA256 {
		return fail("plugin module %s changed since the host compiled it", req.Module)
	}
	cache, err := wazero.NewCompilationCacheWithDir(req.CacheDir)
	if err != nil {
		return fail("open compilation cache %s: %v", req.CacheDir, err)
	}
	defer cache.Close(context.WithoutCancel(ctx))
	rt, err := newRuntime(ctx, req.MemoryLimitPages, false, cache)
	if err != nil {
		return fail("%v", err)
	}
	defer rt.Close(context.WithoutCancel(ctx))
	cm, err := compileModule(ctx, rt, wasm)
	if err != nil {
		return fail("%v", err)
	}
	root, err := os.OpenRoot(req.Dir)
	if err != nil {
		return fail("open checkout: %v", err)
	}
	defer root.Close()
	load := time.Since(start)

	g := runSandboxed(ctx, rt, cm, root, req.Sandbox, out)
	rep := guestReport{MemBytes: g.memBytes, Notes: g.notes, LoadMS: float64(load) / float64(time.Millisecond)}
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
