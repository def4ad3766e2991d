package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pontus-ci/pontus/controlplane/store"
)

// storeName names the configured store for logs, without secrets.
func storeName(cfg Config) string {
	if cfg.Store == "" {
		return "sqlite"
	}
	return store.RedactURL(cfg.Store)
}

// openStore opens the configured store and the log store that goes with
// it: SQLite and log files in data_dir by default, or, with cfg.Store,
// both in that PostgreSQL database (so every replica sharing it serves
// every build and every log).
func openStore(ctx context.Context, cfg Config, writeHealth func(error)) (store.Store, *logStore, error) {
	maxLog := int64(cfg.MaxLogMiB) << 20
	if cfg.Store != "" {
		st, err := store.OpenPostgres(ctx, cfg.Store, store.PostgresOptions{WriteHealth: writeHealth})
		if err != nil {
			return nil, nil, err
		}
		return st, pgLogStore(st, maxLog), nil
	}
	st, err := store.OpenSQLite(filepath.Join(cfg.DataDir, storeFile), store.SQLiteOptions{Fsync: cfg.Fsync, WriteHealth: writeHealth})
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(cfg.DataDir, "logs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("create log directory: %w", err)
	}
	return st, fileLogStore(dir, maxLog, cfg.Fsync), nil
}
