package runnerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Log streaming.
const (
	// logChunk is the most one AppendLog carries.
	logChunk = 256 << 10
	// logFlushEvery is the longest written output waits before it is sent.
	logFlushEvery = time.Second
	// maxRejections is how many non-retryable refusals (invalid_argument,
	// unauthenticated, …) in a row make the runner give a call up.
	maxRejections = 5
)

// appendFunc is RunnerServiceClient.AppendLog.
type appendFunc func(context.Context, *pontusv1.AppendLogRequest) (*pontusv1.AppendLogResponse, error)

// logStream holds a job's log — the runner's header lines, the step's capped
// output, the runner's closing lines — and streams it to the control plane
// with AppendLog from its own goroutine (run). The whole log stays in
// memory: it is at most the output cap plus a few lines, it is what the
// per-test results are parsed from, and it is what a resend comes from.
type logStream struct {
	append  appendFunc
	jobID   int64
	attempt int32
	limit   int64 // cap on output bytes
	logger  *slog.Logger
	// onDead is called once when the control plane refuses the log for good
	// (stale attempt, or rejected): the job must stop and not be reported.
	onDead func(error)

	mu            sync.Mutex
	buf           []byte
	acked         int64     // bytes the control plane holds
	pendingSince  time.Time // when the oldest unsent byte was written; zero when none
	urgent        bool      // send what is pending at once
	outStart      int       // where the step's output begins in buf (-1 before it does)
	outEnd        int       // where it ends (-1 while it runs)
	outWritten    int64     // output bytes kept
	dropped       int64     // output bytes dropped beyond limit
	droppedMarked int64     // dropped bytes a marker line already reported
	dead          error     // why the control plane will take no more
	progress      chan struct{}
	wake          chan struct{}
}

func newLogStream(append appendFunc, key jobKey, limit int64, logger *slog.Logger, onDead func(error)) *logStream {
	return &logStream{
		append:   append,
		jobID:    key.id,
		attempt:  key.attempt,
		limit:    limit,
		logger:   logger,
		onDead:   onDead,
		outStart: -1,
		outEnd:   -1,
		progress: make(chan struct{}),
		wake:     make(chan struct{}, 1),
	}
}

// errStale means the control plane says this attempt is not the current one
// (failed_precondition) or does not know the job (not_found).
var errStale = errors.New("attempt is stale")

// errRejected means the control plane kept refusing a call for a reason a
// retry cannot fix.
var errRejected = errors.New("control plane rejected the runner's calls")

func (s *logStream) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// notify wakes everyone waiting for progress. Called with s.mu held.
func (s *logStream) notify() {
	close(s.progress)
	s.progress = make(chan struct{})
}

// appendLocked adds p to the log. Called with s.mu held.
func (s *logStream) appendLocked(p []byte) {
	if len(p) == 0 {
		return
	}
	if int64(len(s.buf)) == s.acked {
		s.pendingSince = time.Now()
	}
	s.buf = append(s.buf, p...)
}

// Printf adds one of the runner's own lines to the log and has it sent at once.
func (s *logStream) Printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if line == "" || line[len(line)-1] != '\n' {
		line += "\n"
	}
	s.mu.Lock()
	s.appendLocked([]byte(line))
	s.urgent = true
	s.mu.Unlock()
	s.poke()
}

// Output returns the writer the step's output goes to. It keeps the first
// limit bytes and counts the rest as dropped.
// Each call starts a new step: OutputBytes then returns that step's output.
func (s *logStream) Output() io.Writer {
	s.mu.Lock()
	s.outStart = len(s.buf)
	s.outEnd = -1
	s.mu.Unlock()
	return outputWriter{s}
}

type outputWriter struct{ s *logStream }

func (w outputWriter) Write(p []byte) (int, error) {
	s := w.s
	s.mu.Lock()
	n := int64(len(p))
	if room := s.limit - s.outWritten; n > room {
		n = max(room, 0)
	}
	s.appendLocked(p[:n])
	s.outWritten += n
	s.dropped += int64(len(p)) - n
	s.mu.Unlock()
	if n > 0 {
		s.poke()
	}
	return len(p), nil
}

// EndOutput marks the end of the step's output and, if any was dropped,
// adds the marker line that says how much.
func (s *logStream) EndOutput() {
	s.mu.Lock()
	if s.outEnd >= 0 {
		s.mu.Unlock()
		return
	}
	s.outEnd = len(s.buf)
	dropped := s.dropped - s.droppedMarked
	s.droppedMarked = s.dropped
	if dropped > 0 {
		nl := ""
		if s.outStart >= 0 && len(s.buf) > s.outStart && s.buf[len(s.buf)-1] != '\n' {
			nl = "\n"
		}
		s.appendLocked(fmt.Appendf(nil, "%s[pontus: output truncated: %d bytes dropped]\n", nl, dropped))
		s.urgent = true
	}
	s.mu.Unlock()
	s.poke()
}

// OutputBytes returns the step's (capped) output; nil if no step ran.
func (s *logStream) OutputBytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outStart < 0 {
		return nil
	}
	end := s.outEnd
	if end < 0 {
		end = len(s.buf)
	}
	return s.buf[s.outStart:end]
}

// Dropped returns how many output bytes were dropped beyond the cap.
func (s *logStream) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Size returns the length of the whole log.
func (s *logStream) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.buf))
}

// Bytes returns the whole log so far.
func (s *logStream) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf[:len(s.buf):len(s.buf)]
}

// Rewind makes the stream resend from offset n, which the control plane
// says is all it holds.
func (s *logStream) Rewind(n int64) {
	s.mu.Lock()
	n = min(max(n, 0), int64(len(s.buf)))
	if n < s.acked {
		s.acked = n
		s.pendingSince = time.Now()
	}
	s.urgent = true
	s.mu.Unlock()
	s.poke()
}

// Flush has everything written so far sent now and waits until the control
// plane holds it, the stream is dead, or ctx ends.
func (s *logStream) Flush(ctx context.Context) error {
	s.mu.Lock()
	s.urgent = true
	s.mu.Unlock()
	s.poke()
	for {
		s.mu.Lock()
		if s.dead != nil {
			err := s.dead
			s.mu.Unlock()
			return err
		}
		if s.acked >= int64(len(s.buf)) {
			s.mu.Unlock()
			return nil
		}
		ch := s.progress
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("flush log: %w", ctx.Err())
		}
	}
}

// Run sends the log until ctx ends or the control plane refuses it for
// good. Output waits at most logFlushEvery; a full chunk, a line of the
// runner's own, a rewind or a Flush is sent at once. Failures are retried
// with backoff; meanwhile the log stays in memory.
func (s *logStream) Run(ctx context.Context) {
	bo := dial.NewBackoff(100*time.Millisecond, 5*time.Second)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	failures, rejections, ranges := 0, 0, 0
	for {
		s.mu.Lock()
		pending := int64(len(s.buf)) - s.acked
		send, wait := false, time.Duration(-1) // -1: until woken
		switch {
		case pending <= 0:
		case s.urgent || pending >= logChunk:
			send = true
		default:
			wait = logFlushEvery - time.Since(s.pendingSince)
			send = wait <= 0
		}
		if !send {
			s.mu.Unlock()
			var tc <-chan time.Time
			if wait > 0 {
				timer.Reset(wait)
				tc = timer.C
			}
			select {
			case <-s.wake:
			case <-tc:
			case <-ctx.Done():
				return
			}
			timer.Stop()
			continue
		}
		off := s.acked
		data := s.buf[off:min(int64(len(s.buf)), off+logChunk)]
		s.mu.Unlock()

		callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
		resp, err := s.append(callCtx, &pontusv1.AppendLogRequest{
			JobId: s.jobID, Attempt: s.attempt, Offset: off, Data: data,
		})
		cancel()
		if ctx.Err() != nil {
			return
		}
		code := connect.CodeOf(err)
		switch {
		case err == nil:
			if failures > 0 {
				s.logger.Info("log streaming resumed", "after_failures", failures)
			}
			failures, rejections, ranges = 0, 0, 0
			bo.Reset()
			s.mu.Lock()
			// Success means these bytes are taken; the server may hold more
			// (a resend of bytes it already had).
			s.acked = min(max(off+int64(len(data)), resp.GetSize()), int64(len(s.buf)))
			if s.acked == int64(len(s.buf)) {
				s.urgent = false
				s.pendingSince = time.Time{}
			}
			s.notify()
			s.mu.Unlock()
		case code == connect.CodeOutOfRange:
			n, ok := storedSize(err)
			s.logger.Info("control plane holds less log than sent; resending", "offset", off, "stored", n, "parsed", ok)
			s.Rewind(n)
			if ranges++; ranges > 2 && !dial.Sleep(ctx, bo.Next()) {
				return
			}
		case code == connect.CodeFailedPrecondition || code == connect.CodeNotFound:
			s.die(fmt.Errorf("append log: %w: %v", errStale, err))
			return
		case !dial.Retryable(err) && rejections+1 >= maxRejections:
			s.die(fmt.Errorf("append log: %w: %v", errRejected, err))
			return
		default:
			if !dial.Retryable(err) {
				rejections++
			}
			if failures++; failures == 1 {
				s.logger.Warn("append log failed; retrying with backoff", "err", err)
			} else {
				s.logger.Debug("append log failed", "err", err, "failures", failures)
			}
			if !dial.Sleep(ctx, bo.Next()) {
				return
			}
		}
	}
}

func (s *logStream) die(err error) {
	s.mu.Lock()
	s.dead = err
	s.notify()
	s.mu.Unlock()
	s.logger.Info("control plane refused the log; stopping the job", "err", err)
	if s.onDead != nil {
		s.onDead(err)
	}
}

// storedSizeRE finds the size the control plane stored in an out_of_range
// message ("… stored size 1234").
var storedSizeRE = regexp.MustCompile(`stored size (\d+)`)

// storedSize reads the stored size from an out_of_range error. Without one
// it says 0: resending everything is always safe.
func storedSize(err error) (int64, bool) {
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	m := storedSizeRE.FindAllStringSubmatch(msg, -1)
	if len(m) == 0 {
		return 0, false
	}
	n, perr := strconv.ParseInt(m[len(m)-1][1], 10, 64)
	if perr != nil || n < 0 {
		return 0, false
	}
	return n, true
}
