package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pontus-ci/pontus/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestSharedDatabasesAreSeparate(t *testing.T) {
	srv := pgtest.Shared(t)
	a, b := srv.NewDatabase(t), srv.NewDatabase(t)
	if a == b {
		t.Fatalf("two databases share a URL: %s", a)
	}
	ctx := t.Context()
	ca := connect(t, a)
	if _, err := ca.Exec(ctx, "CREATE TABLE x (v int)"); err != nil {
		t.Fatal(err)
	}
	cb := connect(t, b)
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("table created in one database is visible in the other")
	}
}

// An immediate stop loses no committed row: the restart recovers from the
// WAL, on the same port.
func TestImmediateStopAndRestart(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := t.Context()
	u := srv.NewDatabase(t)
	c := connect(t, u)
	if _, err := c.Exec(ctx, "CREATE TABLE x (v int); INSERT INTO x VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	port := srv.Port()
	if err := srv.Stop(pgtest.Immediate); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("query succeeded on a stopped server")
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.Port() != port {
		t.Fatalf("port changed across restart: %d -> %d", port, srv.Port())
	}
	var v int
	if err := connect(t, u).QueryRow(ctx, "SELECT v FROM x").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after restart: v=%d err=%v", v, err)
	}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
