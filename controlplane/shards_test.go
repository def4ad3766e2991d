package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func shardedConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	dir := t.TempDir()
	cfg.DataDir, cfg.ResultsDir = filepath.Join(dir, "data"), filepath.Join(dir, "results")
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func reportSharded(t *testing.T, d *dispatcher, shards int32, commit string) *pontusv1.Build {
	t.Helper()
	bs, err := d.report(t.Context(), &pontusv1.ReportCommitsRequest{Repo: "/repo", Branch: "main", Commits: []string{commit},
		Settings: &pontusv1.BuildSettings{Shards: shards}})
	if err != nil {
		t.Fatal(err)
	}
	return bs[0]
}

func registerN(t *testing.T, d *dispatcher, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		r, err := d.register(t.Context(), "r"+string(rune('1'+i)), nil, 1, "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.Id)
	}
	return ids
}

func mustAcquire(t *testing.T, d *dispatcher, runner string) *pontusv1.Job {
	t.Helper()
	job, err := d.acquire(context.Background(), runner, time.Second)
	if err != nil || job == nil {
		t.Fatalf("acquire: %v %v", job, err)
	}
	return job
}

func test(name string, o pontusv1.TestOutcome, d time.Duration) *pontusv1.TestCase {
	return &pontusv1.TestCase{Name: name, Suite: "s", Outcome: o, Duration: durationpb.New(d)}
}

// A build of three shards is three jobs held at once by three runners; a
// lost shard is re-run alone; the build ends once all have, with every
// shard's tests and the worst status.
func TestShardedBuildRunsItsShardsInParallelAndMerges(t *testing.T) {
	cfg := shardedConfig(t)
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		d := newTestDispatcher(t, cfg)
		runners := registerN(t, d, 4)
		b := reportSharded(t, d, 3, commitA)
		if b.Status != statusQueued || len(b.Shards) != 3 {
			t.Fatalf("new sharded build: %s with %d shards", b.Status, len(b.Shards))
		}
		var jobs []*pontusv1.Job
		for i := range 3 {
			job := mustAcquire(t, d, runners[i])
			if job.JobId != b.Id+1+int64(i) || job.BuildId != b.Id || job.ShardIndex != int32(i) || job.ShardCount != 3 {
				t.Fatalf("job %d: id %d build %d shard %d/%d", i, job.JobId, job.BuildId, job.ShardIndex, job.ShardCount)
			}
			jobs = append(jobs, job)
		}
		// Three jobs held at once, by three runners; nothing left for a fourth.
		if job, err := d.acquire(ctx, runners[3], 10*time.Millisecond); job != nil || err != nil {
			t.Fatalf("a fourth job: %v %v", job, err)
		}
		for _, job := range jobs {
			if _, err := d.appendLog(ctx, job.JobId, job.Attempt, 0, []byte("shard output\n")); err != nil {
				t.Fatal(err)
			}
		}
		cur, _ := d.find(ctx, b.Id, "", "")
		if cur.Status != statusRunning || cur.Attempt != 1 {
			t.Fatalf("while its shards run: %s attempt %d", cur.Status, cur.Attempt)
		}
		for i, o := range []pontusv1.BuildStatus{pontusv1.BuildStatus_BUILD_STATUS_PASSED, pontusv1.BuildStatus_BUILD_STATUS_FAILED} {
			outcome := pontusv1.TestOutcome_TEST_OUTCOME_PASSED
			if o == pontusv1.BuildStatus_BUILD_STATUS_FAILED {
				outcome = pontusv1.TestOutcome_TEST_OUTCOME_FAILED
			}
			got, err := d.complete(ctx, jobs[i].JobId, 1, outcome_(o, int64(len("shard output\n")),
				test("t"+string(rune('a'+i)), outcome, time.Duration(i+1)*time.Second)))
			if err != nil || got.Id != b.Id || got.Status != statusRunning {
				t.Fatalf("complete shard %d: %v %v", i, got, err)
			}
		}
		// The third shard's runner dies: after a lease its shard alone is queued again.
		time.Sleep(cfg.LeaseDuration + time.Millisecond)
		d.expireLeases()
		again := mustAcquire(t, d, runners[3])
		if again.JobId != jobs[2].JobId || again.Attempt != 2 || again.ShardIndex != 2 {
			t.Fatalf("re-run: job %d attempt %d shard %d", again.JobId, again.Attempt, again.ShardIndex)
		}
		if _, err := d.complete(ctx, jobs[2].JobId, 1, outcome_(pontusv1.BuildStatus_BUILD_STATUS_PASSED, 0)); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("stale attempt's CompleteJob: %v", err)
		}
		final, err := d.complete(ctx, again.JobId, 2, outcome_(pontusv1.BuildStatus_BUILD_STATUS_PASSED, 0,
			test("tc", pontusv1.TestOutcome_TEST_OUTCOME_PASSED, 3*time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		var attempts []int32
		for _, s := range final.Shards {
			attempts = append(attempts, s.Attempt)
		}
		if final.Status != pontusv1.BuildStatus_BUILD_STATUS_FAILED || len(final.Tests) != 3 ||
			final.Tests[0].Outcome != pontusv1.TestOutcome_TEST_OUTCOME_FAILED || !slices.Equal(attempts, []int32{1, 1, 2}) {
			t.Fatalf("final: %s tests %v shard attempts %v", final.Status, final.Tests, attempts)
		}
		// The same answer again for a shard that finished (its answer was lost).
		if b2, err := d.complete(ctx, jobs[0].JobId, 1, outcome_(pontusv1.BuildStatus_BUILD_STATUS_PASSED, 0)); err != nil || b2.Id != b.Id {
			t.Fatalf("CompleteJob repeated: %v %v", b2, err)
		}
		stored, err := d.st.GetBuild(ctx, b.Id)
		if err != nil || stored.Status != final.Status || len(stored.Shards) != 3 {
			t.Fatalf("stored: %v %v", stored, err)
		}
		log, err := buildLog(d.logs, stored)
		if err != nil || strings.Count(string(log), "[pontus: shard ") != 3 || strings.Count(string(log), "shard output") != 2 {
			t.Fatalf("log: %q %v", log, err)
		}
		// The next sharded build of the branch is balanced by this one's durations.
		next := reportSharded(t, d, 2, commitB)
		if next.Id != b.Id+4 || next.BalancedBy != b.Id {
			t.Fatalf("next build %d balanced by %d; want %d by %d", next.Id, next.BalancedBy, b.Id+4, b.Id)
		}
		job := mustAcquire(t, d, runners[0])
		if len(job.KnownTests) != 3 || job.KnownTests[0].Duration == nil {
			t.Fatalf("known tests %v", job.KnownTests)
		}
	})
}

func outcome_(s pontusv1.BuildStatus, logSize int64, tests ...*pontusv1.TestCase) outcome {
	return outcome{status: s, tests: tests, logSize: logSize}
}

// Cancel reaches every shard: queued ones end at once, running ones at
// their runner's heartbeat; a restart of the control plane keeps the shards.
func TestShardedBuildSurvivesRestartAndCancels(t *testing.T) {
	cfg := shardedConfig(t)
	ctx := context.Background()
	d := newTestDispatcher(t, cfg)
	runners := registerN(t, d, 2)
	b := reportSharded(t, d, 3, commitA)
	job := mustAcquire(t, d, runners[0])
	d.results.stop()
	if err := d.st.Close(); err != nil {
		t.Fatal(err)
	}

	d = newTestDispatcher(t, cfg)
	cur, err := d.find(ctx, b.Id, "", "")
	if err != nil || len(cur.Shards) != 3 || cur.Shards[0].Status != statusLeased || cur.Shards[1].Status != statusQueued {
		t.Fatalf("after restart: %v %v", cur, err)
	}
	if _, lost, err := d.heartbeat(ctx, runners[0], []*pontusv1.JobRef{{JobId: job.JobId, Attempt: 1}}); err != nil || len(lost) > 0 {
		t.Fatalf("heartbeat after restart: lost %v err %v", lost, err)
	}
	second := mustAcquire(t, d, runners[1])
	if second.ShardIndex != 1 || second.JobId != b.Id+2 {
		t.Fatalf("after restart the next job is shard %d (job %d)", second.ShardIndex, second.JobId)
	}
	if nb := reportSharded(t, d, 1, commitB); nb.Id != b.Id+4 {
		t.Fatalf("after restart a new build has id %d, want %d", nb.Id, b.Id+4)
	}

	// A follower of the build's log, from before any output to the end.
	followed := make(chan string, 1)
	go func() {
		var got []byte
		err := d.tail(ctx, b.Id, 0, true, func(m *pontusv1.TailLogResponse) error {
			if m.Reset_ {
				got = got[:0]
			}
			if m.Offset != int64(len(got)) && len(m.Data) > 0 {
				return fmt.Errorf("chunk at offset %d after %d bytes", m.Offset, len(got))
			}
			got = append(got, m.Data...)
			return nil
		})
		if err != nil {
			got = []byte(err.Error())
		}
		followed <- string(got)
	}()
	for i, j := range []*pontusv1.Job{job, second} {
		if _, err := d.appendLog(ctx, j.JobId, 1, 0, []byte(fmt.Sprintf("output of shard %d\n", i+1))); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := d.cancel(ctx, b.Id, "", ""); err != nil {
		t.Fatal(err)
	}
	cancel, _, err := d.heartbeat(ctx, runners[0], []*pontusv1.JobRef{{JobId: job.JobId, Attempt: 1}})
	if err != nil || len(cancel) != 1 {
		t.Fatalf("heartbeat after cancel: %v %v", cancel, err)
	}
	for _, j := range []*pontusv1.Job{job, second} {
		if _, err := d.complete(ctx, j.JobId, 1, outcome_(statusCanceled, 0)); err != nil {
			t.Fatal(err)
		}
	}
	final, err := d.find(ctx, b.Id, "", "")
	if err != nil || final.Status != statusCanceled || final.Shards[2].Status != statusCanceled || final.Shards[2].Attempt != 0 {
		t.Fatalf("canceled build: %v %v", final, err)
	}
	whole, err := buildLog(d.logs, final)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-followed; got != string(whole) || !strings.Contains(got, "output of shard 2\n[pontus: shard 3 of 3 (job") {
		t.Fatalf("followed log %q\nwant %q", got, whole)
	}
}

// A timed-out shard stops the others: queued ones at once, running ones at
// their next heartbeat; the build is TIMED_OUT. A failed shard stops none.
func TestTimedOutShardStopsTheOthers(t *testing.T) {
	cfg := shardedConfig(t)
	ctx := context.Background()
	d := newTestDispatcher(t, cfg)
	runners := registerN(t, d, 2)
	b := reportSharded(t, d, 3, commitA)
	first, second := mustAcquire(t, d, runners[0]), mustAcquire(t, d, runners[1])
	if _, err := d.complete(ctx, first.JobId, 1, outcome_(pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT, 0)); err != nil {
		t.Fatal(err)
	}
	cancel, _, err := d.heartbeat(ctx, runners[1], []*pontusv1.JobRef{{JobId: second.JobId, Attempt: 1}})
	if err != nil || len(cancel) != 1 {
		t.Fatalf("the running shard is not told to stop: %v %v", cancel, err)
	}
	if _, err := d.complete(ctx, second.JobId, 1, outcome_(statusCanceled, 0)); err != nil {
		t.Fatal(err)
	}
	final, err := d.find(ctx, b.Id, "", "")
	if err != nil || final.Status != pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT || final.Shards[2].Status != statusCanceled ||
		!strings.Contains(final.Shards[2].Reason, "shard 1/3 timed out") {
		t.Fatalf("build: %v %v", final, err)
	}
}

// The stop a timed-out shard sends its running siblings survives a restart
// of the control plane: the sibling is still told to stop at its next
// heartbeat, not left to run to its end.
func TestTimedOutShardStopSurvivesRestart(t *testing.T) {
	cfg := shardedConfig(t)
	ctx := context.Background()
	d := newTestDispatcher(t, cfg)
	runners := registerN(t, d, 2)
	reportSharded(t, d, 3, commitA)
	first, second := mustAcquire(t, d, runners[0]), mustAcquire(t, d, runners[1])
	if _, err := d.complete(ctx, first.JobId, 1, outcome_(pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT, 0)); err != nil {
		t.Fatal(err)
	}
	d.results.stop()
	if err := d.st.Close(); err != nil {
		t.Fatal(err)
	}

	d = newTestDispatcher(t, cfg)
	cancel, lost, err := d.heartbeat(ctx, runners[1], []*pontusv1.JobRef{{JobId: second.JobId, Attempt: 1}})
	if err != nil || len(lost) > 0 || len(cancel) != 1 {
		t.Fatalf("after a restart the running shard is not told to stop: cancel %v lost %v err %v", cancel, lost, err)
	}
}
