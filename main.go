// Command pontus is the Pontus CI system in one binary: the control plane,
// the runner and observer daemons, `pontus dev` (all three in one process),
// and the client commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// A second signal forces the exit.
		<-ctx.Done()
		stop()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(os.Stderr, "pontus: second signal, exiting now")
		os.Exit(130)
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"dev", "run control plane, runner and observer in one process on a repository", runDev},
		{"plugin", "run, build or start a WebAssembly test plugin (run|build|new)", runPluginCmd},
		{"controlplane", "run the control plane (dispatcher)", runControlPlane},
		{"runnerd", "run a runner daemon", runRunner},
		{"observerd", "run a repository observer daemon", runObserver},
		{"builds", "list recent builds", runBuilds},
		{"show", "show one build: status, why pending, per-test results", runShow},
		{"logs", "print a build's log (-f follows it live)", runLogs},
		{"runners", "list runners", runRunners},
		{"tests", "list tests with pass/fail/flaky counts, flip rate and median duration", runTests},
		{"trigger", "re-run a commit", runTrigger},
		{"cancel", "cancel a build", runCancel},
		{"notify", "report a commit at once (for git hooks)", runNotify},
		{"config", "check configuration files without starting anything (config check FILE)", runConfig},
		{"backup", "copy a control plane's state (store and logs) while it serves", runBackup},
		{"bench", "measure latency, dispatch throughput, fleet cost", runBench},
		{"version", "print the version", runVersion},
	}
}

// exitError carries a specific exit status out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: pontus <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		if c.summary == "" {
			continue // hidden
		}
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'pontus <command> -h' for a command's flags.")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ee):
			return ee.code
		}
		fmt.Fprintf(stderr, "pontus %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "pontus: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", help{usage: "version", about: "Prints the version of this pontus binary.", examples: []string{"version"}}, stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(stderr, "version", pos); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "pontus", version)
	return nil
}
