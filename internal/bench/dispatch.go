package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pontus-ci/pontus/controlplane/store"
	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/pgtest"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Arrival processes of the producer in Dispatch's half-load phase.
const (
	ArrivalsPoisson = "poisson"
	ArrivalsUniform = "uniform"
)

// reportBatch is how many commits one ReportCommits carries while queueing
// the saturated phase's jobs (the API allows 1000).
const reportBatch = 500

// benchRepo names the repository the dispatch bench reports commits of.
// Nothing ever clones it: simulated runners run nothing.
const benchRepo = "/pontus-bench/dispatch"

// DispatchConfig configures Dispatch.
type DispatchConfig struct {
	// Runners is how many simulated runners take jobs.
	Runners int
	// Jobs is how many jobs the saturated phase queues (and the most the
	// half-load phase hands out).
	Jobs int
	// ControlPlane is the URL of a running control plane (loopback only);
	// empty starts one from Binary in a temporary directory.
	ControlPlane string
	// RunnerToken and ObserverToken are sent to ControlPlane, if it wants them.
	RunnerToken, ObserverToken string
	// Binary is the pontus binary that runs the control plane.
	Binary string
	// Conns is how many HTTP/2 connections the simulated runners share
	// (runner i uses connection i mod Conns); the producer has its own.
	Conns int
	// Arrivals is the half-load producer's process: "poisson" or "uniform".
	Arrivals string
	// HalfLoadMax bounds how long the half-load phase produces.
	HalfLoadMax time.Duration
	// PhaseTimeout is each phase's deadline.
	PhaseTimeout time.Duration
	// CPUProfile, when set, is passed to the started control plane as
	// PONTUS_CPUPROFILE (an absolute path).
	CPUProfile string
	// TempDir is where the bench's temporary directory goes ("" = the
	// system's).
	TempDir string
	// Store is the started control plane's --store: "" for SQLite in its
	// temporary directory, a postgres:// URL, or StoreTemp.
	Store string
}

// StoreTemp as DispatchConfig.Store starts a throwaway PostgreSQL server
// from Debian's binaries (internal/pgtest, but with fsync on) for the run.
const StoreTemp = "temp"

// DefaultDispatchConfig returns 32 runners, 3000 jobs, 4 connections.
func DefaultDispatchConfig() DispatchConfig {
	return DispatchConfig{
		Runners:      32,
		Jobs:         3000,
		Conns:        4,
		Arrivals:     ArrivalsPoisson,
		HalfLoadMax:  10 * time.Second,
		PhaseTimeout: 2 * time.Minute,
	}
}

// Validate checks the configuration, naming the flag that is wrong.
func (c *DispatchConfig) Validate() error {
	var errs []error
	if c.Runners < 1 || c.Runners > 10000 {
		errs = append(errs, fmt.Errorf("--runners: must be between 1 and 10000, got %d", c.Runners))
	}
	if c.Jobs < 1 || c.Jobs > 1_000_000 {
		errs = append(errs, fmt.Errorf("--jobs: must be between 1 and 1000000, got %d", c.Jobs))
	}
	if c.ControlPlane != "" {
		if err := CheckLoopbackURL(c.ControlPlane); err != nil {
			errs = append(errs, fmt.Errorf("--controlplane: %w", err))
		}
		if c.CPUProfile != "" {
			errs = append(errs, errors.New("--cpuprofile: only for a control plane the bench starts (drop --controlplane)"))
		}
		if c.Store != "" {
			errs = append(errs, errors.New("--store: only for a control plane the bench starts (drop --controlplane)"))
		}
	} else if c.Binary == "" {
		errs = append(errs, errors.New("binary: the pontus binary to start the control plane is not set"))
	}
	if c.Conns < 1 || c.Conns > 10000 {
		errs = append(errs, fmt.Errorf("--conns: must be between 1 and 10000, got %d", c.Conns))
	}
	if c.Arrivals != ArrivalsPoisson && c.Arrivals != ArrivalsUniform {
		errs = append(errs, fmt.Errorf("--arrivals: must be %q or %q, got %q", ArrivalsPoisson, ArrivalsUniform, c.Arrivals))
	}
	if c.HalfLoadMax <= 0 {
		errs = append(errs, fmt.Errorf("half-load duration: must be positive, got %s", c.HalfLoadMax))
	}
	if c.PhaseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--phase-timeout: must be positive, got %s", c.PhaseTimeout))
	}
	if c.Store != "" && c.Store != StoreTemp {
		if err := store.ValidatePostgresURL(c.Store); err != nil {
			errs = append(errs, fmt.Errorf("--store: %w", err))
		}
	}
	if c.CPUProfile != "" && !filepath.IsAbs(c.CPUProfile) {
		errs = append(errs, fmt.Errorf("--cpuprofile: must be an absolute path, got %q", c.CPUProfile))
	}
	return errors.Join(errs...)
}

// Dispatch measures the control plane's dispatch path with simulated
// runners over loopback HTTP/2, in two phases:
//
//   - saturated: Jobs commits are queued (ReportCommits in batches), then
//     all Runners drain them (AcquireJob, one AppendLog chunk, CompleteJob
//     PASSED); jobs/s is Jobs over the time from the runners starting to the
//     last CompleteJob returning.
//   - half load: the runners long-poll an empty queue while a producer
//     reports single commits at half that rate (Poisson or uniform
//     arrivals, open loop: a slow answer does not delay the next report).
//     Hand-out latency is from just before a commit's ReportCommits call to
//     the AcquireJob that returns its job.
func Dispatch(ctx context.Context, cfg DispatchConfig, logger *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	url := cfg.ControlPlane
	var cp *controlPlane
	where := "an external control plane"
	if url == "" {
		tmp, err := os.MkdirTemp(cfg.TempDir, "pontus-bench-dispatch-")
		if err != nil {
			return nil, fmt.Errorf("create temp dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		var env []string
		if cfg.CPUProfile != "" {
			env = append(env, "PONTUS_CPUPROFILE="+cfg.CPUProfile)
		}
		var args []string
		where = fmt.Sprintf("a control plane process with its store on %s (%s)", fsType(tmp), tmp)
		if cfg.Store != "" {
			storeURL := cfg.Store
			if cfg.Store == StoreTemp {
				// Durable, as a real deployment's: fsync on.
				srv, err := pgtest.NewServer(ctx, "fsync=on", "full_page_writes=on")
				if err != nil {
					return nil, fmt.Errorf("--store temp: %w", err)
				}
				defer srv.Remove()
				if storeURL, err = srv.CreateDatabase(ctx, "pontus"); err != nil {
					return nil, fmt.Errorf("--store temp: %w", err)
				}
				where = fmt.Sprintf("a control plane process with its store in a throwaway PostgreSQL server on the same host (fsync on, data on %s)", fsType(srv.Dir()))
			} else {
				where = fmt.Sprintf("a control plane process with its store in PostgreSQL at %s", store.RedactURL(storeURL))
			}
			args = append(args, "--store", storeURL)
		}
		cp, err = startControlPlane(ctx, cfg.Binary, tmp, env, args...)
		if err != nil {
			return nil, err
		}
		defer cp.stop()
		url = cp.url
		logger.Info("dispatch: control plane started", "url", url, "pid", cp.pid())
	}

	conns := make([]*conn, min(cfg.Conns, cfg.Runners))
	for i := range conns {
		c, err := newConn(url, cfg.RunnerToken, cfg.ObserverToken)
		if err != nil {
			return nil, err
		}
		defer c.close()
		conns[i] = c
	}
	producer, err := newConn(url, cfg.RunnerToken, cfg.ObserverToken)
	if err != nil {
		return nil, err
	}
	defer producer.close()

	regCtx, cancel := context.WithTimeout(ctx, cfg.PhaseTimeout)
	runners, err := registerAll(regCtx, conns, cfg.Runners, "bench")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("register runners: %w", err)
	}
	ids := newCommitIDs()
	d := &dispatchRun{cfg: cfg, runners: runners, producer: producer, ids: ids, cp: cp, logger: logger, where: where}

	// died adds the control plane's own last words to a phase's error.
	died := func(err error) error {
		if cp != nil && cp.exited() {
			return fmt.Errorf("%w; %w", err, cp.exitErr())
		}
		return err
	}
	sat, err := d.saturated(ctx)
	if err != nil {
		return nil, died(err)
	}
	half, err := d.halfLoad(ctx, sat.jobsPerSec/2)
	if err != nil {
		return nil, died(err)
	}
	if cp != nil {
		if cp.exited() {
			return nil, cp.exitErr()
		}
		if err := cp.stop(); err != nil {
			return nil, fmt.Errorf("stop control plane: %w", err)
		}
	}
	res := dispatchResult(cfg, d.where, sat, half)
	profileNote(res, cfg.CPUProfile)
	return res, nil
}

// profileNote says in the summary whether the control plane wrote the CPU
// profile it was asked for (it needs PONTUS_CPUPROFILE support).
func profileNote(r *Result, path string) {
	if path == "" {
		return
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		r.say("CPU profile of the control plane: %s (go tool pprof %s)", path, path)
		return
	}
	r.say("no CPU profile at %s: this control plane does not act on PONTUS_CPUPROFILE", path)
}

// dispatchRun is the state the two phases share.
type dispatchRun struct {
	cfg      DispatchConfig
	runners  []*simRunner
	producer *conn
	ids      *commitIDs
	cp       *controlPlane // nil for an external control plane
	logger   *slog.Logger
	where    string // which control plane, for the summary
}

// saturatedFigures is what the saturated phase measured.
type saturatedFigures struct {
	jobs       int
	took       time.Duration
	jobsPerSec float64
	queueTook  time.Duration
	cpCores    float64 // -1 when the control plane is not ours
	selfCores  float64
	// Call latencies while draining.
	acquire, appendLog, complete Durations
}

// halfFigures is what the half-load phase measured.
type halfFigures struct {
	rate    float64 // target arrivals per second
	jobs    int
	took    time.Duration
	handout Durations
	report  Durations
}

func (d *dispatchRun) report(ctx context.Context, commits []string) error {
	resp, err := d.producer.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{
		Repo: benchRepo, Branch: "main", Commits: commits,
	})
	if err != nil {
		return fmt.Errorf("ReportCommits: %w", err)
	}
	if n := len(resp.GetBuilds()); n != len(commits) {
		return fmt.Errorf("ReportCommits: %d builds for %d commits", n, len(commits))
	}
	for _, b := range resp.GetBuilds() {
		if b.GetStatus() != pontusv1.BuildStatus_BUILD_STATUS_QUEUED {
			return fmt.Errorf("ReportCommits: commit %s came back %s, not a new queued build", b.GetCommit(), b.GetStatus())
		}
	}
	return nil
}

// cpuNow reads the CPU time of the control plane (if ours) and of this process.
func (d *dispatchRun) cpuNow() (cp, self time.Duration) {
	if d.cp != nil {
		if s, err := readProc(d.cp.pid()); err == nil {
			cp = s.cpu
		}
	}
	if s, err := readProc(os.Getpid()); err == nil {
		self = s.cpu
	}
	return cp, self
}

// saturated queues cfg.Jobs jobs, then lets every runner drain them.
func (d *dispatchRun) saturated(ctx context.Context) (saturatedFigures, error) {
	n := d.cfg.Jobs
	f := saturatedFigures{jobs: n, cpCores: -1}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.PhaseTimeout)
	defer cancel()

	d.logger.Info("dispatch: queueing jobs", "jobs", n, "batch", reportBatch)
	start := time.Now()
	for i := 0; i < n; i += reportBatch {
		batch := make([]string, min(reportBatch, n-i))
		for j := range batch {
			batch[j] = d.ids.next()
		}
		if err := d.report(ctx, batch); err != nil {
			return f, phaseErr("saturated (queueing)", ctx, d.cfg.PhaseTimeout, fmt.Sprintf("%d of %d jobs queued", i, n), err)
		}
	}
	f.queueTook = time.Since(start)

	d.logger.Info("dispatch: draining", "runners", len(d.runners))
	var done atomic.Int64
	var end atomic.Int64 // unix nanos of the last completion
	phase, stop := context.WithCancel(ctx)
	defer stop()
	fe := &firstError{cancel: stop}
	cp0, self0 := d.cpuNow()
	start = time.Now()
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, r := range d.runners {
		wg.Go(func() {
			var acq, app, comp Durations
			defer func() {
				mu.Lock()
				f.acquire = append(f.acquire, acq...)
				f.appendLog = append(f.appendLog, app...)
				f.complete = append(f.complete, comp...)
				mu.Unlock()
			}()
			for phase.Err() == nil {
				t0 := time.Now()
				job, err := r.acquire(phase, 0)
				if err != nil {
					fe.set(err)
					return
				}
				if job == nil {
					continue
				}
				acq = append(acq, time.Since(t0))
				a, c, err := r.finish(phase, job, 0)
				if err != nil {
					fe.set(err)
					return
				}
				app, comp = append(app, a), append(comp, c)
				if done.Add(1) == int64(n) {
					end.Store(time.Now().UnixNano())
					stop()
				}
			}
		})
	}
	wg.Wait()
	if err := fe.get(); err != nil {
		return f, phaseErr("saturated", ctx, d.cfg.PhaseTimeout, fmt.Sprintf("%d of %d jobs done", done.Load(), n), err)
	}
	if got := done.Load(); got < int64(n) {
		return f, phaseErr("saturated", ctx, d.cfg.PhaseTimeout, fmt.Sprintf("%d of %d jobs done", got, n), ctx.Err())
	}
	cp1, self1 := d.cpuNow()
	f.took = time.Unix(0, end.Load()).Sub(start)
	f.jobsPerSec = float64(n) / f.took.Seconds()
	if d.cp != nil {
		f.cpCores = (cp1 - cp0).Seconds() / f.took.Seconds()
	}
	f.selfCores = (self1 - self0).Seconds() / f.took.Seconds()
	d.logger.Info("dispatch: saturated phase done", "jobs_per_s", int(f.jobsPerSec), "took", f.took.Round(time.Millisecond))
	return f, nil
}

// halfLoad produces single commits at rate per second while the runners
// long-poll, and records each job's hand-out latency.
func (d *dispatchRun) halfLoad(ctx context.Context, rate float64) (halfFigures, error) {
	n := max(1, min(d.cfg.Jobs, int(rate*d.cfg.HalfLoadMax.Seconds())))
	f := halfFigures{rate: rate, jobs: n}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.PhaseTimeout)
	defer cancel()
	phase, stop := context.WithCancel(ctx)
	defer stop()
	fe := &firstError{cancel: stop}

	var (
		mu      sync.Mutex
		sent    = make(map[string]time.Time, n) // commit → just before its ReportCommits
		handout = make(Durations, 0, n)
		report  = make(Durations, 0, n)
		done    atomic.Int64
	)
	var wg sync.WaitGroup
	for _, r := range d.runners {
		wg.Go(func() {
			for phase.Err() == nil {
				job, err := r.acquire(phase, 0)
				if err != nil {
					fe.set(err)
					return
				}
				if job == nil {
					continue
				}
				got := time.Now()
				mu.Lock()
				t0, ok := sent[job.GetCommit()]
				if ok {
					handout = append(handout, got.Sub(t0))
				}
				mu.Unlock()
				if !ok {
					fe.set(fmt.Errorf("AcquireJob returned job %d of commit %s, which this phase did not report", job.GetJobId(), job.GetCommit()))
					return
				}
				if _, _, err := r.finish(phase, job, 0); err != nil {
					fe.set(err)
					return
				}
				if done.Add(1) == int64(n) {
					stop()
				}
			}
		})
	}
	// Let the runners' long-polls reach the server before the first
	// arrival; one that is late only means another runner takes the job.
	dial.Sleep(phase, 250*time.Millisecond)

	d.logger.Info("dispatch: half-load phase", "rate_per_s", int(rate), "jobs", n, "arrivals", d.cfg.Arrivals)
	commits := make([]string, n)
	for i := range commits {
		commits[i] = d.ids.next()
	}
	var reports sync.WaitGroup
	start := time.Now()
	next := start
	for i := 0; i < n && phase.Err() == nil; i++ {
		gap := time.Duration(float64(time.Second) / rate)
		if d.cfg.Arrivals == ArrivalsPoisson {
			gap = time.Duration(rand.ExpFloat64() * float64(time.Second) / rate)
		}
		if i > 0 {
			next = next.Add(gap)
		}
		if wait := time.Until(next); wait > 0 {
			dial.Sleep(phase, wait)
		}
		commit := commits[i]
		reports.Go(func() {
			t0 := time.Now()
			mu.Lock()
			sent[commit] = t0
			mu.Unlock()
			// Not canceled with the phase: the last report may still be
			// on its way back when the last job completes.
			err := d.report(ctx, []string{commit})
			took := time.Since(t0)
			if err != nil {
				fe.set(err)
				return
			}
			mu.Lock()
			report = append(report, took)
			mu.Unlock()
		})
	}
	reports.Wait()
	wg.Wait()
	f.took = time.Since(start)
	if err := fe.get(); err != nil {
		return f, phaseErr("half load", ctx, d.cfg.PhaseTimeout, fmt.Sprintf("%d of %d jobs done", done.Load(), n), err)
	}
	if got := done.Load(); got < int64(n) {
		return f, phaseErr("half load", ctx, d.cfg.PhaseTimeout, fmt.Sprintf("%d of %d jobs done", got, n), ctx.Err())
	}
	f.handout, f.report = handout, report
	return f, nil
}

// phaseErr says which phase failed, how far it got, and why: its deadline,
// a cancellation, or err.
func phaseErr(phase string, ctx context.Context, timeout time.Duration, progress string, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s phase: deadline of %s passed with %s", phase, timeout, progress)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s phase: %w (%s)", phase, ctx.Err(), progress)
	}
	return fmt.Errorf("%s phase: %w (%s)", phase, err, progress)
}

func dispatchResult(cfg DispatchConfig, where string, sat saturatedFigures, half halfFigures) *Result {
	r := &Result{}
	p50, p99 := half.handout.Percentile(50), half.handout.Percentile(99)
	// PostgreSQL's targets are lower: every write is a network round trip
	// to a server sharing the machine's cores.
	minRate, maxP99 := 1000.0, 20*time.Millisecond
	if cfg.Store != "" {
		minRate, maxP99 = 500, 50*time.Millisecond
	}
	r.say("dispatch: %d simulated runners over %d HTTP/2 connection(s), no-op jobs (AcquireJob, one AppendLog, CompleteJob PASSED), against %s",
		cfg.Runners, min(cfg.Conns, cfg.Runners), where)
	r.say("saturated: %d jobs queued in %s, drained in %s: %.0f jobs/s — target ≥ %.0f: %s",
		sat.jobs, sat.queueTook.Round(time.Millisecond), sat.took.Round(time.Millisecond), sat.jobsPerSec, minRate, verdict(sat.jobsPerSec >= minRate))
	perJob := func(cores float64) string { return ms(time.Duration(cores / sat.jobsPerSec * float64(time.Second))) }
	if sat.cpCores >= 0 {
		r.say("  CPU while draining: control plane %.2f cores (%s per job), bench %.2f cores (%s per job)",
			sat.cpCores, perJob(sat.cpCores), sat.selfCores, perJob(sat.selfCores))
	}
	r.say("  calls while draining, p50/p99: AcquireJob %s/%s, AppendLog %s/%s, CompleteJob %s/%s",
		ms(sat.acquire.Percentile(50)), ms(sat.acquire.Percentile(99)),
		ms(sat.appendLog.Percentile(50)), ms(sat.appendLog.Percentile(99)),
		ms(sat.complete.Percentile(50)), ms(sat.complete.Percentile(99)))
	r.say("half load: %d single-commit reports at %.0f/s (%s arrivals) over %s",
		half.jobs, half.rate, cfg.Arrivals, half.took.Round(time.Millisecond))
	r.say("  hand-out latency (before ReportCommits → AcquireJob returns): p50 %s  p90 %s  p99 %s  max %s — target p99 ≤ %s: %s",
		ms(p50), ms(half.handout.Percentile(90)), ms(p99), ms(half.handout.Max()), ms(maxP99), verdict(p99 <= maxP99))
	r.say("  ReportCommits call: p50 %s  p99 %s", ms(half.report.Percentile(50)), ms(half.report.Percentile(99)))
	r.add("jobs_per_s", sat.jobsPerSec, 0)
	r.add("p50_ms", millis(p50), 2)
	r.add("p99_ms", millis(p99), 2)
	return r
}
