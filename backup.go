package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/controlplane/store"
)

// runBackup copies a control plane's state while it serves.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pontus backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "`file` to read (pontus.toml) for [controlplane] data_dir")
	data := fs.String("data", "", "the control plane's state `directory` (its data_dir)")
	to := fs.String("to", "", "`directory` to write the copy to (must not exist, or be empty)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *to == "" {
		return errors.New("--to is required: where to write the copy")
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
		return errors.New("--data (or --config) is required: the control plane's data_dir")
	}
	st, err := controlplane.Backup(ctx, dir, *to)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s: %d builds, %d logs (%.1f MiB); serve it with: pontus controlplane --data %s\n",
		dir, *to, st.Builds, st.Logs, float64(st.Bytes)/(1<<20), *to)
	return nil
}
