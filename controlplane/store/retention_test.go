package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func TestExpiredKeepsEachBranchsNewestAndNewestPassing(t *testing.T) {
	stores(t, testExpiredKeepsEachBranchsNewestAndNewestPassing)
}

func testExpiredKeepsEachBranchsNewestAndNewestPassing(t *testing.T, open opener) {
	s := open(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	const (
		passed = pontusv1.BuildStatus_BUILD_STATUS_PASSED
		failed = pontusv1.BuildStatus_BUILD_STATUS_FAILED
		queued = pontusv1.BuildStatus_BUILD_STATUS_QUEUED
	)
	var muts []Mutation
	for _, b := range []struct {
		id     int64
		branch string
		status pontusv1.BuildStatus
		age    time.Duration
	}{
		{1, "main", passed, 48 * time.Hour},
		{2, "main", failed, 48 * time.Hour}, // result files not written yet
		{3, "main", passed, time.Hour},      // main's newest passing build
		{4, "main", failed, time.Hour},
		{5, "dev", failed, time.Hour}, // dev's newest build
		{6, "main", queued, 0},        // main's newest build
	} {
		bb := build(b.id, b.status)
		bb.Branch = b.branch
		if IsTerminal(b.status) {
			bb.FinishedAt = timestamppb.New(now.Add(-b.age))
		}
		muts = append(muts, Mutation{PutBuild: bb})
		if b.id != 2 && IsTerminal(b.status) {
			muts = append(muts, Mutation{Reported: b.id})
		}
	}
	if err := s.Enqueue(muts...).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	expired := func(q ExpiredQuery) string {
		t.Helper()
		q.Now = now
		es, err := s.Expired(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		return fmt.Sprint(ids)
	}
	for _, c := range []struct {
		name string
		q    ExpiredQuery
		want string
	}{
		{"keep everything", ExpiredQuery{}, "[]"},
		{"keep 1", ExpiredQuery{Keep: Retention{Count: 1}}, "[1 4]"},
		{"keep 3", ExpiredQuery{Keep: Retention{Count: 3}}, "[1]"},
		{"keep a day", ExpiredQuery{Keep: Retention{Age: 24 * time.Hour}}, "[1]"},
		{"keep a minute", ExpiredQuery{Keep: Retention{Age: time.Minute}}, "[1 4]"},
		{"limit", ExpiredQuery{Keep: Retention{Count: 1}, Limit: 1}, "[1]"},
	} {
		if got := expired(c.q); got != c.want {
			t.Errorf("%s: expired %s, want %s", c.name, got, c.want)
		}
	}
	if err := s.Enqueue(Mutation{LogsPruned: 1}, Mutation{DeleteBuild: 4}, Mutation{DeleteBuild: 6}).Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := expired(ExpiredQuery{Keep: Retention{Count: 1}, Logs: true}); got != "[]" {
		t.Errorf("logs expired after pruning: %s", got)
	}
	if _, err := s.GetBuild(ctx, 4); err != ErrNotFound {
		t.Errorf("deleted build 4: %v", err)
	}
	if _, err := s.GetBuild(ctx, 6); err != nil {
		t.Errorf("a live build was deleted: %v", err)
	}
}

// BenchmarkExpired is one retention round's query on a store of 100,000
// finished builds over 100 branches, keeping the newest 10,000.
func BenchmarkExpired(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchExpired(b, sqliteOpener(b)(b)) })
	b.Run("postgres", func(b *testing.B) { benchExpired(b, postgresOpener(b)(b)) })
}

func benchExpired(b *testing.B, s Store) {
	ctx := context.Background()
	now := time.Now()
	for start := int64(1); start <= 100000; start += 1000 {
		var muts []Mutation
		for id := start; id < start+1000; id++ {
			bb := build(id, pontusv1.BuildStatus_BUILD_STATUS_FAILED)
			if id%7 == 0 {
				bb.Status = pontusv1.BuildStatus_BUILD_STATUS_PASSED
			}
			bb.Branch = fmt.Sprintf("b%d", id%100)
			bb.FinishedAt = timestamppb.New(now.Add(-time.Duration(100000-id) * time.Minute))
			muts = append(muts, Mutation{PutBuild: bb}, Mutation{Reported: id})
		}
		if err := s.Enqueue(muts...).Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		es, err := s.Expired(ctx, ExpiredQuery{Keep: Retention{Count: 10000}, Now: now, Limit: 500})
		if err != nil || len(es) != 500 {
			b.Fatalf("%d %v", len(es), err)
		}
	}
}
