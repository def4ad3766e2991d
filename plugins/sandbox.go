package plugins

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"
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
