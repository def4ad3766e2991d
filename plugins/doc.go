// Package plugins runs Pontus test plugins: WASI preview-1 command modules
// sandboxed by wazero. It is the runner's WebAssembly executor.
//
// A Host compiles each module once (keyed by the sha256 of its bytes, with
// wazero's on-disk compilation cache under HostConfig.CacheDir, pruned by
// age and size) and runs it per job step with:
//
//   - the checkout mounted read-only at /src through an os.Root, so a
//     symbolic link committed in the repository cannot reach host files;
//   - a fresh writable /tmp per run that refuses symbolic and hard links,
//     bounded in size and file count (HostConfig.TmpLimitMiB, TmpMaxFiles);
//   - at most HostConfig.MaxOpenFiles files open at once over both mounts
//     (each is a file descriptor of the runner);
//   - the working directory /src/<workdir> (default /src/tests when it
//     exists, else /src), passed in PWD;
//   - only the step's arguments and allow-listed environment, plus PWD,
//     HOME=/tmp, TMPDIR=/tmp and GOMEMLIMIT;
//   - no network, real clocks, crypto/rand, a sleep that wakes at the
//     deadline;
//   - a linear-memory cap, a deadline that also stops CPU-bound loops, and
//     stdout+stderr forwarded through a byte cap.
//
// By default guests run in the host's process (IsolationInProcess). With
// HostConfig.Isolation = IsolationProcess each run gets a child process
// instead: the host's executable re-run with GuestCommand (and GuestEnv=1),
// which loads the module from the on-disk compilation cache and runs it in
// the same sandbox with wazero's close-on-context-done off, so guest CPU
// runs ~5x faster; the host kills the child's process group at the
// deadline. A program embedding this package that uses it must call
// GuestMain when started that way (the pontus binary has a hidden
// subcommand for it); README.md documents the protocol.
//
// Host.Run satisfies the runner's executor interface
// (Run(ctx, testrun.Spec) testrun.Result) without importing the runner.
// Per-test results are parsed from the output (TAP 14 or go test -v) by
// internal/testreport.
//
// Go test packages run in the sandbox too: CompileGoTests builds a
// repository's tests with the runner's trusted toolchain for wasip1, and
// Host.RunGoTests compiles and runs them in one call.
//
// README.md in this directory documents the plugin ABI for plugin authors;
// package sdk (a module of its own) helps write plugins in Go; secrets and
// configcheck are the first-party plugins. BuildGo builds a plugin author's
// Go package with the toolchain and checks of CompileGoTests (`pontus
// plugin build`).
package plugins
