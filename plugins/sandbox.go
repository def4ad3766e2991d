package plugins

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental/sysfs"
)

// sleeper returns a nanosleep for the guest that wakes early when ctx is
// done. wazero's WithSysNanosleep calls time.Sleep, which no deadline
// interrupts, so a guest in time.Sleep(time.Hour) would outlive its
// timeout (wazero PR #1809).
func sleeper(ctx context.Context) func(ns int64) {
	return func(ns int64) {
		if ns <= 0 {
			return
		}
		t := time.NewTimer(time.Duration(ns))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

const tailSize = 64 << 10

// capWriter forwards the first limit bytes written to it to dst and keeps
// them for parsing, counts the rest as dropped, and keeps the last tailSize
// bytes of everything for classifying the end of a run. It never returns an
// error to the guest (which would turn a full log into EIO in the plugin);
// the first error from dst is remembered and forwarding stops.
type capWriter struct {
	mu      sync.Mutex
	dst     io.Writer
	limit   int
	kept    []byte
	dropped int64
	tail    []byte
	dstErr  error
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tail = append(w.tail, p[max(0, len(p)-tailSize):]...)
	if len(w.tail) > 2*tailSize {
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-tailSize:]...)
	}
	n := min(len(p), w.limit-len(w.kept))
	if n > 0 {
		w.kept = append(w.kept, p[:n]...)
		if w.dstErr == nil {
			_, w.dstErr = w.dst.Write(p[:n])
		}
	}
	w.dropped += int64(len(p) - n)
	return len(p), nil
}

// result returns what was kept, how much was dropped and the tail.
func (w *capWriter) result() (kept []byte, dropped int64, tail []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.tail) > tailSize {
		w.tail = w.tail[len(w.tail)-tailSize:]
	}
	return w.kept, w.dropped, w.tail
}

// marker writes a line from the host (not the guest) to the output.
func (w *capWriter) marker(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dstErr != nil {
		return
	}
	var b bytes.Buffer
	if len(w.kept) > 0 && w.kept[len(w.kept)-1] != '\n' {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "[pontus] "+format+"\n", args...)
	_, w.dstErr = w.dst.Write(b.Bytes())
}

// formatBytes prints n bytes for people: "8 MiB", "95.4 MiB (100000000 bytes)".
func formatBytes(n int64) string {
	const mib = 1 << 20
	switch {
	case n%mib == 0 && n > 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= mib:
		return fmt.Sprintf("%.1f MiB (%d bytes)", float64(n)/mib, n)
	}
	return fmt.Sprintf("%d bytes", n)
}

func outputOrDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// sandboxSpec is what one run's sandbox is built from. The same value
// drives an in-process run and, as JSON, a run in a worker process.
type sandboxSpec struct {
	Name          string      `json:"name"` // argv[0]
	Args          []string    `json:"args"`
	Env           [][2]string `json:"env"`     // final: guestEnv's output
	Scratch       string      `json:"scratch"` // host directory mounted at /tmp
	MaxOpenFiles  int         `json:"max_open_files"`
	TmpLimitBytes int64       `json:"tmp_limit_bytes"`
	TmpMaxFiles   int         `json:"tmp_max_files"`
}

// guestOutcome is how a run's guest ended, in either isolation mode.
type guestOutcome struct {
	// setupErr means the guest never started (instantiation, or a guest
	// process that could not load the module); callErr is _start's error.
	setupErr error
	callErr  error
	memBytes uint64        // guest linear memory at the end
	notes    []string      // sandbox limits the guest reached
	load     time.Duration // starting a worker and loading the module in it (a cold worker only)
}

// sandboxModuleConfig builds the module configuration of one run, for both
// isolation modes:
//
//   - the checkout, read-only through root (an os.Root): a symbolic link in
//     the repository that leads out of it fails to open instead of reaching
//     a host file (wazero's own dir mounts follow it), at /src;
//   - s.Scratch as /tmp, refusing links, with its size and file limits;
//   - both mounts counting the files the guest holds open (each is a file
//     descriptor of the host, and wazero's file table is unbounded);
//   - argv, exactly s.Env as the environment (nothing inherited), empty
//     stdin, stdout and stderr to out;
//   - real clocks, crypto/rand, and a sleep that wakes when ctx is done.
func sandboxModuleConfig(ctx context.Context, root *os.Root, s sandboxSpec, out io.Writer) (wazero.ModuleConfig, *sandboxLimits) {
	lim := newSandboxLimits(s.MaxOpenFiles, s.TmpLimitBytes, s.TmpMaxFiles)
	fsc := wazero.NewFSConfig().(sysfs.FSConfig).
		WithSysFSMount(srcFS{&sysfs.ReadFS{FS: &sysfs.AdaptFS{FS: root.FS()}}, lim}, "/src").(sysfs.FSConfig).
		WithSysFSMount(scratchFS{sysfs.DirFS(s.Scratch), lim}, "/tmp")
	mc := wazero.NewModuleConfig().
		WithName(""). // anonymous: many runs of one module at once
		WithStartFunctions().
		WithArgs(append([]string{s.Name}, s.Args...)...).
		WithStdin(strings.NewReader("")).
		WithStdout(out).
		WithStderr(out).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(sleeper(ctx)).
		WithRandSource(rand.Reader).
		WithFSConfig(fsc)
	for _, kv := range s.Env {
		mc = mc.WithEnv(kv[0], kv[1])
	}
	return mc, lim
}

// runSandboxed instantiates cm in rt with the sandbox s and runs its
// _start under ctx. Both isolation modes run guests through it.
func runSandboxed(ctx context.Context, rt wazero.Runtime, cm wazero.CompiledModule, root *os.Root, s sandboxSpec, out io.Writer) guestOutcome {
	mc, lim := sandboxModuleConfig(ctx, root, s, out)
	mod, err := rt.InstantiateModule(withGuestMemory(ctx), cm, mc)
	if err != nil {
		return guestOutcome{setupErr: fmt.Errorf("instantiate: %w", err), notes: lim.notes()}
	}
	_, callErr := mod.ExportedFunction("_start").Call(ctx)
	memBytes := memorySize(mod)
	_ = mod.Close(context.WithoutCancel(ctx))
	return guestOutcome{callErr: callErr, memBytes: memBytes, notes: lim.notes()}
}
