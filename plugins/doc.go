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
//   - a linear-memory cap, tables bounded at load (they live outside it),
//     a deadline that also stops CPU-bound loops, and stdout+stderr
//     forwarded through a byte cap.
//
// By default (IsolationProcess, on Unix systems) guests run in warm worker
// processes of the host: its own executable re-run as GuestCommand with
// only GuestEnv=1 in its environment, in a process group of its own that
// dies with the host. A worker loads one compiled module from the on-disk
// cache and runs guests one at a time, each in a fresh instance and
// sandbox, with wazero's close-on-context-done off (guest CPU ~7x faster);
// the host kills the worker's process group at a run's deadline or cancel,
// and after any run that crashed or reached a limit, and starts a new one
// for the next run. Workers run under an address space limit, kept idle at
// most 2 per module and 8 in all, for 10 minutes. A program importing this
// package serves as a worker when started that way (the package's init
// recognises it); README.md documents the protocol. IsolationInProcess
// runs guests in the host's process instead.
//
// Host.Run satisfies the runner's executor interface
// (Run(ctx, testrun.Spec) testrun.Result) without importing the runner.
// Per-test results are parsed from the output (TAP 14 or go test -v) by
// internal/testreport.
//
// Go test packages run in the sandbox too: CompileGoTests builds a
// repository's tests with the runner's trusted toolchain for wasip1, and
// Host.RunGoTests compiles and runs them in one call. Host.Run recognises a
// Go test binary from its bytes, however it got there, and runs it
// verbosely so that each test is reported by name.
//
// README.md in this directory documents the plugin ABI for plugin authors;
// package sdk (a module of its own) helps write plugins in Go; secrets and
// configcheck are the first-party plugins. BuildGo builds a plugin author's
// Go package with the toolchain and checks of CompileGoTests (`pontus
// plugin build`).
package plugins
