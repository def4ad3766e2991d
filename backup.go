package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/controlplane/store"
)

// runBackup copies a control plane's state while it serves.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", help{
		usage:    "backup --to DIR [--data DIR | --config FILE]",
		about:    "Copies a control plane's state (store and logs) while it serves; the copy is\na data_dir another control plane can serve.",
		examples: []string{"backup --data /var/lib/pontus --to /backup/pontus-$(date +%F)", "backup --config /etc/pontus.toml --to /backup/today"},
	}, stderr)
	config := fs.String("config", "", "`file` to read (pontus.toml) for [controlplane] data_dir")
	data := fs.String("data", "", "the control plane's state `directory` (its data_dir)")
	to := fs.String("to", "", "`directory` to write the copy to (must not exist, or be empty)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(stderr, "backup", pos); err != nil {
		return err
	}
	if *to == "" {
		return usageError(stderr, "backup", "--to is required: where to write the copy")
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	if cfg.ControlPlane.Store != "" && *data == "" {
		return fmt.Errorf("the store is PostgreSQL (%s): back it up with pg_dump (it holds the builds and the logs); data_dir holds only this replica's lock",
			store.RedactURL(cfg.ControlPlane.Store))
	}
	dir := cfg.ControlPlane.DataDir
	if *data != "" {
		dir = *data
	} else if *config == "" {
		return usageError(stderr, "backup", "--data (or --config) is required: the control plane's data_dir")
	}
	st, err := controlplane.Backup(ctx, dir, *to)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s: %d builds, %d logs (%.1f MiB); serve it with: pontus controlplane --data %s\n",
		dir, *to, st.Builds, st.Logs, float64(st.Bytes)/(1<<20), *to)
	return nil
}
