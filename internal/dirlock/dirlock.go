//go:build unix

// Package dirlock gives one Pontus process exclusive ownership of a
// directory for its lifetime: an flock on DIR/lock, with the holder's PID
// written in the file so a second process can say who holds it. The kernel
// releases an flock when its holder dies, so a lock left by a killed
// process never blocks a restart.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// FileName is the lock file's name inside the locked directory. Backups
// and copies of a directory leave it out.
const FileName = "lock"

// LockedError is returned when another process holds the lock.
type LockedError struct {
	// What names the directory for people, such as "data_dir".
	What string
	Dir  string
	// PID is the holder's process id, 0 if it could not be read.
	PID int
}

func (e *LockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s %s is locked by pid %d", e.What, e.Dir, e.PID)
	}
	return fmt.Sprintf("%s %s is locked by another process", e.What, e.Dir)
}

// Lock is a held directory lock.
type Lock struct {
	f *os.File
	// created is the topmost directory Acquire created, "" if none.
	created string
	// newFile is whether Acquire created the lock file.
	newFile bool
}

// Acquire creates dir (with perm) if needed and locks it. what names the
// directory in errors ("data_dir", "runner.workdir").
func Acquire(dir, what string, perm os.FileMode) (*Lock, error) {
	created, err := mkdirAll(dir, perm)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", what, err)
	}
	l := &Lock{created: created}
	path := filepath.Join(dir, FileName)
	_, statErr := os.Lstat(path)
	l.newFile = errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		l.cleanup()
		return nil, fmt.Errorf("open %s lock: %w", what, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			// Someone holds it: their file, their directory.
			return nil, &LockedError{What: what, Dir: dir, PID: readPID(path)}
		}
		l.cleanup()
		return nil, fmt.Errorf("lock %s: %w", what, err)
	}
	l.f = f
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return l, nil
}

// Release unlocks the directory. The lock file stays: removing it could
// let two processes lock two different files of the same name.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// Abandon unlocks the directory after a start that failed, and removes
// what Acquire created: the directories it made (with everything the
// failed start wrote in them) or else the lock file it made.
func (l *Lock) Abandon() {
	if l == nil {
		return
	}
	if l.f != nil && l.newFile && l.created == "" {
		os.Remove(l.f.Name())
	}
	l.Release()
	l.cleanup()
}

func (l *Lock) cleanup() {
	if l.created != "" {
		os.RemoveAll(l.created)
		l.created = ""
	}
}

// Created returns the topmost directory Acquire created ("" if dir
// existed), so a caller can tell what a failed start must remove.
func (l *Lock) Created() string { return l.created }

// mkdirAll is os.MkdirAll that returns the topmost directory it created.
func mkdirAll(dir string, perm os.FileMode) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	top := ""
	for p := abs; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		top = p
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(abs, perm); err != nil {
		return "", err
	}
	return top, nil
}

func readPID(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
