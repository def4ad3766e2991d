//go:build unix

package runnerd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockWorkdir creates dir and takes an exclusive lock on dir/lock, so that
// two runners never share (and clean up) one workdir.
func lockWorkdir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create runner.workdir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open workdir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("runner.workdir %s is in use by another runner", dir)
		}
		return nil, fmt.Errorf("lock runner.workdir: %w", err)
	}
	return func() { f.Close() }, nil
}
