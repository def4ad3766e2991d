package plugins

import (
	"context"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// withGuestMemory makes wazero back guest linear memory with its own
// anonymous mapping of the whole limit, unmapped when the module closes.
//
// Without it, WithMemoryCapacityFromMax allocates the limit as one Go slice
// per run; when the Go heap reuses a freed one it must zero all of it (a
// 512 MiB memclr took ~90% of a warm start's CPU) and touching it makes it
// resident. A fresh mapping is zero, becomes resident only where the guest
// writes, and goes back to the kernel at once; its address never moves, so
// growing never copies.
func withGuestMemory(ctx context.Context) context.Context {
	return experimental.WithMemoryAllocator(ctx, experimental.MemoryAllocatorFunc(allocateMapped))
}

func allocateMapped(capacity, maxBytes uint64) experimental.LinearMemory {
	if maxBytes == 0 || maxBytes > 1<<32 {
		return &heapMemory{buf: make([]byte, 0, capacity), max: maxBytes}
	}
	buf, err := syscall.Mmap(-1, 0, int(maxBytes), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		// Address space refused (e.g. strict overcommit): fall back to
		// the Go heap, as wazero does by itself.
		return &heapMemory{buf: make([]byte, 0, capacity), max: maxBytes}
	}
	return &mappedMemory{buf: buf}
}

type mappedMemory struct {
	buf []byte // the whole mapping; the guest sees buf[:size]
}

func (m *mappedMemory) Reallocate(size uint64) []byte {
	if m.buf == nil || size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size:size]
}

func (m *mappedMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf)
		m.buf = nil
	}
}

// heapMemory is guest memory on the Go heap, grown by copying, for when
// the mapping fails.
type heapMemory struct {
	buf []byte
	max uint64
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	grown := make([]byte, size, max(size, min(2*uint64(cap(m.buf)), m.max)))
	copy(grown, m.buf)
	m.buf = grown
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
