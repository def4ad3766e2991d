package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pontus-ci/pontus/controlplane/store"
)

// logStore keeps each attempt's log, capped at max bytes with a marker
// line, in a logBackend: files in data_dir/logs with the SQLite store, the
// database itself with PostgreSQL (so every replica serves every log).
// Appends are stored before AppendLog answers, so a crash of the control
// plane loses no acknowledged output.
type logStore struct {
	logBackend
	max int64
}

// logBackend stores the bytes of attempts' logs.
type logBackend interface {
	// writeAt stores data at byte offset off of an attempt's log.
	writeAt(build int64, attempt int32, off int64, data []byte) error
	// size returns the stored size of an attempt's log (0 if none yet).
	size(build int64, attempt int32) (int64, error)
	// read returns up to n bytes of the stored log from off.
	read(build int64, attempt int32, off int64, n int) ([]byte, error)
	// readAll returns the whole stored log of an attempt.
	readAll(build int64, attempt int32) ([]byte, error)
	// remove deletes every attempt's log of a build.
	remove(build int64) error
}

// truncMarker ends a log cut at the cap.
func truncMarker(max int64) string {
	return fmt.Sprintf("\n[pontus: log truncated: the control plane keeps at most %d MiB per attempt]\n", max>>20)
}

// append writes data at logical offset off of the attempt's log. Bytes past
// the cap are dropped; the first drop writes the marker. It reports whether
// the log is now truncated.
func (l *logStore) append(build int64, attempt int32, off int64, data []byte, truncated bool) (bool, error) {
	if truncated {
		return true, nil
	}
	keep := data
	if off+int64(len(data)) > l.max {
		keep = append(data[:max(0, l.max-off):max(0, l.max-off)], truncMarker(l.max)...)
		truncated = true
	}
	if err := l.writeAt(build, attempt, off, keep); err != nil {
		return false, err
	}
	return truncated, nil
}

// fileLogStore keeps logs as files dir/<build id>-<attempt>.log.
func fileLogStore(dir string, max int64, fsync bool) *logStore {
	return &logStore{logBackend: &fileLogs{dir: dir, fsync: fsync}, max: max}
}

type fileLogs struct {
	dir   string
	fsync bool
}

func (l *fileLogs) path(build int64, attempt int32) string {
	return filepath.Join(l.dir, strconv.FormatInt(build, 10)+"-"+strconv.Itoa(int(attempt))+".log")
}

func (l *fileLogs) writeAt(build int64, attempt int32, off int64, data []byte) error {
	f, err := os.OpenFile(l.path(build, attempt), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	if l.fsync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync log: %w", err)
		}
	}
	return nil
}

func (l *fileLogs) size(build int64, attempt int32) (int64, error) {
	fi, err := os.Stat(l.path(build, attempt))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (l *fileLogs) read(build int64, attempt int32, off int64, n int) ([]byte, error) {
	f, err := os.Open(l.path(build, attempt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	m, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:m], nil
}

func (l *fileLogs) readAll(build int64, attempt int32) ([]byte, error) {
	b, err := os.ReadFile(l.path(build, attempt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (l *fileLogs) remove(build int64) error {
	paths, err := filepath.Glob(filepath.Join(l.dir, strconv.FormatInt(build, 10)+"-*.log"))
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove log: %w", err)
		}
	}
	return nil
}

// pgLogStore keeps logs in the PostgreSQL store's log_chunks table.
func pgLogStore(st *store.Postgres, max int64) *logStore {
	return &logStore{logBackend: pgLogs{st}, max: max}
}

type pgLogs struct{ st *store.Postgres }

// logTimeout bounds one log operation on the database.
const logTimeout = 30 * time.Second

func (l pgLogs) writeAt(build int64, attempt int32, off int64, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), logTimeout)
	defer cancel()
	return l.st.WriteLog(ctx, build, attempt, off, data)
}

func (l pgLogs) size(build int64, attempt int32) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), logTimeout)
	defer cancel()
	return l.st.LogSize(ctx, build, attempt)
}

func (l pgLogs) read(build int64, attempt int32, off int64, n int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), logTimeout)
	defer cancel()
	return l.st.ReadLog(ctx, build, attempt, off, n)
}

func (l pgLogs) readAll(build int64, attempt int32) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), logTimeout)
	defer cancel()
	return l.st.ReadLog(ctx, build, attempt, 0, -1)
}

func (l pgLogs) remove(build int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), logTimeout)
	defer cancel()
	return l.st.DeleteLogs(ctx, build)
}
