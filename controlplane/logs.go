package controlplane

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// logStore keeps each attempt's log as a file
// data_dir/logs/<build id>-<attempt>.log, capped at max bytes with a marker
// line. Appends reach the file before AppendLog answers, so a crash of the
// control plane loses no acknowledged output.
type logStore struct {
	dir   string
	max   int64
	fsync bool
}

func (l *logStore) path(build int64, attempt int32) string {
	return filepath.Join(l.dir, strconv.FormatInt(build, 10)+"-"+strconv.Itoa(int(attempt))+".log")
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
	f, err := os.OpenFile(l.path(build, attempt), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	keep := data
	if off+int64(len(data)) > l.max {
		keep = data[:max(0, l.max-off)]
		truncated = true
	}
	if _, err := f.WriteAt(keep, off); err != nil {
		return false, fmt.Errorf("write log: %w", err)
	}
	if truncated {
		if _, err := f.WriteAt([]byte(truncMarker(l.max)), off+int64(len(keep))); err != nil {
			return false, fmt.Errorf("write log: %w", err)
		}
	}
	if l.fsync {
		if err := f.Sync(); err != nil {
			return false, fmt.Errorf("sync log: %w", err)
		}
	}
	return truncated, nil
}

// size returns the stored size of an attempt's log (0 if none yet).
func (l *logStore) size(build int64, attempt int32) (int64, error) {
	fi, err := os.Stat(l.path(build, attempt))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// read returns up to n bytes of the stored log from off.
func (l *logStore) read(build int64, attempt int32, off int64, n int) ([]byte, error) {
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

// readAll returns the whole stored log of an attempt.
func (l *logStore) readAll(build int64, attempt int32) ([]byte, error) {
	b, err := os.ReadFile(l.path(build, attempt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
