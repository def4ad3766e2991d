package runnerd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/plugins"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// Log attribute keys.
const (
	keyRunner   = "runner"
	keyRunnerID = "runner_id"
	keyJob      = "job"
	keyAttempt  = "attempt"
	keyCommit   = "commit"
)

// Timings of the protocol on the runner's side.
const (
	// rpcTimeout bounds every call but AcquireJob.
	rpcTimeout = 30 * time.Second
	// pollSlack is added to poll_timeout for AcquireJob's client deadline.
	pollSlack = 5 * time.Second
	// reportGrace is how long, beyond the kill grace, a runner that is
	// shutting down tries to report the jobs it canceled.
	reportGrace = 5 * time.Second
	// Intervals used when the server leaves them out.
	defaultHeartbeat = 10 * time.Second
	defaultLease     = 30 * time.Second
	defaultPoll      = 30 * time.Second
	minInterval      = 50 * time.Millisecond
	// backoffMin and backoffMax bound every retry.
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

// Runner is a runner daemon. Create it with New and start it with Run.
type Runner struct {
	cfg     Config
	logger  *slog.Logger
	http    *http.Client
	client  pontusv1connect.RunnerServiceClient
	exec    Executor
	sandbox Sandbox // nil unless cfg.WASM; set by Run
	repos   *repoCache
	user    *stepUser // who native steps run as; nil: the runner's user
	version string

	regLock  chan struct{}  // held while registering again
	cleanups sync.WaitGroup // checkouts being removed

	mu      sync.Mutex
	sess    *session
	held    map[jobKey]context.CancelCauseFunc
	changed chan struct{} // poked when held changes
	pytest  string        // an interpreter found to import pytest
}

// session is one registration with the control plane.
type session struct {
	id        string
	heartbeat time.Duration
	lease     time.Duration
	poll      time.Duration
}

type jobKey struct {
	id      int64
	attempt int32
}

// Reasons a job stops early, given as the cause of its context.
var (
	errShutdown = errors.New("runner shutting down")
	errCanceled = errors.New("canceled by the control plane")
	errLost     = errors.New("lease lost")
)

// New checks cfg and returns a runner that will talk to cfg.ControlPlane.
// Nothing happens on the network or the disk until Run.
func New(cfg Config, logger *slog.Logger) (*Runner, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = hostName()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Token == "" && cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("read runner.token_file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	if cfg.WASM && !slices.Contains(cfg.Labels, WASMLabel) {
		cfg.Labels = append(slices.Clone(cfg.Labels), WASMLabel)
	}
	wd, err := filepath.Abs(cfg.Workdir)
	if err != nil {
		return nil, fmt.Errorf("resolve runner.workdir: %w", err)
	}
	cfg.Workdir = wd
	dc := dial.Config{URL: string(cfg.ControlPlane), Token: cfg.Token, CAFile: cfg.CAFile}
	hc, err := dial.HTTPClient(dc)
	if err != nil {
		// The URL is valid by now: what failed is the CA file.
		return nil, fmt.Errorf("runner.ca_file: %w", err)
	}
	logger = logger.With(keyRunner, cfg.Name)
	native := NewNative(logger)
	if native.user, err = stepUserFor(cfg.StepUser, wd); err != nil {
		return nil, err
	}
	return &Runner{
		cfg:     cfg,
		logger:  logger,
		http:    hc,
		client:  pontusv1connect.NewRunnerServiceClient(hc, dial.Base(dc.URL), dial.Options(dc)...),
		exec:    native,
		user:    native.user,
		repos:   newRepoCache(wd, native.user, logger),
		version: version(),
		regLock: make(chan struct{}, 1),
		held:    make(map[jobKey]context.CancelCauseFunc),
		changed: make(chan struct{}, 1),
	}, nil
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Run registers with the control plane and runs jobs until ctx is canceled.
// It never gives up on an unreachable control plane. On cancellation it
// stops taking jobs, cancels the running ones, reports them CANCELED if the
// control plane answers within a few seconds, and returns nil. It returns an
// error only when the workdir cannot be used.
func (r *Runner) Run(ctx context.Context) error {
	unlock, err := lockWorkdir(r.cfg.Workdir)
	if err != nil {
		return err
	}
	defer unlock()
	defer r.http.CloseIdleConnections()
	// Steps running as the runner's own user must not read its memory or
	// environment (the token) through /proc.
	if err := SetNonDumpable(); err != nil {
		return err
	}
	if r.user != nil {
		if err := r.user.prepareCache(r.cfg.Workdir); err != nil {
			return err
		}
		if r.cfg.TokenFile != "" && r.user.canRead(r.cfg.TokenFile) {
			return fmt.Errorf("runner.token_file %s is readable by step_user %s: make it private to the runner (chmod 600)", r.cfg.TokenFile, r.user.name)
		}
	}
	if r.cfg.WASM {
		host, err := plugins.NewHost(ctx, r.cfg.PluginHostConfig(), r.logger.With("component", "wasm"))
		if err != nil {
			return fmt.Errorf("start the WebAssembly host: %w", err)
		}
		defer host.Close(context.Background())
		r.sandbox = host
	}
	if err := r.repos.prepare(); err != nil {
		return fmt.Errorf("prepare workdir: %w", err)
	}
	sess, ok := r.register(ctx)
	if !ok {
		return nil
	}
	r.setSession(sess)

	hbCtx, hbCancel := context.WithCancel(context.WithoutCancel(ctx))
	var hb sync.WaitGroup
	hb.Go(func() { r.heartbeater().run(hbCtx) })

	var slots sync.WaitGroup
	for range r.cfg.Capacity {
		slots.Go(func() { r.slot(ctx) })
	}
	slots.Wait()
	hbCancel()
	hb.Wait()
	r.cleanups.Wait()
	r.logger.Info("runner stopped")
	return nil
}

func (r *Runner) session() *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sess
}

func (r *Runner) setSession(s *session) {
	r.mu.Lock()
	r.sess = s
	r.mu.Unlock()
}

// register calls Register until it succeeds or ctx ends (ok false).
func (r *Runner) register(ctx context.Context) (*session, bool) {
	req := &pontusv1.RegisterRequest{
		Name:     r.cfg.Name,
		Labels:   r.cfg.Labels,
		Capacity: int32(r.cfg.Capacity),
		Version:  r.version,
	}
	var resp *pontusv1.RegisterResponse
	err := retry(ctx, dial.NewBackoff(backoffMin, backoffMax), func(ctx context.Context) error {
		callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
		var err error
		resp, err = r.client.Register(callCtx, req)
		if err == nil && resp.GetRunnerId() == "" {
			err = errors.New("control plane answered Register without a runner id")
		}
		return err
	}, func(n int, err error) {
		if n == 1 {
			r.logger.Warn("cannot register with the control plane; retrying with backoff", "url", r.cfg.ControlPlane, "err", err)
		} else {
			r.logger.Debug("register failed", "err", err, "failures", n)
		}
	})
	if err != nil {
		return nil, false
	}
	s := &session{
		id:        resp.GetRunnerId(),
		heartbeat: interval(resp.GetHeartbeatInterval(), defaultHeartbeat),
		lease:     interval(resp.GetLeaseDuration(), defaultLease),
		poll:      interval(resp.GetPollTimeout(), defaultPoll),
	}
	r.logger.Info("registered", keyRunnerID, s.id, "heartbeat_interval", s.heartbeat,
		"lease_duration", s.lease, "poll_timeout", s.poll, "capacity", r.cfg.Capacity, "labels", r.cfg.Labels)
	return s, true
}

func interval(d *durationpb.Duration, def time.Duration) time.Duration {
	if d == nil || d.AsDuration() <= 0 {
		return def
	}
	return max(d.AsDuration(), minInterval)
}

// reregister registers again after the control plane said it does not know
// the runner id of stale. Callers that find someone else already did it
// return at once.
func (r *Runner) reregister(ctx context.Context, stale *session) {
	select {
	case r.regLock <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-r.regLock }()
	if r.session() != stale {
		return
	}
	r.logger.Info("control plane does not know this runner; registering again", keyRunnerID, stale.id)
	if s, ok := r.register(ctx); ok {
		r.setSession(s)
	}
}

// retry calls fn until it returns nil or ctx ends, waiting bo.Next() after
// each failure and telling onErr about it (n counts failures from 1).
func retry(ctx context.Context, bo *dial.Backoff, fn func(context.Context) error, onErr func(n int, err error)) error {
	for n := 1; ; n++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if onErr != nil {
			onErr(n, err)
		}
		if !dial.Sleep(ctx, bo.Next()) {
			return ctx.Err()
		}
	}
}

// slot keeps one AcquireJob open and runs the jobs it returns, one at a time,
// until ctx ends.
func (r *Runner) slot(ctx context.Context) {
	bo := dial.NewBackoff(backoffMin, backoffMax)
	failures := 0
	for ctx.Err() == nil {
		sess := r.session()
		callCtx, cancel := context.WithTimeout(ctx, sess.poll+pollSlack)
		began := time.Now()
		resp, err := r.client.AcquireJob(callCtx, &pontusv1.AcquireJobRequest{
			RunnerId: sess.id,
			Wait:     durationpb.New(sess.poll),
		})
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if connect.CodeOf(err) == connect.CodeNotFound {
				r.reregister(ctx, sess)
				continue
			}
			if failures++; failures == 1 {
				r.logger.Warn("acquire job failed; retrying with backoff", "err", err)
			} else {
				r.logger.Debug("acquire job failed", "err", err, "failures", failures)
			}
			dial.Sleep(ctx, bo.Next())
			continue
		}
		if failures > 0 {
			r.logger.Info("control plane reachable again", "after_failures", failures)
			failures = 0
		}
		job := resp.GetJob()
		if job == nil {
			// A server that answers an empty poll at once must not make
			// this a busy loop.
			if time.Since(began) < min(sess.poll/2, time.Second) {
				dial.Sleep(ctx, bo.Next())
			} else {
				bo.Reset()
			}
			continue
		}
		bo.Reset()
		r.runJob(ctx, job)
	}
}

// hold records a job the runner works on, for heartbeats and cancellation.
func (r *Runner) hold(key jobKey, cancel context.CancelCauseFunc) {
	r.mu.Lock()
	r.held[key] = cancel
	r.mu.Unlock()
	r.poke()
}

func (r *Runner) release(key jobKey) {
	r.mu.Lock()
	delete(r.held, key)
	r.mu.Unlock()
	r.poke()
}

func (r *Runner) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// heldRefs lists the jobs the runner holds, in order.
func (r *Runner) heldRefs() []*pontusv1.JobRef {
	r.mu.Lock()
	keys := make([]jobKey, 0, len(r.held))
	for k := range r.held {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	slices.SortFunc(keys, func(a, b jobKey) int {
		return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.attempt, b.attempt))
	})
	refs := make([]*pontusv1.JobRef, len(keys))
	for i, k := range keys {
		refs[i] = &pontusv1.JobRef{JobId: k.id, Attempt: k.attempt}
	}
	return refs
}

// stopJob cancels a held job with cause; unknown jobs are ignored.
func (r *Runner) stopJob(ref *pontusv1.JobRef, cause error) {
	r.mu.Lock()
	cancel := r.held[jobKey{ref.GetJobId(), ref.GetAttempt()}]
	r.mu.Unlock()
	if cancel != nil {
		r.logger.Info("stopping job", keyJob, ref.GetJobId(), keyAttempt, ref.GetAttempt(), "why", cause)
		cancel(cause)
	}
}
