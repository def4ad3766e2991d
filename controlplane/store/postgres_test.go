package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pontus-ci/pontus/internal/pgtest"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// A database written by a newer Pontus is refused and left as it was.
func TestPostgresNewerSchemaIsRefused(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	ctx := t.Context()
	s, err := OpenPostgres(ctx, url, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, PostgresSchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = OpenPostgres(ctx, url, PostgresOptions{})
	want := fmt.Sprintf("has schema version %d, newer than this Pontus knows (%d)", PostgresSchemaVersion+1, PostgresSchemaVersion)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error saying %q", err, want)
	}
}

// Replicas starting together migrate once: the others wait for the
// migration lock and find the schema current.
func TestPostgresConcurrentOpen(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := OpenPostgres(t.Context(), url, PostgresOptions{})
			if err == nil {
				err = s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Fence runs in every write transaction; when it refuses, the batch is not
// written and every commit of it fails with a FenceError.
func TestPostgresFence(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	ctx := t.Context()
	var mu sync.Mutex
	leader := true
	s, err := OpenPostgres(ctx, url, PostgresOptions{Fence: func(ctx context.Context, tx pgx.Tx) error {
		mu.Lock()
		defer mu.Unlock()
		if !leader {
			return errors.New("not the leader")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	leader = false
	mu.Unlock()
	err = s.Enqueue(Mutation{PutBuild: build(2, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx)
	var fe *FenceError
	if !errors.As(err, &fe) {
		t.Fatalf("fenced write: got %v, want a FenceError", err)
	}
	if _, err := s.GetBuild(ctx, 2); err != ErrNotFound {
		t.Fatalf("fenced build was written: %v", err)
	}
	if _, err := s.GetBuild(ctx, 1); err != nil {
		t.Fatal(err)
	}
}

// Writes enqueued while PostgreSQL is down (stopped as by a crash) are
// committed once it is back: the writer reconnects and retries the batch.
func TestPostgresWritesSurviveServerRestart(t *testing.T) {
	srv := pgtest.Start(t)
	url := srv.NewDatabase(t)
	ctx := t.Context()
	s, err := OpenPostgres(ctx, url, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(pgtest.Immediate); err != nil {
		t.Fatal(err)
	}
	c := s.Enqueue(Mutation{PutBuild: build(2, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)})
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("write across a server restart: %v", err)
	}
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Live) != 2 || st.NextID != 3 {
		t.Fatalf("after restart: live %v, next %d", st.Live, st.NextID)
	}
}

func TestValidatePostgresURL(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"postgres://u@h:5432/db?sslmode=disable", ""},
		{"postgresql://u:secret@h/db", ""},
		{"mysql://u@h/db", "scheme must be postgres"},
		{"postgres://u@h:5432/", "no database name"},
		{"postgres:///db", "no host"},
		{"/var/lib/pontus.db", "scheme must be postgres"},
		{"postgres://u:secret@h:notaport/db", "does not parse"},
	} {
		err := ValidatePostgresURL(c.url)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.url, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want %q", c.url, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error shows the password: %v", c.url, err)
		}
	}
}

// A batch is all or nothing: when one of its writes fails, none is kept
// (and a constraint violation fails at once, without retries).
func TestPostgresBatchIsAtomic(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	ctx := t.Context()
	s, err := OpenPostgres(ctx, url, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Pool().Exec(ctx, `ALTER TABLE cursors ADD CONSTRAINT no_bad CHECK (commit_id <> 'bad')`); err != nil {
		t.Fatal(err)
	}
	err = s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)},
		Mutation{PutCursor: &Cursor{Repo: "/r", Branch: "main", Commit: "bad"}}).Wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "no_bad") {
		t.Fatalf("got %v, want the check violation", err)
	}
	if _, err := s.GetBuild(ctx, 1); err != ErrNotFound {
		t.Fatalf("a write of the failed batch was kept: %v", err)
	}
	if err := s.Enqueue(Mutation{PutBuild: build(2, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
		t.Fatalf("the next batch: %v", err)
	}
}

// The fencing pattern OnConnect allows: the writer's own connection holds
// a session advisory lock, so only one store writes; a second one's
// writes fail with FenceError until the first lets go, then succeed.
func TestPostgresAdvisoryLockFencesWriters(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	ctx := t.Context()
	takeLock := PostgresOptions{OnConnect: func(ctx context.Context, conn *pgx.Conn) error {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(42)`).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return errors.New("another replica holds the writer lock")
		}
		return nil
	}}
	a, err := OpenPostgres(ctx, url, takeLock)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenPostgres(ctx, url, takeLock)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	var fe *FenceError
	if err := b.Enqueue(Mutation{PutBuild: build(2, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); !errors.As(err, &fe) {
		t.Fatalf("second writer: got %v, want a FenceError", err)
	}
	a.Close()
	if err := b.Enqueue(Mutation{PutBuild: build(3, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
		t.Fatalf("second writer after the first closed: %v", err)
	}
	if _, err := b.GetBuild(ctx, 2); err != ErrNotFound {
		t.Fatalf("the fenced write landed: %v", err)
	}
}

// FenceStatement checks in the batch's own pipeline: a batch whose check
// raises an error is not written, and its commits fail with FenceError.
func TestPostgresFenceStatement(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	ctx := t.Context()
	var epoch atomic.Int64
	epoch.Store(1)
	s, err := OpenPostgres(ctx, url, PostgresOptions{FenceStatement: func() (string, []any) {
		return `SELECT 1 / (SELECT CASE WHEN epoch = $1 THEN 1 ELSE 0 END FROM leader WHERE id = 1 FOR SHARE)`, []any{epoch.Load()}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE leader (id INT PRIMARY KEY, epoch BIGINT NOT NULL); INSERT INTO leader VALUES (1, 1)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE leader SET epoch = 2`); err != nil {
		t.Fatal(err)
	}
	var fe *FenceError
	if err := s.Enqueue(Mutation{PutBuild: build(2, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); !errors.As(err, &fe) {
		t.Fatalf("fenced batch: got %v, want a FenceError", err)
	}
	if _, err := s.GetBuild(ctx, 2); err != ErrNotFound {
		t.Fatalf("the fenced write landed: %v", err)
	}
	epoch.Store(2)
	if err := s.Enqueue(Mutation{PutBuild: build(3, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
		t.Fatalf("with the current epoch: %v", err)
	}
}

// BenchmarkPostgresFence is ClaimComplete on PostgreSQL with each way of
// fencing the writer: none, Fence (its own transaction: BEGIN, check,
// writes, COMMIT) and FenceStatement (the check in the batch's pipeline).
func BenchmarkPostgresFence(b *testing.B) {
	const check = `SELECT 1 / (SELECT CASE WHEN epoch = $1 THEN 1 ELSE 0 END FROM leader WHERE id = 1 FOR SHARE)`
	for _, c := range []struct {
		name string
		opts PostgresOptions
	}{
		{"none", PostgresOptions{}},
		{"tx", PostgresOptions{Fence: func(ctx context.Context, tx pgx.Tx) error {
			var one int
			return tx.QueryRow(ctx, check, int64(1)).Scan(&one)
		}}},
		{"statement", PostgresOptions{FenceStatement: func() (string, []any) { return check, []any{int64(1)} }}},
	} {
		b.Run(c.name, func(b *testing.B) {
			url := pgtest.Shared(b).NewDatabase(b)
			s, err := OpenPostgres(context.Background(), url, c.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Pool().Exec(context.Background(), `CREATE TABLE leader (id INT PRIMARY KEY, epoch BIGINT NOT NULL); INSERT INTO leader VALUES (1, 1)`); err != nil {
				b.Fatal(err)
			}
			benchClaimComplete(b, s)
		})
	}
}

// A write is fenced with the check as it stood when it was enqueued, not
// when the writer gets to it: a write queued while this replica did not
// lead (or in an earlier term), still pending behind a stalled batch when
// the replica leads again, must not land under the new term.
func TestPostgresFenceIsTakenAtEnqueue(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	ctx := t.Context()
	var leading atomic.Int64
	leading.Store(1)
	s, err := OpenPostgres(ctx, url, PostgresOptions{FenceStatement: func() (string, []any) {
		return `SELECT 1 / $1::int`, []any{leading.Load()}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	// Stall the writer: its next batch waits for this row lock.
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT id FROM builds WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	first := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_RUNNING)})
	for {
		var n int
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-first.done:
			t.Fatalf("the first write did not wait for the row lock: %v", first.err)
		default:
		}
	}
	leading.Store(0) // stepped down
	stale := s.Enqueue(Mutation{PutBuild: build(2, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)})
	leading.Store(1) // leads again
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Wait(ctx); err != nil {
		t.Fatalf("the write of the term that enqueued it: %v", err)
	}
	var fe *FenceError
	if err := stale.Wait(ctx); !errors.As(err, &fe) {
		t.Fatalf("write enqueued while not leading: got %v, want a FenceError", err)
	}
	if _, err := s.GetBuild(ctx, 2); err != ErrNotFound {
		t.Fatalf("the stale write landed under the new term: %v", err)
	}
}
