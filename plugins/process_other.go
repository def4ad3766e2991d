//go:build !unix

package plugins

import (
	"errors"
	"syscall"
)

// processIsolation reports whether IsolationProcess is available here.
const processIsolation = false

func killGroup(int) error { return errors.New("process isolation needs a Unix system") }

func guestProcAttr() *syscall.SysProcAttr { return nil }
