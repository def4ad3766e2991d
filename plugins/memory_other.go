//go:build !linux

package plugins

import "context"

// withGuestMemory leaves guest memory to wazero (the Go heap) outside
// Linux; see memory_linux.go.
func withGuestMemory(ctx context.Context) context.Context { return ctx }
