package controlplane

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pontus-ci/pontus/controlplane/store"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const (
	statusQueued   = pontusv1.BuildStatus_BUILD_STATUS_QUEUED
	statusLeased   = pontusv1.BuildStatus_BUILD_STATUS_LEASED
	statusRunning  = pontusv1.BuildStatus_BUILD_STATUS_RUNNING
	statusError    = pontusv1.BuildStatus_BUILD_STATUS_ERROR
	statusCanceled = pontusv1.BuildStatus_BUILD_STATUS_CANCELED
)

// dispatcher owns the live state: builds that are not finished, the queue,
// leases, runners, long-polling waiters and cursors. Every change is made
// under mu, enqueued to the store in the same critical section (so the
// store sees changes in the order they were made), and waited on outside mu
// before the RPC answers.
type dispatcher struct {
	cfg     Config
	st      store.Store
	logs    *logStore
	results *resultWriter
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	// reportMu serialises ReportCommits so its "does this commit have a
	// build?" check and the creation are atomic.
	reportMu sync.Mutex

	mu     sync.Mutex
	builds map[int64]*liveBuild // live builds by build id
	// jobs are the live builds' jobs by job id: an unsharded build is its
	// own job; a sharded build's shard jobs stay here until it finishes
	// (shards.go).
	jobs     map[int64]*liveBuild
	byCommit map[string][]*liveBuild // live builds of each commit, so reports need no scan
	active   map[int64]*liveBuild    // LEASED and RUNNING jobs
	queues   map[string]*labelQueue  // QUEUED jobs by the labels they need (queue.go)
	queued   int                     // QUEUED jobs in all queues
	// balances are the test durations of each branch's latest finished
	// build, for branches with sharded builds (nil: none known).
	balances map[cursorKey]*balance
	runners  map[string]*runnerState
	// onlineRunners counts runners not counted offline (queue.go).
	onlineRunners int
	waiters       []*waiter
	cursors       map[cursorKey]string
	nextID        int64
	subs          map[*subscriber]struct{}
	shutdown      chan struct{}
	closed        bool

	// Culprit searches (bisect.go): under way by failed build id, those
	// due a step, and the wake-up of the goroutine that steps them.
	searches   map[int64]*search
	bisectDue  map[int64]bool
	bisectWake chan struct{}
}

type cursorKey struct{ repo, branch string }

type liveBuild struct {
	b *pontusv1.Build
	// changed is closed (and replaced) whenever the build's log or state
	// changes, waking TailLog followers.
	changed chan struct{}
	// logMu serialises log appends of this build.
	logMu sync.Mutex
	// A shard job: its sharded build and its index (shards.go).
	parent *liveBuild
	shard  int
	// A sharded build: its shard jobs by index, and the tests with
	// durations its shards are balanced by.
	jobs  []*liveBuild
	known []*pontusv1.TestCase
}

type runnerState struct {
	r        *pontusv1.Runner
	leases   map[int64]int32 // job id → attempt
	polling  int
	lastSeen time.Time
	// counted is the state the label queues' counts hold for this runner.
	counted pontusv1.RunnerState
	// contacted: the runner called again after registering.
	contacted bool
}

type waiter struct {
	runner *runnerState
	ch     chan claim // buffered 1
}

type claim struct {
	job    *pontusv1.Job
	commit *store.Commit
}

func newDispatcher(cfg Config, st store.Store, logs *logStore, results *resultWriter, m *metrics, logger *slog.Logger) *dispatcher {
	return &dispatcher{
		cfg: cfg, st: st, logs: logs, results: results, log: logger, metrics: m, now: time.Now,
		builds:   map[int64]*liveBuild{},
		jobs:     map[int64]*liveBuild{},
		balances: map[cursorKey]*balance{},
		byCommit: map[string][]*liveBuild{},
		active:   map[int64]*liveBuild{},
		queues:   map[string]*labelQueue{},
		runners:  map[string]*runnerState{},
		cursors:  map[cursorKey]string{},
		subs:     map[*subscriber]struct{}{},
		shutdown: make(chan struct{}),
		nextID:   1,

		searches:   map[int64]*search{},
		bisectDue:  map[int64]bool{},
		bisectWake: make(chan struct{}, 1),
	}
}

// load restores state after a start. Leases of builds that were running
// are extended by the downtime (deadline = now + lease), so a healthy
// runner that reconnects in time keeps its job.
func (d *dispatcher) load(ctx context.Context) (unreported []*pontusv1.Build, err error) {
	st, err := d.st.Load(ctx)
	if err != nil {
		return nil, err
	}
	// A sharded build's shards are balanced by the durations of the build
	// named in balanced_by, read again so every shard gets the same.
	known := map[int64][]*pontusv1.TestCase{}
	for _, b := range st.Live {
		if b.BalancedBy > 0 && known[b.BalancedBy] == nil {
			if kb, err := d.st.GetBuild(ctx, b.BalancedBy); err == nil {
				known[b.BalancedBy] = balanceOf(kb).tests
			}
		}
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nextID = st.NextID
	for _, r := range st.Runners {
		d.runners[r.Id] = &runnerState{r: r, leases: map[int64]int32{}, lastSeen: now}
	}
	for _, b := range st.Live {
		lb := &liveBuild{b: b, changed: make(chan struct{})}
		d.addLiveLocked(lb)
		if len(b.Shards) == 0 {
			d.loadJobLocked(lb, now)
			continue
		}
		lb.known = known[b.BalancedBy]
		lb.jobs = make([]*liveBuild, len(b.Shards))
		for i := range b.Shards {
			d.loadJobLocked(shardJob(lb, i), now)
		}
		restoreShardStop(lb)
	}
	for _, q := range d.queues {
		slices.Sort(q.ids)
		slices.Sort(q.low)
	}
	for _, r := range d.runners {
		d.recountLocked(r, now)
	}
	for _, c := range st.Cursors {
		d.cursors[cursorKey{c.Repo, c.Branch}] = c.Commit
	}
	return st.Unreported, nil
}

// loadJobLocked restores one job of a live build at start.
func (d *dispatcher) loadJobLocked(lb *liveBuild, now time.Time) {
	b := lb.b
	d.jobs[b.Id] = lb
	switch b.Status {
	case statusQueued:
		q := d.queueForLocked(b.Labels)
		ids := q.listFor(b)
		*ids = append(*ids, b.Id)
		d.queued++
	case statusLeased, statusRunning:
		d.active[b.Id] = lb
		b.LeaseDeadline = timestamppb.New(now.Add(d.cfg.LeaseDuration))
		if r := d.runners[b.RunnerId]; r != nil {
			r.leases[b.Id] = b.Attempt
		}
		// The log file is the truth for how much was stored.
		if n, err := d.logs.size(b.Id, b.Attempt); err == nil && !b.LogTruncated {
			b.LogSize = n
		}
	}
	if lb.parent != nil {
		syncShardLocked(lb)
	}
}

// close ends long-polls and streams with unavailable.
func (d *dispatcher) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.closed = true
		close(d.shutdown)
	}
}

// errShuttingDown is what long-polls and streams end with on shutdown.
func errShuttingDown() error {
	return connect.NewError(connect.CodeUnavailable, errors.New("control plane shutting down; retry"))
}

func newRunnerID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "r-" + hex.EncodeToString(b[:])
}

// register adds a runner process.
func (d *dispatcher) register(ctx context.Context, name string, labels []string, capacity int32, version string) (*pontusv1.Runner, error) {
	now := d.now()
	r := &pontusv1.Runner{
		Id: newRunnerID(), Name: name, Labels: labels, Capacity: capacity, Version: version,
		State: pontusv1.RunnerState_RUNNER_STATE_IDLE, RegisteredAt: timestamppb.New(now), LastSeen: timestamppb.New(now),
	}
	d.mu.Lock()
	var muts []store.Mutation
	if len(d.runners) >= d.cfg.MaxRunners {
		old := d.evictableRunnerLocked(now)
		if old == nil {
			n := len(d.runners)
			d.mu.Unlock()
			return nil, connect.NewError(connect.CodeResourceExhausted,
				fmt.Errorf("too many runners: %d registered and active (max_runners is %d); retry later", n, d.cfg.MaxRunners))
		}
		d.log.Warn("runner forgotten to make room for a registration", "runner", old.r.Id, "name", old.r.Name,
			"last_seen", old.lastSeen)
		d.forgetRunnerLocked(old)
		muts = append(muts, store.Mutation{DeleteRunner: old.r.Id})
	}
	rs := &runnerState{r: r, leases: map[int64]int32{}, lastSeen: now}
	d.runners[r.Id] = rs
	d.recountLocked(rs, now)
	c := d.st.Enqueue(append(muts, store.Mutation{PutRunner: proto.Clone(r).(*pontusv1.Runner)})...)
	d.mu.Unlock()
	if err := c.Wait(ctx); err != nil {
		return nil, storeErr(err)
	}
	return r, nil
}

// evictableRunnerLocked picks the runner a registration may replace when
// max_runners is reached: one holding no job and not polling — the
// longest-silent offline one, else the oldest that never called again after
// registering. Nil if every runner is in use.
func (d *dispatcher) evictableRunnerLocked(now time.Time) *runnerState {
	var offline, silent *runnerState
	for _, r := range d.runners {
		if r.polling > 0 || len(r.leases) > 0 {
			continue
		}
		switch {
		case d.runnerStateLocked(r, now) == pontusv1.RunnerState_RUNNER_STATE_OFFLINE:
			if offline == nil || r.lastSeen.Before(offline.lastSeen) {
				offline = r
			}
		case !r.contacted:
			if silent == nil || r.lastSeen.Before(silent.lastSeen) {
				silent = r
			}
		}
	}
	if offline != nil {
		return offline
	}
	return silent
}

func storeErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeCanceled, err)
	}
	var fenced *store.FenceError
	if errors.As(err, &fenced) {
		// This replica was deposed: another leads now, and the client
		// retries there (through any replica).
		return connect.NewError(connect.CodeUnavailable, errors.New("this control plane no longer leads; retry"))
	}
	return connect.NewError(connect.CodeInternal, errors.New("store write failed"))
}

func (d *dispatcher) runnerLocked(id string) (*runnerState, error) {
	r := d.runners[id]
	if r == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("runner_id: runner %q is not registered; call Register", id))
	}
	r.lastSeen = d.now()
	r.contacted = true
	d.recountLocked(r, r.lastSeen)
	return r, nil
}

func hasLabels(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// claimLocked leases job lb (an unsharded build, or a shard job) to runner
// r and returns the job and the mutation to persist.
func (d *dispatcher) claimLocked(r *runnerState, lb *liveBuild) (*pontusv1.Job, store.Mutation) {
	now := d.now()
	b := lb.b
	b.Attempt++
	b.Status = statusLeased
	b.Reason = ""
	b.RunnerId = r.r.Id
	b.RunnerName = r.r.Name
	b.StartedAt = timestamppb.New(now)
	b.LeaseDeadline = timestamppb.New(now.Add(d.cfg.LeaseDuration))
	b.LogSize = 0
	b.LogTruncated = false
	b.Tests = nil
	b.Attempts = append(b.Attempts, &pontusv1.Attempt{
		Number: b.Attempt, RunnerId: r.r.Id, RunnerName: r.r.Name, StartedAt: timestamppb.New(now),
		Status: statusLeased,
	})
	r.leases[b.Id] = b.Attempt
	d.removeFromQueueLocked(lb)
	d.active[b.Id] = lb
	d.recountLocked(r, now)
	d.touchLocked(lb)
	job := &pontusv1.Job{
		JobId: b.Id, Attempt: b.Attempt, BuildId: b.Id, Repo: b.Repo, CloneUrl: b.CloneUrl,
		Branch: b.Branch, Commit: b.Commit, Labels: b.Labels, LeaseDeadline: b.LeaseDeadline,
		Settings: cmp.Or(b.Settings, DefaultSettings()),
	}
	shardedJob(job, lb)
	d.metrics.queueWait.Observe(now.Sub(b.CreatedAt.AsTime()).Seconds())
	return job, d.putLocked(lb)
}

// putLocked is the mutation that persists a change to job lb: its build,
// with a shard job's state copied into the build's Shard record.
func (d *dispatcher) putLocked(lb *liveBuild) store.Mutation {
	if lb.parent != nil {
		syncShardLocked(lb)
		return store.Mutation{PutBuild: lb.parent.b}
	}
	return store.Mutation{PutBuild: lb.b}
}

// unclaimLocked puts a job handed to a waiter that went away back in the queue.
func (d *dispatcher) unclaimLocked(job *pontusv1.Job) *store.Commit {
	lb := d.jobs[job.JobId]
	if lb == nil || lb.b.Attempt != job.Attempt || lb.b.Status != statusLeased {
		return nil
	}
	b := lb.b
	if r := d.runners[b.RunnerId]; r != nil {
		delete(r.leases, b.Id)
		d.recountLocked(r, d.now())
	}
	b.Attempt--
	b.Attempts = b.Attempts[:len(b.Attempts)-1]
	if b.CancelRequested {
		// Canceled while it was being handed out: it never ran.
		b.Status, b.Reason, b.FinishedAt, b.ExitCode = statusCanceled, "canceled before it ran", timestamppb.New(d.now()), -1
		b.RunnerId, b.RunnerName, b.StartedAt = "", "", nil
		c, done := d.finishLocked(lb)
		if done != nil {
			d.reportResults(done)
		}
		return c
	}
	b.Status = statusQueued
	b.RunnerId, b.RunnerName = "", ""
	b.StartedAt, b.LeaseDeadline = nil, nil
	d.insertQueueLocked(lb)
	d.touchLocked(lb)
	c := d.st.Enqueue(d.putLocked(lb))
	d.dispatchLocked()
	return c
}

// dispatchLocked hands queued builds to waiting runners, oldest waiter first.
func (d *dispatcher) dispatchLocked() {
	if d.queued == 0 || len(d.waiters) == 0 {
		return
	}
	kept := d.waiters[:0]
	for i, w := range d.waiters {
		if d.queued == 0 {
			kept = append(kept, d.waiters[i:]...)
			break
		}
		lb := d.nextForLocked(w.runner)
		if lb == nil {
			kept = append(kept, w)
			continue
		}
		w.runner.polling--
		job, mut := d.claimLocked(w.runner, lb)
		w.ch <- claim{job: job, commit: d.st.Enqueue(mut)}
	}
	clear(d.waiters[len(kept):])
	d.waiters = kept
}

// acquire is AcquireJob: a job at once if one is queued for this runner,
// else wait up to wait for one.
func (d *dispatcher) acquire(ctx context.Context, runnerID string, wait time.Duration) (*pontusv1.Job, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, errShuttingDown()
	}
	r, err := d.runnerLocked(runnerID)
	if err != nil {
		d.mu.Unlock()
		return nil, err
	}
	if lb := d.nextForLocked(r); lb != nil {
		job, mut := d.claimLocked(r, lb)
		c := d.st.Enqueue(mut)
		d.mu.Unlock()
		return d.handOut(ctx, job, c)
	}
	w := &waiter{runner: r, ch: make(chan claim, 1)}
	d.waiters = append(d.waiters, w)
	r.polling++
	d.recountLocked(r, d.now())
	d.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case c := <-w.ch:
		return d.handOut(ctx, c.job, c.commit)
	case <-timer.C:
	case <-ctx.Done():
	case <-d.shutdown:
	}
	d.mu.Lock()
	if i := slices.Index(d.waiters, w); i >= 0 {
		d.waiters = slices.Delete(d.waiters, i, i+1)
		r.polling--
	}
	r.lastSeen = d.now()
	d.recountLocked(r, r.lastSeen)
	d.mu.Unlock()
	select {
	case c := <-w.ch: // handed a job while we were leaving
		return d.handOut(ctx, c.job, c.commit)
	default:
	}
	if ctx.Err() != nil {
		return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
	}
	select {
	case <-d.shutdown:
		return nil, errShuttingDown()
	default:
	}
	return nil, nil
}

// handOut waits until the lease is durable, then returns the job; if the
// runner has gone meanwhile, the job goes back to the queue.
func (d *dispatcher) handOut(ctx context.Context, job *pontusv1.Job, c *store.Commit) (*pontusv1.Job, error) {
	if err := c.Wait(context.WithoutCancel(ctx)); err != nil {
		return nil, storeErr(err)
	}
	if ctx.Err() != nil {
		d.mu.Lock()
		uc := d.unclaimLocked(job)
		d.mu.Unlock()
		if uc != nil {
			_ = uc.Wait(context.WithoutCancel(ctx))
		}
		return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
	}
	return job, nil
}

// liveJobLocked returns the live build for a runner call about (job,
// attempt), enforcing the fence.
func (d *dispatcher) liveJobLocked(jobID int64, attempt int32) (*liveBuild, error) {
	lb := d.jobs[jobID]
	if lb == nil {
		return nil, nil
	}
	if lb.b.Attempt != attempt || (lb.b.Status != statusLeased && lb.b.Status != statusRunning) {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("attempt: job %d attempt %d is not current (current attempt %d, status %s)",
				jobID, attempt, lb.b.Attempt, statusName(lb.b.Status)))
	}
	return lb, nil
}

func statusName(s pontusv1.BuildStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "BUILD_STATUS_"))
}

// finishedJob answers a runner call about a job that is no longer live.
func (d *dispatcher) finishedJob(ctx context.Context, jobID int64, attempt int32) (*pontusv1.Build, error) {
	b, err := d.st.JobBuild(ctx, jobID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("job_id: no job %d", jobID))
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, errors.New("store read failed"))
	}
	cur, status := b.Attempt, b.Status
	for _, s := range b.Shards {
		if s.JobId == jobID {
			cur, status = s.Attempt, s.Status
		}
	}
	if cur == attempt && store.IsTerminal(status) && store.IsTerminal(b.Status) {
		return b, nil
	}
	return nil, connect.NewError(connect.CodeFailedPrecondition,
		fmt.Errorf("attempt: job %d attempt %d is not current (job is %s after attempt %d)", jobID, attempt, statusName(status), cur))
}

// startedLocked moves a leased build to RUNNING. The change is not written
// to the store on its own: LEASED and RUNNING are treated alike after a
// restart (both keep their lease), so it rides along with the build's next
// durable write and costs the hot path no commit.
func (d *dispatcher) startedLocked(lb *liveBuild) {
	if lb.b.Status != statusLeased {
		return
	}
	lb.b.Status = statusRunning
	if n := len(lb.b.Attempts); n > 0 {
		lb.b.Attempts[n-1].Status = statusRunning
	}
	d.touchLocked(lb)
}

// appendLog is AppendLog.
func (d *dispatcher) appendLog(ctx context.Context, jobID int64, attempt int32, offset int64, data []byte) (int64, error) {
	d.mu.Lock()
	lb, err := d.liveJobLocked(jobID, attempt)
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if lb == nil {
		if _, err := d.finishedJob(ctx, jobID, attempt); err != nil {
			return 0, err
		}
		return 0, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("job_id: job %d has finished", jobID))
	}
	lb.logMu.Lock()
	defer lb.logMu.Unlock()
	d.mu.Lock()
	if _, err := d.liveJobLocked(jobID, attempt); err != nil || d.jobs[jobID] != lb {
		d.mu.Unlock()
		if err == nil {
			err = connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("job_id: job %d has finished", jobID))
		}
		return 0, err
	}
	size, truncated := lb.b.LogSize, lb.b.LogTruncated
	d.mu.Unlock()

	if offset > size {
		return 0, connect.NewError(connect.CodeOutOfRange,
			fmt.Errorf("offset: %d is beyond the end of the log; stored size %d", offset, size))
	}
	if skip := size - offset; skip < int64(len(data)) {
		data = data[skip:]
		nowTruncated, err := d.logs.append(jobID, attempt, size, data, truncated)
		if err != nil {
			d.log.Error("append log; the runner keeps the log and retries", "job", jobID, "err", err)
			d.metrics.logErrors.Inc()
			return 0, connect.NewError(connect.CodeUnavailable, errors.New("log write failed; retry"))
		}
		size += int64(len(data))
		truncated = nowTruncated
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// The lease may have expired (or the build ended) while the file was
	// written: then this attempt is stale and must not touch the build.
	if _, err := d.liveJobLocked(jobID, attempt); err != nil || d.jobs[jobID] != lb {
		if err == nil {
			err = connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("job_id: job %d has finished", jobID))
		}
		return 0, err
	}
	cut := truncated && !lb.b.LogTruncated
	lb.b.LogSize, lb.b.LogTruncated = size, truncated
	d.startedLocked(lb)
	d.notifyLocked(lb)
	if cut {
		// Remember the cut across a restart (the file then holds the
		// marker, and its size is no longer the log's size). Once per
		// attempt, so no cost on the hot path.
		d.st.Enqueue(d.putLocked(lb))
	}
	return size, nil
}

// heartbeat renews the named leases held by runnerID.
func (d *dispatcher) heartbeat(ctx context.Context, runnerID string, leases []*pontusv1.JobRef) (cancel, lost []*pontusv1.JobRef, err error) {
	d.mu.Lock()
	r, err := d.runnerLocked(runnerID)
	if err != nil {
		d.mu.Unlock()
		return nil, nil, err
	}
	now := d.now()
	var commits []*store.Commit
	for _, l := range leases {
		lb := d.jobs[l.JobId]
		if lb == nil || lb.b.Attempt != l.Attempt || (lb.b.Status != statusLeased && lb.b.Status != statusRunning) {
			lost = append(lost, l)
			continue
		}
		if lb.b.RunnerId != runnerID {
			// A runner that had to register again (its old id was
			// forgotten) keeps the current attempt it is still running;
			// a lease held by another live runner is not its to renew.
			if d.runners[lb.b.RunnerId] != nil {
				lost = append(lost, l)
				continue
			}
			lb.b.RunnerId, lb.b.RunnerName = runnerID, r.r.Name
			commits = append(commits, d.st.Enqueue(d.putLocked(lb)))
		}
		lb.b.LeaseDeadline = timestamppb.New(now.Add(d.cfg.LeaseDuration))
		r.leases[l.JobId] = l.Attempt
		if lb.parent != nil {
			syncShardLocked(lb)
		}
		d.startedLocked(lb)
		if lb.b.CancelRequested {
			cancel = append(cancel, l)
		}
	}
	d.recountLocked(r, now)
	d.mu.Unlock()
	for _, c := range commits {
		if err := c.Wait(ctx); err != nil {
			return nil, nil, storeErr(err)
		}
	}
	return cancel, lost, nil
}

// outcome is what CompleteJob reports.
type outcome struct {
	status   pontusv1.BuildStatus
	reason   string
	exitCode int32
	tests    []*pontusv1.TestCase
	logSize  int64
	dropped  int64
	duration time.Duration
}

// complete is CompleteJob.
func (d *dispatcher) complete(ctx context.Context, jobID int64, attempt int32, o outcome) (*pontusv1.Build, error) {
	d.mu.Lock()
	lb, err := d.liveJobLocked(jobID, attempt)
	if jl := d.jobs[jobID]; err != nil && jl != nil && jl.parent != nil && jl.b.Attempt == attempt && store.IsTerminal(jl.b.Status) {
		// A shard that has finished, reported again (the answer was
		// lost): the same answer, its build still running.
		b := d.viewLocked(jl.parent.b)
		d.mu.Unlock()
		return b, nil
	}
	if err != nil {
		d.mu.Unlock()
		return nil, err
	}
	if lb == nil {
		d.mu.Unlock()
		return d.finishedJob(ctx, jobID, attempt)
	}
	if o.logSize > lb.b.LogSize {
		size := lb.b.LogSize
		d.mu.Unlock()
		return nil, connect.NewError(connect.CodeOutOfRange,
			fmt.Errorf("log_size: %d bytes reported but the log is incomplete; stored size %d", o.logSize, size))
	}
	b := lb.b
	now := d.now()
	b.Status = o.status
	b.Reason = o.reason
	b.ExitCode = o.exitCode
	b.Tests = failuresFirst(o.tests)
	b.OutputDroppedBytes = o.dropped
	b.FinishedAt = timestamppb.New(now)
	if o.duration > 0 {
		b.Duration = durationpb.New(o.duration)
	} else if b.StartedAt != nil {
		b.Duration = durationpb.New(now.Sub(b.StartedAt.AsTime()))
	}
	if n := len(b.Attempts); n > 0 {
		b.Attempts[n-1].Status = o.status
		b.Attempts[n-1].Reason = o.reason
		b.Attempts[n-1].EndedAt = timestamppb.New(now)
	}
	c, done := d.finishLocked(lb)
	answer := b
	if done == nil {
		answer = d.viewLocked(lb.parent.b)
	}
	d.mu.Unlock()
	// The job is finished in memory: see the write through even if the
	// caller gives up, so its result files are always written.
	err = c.Wait(context.WithoutCancel(ctx))
	if err != nil {
		return nil, storeErr(err)
	}
	if done != nil {
		d.reportResults(done)
		answer = done
	}
	return answer, nil
}

// finishLocked retires a job that reached a terminal status: its lease
// released, persisted and announced. An unsharded build finishes with its
// job; a sharded build when its last shard does. It returns the build if it
// finished (then no longer shared with the live state), else nil.
func (d *dispatcher) finishLocked(lb *liveBuild) (*store.Commit, *pontusv1.Build) {
	b := lb.b
	b.LeaseDeadline = nil
	if r := d.runners[b.RunnerId]; r != nil {
		delete(r.leases, b.Id)
		d.recountLocked(r, d.now())
	}
	d.removeFromQueueLocked(lb)
	delete(d.active, b.Id)
	var done *pontusv1.Build
	if lb.parent == nil {
		delete(d.jobs, b.Id)
		d.removeLiveLocked(lb)
		d.metrics.finished(b)
		d.rememberBalanceLocked(b)
		done = b
	} else if d.shardFinishedLocked(lb) {
		done = lb.parent.b
	}
	if done != nil {
		d.finishedLocked(done) // culprit searches (bisect.go), before it is written
	}
	d.touchLocked(lb)
	c := d.st.Enqueue(d.putLocked(lb))
	d.dispatchLocked() // a lease was released: a waiting runner may now take more
	return c, done
}

// reportResults queues a finished build's result files for writing. b must
// no longer be shared with the live state.
func (d *dispatcher) reportResults(b *pontusv1.Build) { d.results.enqueue(b) }

// resultsWritten records that a build's result files are in place.
func (d *dispatcher) resultsWritten(b *pontusv1.Build, err error) {
	if err != nil {
		d.log.Error("write result files", "build", b.Id, "commit", b.Commit, "err", err)
		return
	}
	d.st.Enqueue(store.Mutation{Reported: b.Id})
}

func failuresFirst(tests []*pontusv1.TestCase) []*pontusv1.TestCase {
	rank := func(o pontusv1.TestOutcome) int {
		switch o {
		case pontusv1.TestOutcome_TEST_OUTCOME_FAILED, pontusv1.TestOutcome_TEST_OUTCOME_ERROR:
			return 0
		}
		return 1
	}
	sort.SliceStable(tests, func(i, j int) bool { return rank(tests[i].Outcome) < rank(tests[j].Outcome) })
	return tests
}

// expireLeases re-queues jobs whose runner stopped renewing their lease
// and forgets runners long gone. It runs from a ticker.
func (d *dispatcher) expireLeases() {
	now := d.now()
	var finished []*pontusv1.Build
	var commits []*store.Commit
	d.mu.Lock()
	for _, lb := range d.active {
		b := lb.b
		if (b.Status != statusLeased && b.Status != statusRunning) || b.LeaseDeadline == nil ||
			now.Before(b.LeaseDeadline.AsTime()) {
			continue
		}
		d.metrics.leaseExpiries.Inc()
		d.log.Warn("lease expired", "build", b.Id, "attempt", b.Attempt, "runner", b.RunnerId, "commit", b.Commit)
		if n := len(b.Attempts); n > 0 {
			b.Attempts[n-1].Status = statusError
			b.Attempts[n-1].Reason = "runner lost: lease expired"
			b.Attempts[n-1].EndedAt = timestamppb.New(now)
		}
		if r := d.runners[b.RunnerId]; r != nil {
			delete(r.leases, b.Id)
		}
		switch {
		case b.CancelRequested || int(b.Attempt) >= d.cfg.MaxAttempts:
			if b.CancelRequested {
				b.Status, b.Reason = statusCanceled, "canceled (runner lost before it stopped)"
			} else {
				b.Status = statusError
				b.Reason = fmt.Sprintf("runner lost: %d attempts lost to runners that stopped responding", b.Attempt)
			}
			b.FinishedAt = timestamppb.New(now)
			b.ExitCode = -1
			c, done := d.finishLocked(lb)
			commits = append(commits, c)
			if done != nil {
				finished = append(finished, done)
			}
		default:
			b.Status = statusQueued
			b.Reason = ""
			b.RunnerId, b.RunnerName, b.LeaseDeadline = "", "", nil
			d.insertQueueLocked(lb)
			d.touchLocked(lb)
			commits = append(commits, d.st.Enqueue(d.putLocked(lb)))
		}
	}
	d.dispatchLocked()
	// Forget runners silent for runner_expiry that hold nothing.
	for id, r := range d.runners {
		if r.polling == 0 && len(r.leases) == 0 && now.Sub(r.lastSeen) > d.cfg.RunnerExpiry {
			d.forgetRunnerLocked(r)
			commits = append(commits, d.st.Enqueue(store.Mutation{DeleteRunner: id}))
		}
	}
	d.tickQueuesLocked(now)
	d.mu.Unlock()
	for _, c := range commits {
		if err := c.Wait(context.Background()); err != nil {
			d.log.Error("persist lease expiry", "err", err)
		}
	}
	for _, b := range finished {
		d.reportResults(b)
	}
}

// newBuildLocked creates a queued build from b, which names the commit
// (repo, branch, commit, clone URL, labels, commit details, settings).
func (d *dispatcher) newBuildLocked(b *pontusv1.Build) (*liveBuild, store.Mutation) {
	b.Id, b.Status, b.CreatedAt = d.nextID, statusQueued, timestamppb.New(d.now())
	b.MaxAttempts = int32(d.cfg.MaxAttempts)
	if b.CloneUrl == "" {
		b.CloneUrl = b.Repo
	}
	if b.Settings == nil {
		b.Settings = DefaultSettings()
	}
	d.nextID++
	lb := &liveBuild{b: b, changed: make(chan struct{})}
	d.addLiveLocked(lb)
	if n := int(b.Settings.Shards); n > 1 {
		d.newShardsLocked(lb, n)
	} else {
		d.jobs[b.Id] = lb
		d.insertQueueLocked(lb)
	}
	d.touchLocked(lb)
	return lb, store.Mutation{PutBuild: b}
}

// DefaultSettings are a build's settings when its report gave none: no
// retries, one shard, bisection and reuse on.
func DefaultSettings() *pontusv1.BuildSettings {
	return &pontusv1.BuildSettings{Shards: 1, Bisect: true, Reuse: true}
}

// reportedBuild is the build a report asks for: the commit with its details
// and the settings that apply to it (the commit's own, else the report's).
func reportedBuild(req *pontusv1.ReportCommitsRequest, commit string, details map[string]*pontusv1.CommitInfo) *pontusv1.Build {
	b := &pontusv1.Build{
		Repo: req.Repo, Branch: req.Branch, Commit: commit, CloneUrl: req.CloneUrl,
		Labels: req.Labels, Settings: proto.Clone(cmp.Or(req.Settings, DefaultSettings())).(*pontusv1.BuildSettings),
	}
	if info := details[commit]; info != nil {
		b.Subject, b.Author, b.AuthorEmail = info.Subject, info.Author, info.AuthorEmail
		b.CommittedAt, b.Tree = info.CommittedAt, info.Tree
		if info.Settings != nil {
			b.Settings = proto.Clone(info.Settings).(*pontusv1.BuildSettings)
		}
	}
	if b.Settings.Shards == 0 {
		b.Settings.Shards = 1
	}
	return b
}

// roomLocked refuses n more queued builds when the queue is full.
func (d *dispatcher) roomLocked(n int) error {
	if d.queued+n > d.cfg.MaxQueuedBuilds {
		return connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("queue full: %d builds waiting (max_queued_builds is %d); retry later", d.queued, d.cfg.MaxQueuedBuilds))
	}
	return nil
}

// report is ReportCommits (validated).
func (d *dispatcher) report(ctx context.Context, req *pontusv1.ReportCommitsRequest) ([]*pontusv1.Build, error) {
	repo, branch, labels, commits := req.Repo, req.Branch, req.Labels, req.Commits
	details := make(map[string]*pontusv1.CommitInfo, len(req.Details))
	for _, info := range req.Details {
		details[info.Id] = info
	}
	if req.Settings.GetShards() > 1 || slices.ContainsFunc(req.Details, func(c *pontusv1.CommitInfo) bool { return c.GetSettings().GetShards() > 1 }) {
		d.primeBalance(ctx, repo, req.Branch)
	}
	// reportMu makes check-then-create atomic between reports; it is
	// released before the durable wait, since the store commits in order.
	d.reportMu.Lock()
	out := make([]*pontusv1.Build, len(commits))
	// For each new commit: the build to create and, when its tree was
	// tested already, the build whose verdict it takes.
	fresh := make([]*pontusv1.Build, len(commits))
	reuse := make([]*pontusv1.Build, len(commits))
	for i, c := range commits {
		if b := d.liveByCommit(repo, c); b != nil {
			out[i] = b
			continue
		}
		b, err := d.st.LatestBuild(ctx, repo, c)
		if err == nil {
			out[i] = b
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			d.reportMu.Unlock()
			return nil, connect.NewError(connect.CodeInternal, errors.New("store read failed"))
		}
		fresh[i] = reportedBuild(req, c, details)
		if i == 0 && len(req.Skipped) > 0 {
			fresh[i].Skipped, fresh[i].SkippedAfter = req.Skipped, req.SkippedAfter
			for _, c := range req.Skipped {
				if info := details[c]; info != nil {
					fresh[i].SkippedDetails = append(fresh[i].SkippedDetails, info)
				}
			}
		}
		if reuse[i], err = d.reusable(ctx, fresh[i]); err != nil {
			d.reportMu.Unlock()
			return nil, err
		}
	}
	d.mu.Lock()
	queued := 0
	for i, b := range out {
		if b == nil && reuse[i] == nil {
			queued++
		}
	}
	if err := d.roomLocked(queued); err != nil {
		d.mu.Unlock()
		d.reportMu.Unlock()
		return nil, err
	}
	if err := d.labelRoomLocked(labels); queued > 0 && err != nil {
		d.mu.Unlock()
		d.reportMu.Unlock()
		return nil, err
	}
	var muts []store.Mutation
	var reused []*pontusv1.Build
	for i := range commits {
		if out[i] != nil {
			continue
		}
		if reuse[i] != nil {
			b, m := d.reusedBuildLocked(fresh[i], reuse[i])
			muts = append(muts, m)
			out[i] = b
			reused = append(reused, b)
			continue
		}
		lb, m := d.newBuildLocked(fresh[i])
		muts = append(muts, m)
		out[i] = lb.b
	}
	if len(commits) > 0 && !req.KeepCursor {
		last := commits[len(commits)-1]
		d.cursors[cursorKey{repo, branch}] = last
		muts = append(muts, store.Mutation{PutCursor: &store.Cursor{Repo: repo, Branch: branch, Commit: last}})
	}
	c := d.st.Enqueue(muts...)
	for i := range out {
		out[i] = d.viewLocked(out[i])
	}
	d.dispatchLocked()
	d.mu.Unlock()
	waitCtx := ctx
	if len(reused) == 0 {
		d.reportMu.Unlock()
	} else {
		waitCtx = context.WithoutCancel(ctx)
	}
	err := c.Wait(waitCtx)
	if len(reused) > 0 {
		// A reused build is never live, so only the store tells the next
		// report that the commit has a build: it must be there first.
		d.reportMu.Unlock()
	}
	for _, b := range reused {
		// Finished when created: its files are due even if the caller
		// gave up waiting (the build is created in memory either way).
		d.reportResults(b)
	}
	if err != nil {
		return nil, storeErr(err)
	}
	return out, nil
}

// addLiveLocked and removeLiveLocked keep the live set and its commit index
// together.
func (d *dispatcher) addLiveLocked(lb *liveBuild) {
	d.builds[lb.b.Id] = lb
	d.byCommit[lb.b.Commit] = append(d.byCommit[lb.b.Commit], lb)
}

func (d *dispatcher) removeLiveLocked(lb *liveBuild) {
	delete(d.builds, lb.b.Id)
	rest := slices.DeleteFunc(d.byCommit[lb.b.Commit], func(x *liveBuild) bool { return x == lb })
	if len(rest) == 0 {
		delete(d.byCommit, lb.b.Commit)
	} else {
		d.byCommit[lb.b.Commit] = rest
	}
}

// liveByCommit returns the newest live build of commit (in repo, if given).
func (d *dispatcher) liveByCommit(repo, commit string) *pontusv1.Build {
	d.mu.Lock()
	defer d.mu.Unlock()
	var best *pontusv1.Build
	for _, lb := range d.byCommit[commit] {
		if (repo == "" || lb.b.Repo == repo) && (best == nil || lb.b.Id > best.Id) {
			best = lb.b
		}
	}
	if best == nil {
		return nil
	}
	return d.viewLocked(best)
}

func (d *dispatcher) cursor(repo, branch string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cursors[cursorKey{repo, branch}]
}

// find returns the build named by id or by commit — a full id or a unique
// prefix (resolveCommit) — the newest, optionally in repo, live state
// first.
func (d *dispatcher) find(ctx context.Context, id int64, commit, repo string) (*pontusv1.Build, error) {
	if id > 0 {
		d.mu.Lock()
		if lb := d.builds[id]; lb != nil {
			b := d.viewLocked(lb.b)
			d.mu.Unlock()
			return b, nil
		}
		d.mu.Unlock()
		b, err := d.st.GetBuild(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("build_id: no build %d", id))
		}
		if err != nil {
			return nil, connect.NewError(connect.CodeInternal, errors.New("store read failed"))
		}
		return b, nil
	}
	commit, err := d.resolveCommit(ctx, commit, repo)
	if err != nil {
		return nil, err
	}
	var stored *pontusv1.Build
	if repo == "" {
		// Without repo, the commit must name builds of one repository.
		bs, err := d.st.ListBuilds(ctx, store.Query{Commit: commit, Limit: 1000})
		if err != nil {
			return nil, connect.NewError(connect.CodeInternal, errors.New("store read failed"))
		}
		if len(bs) > 0 {
			stored = bs[0]
		}
		if err := d.oneRepoOf(commit, bs); err != nil {
			return nil, err
		}
	} else {
		b, err := d.st.LatestBuild(ctx, repo, commit)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, connect.NewError(connect.CodeInternal, errors.New("store read failed"))
		}
		stored = b
	}
	if live := d.liveByCommit(repo, commit); live != nil && (stored == nil || live.Id >= stored.Id) {
		return live, nil
	}
	if stored == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("commit: no build of commit %s", commit))
	}
	return stored, nil
}

// listChunk is how many builds a list overlays per hold of the lock.
const listChunk = 32

// oneRepoOf refuses a commit that names builds (stored, or live) of more
// than one repository, naming them.
func (d *dispatcher) oneRepoOf(commit string, stored []*pontusv1.Build) error {
	var repos []string
	for _, b := range stored {
		if !slices.Contains(repos, b.Repo) {
			repos = append(repos, b.Repo)
		}
	}
	d.mu.Lock()
	for _, lb := range d.byCommit[commit] {
		if !slices.Contains(repos, lb.b.Repo) {
			repos = append(repos, lb.b.Repo)
		}
	}
	d.mu.Unlock()
	if len(repos) < 2 {
		return nil
	}
	slices.Sort(repos)
	quoted := make([]string, len(repos))
	for i, r := range repos {
		quoted[i] = fmt.Sprintf("%q", r)
	}
	return connect.NewError(connect.CodeFailedPrecondition,
		fmt.Errorf("repo: commit %s has builds in %d repositories (%s); give repo (--repo) to choose one",
			commit, len(repos), strings.Join(quoted, ", ")))
}

// list is ListBuilds: the store's rows with live builds' fresher state.
// LEASED and RUNNING builds are answered from the live state alone, since
// the store does not record the move from one to the other.
func (d *dispatcher) list(ctx context.Context, q store.Query) ([]*pontusv1.Build, error) {
	if q.Status == statusLeased || q.Status == statusRunning {
		return d.listLive(q), nil
	}
	bs, err := d.st.ListBuilds(ctx, q)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, errors.New("store read failed"))
	}
	// The live overlay takes the lock a few builds at a time, so a long
	// list never holds up runners for its whole length.
	out := bs[:0]
	for i := 0; i < len(bs); i += listChunk {
		d.mu.Lock()
		for _, b := range bs[i:min(i+listChunk, len(bs))] {
			if lb := d.builds[b.Id]; lb != nil {
				if q.Status != 0 && lb.b.Status != q.Status {
					continue
				}
				if lb.b.Status == statusQueued && b.Status == statusQueued && b.Attempt == lb.b.Attempt {
					// The row is the queued build's state (a queued build
					// changes only by leaving the queue): only the reason
					// is live, so no copy is made under the lock.
					b.Reason = d.pendingReasonLocked(lb.b)
				} else {
					b = d.viewLocked(lb.b)
				}
			}
			out = append(out, b)
		}
		d.mu.Unlock()
	}
	return out, nil
}

// listLive lists live builds matching q, newest first.
func (d *dispatcher) listLive(q store.Query) []*pontusv1.Build {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*pontusv1.Build
	seen := map[int64]bool{}
	for _, jl := range d.active { // a LEASED or RUNNING build has an active job
		lb := buildOfJob(jl)
		if seen[lb.b.Id] {
			continue
		}
		seen[lb.b.Id] = true
		b := lb.b
		if b.Status != q.Status || (q.Repo != "" && b.Repo != q.Repo) || (q.Branch != "" && b.Branch != q.Branch) ||
			(q.Commit != "" && b.Commit != q.Commit) || (q.BeforeID > 0 && b.Id >= q.BeforeID) {
			continue
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id > out[j].Id })
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	out = out[:min(len(out), limit)]
	for i, b := range out {
		out[i] = d.viewLocked(b)
	}
	return out
}

// trigger is TriggerBuild: a new build of a known commit.
func (d *dispatcher) trigger(ctx context.Context, commit, repo, branch string) (*pontusv1.Build, error) {
	prev, err := d.find(ctx, 0, commit, repo)
	if err != nil && (connect.CodeOf(err) != connect.CodeNotFound || !fullCommit(commit)) {
		return nil, errFirstBuildNeedsFullID(err, commit)
	}
	if prev != nil {
		commit = prev.Commit // a prefix names the commit of its builds
	} else {
		if repo == "" || branch == "" {
			return nil, connect.NewError(connect.CodeNotFound,
				fmt.Errorf("commit: no build of commit %s; give repo and branch to build it for the first time", commit))
		}
		// A commit never built before: only in a repository an observer
		// reported, fetched from where the observer said and routed by its
		// labels. The user token must not choose what runners fetch.
		known, err := d.st.ListBuilds(ctx, store.Query{Repo: repo, Limit: 1})
		if err != nil {
			return nil, connect.NewError(connect.CodeInternal, errors.New("store read failed"))
		}
		if len(known) == 0 {
			return nil, connect.NewError(connect.CodePermissionDenied,
				fmt.Errorf("repo: no observer has reported repository %q, so TriggerBuild cannot build it; "+
					"report its commits with the observer token (ObserverService.ReportCommits, or pontus notify)", repo))
		}
		prev = known[0]
	}
	if repo == "" {
		repo = prev.Repo
	}
	if branch == "" {
		branch = prev.Branch
	}
	next := &pontusv1.Build{Repo: repo, Branch: branch, Commit: commit, CloneUrl: prev.CloneUrl, Labels: prev.Labels,
		Settings: proto.Clone(cmp.Or(prev.Settings, DefaultSettings())).(*pontusv1.BuildSettings)}
	if prev.Commit == commit {
		// The same commit again: what the observer said of it still holds.
		next.Subject, next.Author, next.AuthorEmail = prev.Subject, prev.Author, prev.AuthorEmail
		next.CommittedAt, next.Tree = prev.CommittedAt, prev.Tree
	}
	labels := next.Labels
	if next.Settings.Shards > 1 {
		d.primeBalance(ctx, repo, branch)
	}
	d.mu.Lock()
	if err := d.roomLocked(1); err != nil {
		d.mu.Unlock()
		return nil, err
	}
	if err := d.labelRoomLocked(labels); err != nil {
		d.mu.Unlock()
		return nil, err
	}
	lb, m := d.newBuildLocked(next)
	c := d.st.Enqueue(m)
	b := d.viewLocked(lb.b)
	d.dispatchLocked()
	d.mu.Unlock()
	if err := c.Wait(ctx); err != nil {
		return nil, storeErr(err)
	}
	return b, nil
}

// cancel is CancelBuild.
func (d *dispatcher) cancel(ctx context.Context, id int64, commit, repo string) (*pontusv1.Build, error) {
	b, err := d.find(ctx, id, commit, repo)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	lb := d.builds[b.Id]
	if lb == nil {
		// A failed build whose culprit search is under way: cancel that.
		f, commits, finished := d.cancelSearchLocked(b.Id)
		if f != nil {
			f = d.viewLocked(f)
		}
		d.mu.Unlock()
		if f == nil {
			return nil, connect.NewError(connect.CodeFailedPrecondition,
				fmt.Errorf("build %d has already finished (%s)", b.Id, statusName(b.Status)))
		}
		for _, c := range commits {
			if err := c.Wait(context.WithoutCancel(ctx)); err != nil {
				return nil, storeErr(err)
			}
		}
		for _, fb := range finished {
			d.reportResults(fb)
		}
		return f, nil
	}
	c := d.cancelLiveLocked(lb, "")
	b = d.viewLocked(lb.b)
	finished := store.IsTerminal(lb.b.Status)
	d.mu.Unlock()
	if err := c.Wait(context.WithoutCancel(ctx)); err != nil {
		return nil, storeErr(err)
	}
	if finished {
		d.reportResults(lb.b)
	}
	return b, nil
}

// cancelLiveLocked cancels live build lb: a queued one ends CANCELED at
// once; a running one (or a sharded one's running shards) is told at its
// runner's next heartbeat. why, if not empty, is added to the reason.
func (d *dispatcher) cancelLiveLocked(lb *liveBuild, why string) *store.Commit {
	switch {
	case len(lb.jobs) > 0:
		stopped := d.cancelShardedLocked(lb)
		d.touchLocked(lb)
		c := d.st.Enqueue(store.Mutation{PutBuild: lb.b})
		if stopped {
			d.dispatchLocked()
		}
		return c
	case lb.b.Status == statusQueued:
		lb.b.Status, lb.b.Reason, lb.b.FinishedAt = statusCanceled, "canceled before it ran"+why, timestamppb.New(d.now())
		lb.b.ExitCode = -1
		c, _ := d.finishLocked(lb)
		return c
	}
	lb.b.CancelRequested = true
	lb.b.Reason = "cancel requested" + why + "; waiting for the runner to stop it"
	d.touchLocked(lb)
	return d.st.Enqueue(store.Mutation{PutBuild: lb.b})
}

// runnerView returns a runner's public state.
func (d *dispatcher) runnerViewLocked(r *runnerState, now time.Time) *pontusv1.Runner {
	v := proto.Clone(r.r).(*pontusv1.Runner)
	v.LastSeen = timestamppb.New(r.lastSeen)
	v.State = d.runnerStateLocked(r, now)
	for id := range r.leases {
		if jl := d.jobs[id]; jl != nil {
			id = buildOfJob(jl).b.Id
		}
		if !slices.Contains(v.BuildIds, id) {
			v.BuildIds = append(v.BuildIds, id)
		}
	}
	slices.Sort(v.BuildIds)
	return v
}

func (d *dispatcher) runnerStateLocked(r *runnerState, now time.Time) pontusv1.RunnerState {
	online := r.polling > 0 || now.Sub(r.lastSeen) < 3*d.cfg.HeartbeatInterval
	switch {
	case !online:
		return pontusv1.RunnerState_RUNNER_STATE_OFFLINE
	case len(r.leases) >= int(max(r.r.Capacity, 1)):
		return pontusv1.RunnerState_RUNNER_STATE_BUSY
	}
	return pontusv1.RunnerState_RUNNER_STATE_IDLE
}

func (d *dispatcher) listRunners() []*pontusv1.Runner {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	out := make([]*pontusv1.Runner, 0, len(d.runners))
	for _, r := range d.runners {
		out = append(out, d.runnerViewLocked(r, now))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Id < out[j].Id
	})
	return out
}

// viewLocked returns a copy of b safe to hand out, with a queued build's
// reason saying why it waits.
func (d *dispatcher) viewLocked(b *pontusv1.Build) *pontusv1.Build {
	v := proto.Clone(b).(*pontusv1.Build)
	if v.Status == statusQueued {
		v.Reason = d.pendingReasonLocked(v)
	}
	return v
}

// touchLocked announces a change of lb (a build or a job) to watchers and
// log followers.
func (d *dispatcher) touchLocked(lb *liveBuild) {
	d.notifyLocked(lb)
	d.publishLocked(buildOfJob(lb).b)
}

func (d *dispatcher) notifyLocked(lb *liveBuild) {
	close(lb.changed)
	lb.changed = make(chan struct{})
	if p := lb.parent; p != nil {
		syncShardLocked(lb)
		close(p.changed)
		p.changed = make(chan struct{})
	}
}
