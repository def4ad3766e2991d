package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// runConfig is `pontus config check FILE...`.
func runConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config", help{
		usage: "config check FILE...",
		about: "Checks configuration files without starting anything: syntax, types, unknown\n" +
			"keys (with the key meant when one is close), values each role would refuse,\n" +
			"and token files that cannot be read. Prints every problem and exits 1, or\n" +
			"prints \"FILE: ok\" and exits 0.",
		examples: []string{"config check pontus.toml", "config check /etc/pontus.toml && systemctl restart pontus-controlplane"},
	}, stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || pos[0] != "check" {
		fs.Usage()
		return usageError(stderr, "config", "give the subcommand check and the files to check")
	}
	if len(pos) == 1 {
		return usageError(stderr, "config check", "give the configuration FILE to check")
	}
	failed := false
	for _, path := range pos[1:] {
		if err := checkConfig(path); err != nil {
			fmt.Fprintln(stderr, err)
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	if failed {
		return exitError{1}
	}
	return nil
}

// checkConfig returns every problem of the configuration file at path,
// one per line, each starting with the path.
func checkConfig(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	cfg := defaultFileConfig()
	// The roles' own checks run on what could be read, so one run shows
	// every problem.
	errs := unjoin(decodeConfig(string(data), &cfg))
	errs = append(errs, unjoin(cfg.ControlPlane.Validate())...)
	errs = append(errs, unjoin(cfg.Runner.Validate())...)
	obs := cfg.Observer
	if obs.Repo == "" && len(obs.Repos) == 0 {
		obs.Repo = "." // often given with --repo instead
	}
	if err := obs.Validate(); err != nil {
		if !strings.HasPrefix(err.Error(), "observer.") {
			err = fmt.Errorf("observer.%w", err)
		}
		errs = append(errs, err)
	}
	for _, f := range []struct{ key, file string }{
		{"controlplane.runner_token_file", cfg.ControlPlane.RunnerTokenFile},
		{"controlplane.observer_token_file", cfg.ControlPlane.ObserverTokenFile},
		{"controlplane.user_token_file", cfg.ControlPlane.UserTokenFile},
		{"runner.token_file", cfg.Runner.TokenFile},
		{"observer.token_file", cfg.Observer.TokenFile},
	} {
		if _, err := token("", f.file); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	errs = slices.DeleteFunc(errs, func(e error) bool { return e == nil })
	if len(errs) == 0 {
		return nil
	}
	return configErrors(path, errors.Join(errs...))
}
