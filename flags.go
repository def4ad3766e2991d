package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// help is what `pontus CMD -h` prints above the flags: the synopsis, what
// the command does, and examples.
type help struct {
	usage    string   // "show [flags] BUILD|COMMIT", without "pontus "
	about    string   // a few lines
	examples []string // command lines, without "pontus "
}

// newFlagSet returns the flag set of `pontus name` whose -h prints h.
// Every command's flags may come before or after its arguments (see
// parseInterspersed).
func newFlagSet(name string, h help, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pontus "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(stderr, fs, h, nil) }
	return fs
}

// printHelp prints h and the flags of fs for which show (if not nil)
// returns true.
func printHelp(w io.Writer, fs *flag.FlagSet, h help, show func(*flag.Flag) bool) {
	fmt.Fprintf(w, "Usage: pontus %s\n", h.usage)
	if h.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(h.about, "\n"))
	}
	if len(h.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, e := range h.examples {
			fmt.Fprintf(w, "  pontus %s\n", e)
		}
	}
	shown := flag.NewFlagSet("", flag.ContinueOnError)
	shown.SetOutput(w)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		if show == nil || show(f) {
			shown.Var(f.Value, f.Name, f.Usage)
			n++
		}
	})
	if n > 0 {
		fmt.Fprintln(w, "\nFlags (before or after the arguments; -- ends them):")
		shown.PrintDefaults()
	}
}

// parseFlags parses a command's flags. The flag package has already told
// the user what was wrong, so a bad flag becomes exit status 2 and nothing
// more is printed.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return exitError{2}
	}
	return err
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, as people type them ("show HEAD --json"), and
// returns the positional arguments. Everything after "--" is positional.
// It is how every command parses its command line.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageError prints a usage problem of a command and ends it with exit
// status 2.
func usageError(stderr io.Writer, cmd, format string, args ...any) error {
	fmt.Fprintf(stderr, "pontus %s: %s\n", cmd, fmt.Sprintf(format, args...))
	return exitError{2}
}

// noArgs refuses positional arguments of a command that takes none.
func noArgs(stderr io.Writer, cmd string, pos []string) error {
	if len(pos) > 0 {
		return usageError(stderr, cmd, "unexpected argument %q (this command takes only flags; see pontus %s -h)", pos[0], cmd)
	}
	return nil
}
