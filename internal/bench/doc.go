// Package bench measures Pontus from the outside: the benchmarks behind
// `pontus bench`.
//
//   - Latency: commit→result through a whole in-process Pontus (control
//     plane, runner and observer, as `pontus dev` composes them) on a fresh
//     repository with a two-file Python unittest suite, against the floor of
//     running the same suite directly.
//   - Dispatch: saturated jobs per second, and queued→acquired hand-out
//     latency at half that load, with simulated runners over real loopback
//     HTTP/2 against a control plane in its own process.
//   - Fleet: the control plane's CPU and memory with N idle runners
//     long-polling it; Idle: the CPU of a control plane, a runner and an
//     observer (three processes) doing nothing.
//   - Wasm: the warm start of a tiny TAP test plugin, the slowdown of a CPU-heavy Go test in the sandbox against native, and host memory in the plugins host.
//
// Each bench returns a Result: a human summary and figures that print as one
// line of key=value pairs for scripts. Benches that start processes start
// the pontus binary (Config.Binary, normally os.Executable()), put them in
// their own process group with a parent-death signal, and stop them (SIGTERM,
// then SIGKILL) and remove their temporary directories when they return,
// also when the context is canceled. Every phase has a deadline and fails
// with an error that says which phase and how far it got. All traffic goes to
// loopback addresses: a control plane URL given by the caller must be one.
//
// CPU is read from /proc/<pid>/stat (utime+stime, in USER_HZ ticks of 10 ms)
// and memory from VmRSS in /proc/<pid>/status, so Fleet and Idle need Linux.
package bench
