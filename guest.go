package main

import (
	"context"
	"io"
	"os"

	"github.com/pontus-ci/pontus/plugins"
)

// runWasmGuest is the hidden subcommand plugins.GuestCommand: one
// WebAssembly guest run in a process of its own, started by a plugin host
// with isolation = "process". It reads the run description on stdin,
// writes the guest's output to stdout and the result to file descriptor 3;
// see plugins.GuestMain.
func runWasmGuest(ctx context.Context, _ []string, stdout, stderr io.Writer) error {
	result := os.NewFile(3, "pontus-guest-result")
	if result == nil {
		return exitError{1}
	}
	defer result.Close()
	if code := plugins.GuestMain(ctx, os.Stdin, stdout, stderr, result); code != 0 {
		return exitError{code}
	}
	return nil
}
