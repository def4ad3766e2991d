package store

import (
	"slices"
	"testing"

	"github.com/pontus-ci/pontus/internal/pgtest"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Each replica sees the finished builds it has not marked, oldest first,
// whatever the others marked; the floor never passes a live build; marks
// of deleted builds can be forgotten.
func TestPostgresReplicaReports(t *testing.T) {
	ctx := t.Context()
	s, err := OpenPostgres(ctx, pgtest.Shared(t).NewDatabase(t), PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateReplicaTables(ctx, ReplicaReportsSchema); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateReplicaTables(ctx, ReplicaReportsSchema); err != nil {
		t.Fatalf("a second start: %v", err)
	}
	passed, queued := pontusv1.BuildStatus_BUILD_STATUS_PASSED, pontusv1.BuildStatus_BUILD_STATUS_QUEUED
	if err := s.Enqueue(Mutation{PutBuild: build(1, passed)}, Mutation{PutBuild: build(2, queued)},
		Mutation{PutBuild: build(3, passed)}, Mutation{PutBuild: build(4, passed)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	ids := func(replica string, after int64, limit int) ([]int64, int64) {
		t.Helper()
		bs, floor, err := s.ReplicaUnreported(ctx, replica, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, b := range bs {
			out = append(out, b.Id)
		}
		return out, floor
	}
	got, floor := ids("a", 0, 10)
	if !slices.Equal(got, []int64{1, 3, 4}) || floor != 1 {
		t.Fatalf("a: %v floor %d, want [1 3 4] floor 1 (build 2 is live)", got, floor)
	}
	if got, _ := ids("a", 0, 2); !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("a, limit 2: %v", got)
	}
	if err := s.MarkReplicaReported(ctx, "a", []int64{1, 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkReplicaReported(ctx, "a", []int64{3}); err != nil {
		t.Fatalf("marking twice: %v", err)
	}
	if got, _ := ids("a", 0, 10); !slices.Equal(got, []int64{4}) {
		t.Fatalf("a after marking 1 and 3: %v", got)
	}
	if got, _ := ids("b", 0, 10); !slices.Equal(got, []int64{1, 3, 4}) {
		t.Fatalf("b sees a's marks: %v", got)
	}
	if got, _ := ids("b", 3, 10); !slices.Equal(got, []int64{4}) {
		t.Fatalf("b after 3: %v", got)
	}
	// Build 2 finishes: the floor moves past every build.
	if err := s.Enqueue(Mutation{PutBuild: build(2, passed)}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got, floor := ids("a", 0, 10); !slices.Equal(got, []int64{2, 4}) || floor != 4 {
		t.Fatalf("a after build 2 finished: %v floor %d, want [2 4] floor 4", got, floor)
	}
	if err := s.Enqueue(Mutation{DeleteBuild: 1}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetDeletedReports(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM replica_reports WHERE replica = 'a'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("marks of a after forgetting deleted builds: %d, %v; want 1 (build 3)", n, err)
	}
}
