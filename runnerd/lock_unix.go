//go:build unix

package runnerd

import (
	"errors"
	"fmt"

	"github.com/pontus-ci/pontus/internal/dirlock"
)

// lockWorkdir creates dir and takes an exclusive lock on dir/lock, so that
// two runners never share (and clean up) one workdir.
func lockWorkdir(dir string) (unlock func(), err error) {
	l, err := dirlock.Acquire(dir, "runner.workdir", 0o755)
	var locked *dirlock.LockedError
	if errors.As(err, &locked) {
		return nil, fmt.Errorf("%w: it is in use by another runner", err)
	}
	if err != nil {
		return nil, err
	}
	return l.Release, nil
}
