package plugins

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// limitAddressSpace sets this process's RLIMIT_AS to what it maps now plus
// extra, and returns the limit; 0 when none is set. A worker calls it once
// it has loaded its module, so that a guest driving host allocations
// beyond its memory cap makes the worker's Go runtime fail "out of memory"
// instead of growing the machine's memory use. The race detector reserves
// terabytes of shadow address space, so race-enabled builds set none.
func limitAddressSpace(extra int64) (int64, error) {
	if raceEnabled {
		return 0, nil
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	_, rest, ok := bytes.Cut(b, []byte("\nVmSize:"))
	if !ok {
		return 0, fmt.Errorf("no VmSize in /proc/self/status")
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	kib, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(line), []byte("kB")))), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse VmSize: %w", err)
	}
	limit := kib<<10 + extra
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: uint64(limit), Max: uint64(limit)}); err != nil {
		return 0, err
	}
	return limit, nil
}
