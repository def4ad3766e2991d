package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func open(t testing.TB) *SQLite {
	t.Helper()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "pontus.db"), SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func build(id int64, status pontusv1.BuildStatus) *pontusv1.Build {
	return &pontusv1.Build{Id: id, Repo: "/r", Branch: "main", Commit: fmt.Sprintf("%040x", id), Status: status}
}

func TestWritesAreDurableAndOrdered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pontus.db")
	s, err := OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The same build written twice in one batch: the later write wins.
	c := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)},
		Mutation{PutBuild: build(2, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)},
		Mutation{PutCursor: &Cursor{Repo: "/r", Branch: "main", Commit: "c2"}})
	c2 := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_PASSED)},
		Mutation{PutRunner: &pontusv1.Runner{Id: "r-1", Name: "one"}})
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Live) != 1 || st.Live[0].Id != 2 || st.NextID != 3 {
		t.Fatalf("live %v next %d", st.Live, st.NextID)
	}
	if len(st.Unreported) != 1 || st.Unreported[0].Status != pontusv1.BuildStatus_BUILD_STATUS_PASSED {
		t.Fatalf("unreported %v", st.Unreported)
	}
	if len(st.Runners) != 1 || len(st.Cursors) != 1 || st.Cursors[0].Commit != "c2" {
		t.Fatalf("runners %v cursors %v", st.Runners, st.Cursors)
	}
	if err := s.Enqueue(Mutation{Reported: 1}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = s.Load(ctx)
	if len(st.Unreported) != 0 {
		t.Fatalf("reported build still unreported: %v", st.Unreported)
	}
	b, err := s.LatestBuild(ctx, "/r", fmt.Sprintf("%040x", 1))
	if err != nil || b.Id != 1 {
		t.Fatalf("latest build: %v %v", b, err)
	}
	if _, err := s.GetBuild(ctx, 99); err != ErrNotFound {
		t.Fatalf("missing build: %v", err)
	}
}

// Concurrent writers share transactions (group commit); every commit is
// acknowledged and every write is there afterwards.
func TestGroupCommitHammer(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				id := int64(w*1000 + i + 1)
				if err := s.Enqueue(Mutation{PutBuild: build(id, pontusv1.BuildStatus_BUILD_STATUS_QUEUED)}).Wait(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Live) != 16*50 {
		t.Fatalf("%d builds stored, want %d", len(st.Live), 16*50)
	}
}

// BenchmarkClaimComplete is the store's share of one job: the lease and the
// result, each a durable write, from 32 concurrent callers as with 32 runners.
func BenchmarkClaimComplete(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	var next sync.Mutex
	id := int64(0)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			next.Lock()
			id++
			my := id
			next.Unlock()
			if err := s.Enqueue(Mutation{PutBuild: build(my, pontusv1.BuildStatus_BUILD_STATUS_LEASED)}).Wait(ctx); err != nil {
				b.Fatal(err)
			}
			if err := s.Enqueue(Mutation{PutBuild: build(my, pontusv1.BuildStatus_BUILD_STATUS_PASSED)}).Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A sharded build takes the ids of its shard jobs: JobBuild finds it by any
// of them, and ids are allocated above them after a restart.
func TestShardJobsBelongToTheirBuild(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pontus.db")
	s, err := OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sharded := build(2, pontusv1.BuildStatus_BUILD_STATUS_RUNNING)
	for i := range 3 {
		sharded.Shards = append(sharded.Shards, &pontusv1.Shard{Index: int32(i), JobId: 3 + int64(i),
			Status: pontusv1.BuildStatus_BUILD_STATUS_QUEUED})
	}
	if got := LastJobID(sharded); got != 5 {
		t.Fatalf("LastJobID = %d, want 5", got)
	}
	c := s.Enqueue(Mutation{PutBuild: build(1, pontusv1.BuildStatus_BUILD_STATUS_PASSED)}, Mutation{PutBuild: sharded})
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for job, want := range map[int64]int64{1: 1, 2: 2, 3: 2, 4: 2, 5: 2} {
		b, err := s.JobBuild(ctx, job)
		if err != nil || b.Id != want {
			t.Fatalf("JobBuild(%d) = %v, %v; want build %d", job, b, err, want)
		}
	}
	if _, err := s.JobBuild(ctx, 6); err != ErrNotFound {
		t.Fatalf("JobBuild(6) = %v, want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSQLite(path, SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.NextID != 6 || len(st.Live) != 1 || len(st.Live[0].Shards) != 3 {
		t.Fatalf("after reopening: next id %d, live %v", st.NextID, st.Live)
	}
}
