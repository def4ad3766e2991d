package controlplane

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// checkQueuesLocked compares the label queues and their runner counts with
// a recount from scratch over every live build and runner.
func checkQueuesLocked(d *dispatcher) error {
	queued := map[string][]int64{}
	n := 0
	for id, lb := range d.builds {
		switch lb.b.Status {
		case statusQueued:
			queued[labelKey(lb.b.Labels)] = append(queued[labelKey(lb.b.Labels)], id)
			n++
			if d.active[id] != nil {
				return fmt.Errorf("queued build %d is also active", id)
			}
		default:
			if d.active[id] != lb {
				return fmt.Errorf("%s build %d is not in the active set", statusName(lb.b.Status), id)
			}
		}
	}
	if len(d.active)+n != len(d.builds) {
		return fmt.Errorf("%d active + %d queued != %d live builds", len(d.active), n, len(d.builds))
	}
	if n != d.queued {
		return fmt.Errorf("queued count %d, want %d", d.queued, n)
	}
	online := 0
	for _, r := range d.runners {
		if r.counted == 0 {
			return fmt.Errorf("runner %s is not counted", r.r.Id)
		}
		if r.counted != pontusv1.RunnerState_RUNNER_STATE_OFFLINE {
			online++
		}
	}
	if online != d.onlineRunners {
		return fmt.Errorf("online runners %d, want %d", d.onlineRunners, online)
	}
	for key, q := range d.queues {
		want := queued[key]
		slices.Sort(want)
		if !slices.Equal(q.ids, want) {
			return fmt.Errorf("label queue %q holds %v, want %v", key, q.ids, want)
		}
		delete(queued, key)
		var idle, busy, offline int
		for _, r := range d.runners {
			if !hasLabels(r.r.Labels, q.labels) {
				continue
			}
			switch r.counted {
			case pontusv1.RunnerState_RUNNER_STATE_IDLE:
				idle++
			case pontusv1.RunnerState_RUNNER_STATE_BUSY:
				busy++
			default:
				offline++
			}
		}
		if q.idle != idle || q.busy != busy || q.offline != offline {
			return fmt.Errorf("label queue %q counts idle %d busy %d offline %d, want %d %d %d",
				key, q.idle, q.busy, q.offline, idle, busy, offline)
		}
	}
	if len(queued) > 0 {
		return fmt.Errorf("queued builds missing from the label queues: %v", queued)
	}
	return nil
}

// A hammer: runners with overlapping labels take, renew, finish and drop
// jobs while commits are reported, triggered and canceled; afterwards the
// label queues and counts equal a recount from scratch, and every build is
// accounted for.
func TestQueueCountsHammer(t *testing.T) {
	cfg := testConfig(t)
	cfg.LeaseDuration = 300 * time.Millisecond
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cp := startCP(t, cfg)
	srv := cp.server
	ctx := t.Context()
	labelSets := [][]string{nil, {"wasm"}, {"linux"}, {"linux", "wasm"}, {"gpu"}}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			id := cp.register(t, fmt.Sprintf("r%d", i), labelSets[i%4]...)
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := cp.runners.AcquireJob(ctx, &pontusv1.AcquireJobRequest{RunnerId: id, Wait: durationpb.New(20 * time.Millisecond)})
				if err != nil || res.Job == nil {
					continue
				}
				ref := &pontusv1.JobRef{JobId: res.Job.JobId, Attempt: res.Job.Attempt}
				_, _ = cp.runners.Heartbeat(ctx, &pontusv1.HeartbeatRequest{RunnerId: id, Leases: []*pontusv1.JobRef{ref}})
				if rng.IntN(4) == 0 {
					continue // dropped: the lease runs out and the job is re-queued
				}
				_, _ = cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{
					JobId: ref.JobId, Attempt: ref.Attempt, Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED,
				})
			}
		}()
	}
	for i := range 200 {
		commit := fmt.Sprintf("%040x", i+1)
		labels := labelSets[i%len(labelSets)]
		cp.report(t, "main", labels, commit)
		switch i % 7 {
		case 3:
			_, _ = cp.builds.CancelBuild(ctx, &pontusv1.CancelBuildRequest{Commit: commit})
		case 5:
			_, _ = cp.builds.TriggerBuild(ctx, &pontusv1.TriggerBuildRequest{Commit: commit})
		}
		if i%20 == 0 {
			srv.d.mu.Lock()
			err := checkQueuesLocked(srv.d)
			srv.d.mu.Unlock()
			if err != nil {
				t.Fatalf("after %d reports: %v", i, err)
			}
		}
	}
	close(stop)
	wg.Wait()
	srv.d.mu.Lock()
	defer srv.d.mu.Unlock()
	if err := checkQueuesLocked(srv.d); err != nil {
		t.Fatal(err)
	}
	// The runners that went quiet are counted offline at the next ticks.
	srv.d.tickQueuesLocked(srv.d.now().Add(time.Hour))
	if err := checkQueuesLocked(srv.d); err != nil {
		t.Fatal(err)
	}
	if srv.d.onlineRunners != 0 {
		t.Errorf("%d runners counted online an hour after the last contact", srv.d.onlineRunners)
	}
}

// TestPendingReasonMatchesRecount: the reason from counts says what a scan
// of the runners and the queue would.
func TestPendingReasonFromCounts(t *testing.T) {
	cp := startCP(t, testConfig(t))
	ctx := context.Background()
	gpu := cp.report(t, "main", []string{"gpu"}, commitA)[0]
	plain := cp.report(t, "main", nil, commitB)[0]
	later := cp.report(t, "dev", nil, commitC)[0]
	reason := func(id int64) string { t.Helper(); return cp.build(t, id).Reason }
	if got := reason(plain.Id); got != "no runners registered" {
		t.Errorf("no runners: %q", got)
	}
	r := cp.register(t, "r1", "linux")
	for id, want := range map[int64]string{
		gpu.Id:   "no runner has labels [gpu]",
		plain.Id: "waiting behind 1 queued builds", // the gpu build needs at least its labels
		later.Id: "waiting behind 2 queued builds",
	} {
		if got := reason(id); got != want {
			t.Errorf("build %d: reason %q, want %q", id, got, want)
		}
	}
	job := cp.acquire(t, r, time.Second)
	if job.JobId != plain.Id {
		t.Fatalf("took build %d, want %d (the oldest it can run)", job.JobId, plain.Id)
	}
	if got := reason(later.Id); got != "all 1 runners busy" {
		t.Errorf("runner busy: %q", got)
	}
	res, err := cp.builds.ListBuilds(ctx, &pontusv1.ListBuildsRequest{Status: statusQueued})
	if err != nil || len(res.Builds) != 2 {
		t.Fatalf("queued builds: %v, %v", res.GetBuilds(), err)
	}
}

// Builds needing more distinct label sets than the control plane keeps are
// refused with resource_exhausted naming labels; a known set still queues.
func TestLabelSetsAreBounded(t *testing.T) {
	d := newTestDispatcher(t, testConfig(t))
	ctx := t.Context()
	for i := range maxLabelSets {
		if _, err := d.report(ctx, &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main", Labels: []string{fmt.Sprintf("l%d", i)}, Commits: []string{fmt.Sprintf("%040x", i+1)}}); err != nil {
			t.Fatalf("label set %d: %v", i, err)
		}
	}
	_, err := d.report(ctx, &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main", Labels: []string{"one-too-many"}, Commits: []string{fmt.Sprintf("%040x", maxLabelSets+1)}})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "labels:") {
		t.Fatalf("a new label set beyond the bound: %v, want resource_exhausted naming labels", err)
	}
	if _, err := d.report(ctx, &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main", Labels: []string{"l7"}, Commits: []string{fmt.Sprintf("%040x", maxLabelSets+2)}}); err != nil {
		t.Fatalf("a known label set at the bound: %v", err)
	}
}
