package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/pontus-ci/pontus/internal/bench"
)

func benchUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: pontus bench <benchmark> [flags]\n\nBenchmarks:")
	for _, c := range []struct{ name, summary string }{
		{"latency", "commit→result through an in-process Pontus, against running the suite directly"},
		{"dispatch", "saturated jobs/s and hand-out latency at half load, simulated runners"},
		{"fleet", "control-plane CPU and RSS with N idle runners long-polling"},
		{"idle", "CPU of an idle control plane, runner and observer"},
		{"failover", "SIGKILL of the leading control-plane replica → next job handed out (PostgreSQL)"},
		{"shards", "wall time of a sharded build of N equal tests on S runner slots"},
		{"wasm", "plugins host (default config): warm starts, Go test slowdown vs native, stop at deadline, memory"},
	} {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEach prints a summary, then as its last line key=value figures for scripts.\n\nExamples:\n  pontus bench latency --commits 20\n  pontus bench dispatch --runners 64\n\nRun 'pontus bench <benchmark> -h' for its flags.")
}

// runBench is `pontus bench`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		benchUsage(stderr)
		return exitError{2}
	}
	if a := args[0]; a == "-h" || a == "--help" || a == "help" {
		benchUsage(stderr)
		return nil
	}
	name, args := args[0], args[1:]
	fs := newBenchFlags(name, stderr)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var run func() (*bench.Result, error)
	switch name {
	case "latency":
		cfg := bench.DefaultLatencyConfig()
		fs.IntVar(&cfg.Commits, "commits", cfg.Commits, "how many commits to make and time")
		fs.StringVar(&cfg.Python, "python", cfg.Python, "Python `interpreter` for the floor (and the runner, when not python3)")
		fs.DurationVar(&cfg.ResultTimeout, "result-timeout", cfg.ResultTimeout, "longest one commit may take to reach its result")
		run = func() (*bench.Result, error) { return bench.Latency(ctx, cfg, logger) }
	case "dispatch":
		cfg := bench.DefaultDispatchConfig()
		fs.IntVar(&cfg.Runners, "runners", cfg.Runners, "simulated runners")
		fs.IntVar(&cfg.Jobs, "jobs", cfg.Jobs, "jobs to queue in the saturated phase")
		fs.StringVar(&cfg.ControlPlane, "controlplane", "", "`URL` of a running control plane on loopback (default: start one); tokens from $PONTUS_RUNNER_TOKEN and $PONTUS_OBSERVER_TOKEN")
		fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "HTTP/2 connections the simulated runners share")
		fs.StringVar(&cfg.Arrivals, "arrivals", cfg.Arrivals, "half-load arrivals: poisson or uniform")
		fs.StringVar(&cfg.Store, "store", "", "the started control plane's store: a postgres:// `URL`, or \"temp\" for a throwaway PostgreSQL server (default: SQLite)")
		fs.DurationVar(&cfg.PhaseTimeout, "phase-timeout", cfg.PhaseTimeout, "deadline of each phase")
		fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", hidden+"write a CPU profile of the control plane to `file` (PONTUS_CPUPROFILE)")
		run = func() (*bench.Result, error) {
			if cfg.ControlPlane == "" {
				bin, err := os.Executable()
				if err != nil {
					return nil, fmt.Errorf("find the pontus binary: %w", err)
				}
				cfg.Binary = bin
			} else {
				cfg.RunnerToken = os.Getenv("PONTUS_RUNNER_TOKEN")
				cfg.ObserverToken = os.Getenv("PONTUS_OBSERVER_TOKEN")
			}
			if err := absProfile(&cfg.CPUProfile); err != nil {
				return nil, err
			}
			return bench.Dispatch(ctx, cfg, logger)
		}
	case "shards":
		cfg := bench.DefaultShardsConfig()
		fs.IntVar(&cfg.Tests, "tests", cfg.Tests, "equal tests in the suite (one module each)")
		fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "settings.shards of the builds, and how many runner slots run")
		fs.DurationVar(&cfg.TestTime, "test-time", cfg.TestTime, "how long each test takes")
		fs.IntVar(&cfg.Runs, "runs", cfg.Runs, "builds to time after a warm-up build")
		fs.DurationVar(&cfg.ResultTimeout, "result-timeout", cfg.ResultTimeout, "longest one build may take")
		run = func() (*bench.Result, error) { return bench.Shards(ctx, cfg, logger) }
	case "fleet":
		cfg := bench.DefaultFleetConfig()
		fs.IntVar(&cfg.Runners, "runners", cfg.Runners, "idle simulated runners")
		fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measuring window")
		fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "HTTP/2 connections the runners share (0: one each, like real runners)")
		fs.DurationVar(&cfg.PhaseTimeout, "phase-timeout", cfg.PhaseTimeout, "deadline of the setup")
		fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", hidden+"write a CPU profile of the control plane to `file` (PONTUS_CPUPROFILE)")
		run = func() (*bench.Result, error) {
			bin, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("find the pontus binary: %w", err)
			}
			cfg.Binary = bin
			if err := absProfile(&cfg.CPUProfile); err != nil {
				return nil, err
			}
			return bench.Fleet(ctx, cfg, logger)
		}
	case "idle":
		cfg := bench.DefaultIdleConfig()
		fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measuring window")
		fs.DurationVar(&cfg.PhaseTimeout, "phase-timeout", cfg.PhaseTimeout, "deadline of the setup")
		run = func() (*bench.Result, error) {
			bin, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("find the pontus binary: %w", err)
			}
			cfg.Binary = bin
			return bench.Idle(ctx, cfg, logger)
		}
	case "failover":
		cfg := bench.DefaultFailoverConfig()
		fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "control-plane replicas sharing the throwaway PostgreSQL server")
		fs.IntVar(&cfg.Kills, "kills", cfg.Kills, "how many times to SIGKILL the leader (restarting it after each)")
		fs.DurationVar(&cfg.PhaseTimeout, "phase-timeout", cfg.PhaseTimeout, "deadline of each failover")
		run = func() (*bench.Result, error) {
			bin, err := os.Executable()
			if err != nil {
				return nil, fmt.Errorf("find the pontus binary: %w", err)
			}
			cfg.Binary = bin
			return bench.Failover(ctx, cfg, logger)
		}
	case "wasm":
		cfg := bench.DefaultWasmConfig()
		fs.IntVar(&cfg.Runs, "runs", cfg.Runs, "warm runs of the tiny plugin to time")
		fs.IntVar(&cfg.FibRuns, "fib-runs", cfg.FibRuns, "runs of the CPU-bound Go test each way, native and in the sandbox, and of the empty one (0: skip the Go test module and its figures; no go command needed)")
		run = func() (*bench.Result, error) { return bench.Wasm(ctx, cfg, logger) }
	default:
		fmt.Fprintf(stderr, "pontus bench: unknown benchmark %q\n\n", name)
		benchUsage(stderr)
		return exitError{2}
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(stderr, "bench "+name, pos); err != nil {
		return err
	}
	res, err := run()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: interrupted (%v); its processes are stopped and its temp files removed", name, err)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, line := range res.Summary {
		fmt.Fprintln(stdout, line)
	}
	fmt.Fprintln(stdout, res.Line())
	return nil
}

// hidden marks a flag left out of -h: it is for people profiling Pontus.
const hidden = "(hidden) "

func newBenchFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pontus bench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	h := help{
		usage:    "bench " + name + " [flags]",
		about:    "Prints a summary, then as its last line key=value figures for scripts.",
		examples: []string{"bench " + name},
	}
	fs.Usage = func() {
		printHelp(stderr, fs, h, func(f *flag.Flag) bool { return !strings.HasPrefix(f.Usage, hidden) })
	}
	return fs
}

// absProfile makes a --cpuprofile path absolute: the control plane runs in
// another directory.
func absProfile(p *string) error {
	if *p == "" {
		return nil
	}
	abs, err := filepath.Abs(*p)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	*p = abs
	return nil
}
