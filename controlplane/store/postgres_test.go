package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
