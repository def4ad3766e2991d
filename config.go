package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/observerd"
	"github.com/pontus-ci/pontus/runnerd"
)

// fileConfig is pontus.toml: one table per role.
type fileConfig struct {
	ControlPlane controlplane.Config `toml:"controlplane"`
	Runner       runnerd.Config      `toml:"runner"`
	Observer     observerd.Config    `toml:"observer"`
}

func defaultFileConfig() fileConfig {
	return fileConfig{
		ControlPlane: controlplane.DefaultConfig(),
		Runner:       runnerd.DefaultConfig(),
		Observer:     observerd.DefaultConfig(),
	}
}

// loadConfig returns the defaults overlaid with the file at path (if
// path is not empty). Unknown keys are an error that names them.
func loadConfig(path string) (fileConfig, error) {
	cfg := defaultFileConfig()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := decodeConfig(string(data), &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func decodeConfig(data string, cfg *fileConfig) error {
	md, err := toml.Decode(data, cfg)
	if err != nil {
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("unknown key %s", strings.Join(keys, ", "))
	}
	return nil
}

// token returns a role's token: the environment variable wins, else the
// first line of the token file.
func token(envVar, file string) (string, error) {
	if t := strings.TrimSpace(os.Getenv(envVar)); t != "" {
		return t, nil
	}
	if file == "" {
		return "", nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	t, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	t = strings.TrimSpace(t)
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return t, nil
}

// logFlags are the logging flags every daemon takes.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, errors.New("--log-format: must be text or json")
}
