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
	"strings"

	"github.com/pontus-ci/pontus/controlplane/store"
)

// BackupStats says what a backup copied.
type BackupStats struct {
	Builds int   // builds in the copied store
	Logs   int   // log files copied
	Bytes  int64 // bytes of logs copied
}

// Backup writes a consistent copy of a control plane's state in dataDir to
// dest, which must not exist or be empty, while that control plane serves:
// first the store (one transaction's view), then the log of every attempt
// the copied store knows, never the lock. A log is append-only and is
// complete before its build finishes, so every finished build of the copy
// has its whole log, and a running one at least what the store knew (a
// control plane serving the copy re-reads logs' sizes at start).
// `pontus controlplane --data DEST` serves the copy.
func Backup(ctx context.Context, dataDir, dest string) (stats BackupStats, err error) {
	ents, err := os.ReadDir(dest)
	if err == nil && len(ents) > 0 {
		return stats, fmt.Errorf("backup destination %s is not empty", dest)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return stats, fmt.Errorf("backup destination: %w", err)
	}
	created := err != nil
	if err := os.MkdirAll(filepath.Join(dest, "logs"), 0o700); err != nil {
		return stats, fmt.Errorf("create backup destination: %w", err)
	}
	defer func() {
		if err == nil {
			return
		}
		// A failed backup leaves nothing that could pass for one.
		if created {
			os.RemoveAll(dest)
		} else {
			os.RemoveAll(filepath.Join(dest, "logs"))
			os.Remove(filepath.Join(dest, storeFile))
		}
	}()
	attempts, err := store.BackupSQLite(ctx, filepath.Join(dataDir, storeFile), filepath.Join(dest, storeFile))
	if err != nil {
		return stats, err
	}
	stats.Builds = len(attempts)
	srcLogs := filepath.Join(dataDir, "logs")
	logs, lerr := os.ReadDir(srcLogs)
	if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
		return stats, fmt.Errorf("read logs: %w", lerr)
	}
	for _, e := range logs {
		id, attempt, ok := parseLogName(e.Name())
		// Logs of builds (or attempts) newer than the copied store are
		// left out: the copy would hand those ids out again.
		if a, known := attempts[id]; !ok || !known || attempt > a {
			continue
		}
		n, err := copyFile(filepath.Join(srcLogs, e.Name()), filepath.Join(dest, "logs", e.Name()))
		if err != nil {
			return stats, fmt.Errorf("copy log %s: %w", e.Name(), err)
		}
		stats.Logs++
		stats.Bytes += n
	}
	return stats, syncDir(filepath.Join(dest, "logs"))
}

// storeFile is the store's file name in data_dir.
const storeFile = "pontus.db"

// parseLogName parses "<build id>-<attempt>.log".
func parseLogName(name string) (id int64, attempt int32, ok bool) {
	base, found := strings.CutSuffix(name, ".log")
	idText, attText, found2 := strings.Cut(base, "-")
	if !found || !found2 {
		return 0, 0, false
	}
	id, err1 := strconv.ParseInt(idText, 10, 64)
	a, err2 := strconv.ParseInt(attText, 10, 32)
	return id, int32(a), err1 == nil && err2 == nil
}

func copyFile(src, dest string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	return n, errors.Join(err, out.Close())
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
