package controlplane

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pontus-ci/pontus/internal/protofmt"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// resultWriter writes the two result files of a finished build:
// results_dir/<commit> (the human report) first and
// results_dir/<commit>.json last, each atomically (temp file + rename), so
// the .json's presence means both are complete.
//
// Files are written by one background goroutine, in the order builds
// finish, off the path of the RPC that finished them; the store's
// "reported" flag, set once both files are written, makes a restarted
// control plane write whatever a crash left unwritten.
type resultWriter struct {
	dir   string
	logs  *logStore
	fsync bool

	mu      sync.Mutex
	stopped bool
	queue   chan *pontusv1.Build
	done    chan struct{}
}

// start runs the writer; written is called after each build's files are
// in place.
func (w *resultWriter) start(written func(*pontusv1.Build, error)) {
	w.queue = make(chan *pontusv1.Build, 4096)
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		for b := range w.queue {
			written(b, w.write(b))
		}
	}()
}

// enqueue hands a finished build (no longer shared) to the writer. It
// blocks only when thousands of builds are waiting. After stop it does
// nothing: the store still marks the build unreported, so the next start
// writes its files.
func (w *resultWriter) enqueue(b *pontusv1.Build) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.queue <- b
	}
}

// stop writes what is queued and stops the writer.
func (w *resultWriter) stop() {
	w.mu.Lock()
	if !w.stopped {
		w.stopped = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.done
}

func (w *resultWriter) write(b *pontusv1.Build) error {
	// Commit ids were validated at the edge; check again before they name a path.
	if err := validate.CommitID("commit", b.Commit); err != nil {
		return err
	}
	log, err := w.logs.readAll(b.Id, b.Attempt)
	if err != nil {
		return fmt.Errorf("read log: %w", err)
	}
	js, err := protofmt.JSON(b)
	if err != nil {
		return fmt.Errorf("encode build: %w", err)
	}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return fmt.Errorf("create results directory: %w", err)
	}
	if newer := w.writtenID(b.Commit); newer > b.Id {
		return nil // a newer build of the commit already has the files
	}
	if err := w.atomicWrite(b.Commit, humanReport(b, log)); err != nil {
		return err
	}
	return w.atomicWrite(b.Commit+".json", js)
}

// buildIDPattern finds the build id at the top of a result .json.
var buildIDPattern = regexp.MustCompile(`^\{\s*"id":\s*"(\d+)"`)

// writtenID returns the build id of the commit's result files, 0 if none.
func (w *resultWriter) writtenID(commit string) int64 {
	f, err := os.Open(filepath.Join(w.dir, commit+".json"))
	if err != nil {
		return 0
	}
	defer f.Close()
	head := make([]byte, 64)
	n, _ := f.Read(head)
	m := buildIDPattern.FindSubmatch(head[:n])
	if m == nil {
		return 0
	}
	id, _ := strconv.ParseInt(string(m[1]), 10, 64)
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
	if err == nil {
		err = os.Chmod(tmp, 0o644)
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

// humanReport renders the plain-text report: a header, one line per test
// case (failures first, with their message), then the captured output.
func humanReport(b *pontusv1.Build, log []byte) []byte {
	var buf bytes.Buffer
	status := strings.ToUpper(statusName(b.Status))
	fmt.Fprintf(&buf, "%s %s\n\n", status, b.Commit)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&buf, "%-9s %s\n", k+":", v)
		}
	}
	row("status", status)
	row("commit", b.Commit)
	row("repo", b.Repo)
	row("branch", b.Branch)
	row("build", fmt.Sprint(b.Id))
	if b.RunnerName != "" || b.RunnerId != "" {
		row("runner", fmt.Sprintf("%s (%s)", b.RunnerName, b.RunnerId))
	}
	row("attempt", fmt.Sprintf("%d of at most %d", b.Attempt, b.MaxAttempts))
	if b.Duration != nil {
		row("duration", b.Duration.AsDuration().Round(time.Millisecond).String())
	}
	if b.FinishedAt != nil {
		row("finished", b.FinishedAt.AsTime().UTC().Format(time.RFC3339))
	}
	row("reason", b.Reason)
	if len(b.Attempts) > 1 {
		for _, a := range b.Attempts[:len(b.Attempts)-1] {
			row("lost", fmt.Sprintf("attempt %d on %s: %s", a.Number, a.RunnerName, a.Reason))
		}
	}
	var pass, fail, skip, errs int
	for _, t := range b.Tests {
		switch t.Outcome {
		case pontusv1.TestOutcome_TEST_OUTCOME_PASSED:
			pass++
		case pontusv1.TestOutcome_TEST_OUTCOME_FAILED:
			fail++
		case pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED:
			skip++
		default:
			errs++
		}
	}
	if len(b.Tests) > 0 {
		row("tests", fmt.Sprintf("%d passed, %d failed, %d errors, %d skipped", pass, fail, errs, skip))
		buf.WriteString("\n")
		for _, t := range b.Tests {
			word := strings.ToUpper(strings.TrimPrefix(t.Outcome.String(), "TEST_OUTCOME_"))
			if word == "PASSED" {
				word = "PASS"
			} else if word == "FAILED" {
				word = "FAIL"
			}
			d := ""
			if t.Duration != nil {
				d = "  (" + t.Duration.AsDuration().String() + ")"
			}
			fmt.Fprintf(&buf, "%-5s %s%s\n", word, t.Name, d)
			if t.Message != "" && t.Outcome != pontusv1.TestOutcome_TEST_OUTCOME_PASSED {
				for _, line := range strings.Split(strings.TrimRight(t.Message, "\n"), "\n") {
					fmt.Fprintf(&buf, "      %s\n", line)
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
