package controlplane

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pontus-ci/pontus/controlplane/store"
	"github.com/pontus-ci/pontus/internal/buildtext"
	"github.com/pontus-ci/pontus/internal/protofmt"
	"github.com/pontus-ci/pontus/internal/termsafe"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// resultWriter writes the two result files of a finished build:
// results_dir/<commit> (the human report) first and
// results_dir/<commit>.json last, each atomically (temp file + rename), so
// the .json's presence means both are complete.
//
// The files hold the newest verdict of the commit (PASSED, FAILED,
// TIMED_OUT, CANCELED). An ERROR build — an infrastructure failure, not a
// verdict — writes them only while no verdict is there, so a failed clone
// or a lost runner never replaces what the tests said.
//
// Files are written by one background goroutine, in the order builds
// finish, off the path of the RPC that finished them; the store's
// "reported" flag, set once both files are written, makes a restarted
// control plane write whatever a crash left unwritten. A write that fails
// (a full or read-only disk) is retried with backoff until it succeeds or
// the writer stops; the build stays safe in the store meanwhile.
type resultWriter struct {
	dir   string
	logs  *logStore
	fsync bool
	mode  os.FileMode // of result files; 0 means 0600
	log   *slog.Logger

	// forward, if set, takes every finished build instead of the
	// writer: a replica's result files are written from the store
	// (replica.go), and forward only wakes that writer.
	forward func(*pontusv1.Build)

	// reload returns the finished builds whose files the store does not
	// record as written; the writer calls it after builds were dropped
	// from a full queue.
	reload func() ([]*pontusv1.Build, error)

	// failing is 1 while the writer is retrying a failed write; failures
	// counts failed attempts. Both are exported as metrics.
	failing  atomic.Int32
	failures atomic.Int64
	// dropped is set when a build did not fit in the queue.
	dropped atomic.Bool

	// fileMu serialises writing and removing result files.
	fileMu sync.Mutex

	mu      sync.Mutex
	stopped bool
	queue   chan *pontusv1.Build
	done    chan struct{}
	quit    chan struct{}
}

// Backoff between attempts to write result files that failed.
const (
	resultRetryMin = 100 * time.Millisecond
	resultRetryMax = 30 * time.Second
)

// start runs the writer; written is called after each build's files are
// in place (or with an error that retrying cannot fix).
func (w *resultWriter) start(written func(*pontusv1.Build, error)) {
	w.queue = make(chan *pontusv1.Build, resultQueueLen)
	w.done = make(chan struct{})
	w.quit = make(chan struct{})
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	go func() {
		defer close(w.done)
		for b := range w.queue {
			w.writeRetrying(b, written)
			if len(w.queue) == 0 && w.dropped.Swap(false) && w.reload != nil {
				w.catchUp(written)
			}
		}
	}()
}

// resultQueueLen is how many finished builds may wait for their files in
// memory; beyond it they wait in the store (unreported).
var resultQueueLen = 4096

// catchUp writes the files of builds that were dropped from a full queue,
// re-read from the store. A build also queued since is written twice,
// which changes nothing.
func (w *resultWriter) catchUp(written func(*pontusv1.Build, error)) {
	builds, err := w.reload()
	if err != nil {
		w.log.Error("re-read builds whose result files are not written; the next start writes them", "err", err)
		return
	}
	for _, b := range builds {
		select {
		case <-w.quit:
			return
		default:
		}
		w.writeRetrying(b, written)
	}
}

// writeRetrying writes b's files, retrying with capped exponential
// backoff while the disk refuses them. When the writer stops first, the
// build stays unreported in the store and the next start writes it.
func (w *resultWriter) writeRetrying(b *pontusv1.Build, written func(*pontusv1.Build, error)) {
	delay := resultRetryMin
	for {
		err := w.write(b)
		if err == nil || errors.Is(err, errNotRetryable) {
			if err == nil && w.failing.Swap(0) == 1 {
				w.log.Info("result files are written again", "dir", w.dir)
			}
			written(b, err)
			return
		}
		w.failures.Add(1)
		w.failing.Store(1)
		w.log.Error("write result files; the build is kept in the store and its files will be retried",
			"build", b.Id, "commit", b.Commit, "retry_in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-w.quit:
			t.Stop()
			return
		}
		delay = min(2*delay, resultRetryMax)
	}
}

// errNotRetryable marks a write that no retry can fix.
var errNotRetryable = errors.New("not retryable")

// enqueue hands a finished build (no longer shared) to the writer. It
// never blocks: when thousands of builds are waiting (a disk that refuses
// the files for a long time), the build stays unreported in the store and
// the writer re-reads it from there once it has caught up. After stop it
// does nothing: the next start writes the files of unreported builds.
func (w *resultWriter) enqueue(b *pontusv1.Build) {
	if w.forward != nil {
		w.forward(b)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	select {
	case w.queue <- b:
	default:
		if !w.dropped.Swap(true) {
			w.log.Warn("result files are behind; waiting builds stay in the store until the writer catches up", "waiting", len(w.queue))
		}
	}
}

// stop writes what is queued (once each, no retries) and stops the writer.
func (w *resultWriter) stop() {
	w.mu.Lock()
	if !w.stopped {
		w.stopped = true
		close(w.queue)
		close(w.quit)
	}
	w.mu.Unlock()
	<-w.done
}

// isVerdict reports whether a status is what the tests said, as opposed
// to ERROR (Pontus could not get an answer).
func isVerdict(s pontusv1.BuildStatus) bool {
	return s != statusError && store.IsTerminal(s)
}

func (w *resultWriter) write(b *pontusv1.Build) error {
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	// Commit ids were validated at the edge; check again before they name a path.
	if err := validate.CommitID("commit", b.Commit); err != nil {
		return fmt.Errorf("%w: %w", errNotRetryable, err)
	}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return fmt.Errorf("create results directory: %w", err)
	}
	if id, status := w.written(b.Commit); id != 0 {
		switch {
		case isVerdict(b.Status) && isVerdict(status) && id > b.Id:
			return nil // a newer verdict is there
		case !isVerdict(b.Status) && (isVerdict(status) || id > b.Id):
			return nil // a verdict (or a newer error) is there
		}
	}
	log, err := buildLog(w.logs, b)
	if err != nil {
		return fmt.Errorf("read log: %w", err)
	}
	js, err := protofmt.JSON(b)
	if err != nil {
		return fmt.Errorf("%w: encode build: %w", errNotRetryable, err)
	}
	if err := w.atomicWrite(b.Commit, termsafe.Clean(humanReport(b, log))); err != nil {
		return err
	}
	return w.atomicWrite(b.Commit+".json", js)
}

// written returns the build id and status of the commit's result files,
// 0 if there are none.
func (w *resultWriter) written(commit string) (int64, pontusv1.BuildStatus) {
	data, err := os.ReadFile(filepath.Join(w.dir, commit+".json"))
	if err != nil {
		return 0, 0
	}
	var head struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if json.Unmarshal(data, &head) != nil {
		return 0, 0
	}
	id, _ := strconv.ParseInt(head.ID, 10, 64)
	return id, pontusv1.BuildStatus(pontusv1.BuildStatus_value[head.Status])
}

// writtenID returns the build id of the commit's result files, 0 if none.
func (w *resultWriter) writtenID(commit string) int64 {
	id, _ := w.written(commit)
	return id
}

func (w *resultWriter) atomicWrite(name string, data []byte) error {
	f, err := os.CreateTemp(w.dir, ".tmp-"+name[:12]+"-*")
	if err != nil {
		return fmt.Errorf("create result file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && w.fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	mode := w.mode
	if mode == 0 {
		mode = 0o600
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(w.dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write result file %s: %w", name, err)
	}
	return nil
}

// oneLine joins the lines and runs of blanks of s into single spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// humanReport renders the plain-text report: a header, one line per test
// case (failures first, with their message), then the captured output.
func humanReport(b *pontusv1.Build, log []byte) []byte {
	var buf bytes.Buffer
	status := buildtext.Status(b.Status)
	fmt.Fprintf(&buf, "%s %s\n", status, b.Commit)
	if b.Subject != "" {
		fmt.Fprintf(&buf, "%s\n", oneLine(b.Subject))
	}
	buf.WriteString("\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&buf, "%-9s %s\n", k+":", v)
		}
	}
	row("status", status)
	row("commit", b.Commit)
	row("subject", oneLine(b.Subject))
	row("author", oneLine(buildtext.Author(b)))
	if t := b.CommittedAt; t.IsValid() && t.AsTime().Unix() > 0 {
		row("date", t.AsTime().UTC().Format(time.RFC3339))
	}
	row("repo", b.Repo)
	row("branch", b.Branch)
	row("build", fmt.Sprint(b.Id))
	if b.RunnerName != "" || b.RunnerId != "" {
		row("runner", fmt.Sprintf("%s (%s)", b.RunnerName, b.RunnerId))
	}
	if len(b.Shards) == 0 {
		row("attempt", fmt.Sprintf("%d of at most %d", b.Attempt, b.MaxAttempts))
	}
	for _, r := range buildtext.ShardRows(b) {
		row(r[0], r[1])
	}
	if b.Duration != nil {
		row("duration", b.Duration.AsDuration().Round(time.Millisecond).String())
	}
	if b.FinishedAt != nil {
		row("finished", b.FinishedAt.AsTime().UTC().Format(time.RFC3339))
	}
	row("reason", b.Reason)
	if b.Culprit != "" {
		// Unpadded, so "culprit: <commit>" reads (and greps) the same everywhere.
		fmt.Fprintf(&buf, "culprit: %s\n", b.Culprit)
	}
	row("bisection", b.Bisection)
	if b.BisectOf != 0 {
		row("bisecting", fmt.Sprintf("build %d (a culprit search)", b.BisectOf))
	}
	if len(b.Attempts) > 1 {
		for _, a := range b.Attempts[:len(b.Attempts)-1] {
			row("lost", fmt.Sprintf("attempt %d on %s: %s", a.Number, a.RunnerName, a.Reason))
		}
	}
	if len(b.Tests) > 0 {
		row("tests", buildtext.Summary(b.Tests))
		buf.WriteString("\n")
		for _, t := range b.Tests {
			d := ""
			if t.Duration != nil {
				d = "  (" + t.Duration.AsDuration().String() + ")"
			}
			if t.Runs > 1 {
				d += fmt.Sprintf("  [%d runs]", t.Runs)
			}
			fmt.Fprintf(&buf, "%-*s %s%s\n", buildtext.OutcomeWidth, buildtext.Outcome(t.Outcome), t.Name, d)
			if t.Message != "" && t.Outcome != pontusv1.TestOutcome_TEST_OUTCOME_PASSED {
				for _, line := range strings.Split(strings.TrimRight(t.Message, "\n"), "\n") {
					fmt.Fprintf(&buf, "%*s %s\n", buildtext.OutcomeWidth, "", line)
				}
			}
		}
	}
	if b.OutputDroppedBytes > 0 {
		row("dropped", fmt.Sprintf("%d bytes of output beyond the runner's cap", b.OutputDroppedBytes))
	}
	buf.WriteString("\n--- output ---\n")
	buf.Write(log)
	if len(log) > 0 && log[len(log)-1] != '\n' {
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}
