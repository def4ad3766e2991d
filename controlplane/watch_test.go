package controlplane

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// WatchBuilds starts with the builds that match its filter, oldest first,
// then a snapshot_done marker, then changes; one call is enough.
func TestWatchBuildsStartsWithSnapshot(t *testing.T) {
	cp := startCP(t, testConfig(t))
	cp.report(t, "main", nil, commitA)
	cp.report(t, "main", nil, commitB)
	cp.report(t, "other", nil, commitC)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	watch := func(req *pontusv1.WatchBuildsRequest) func() *pontusv1.WatchBuildsResponse {
		stream, err := cp.builds.WatchBuilds(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stream.Close() })
		return func() *pontusv1.WatchBuildsResponse {
			t.Helper()
			if !stream.Receive() {
				t.Fatalf("stream ended: %v", stream.Err())
			}
			return stream.Msg()
		}
	}
	commits := func(next func() *pontusv1.WatchBuildsResponse) []string {
		var got []string
		for {
			m := next()
			if m.SnapshotDone {
				if m.Build != nil {
					t.Fatalf("snapshot_done carries a build: %v", m)
				}
				return got
			}
			got = append(got, m.Build.GetCommit())
		}
	}
	same := func(what string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: snapshot %q, want %q", what, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: snapshot %q, want %q", what, got, want)
			}
		}
	}

	main := watch(&pontusv1.WatchBuildsRequest{Branch: "main"})
	same("branch main", commits(main), commitA, commitB)
	all := watch(&pontusv1.WatchBuildsRequest{SnapshotLimit: 2})
	same("limit 2", commits(all), commitB, commitC)

	// The change after the snapshot follows the marker on the stream.
	commitD := "dddddddddddddddddddddddddddddddddddddddd"
	cp.report(t, "main", nil, commitD)
	if m := main(); m.Build.GetCommit() != commitD || m.Build.GetStatus() != pontusv1.BuildStatus_BUILD_STATUS_QUEUED {
		t.Fatalf("after the snapshot: %v, want the new build of %s", m, commitD)
	}
	if m := all(); m.Build.GetCommit() != commitD {
		t.Fatalf("after the snapshot (all branches): %v, want the new build of %s", m, commitD)
	}

	// changes_only: no snapshot, no marker.
	changes := watch(&pontusv1.WatchBuildsRequest{ChangesOnly: true})
	cp.report(t, "main", nil, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee")
	if m := changes(); m.SnapshotDone || m.Build.GetCommit() != "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee" {
		t.Fatalf("changes_only: first message %v, want the new build", m)
	}
}

// No change falls between the snapshot and the stream: watchers that
// connect while commits keep coming each end up with every build.
func TestWatchBuildsLosesNothingBetweenSnapshotAndStream(t *testing.T) {
	cp := startCP(t, testConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const commits, watchers = 60, 8
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range commits {
			cp.report(t, "main", nil, fmt.Sprintf("%040x", i+1))
		}
	}()
	var wg sync.WaitGroup
	for w := range watchers {
		wg.Go(func() {
			stream, err := cp.builds.WatchBuilds(ctx, &pontusv1.WatchBuildsRequest{SnapshotLimit: 1000})
			if err != nil {
				t.Error(err)
				return
			}
			defer stream.Close()
			seen := map[string]bool{}
			for len(seen) < commits && stream.Receive() {
				if b := stream.Msg().Build; b != nil {
					seen[b.Commit] = true
				}
			}
			if len(seen) < commits {
				t.Errorf("watcher %d saw %d of %d builds: %v", w, len(seen), commits, stream.Err())
			}
		})
	}
	wg.Wait()
	<-done
}
