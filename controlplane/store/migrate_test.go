package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// testdata/v1.db was written by the store before schema versions were
// recorded (see testdata/README.md). Today's store migrates it and finds
// everything it held.
func TestMigrateV1(t *testing.T) {
	data, err := os.ReadFile("testdata/v1.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pontus.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if v := userVersion(t, path); v != 0 {
		t.Fatalf("test data has version %d, want 0", v)
	}
	s, err := OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Live) != 1 || st.Live[0].Id != 3 || st.NextID != 4 {
		t.Errorf("live %v, next id %d; want build 3 live, next 4", st.Live, st.NextID)
	}
	if len(st.Unreported) != 1 || st.Unreported[0].Id != 2 || st.Unreported[0].Status != pontusv1.BuildStatus_BUILD_STATUS_FAILED {
		t.Errorf("unreported %v, want build 2 FAILED", st.Unreported)
	}
	if len(st.Runners) != 1 || st.Runners[0].Name != "one" || len(st.Cursors) != 1 || st.Cursors[0].Commit != fmt.Sprintf("%040x", 3) {
		t.Errorf("runners %v cursors %v", st.Runners, st.Cursors)
	}
	if b, err := s.GetBuild(ctx, 1); err != nil || b.Status != pontusv1.BuildStatus_BUILD_STATUS_PASSED {
		t.Errorf("build 1: %v %v", b, err)
	}
	// Version 2 filled in when each finished build finished.
	var finished []int64
	rows, err := s.read.Query(`SELECT finished FROM builds ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var f int64
		rows.Scan(&f)
		finished = append(finished, f)
	}
	rows.Close()
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).Unix()
	if fmt.Sprint(finished) != fmt.Sprint([]int64{at, at, 0}) {
		t.Errorf("finished = %v, want [%d %d 0]", finished, at, at)
	}
	// Version 3 made each build its own one job.
	for id := int64(1); id <= 3; id++ {
		if b, err := s.JobBuild(ctx, id); err != nil || b.Id != id {
			t.Errorf("JobBuild(%d) = %v, %v", id, b, err)
		}
	}
	// The migrated store takes writes and says its version.
	if err := s.Enqueue(Mutation{PutBuild: build(4, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := userVersion(t, path); v != SchemaVersion {
		t.Fatalf("migrated store has version %d, want %d", v, SchemaVersion)
	}
	// Opening it again changes nothing.
	s, err = OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// A store written by a newer Pontus is refused, with a message that says
// what to do, and is left as it was.
func TestNewerStoreIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pontus.db")
	s, err := OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, SchemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(path)
	_, err = OpenSQLite(path, SQLiteOptions{})
	want := fmt.Sprintf("has schema version %d, newer than this Pontus knows (%d)", SchemaVersion+1, SchemaVersion)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error saying %q", err, want)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the refused store was changed")
	}
}

// A migration that fails leaves the store at its old version: all steps
// run in one transaction.
func TestFailedMigrationChangesNothing(t *testing.T) {
	data, err := os.ReadFile("testdata/v1.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pontus.db")
	os.WriteFile(path, data, 0o600)
	saved := migrations
	t.Cleanup(func() { migrations, SchemaVersion = saved, len(saved) })
	migrations = append(append([]func(*sql.Tx) error(nil), saved...), func(tx *sql.Tx) error {
		return fmt.Errorf("disk on fire")
	})
	SchemaVersion = len(migrations)
	if _, err := OpenSQLite(path, SQLiteOptions{}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("got %v", err)
	}
	if v := userVersion(t, path); v != 0 {
		t.Fatalf("failed migration left version %d, want 0", v)
	}
	db, _ := sql.Open("sqlite", "file:"+path)
	defer db.Close()
	if _, err := db.Exec(`SELECT finished FROM builds`); err == nil {
		t.Fatal("version 2's column is there after a failed migration")
	}
}

// Version 5 fills in the reuse key of the verdicts a version 4 store holds.
func TestMigrateV2FillsReuseKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pontus.db")
	s, err := OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tree := fmt.Sprintf("%040x", 0xabc)
	b := build(1, pontusv1.BuildStatus_BUILD_STATUS_PASSED)
	b.Tree = tree
	if err := s.Enqueue(Mutation{PutBuild: b}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Make it a version 4 store: no reuse_key column.
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP INDEX builds_reuse`, `ALTER TABLE builds DROP COLUMN reuse_key`, `PRAGMA user_version = 4`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s, err = OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Reusable(ctx, "/r", ReuseKey(tree, nil, 0)); err != nil || got.Id != 1 {
		t.Fatalf("after migrating: Reusable = %v, %v; want build 1", got, err)
	}
}
