package controlplane

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pontus-ci/pontus/controlplane/store"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Sharding: a build with settings.shards = n > 1 has n jobs, the shards,
// with the ids after the build's own (build id + 1 + index). Each shard job
// is a liveBuild of its own (parent set) that the queue, leases, heartbeats,
// logs and lease expiry treat exactly like an unsharded build's one job;
// what it changes is copied into the build's Shard record, and the build —
// the unit people see and the store keeps — is derived from its shards.

// balance is the test durations a branch's sharded builds are balanced by.
type balance struct {
	build int64
	tests []*pontusv1.TestCase // name, suite and duration only
}

// maxBalanceBytes bounds the durations kept per branch and sent with each
// shard job (names and suites), well inside a message's size limit.
const maxBalanceBytes = 2 << 20

// maxMergedTests bounds a sharded build's merged results, as CompleteJob
// bounds one job's; failures are kept first.
const maxMergedTests = 100000

// balanceOf keeps the name, suite and duration of b's tests.
func balanceOf(b *pontusv1.Build) *balance {
	bal := &balance{build: b.Id}
	size := 0
	for _, t := range b.Tests {
		if size += len(t.Name) + len(t.Suite) + 32; size > maxBalanceBytes {
			break
		}
		bal.tests = append(bal.tests, &pontusv1.TestCase{Name: t.Name, Suite: t.Suite, Duration: t.Duration})
	}
	return bal
}

// primeBalance makes sure the durations of the branch's latest finished
// build are known before a sharded build of it is created (after a start
// they are read from the store once; afterwards finished builds keep them
// current).
func (d *dispatcher) primeBalance(ctx context.Context, repo, branch string) {
	key := cursorKey{repo, branch}
	d.mu.Lock()
	_, known := d.balances[key]
	d.mu.Unlock()
	if known {
		return
	}
	bs, err := d.st.ListBuilds(ctx, store.Query{Repo: repo, Branch: branch, Limit: 20})
	if err != nil {
		return // balanced by count
	}
	var bal *balance
	for _, b := range bs {
		if store.IsTerminal(b.Status) && len(b.Tests) > 0 {
			bal = balanceOf(b)
			break
		}
	}
	d.mu.Lock()
	if _, known := d.balances[key]; !known {
		d.balances[key] = bal
	}
	d.mu.Unlock()
}

// rememberBalanceLocked keeps a finished build's durations for the next
// sharded build of its branch.
func (d *dispatcher) rememberBalanceLocked(b *pontusv1.Build) {
	key := cursorKey{b.Repo, b.Branch}
	if len(b.Tests) == 0 || b.Status == statusCanceled || b.Status == statusError {
		return
	}
	if _, tracked := d.balances[key]; tracked || len(b.Shards) > 0 || b.GetSettings().GetShards() > 1 {
		d.balances[key] = balanceOf(b)
	}
}

// newShardsLocked gives a new build of n > 1 shards its queued shard jobs.
func (d *dispatcher) newShardsLocked(lb *liveBuild, n int) {
	b := lb.b
	if bal := d.balances[cursorKey{b.Repo, b.Branch}]; bal != nil {
		b.BalancedBy, lb.known = bal.build, bal.tests
	}
	b.Shards = make([]*pontusv1.Shard, n)
	for i := range n {
		b.Shards[i] = &pontusv1.Shard{Index: int32(i), JobId: b.Id + 1 + int64(i), Status: statusQueued}
	}
	d.nextID += int64(n)
	lb.jobs = make([]*liveBuild, n)
	for i := range n {
		jl := shardJob(lb, i)
		d.jobs[jl.b.Id] = jl
		d.insertQueueLocked(jl)
	}
}

// shardJob makes the live job of shard i of the sharded build lb from its
// Shard record.
func shardJob(lb *liveBuild, i int) *liveBuild {
	b, s := lb.b, lb.b.Shards[i]
	jb := &pontusv1.Build{
		Id: s.JobId, Repo: b.Repo, Branch: b.Branch, Commit: b.Commit, CloneUrl: b.CloneUrl, Labels: b.Labels,
		Settings: b.Settings, CreatedAt: b.CreatedAt, MaxAttempts: b.MaxAttempts, CancelRequested: b.CancelRequested,
		BisectOf: b.BisectOf, Status: s.Status, Reason: s.Reason, Attempt: s.Attempt,
		RunnerId: s.RunnerId, RunnerName: s.RunnerName,
		StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Duration: s.Duration, ExitCode: s.ExitCode,
		Attempts: s.Attempts, LogSize: s.LogSize, LogTruncated: s.LogTruncated, LeaseDeadline: s.LeaseDeadline,
		OutputDroppedBytes: s.OutputDroppedBytes,
	}
	jl := &liveBuild{b: jb, changed: make(chan struct{}), parent: lb, shard: i}
	lb.jobs[i] = jl
	return jl
}

// syncShardLocked copies shard job jl's state into its build's Shard
// record and brings the build's own state up to date.
func syncShardLocked(jl *liveBuild) {
	jb, p := jl.b, jl.parent.b
	s := p.Shards[jl.shard]
	s.Status, s.Reason, s.Attempt = jb.Status, jb.Reason, jb.Attempt
	s.RunnerId, s.RunnerName = jb.RunnerId, jb.RunnerName
	s.StartedAt, s.FinishedAt, s.Duration, s.ExitCode = jb.StartedAt, jb.FinishedAt, jb.Duration, jb.ExitCode
	s.Attempts, s.LogSize, s.LogTruncated = jb.Attempts, jb.LogSize, jb.LogTruncated
	s.LeaseDeadline, s.OutputDroppedBytes = jb.LeaseDeadline, jb.OutputDroppedBytes
	if store.IsTerminal(jb.Status) {
		s.TestCount = int32(len(jb.Tests))
	} else {
		s.TestCount = 0
	}
	aggregateLive(p)
}

// aggregateLive derives a live sharded build's state from its shards:
// QUEUED while no shard is held by a runner (none yet, or the rest wait
// for one: the reason says why), LEASED while the held ones have not
// started and none has finished, else RUNNING; its attempt is its highest
// shard's. A LEASED or RUNNING build thus always has an active job.
func aggregateLive(b *pontusv1.Build) {
	var queued, leased, running, done int
	var started *timestamppb.Timestamp
	b.Attempt, b.LogSize, b.LogTruncated = 0, 0, false
	for _, s := range b.Shards {
		switch s.Status {
		case statusQueued:
			queued++
		case statusLeased:
			leased++
		case statusRunning:
			running++
		}
		if store.IsTerminal(s.Status) {
			done++
		}
		b.Attempt = max(b.Attempt, s.Attempt)
		b.LogSize += s.LogSize
		b.LogTruncated = b.LogTruncated || s.LogTruncated
		for _, a := range s.Attempts {
			if a.StartedAt != nil && (started == nil || a.StartedAt.AsTime().Before(started.AsTime())) {
				started = a.StartedAt
			}
		}
	}
	b.StartedAt = started
	if store.IsTerminal(b.Status) {
		return
	}
	n := len(b.Shards)
	switch {
	case leased+running == 0:
		b.Status = statusQueued
	case running == 0 && done == 0:
		b.Status = statusLeased
	default:
		b.Status = statusRunning
	}
	if !b.CancelRequested {
		b.Reason = ""
		if done > 0 {
			b.Reason = fmt.Sprintf("%d of %d shards finished", done, n)
		}
	}
}

// shardRank orders final shard statuses, worst last: a timed-out shard
// makes the build TIMED_OUT, a failing test is a verdict even when another
// shard could not run (ERROR).
func shardRank(s pontusv1.BuildStatus) int {
	return slices.Index([]pontusv1.BuildStatus{
		pontusv1.BuildStatus_BUILD_STATUS_PASSED, statusError, pontusv1.BuildStatus_BUILD_STATUS_FAILED,
		statusCanceled, pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT,
	}, s)
}

// shardFinishedLocked folds shard job jl, which has just reached a terminal
// status, into its build: its tests join the build's; a timed-out or
// canceled shard stops the others (a failed one does not: every test's
// result is wanted); the last shard to finish finishes the build. It
// reports whether the build finished.
func (d *dispatcher) shardFinishedLocked(jl *liveBuild) bool {
	p := jl.parent
	jb := jl.b
	p.b.Tests = failuresFirst(append(p.b.Tests, jb.Tests...))
	if len(p.b.Tests) > maxMergedTests {
		p.b.Tests = p.b.Tests[:maxMergedTests]
	}
	n := len(p.jobs)
	switch {
	case jb.Status == pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT:
		d.stopShardsLocked(p, fmt.Sprintf("shard %d/%d timed out", jl.shard+1, n))
	case jb.Status == statusCanceled && !p.b.CancelRequested:
		d.stopShardsLocked(p, fmt.Sprintf("shard %d/%d was canceled", jl.shard+1, n))
	}
	syncShardLocked(jl)
	for _, s := range p.b.Shards {
		if !store.IsTerminal(s.Status) {
			return false
		}
	}
	d.finishShardedLocked(p)
	return true
}

// stopShardsLocked ends a sharded build's other shards: queued ones at
// once, running ones at their runner's next heartbeat.
func (d *dispatcher) stopShardsLocked(p *liveBuild, why string) {
	now := timestamppb.New(d.now())
	for _, j := range p.jobs {
		switch j.b.Status {
		case statusQueued:
			d.removeFromQueueLocked(j)
			j.b.Status, j.b.Reason, j.b.FinishedAt, j.b.ExitCode = statusCanceled, why+" before this shard ran", now, -1
			syncShardLocked(j)
		case statusLeased, statusRunning:
			if !j.b.CancelRequested {
				j.b.CancelRequested = true
				j.b.Reason = why + "; stopping this shard"
				syncShardLocked(j)
			}
		}
	}
}

// restoreShardStop, at a start, asks the unfinished shards of sharded
// build p to stop again when a shard of it timed out or was canceled on its
// own (shardFinishedLocked): the Shard record does not keep the request,
// only the finished shard's status, written in the same mutation.
func restoreShardStop(p *liveBuild) {
	if p.b.CancelRequested || !slices.ContainsFunc(p.b.Shards, func(s *pontusv1.Shard) bool {
		return s.Status == pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT || s.Status == statusCanceled
	}) {
		return
	}
	for _, j := range p.jobs {
		if !store.IsTerminal(j.b.Status) {
			j.b.CancelRequested = true
		}
	}
}

// finishShardedLocked gives a sharded build whose shards have all finished
// its final state (the worst shard's status and reason) and retires it and
// its jobs from the live state.
func (d *dispatcher) finishShardedLocked(p *liveBuild) {
	b := p.b
	worst := b.Shards[0]
	var dropped int64
	for _, s := range b.Shards {
		if shardRank(s.Status) > shardRank(worst.Status) {
			worst = s
		}
		dropped += s.OutputDroppedBytes
	}
	now := d.now()
	b.Status, b.ExitCode, b.OutputDroppedBytes = worst.Status, worst.ExitCode, dropped
	b.Reason = ""
	if worst.Reason != "" {
		b.Reason = fmt.Sprintf("shard %d/%d: %s", worst.Index+1, len(b.Shards), worst.Reason)
	}
	b.FinishedAt = timestamppb.New(now)
	b.LeaseDeadline = nil
	if b.StartedAt != nil {
		b.Duration = durationpb.New(now.Sub(b.StartedAt.AsTime()))
	}
	for _, j := range p.jobs {
		delete(d.jobs, j.b.Id)
	}
	d.removeLiveLocked(p)
	d.metrics.finished(b)
	d.rememberBalanceLocked(b)
}

// cancelShardedLocked is CancelBuild of a live sharded build. It reports
// whether the build finished at once (no shard was running).
func (d *dispatcher) cancelShardedLocked(p *liveBuild) bool {
	p.b.CancelRequested = true
	p.b.Reason = "cancel requested; waiting for the runners to stop its shards"
	d.stopShardsLocked(p, "canceled")
	for _, s := range p.b.Shards {
		if !store.IsTerminal(s.Status) {
			return false
		}
	}
	d.finishShardedLocked(p)
	d.finishedLocked(p.b) // culprit searches (bisect.go), as finishLocked does
	return true
}

// shardedJob adds what a runner needs to run its part of a sharded build.
func shardedJob(job *pontusv1.Job, jl *liveBuild) {
	if jl.parent == nil {
		return
	}
	job.BuildId = jl.parent.b.Id
	job.ShardIndex = int32(jl.shard)
	job.ShardCount = int32(len(jl.parent.jobs))
	job.KnownTests = jl.parent.known
}

// buildOfJob returns the live build a live job belongs to.
func buildOfJob(jl *liveBuild) *liveBuild {
	if jl.parent != nil {
		return jl.parent
	}
	return jl
}
