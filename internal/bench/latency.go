package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/observerd"
	"github.com/pontus-ci/pontus/runnerd"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// LatencyConfig configures Latency.
type LatencyConfig struct {
	// Commits is how many commits are made and measured.
	Commits int
	// Python runs the floor measurement. With anything but "python3" the
	// runner runs the suite with it too (as its test_command), so both
	// sides use the same interpreter.
	Python string
	// MinGap and MaxGap bound the uniform random pause before each commit.
	MinGap, MaxGap time.Duration
	// ResultTimeout is the longest one commit may take to reach its result.
	ResultTimeout time.Duration
	// TempDir is where the bench's temporary directory goes ("" = the
	// system's).
	TempDir string
}

// DefaultLatencyConfig returns 20 commits 0.2–1.0 s apart with python3.
func DefaultLatencyConfig() LatencyConfig {
	return LatencyConfig{
		Commits:       20,
		Python:        "python3",
		MinGap:        200 * time.Millisecond,
		MaxGap:        time.Second,
		ResultTimeout: 2 * time.Minute,
	}
}

// Validate checks the configuration, naming the flag that is wrong.
func (c *LatencyConfig) Validate() error {
	var errs []error
	if c.Commits < 1 || c.Commits > 10000 {
		errs = append(errs, fmt.Errorf("--commits: must be between 1 and 10000, got %d", c.Commits))
	}
	if c.Python == "" {
		errs = append(errs, errors.New("--python: must name a Python interpreter"))
	} else if _, err := exec.LookPath(c.Python); err != nil {
		errs = append(errs, fmt.Errorf("--python: %q not found: %w", c.Python, err))
	}
	if c.MinGap < 0 || c.MaxGap < c.MinGap {
		errs = append(errs, fmt.Errorf("commit gap: want 0 ≤ min ≤ max, got %s–%s", c.MinGap, c.MaxGap))
	}
	if c.ResultTimeout <= 0 {
		errs = append(errs, fmt.Errorf("result timeout: must be positive, got %s", c.ResultTimeout))
	}
	if _, err := exec.LookPath("git"); err != nil {
		errs = append(errs, fmt.Errorf("git not found: %w", err))
	}
	return errors.Join(errs...)
}

// sample is one commit's journey, timed from outside and, in stages, from
// the timestamps the control plane wrote into the result.
type sample struct {
	commit    string
	committed time.Time // git commit returned
	result    time.Time // results/<commit>.json appeared
	build     *pontusv1.Build
	err       error
}

func (s *sample) total() time.Duration { return s.result.Sub(s.committed) }

// Latency runs a whole Pontus in this process (control plane on
// 127.0.0.1:0, one runner, one observer in "every" mode, as `pontus dev`
// composes them) on a fresh repository with a two-file Python suite. It
// makes cfg.Commits commits at random intervals and times each from `git
// commit` returning to results/<commit>.json existing. Then it runs the
// suite directly as many times for the floor. Progress goes to logger.
func Latency(ctx context.Context, cfg LatencyConfig, logger *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cfg.TempDir, "pontus-bench-latency-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	repoDir := filepath.Join(tmp, "repo")
	repo, first, err := newSuiteRepo(ctx, repoDir)
	if err != nil {
		return nil, err
	}
	results := filepath.Join(tmp, "results")
	if err := os.MkdirAll(results, 0o755); err != nil {
		return nil, fmt.Errorf("create results dir: %w", err)
	}

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	stop, err := startInProcess(ctx, cancel, tmp, repoDir, results, cfg.Python, logger)
	if err != nil {
		cancel()
		return nil, err
	}
	defer func() {
		cancel()
		_ = stop()
	}()
	// failed prefers a daemon's own failure (which canceled ctx) to what
	// it caused.
	failed := func(err error) error {
		if parent.Err() == nil && ctx.Err() != nil {
			cancel()
			if derr := stop(); derr != nil {
				return derr
			}
		}
		return err
	}

	logger.Info("latency: waiting for the first commit's build (the runner's first clone)")
	warm := &sample{commit: first, committed: time.Now()}
	waitSample(ctx, results, warm, cfg.ResultTimeout)
	if warm.err != nil {
		return nil, failed(fmt.Errorf("warm-up: %w", warm.err))
	}

	logger.Info("latency: making commits", "commits", cfg.Commits, "gap", fmt.Sprintf("%s–%s", cfg.MinGap, cfg.MaxGap))
	samples := make([]*sample, cfg.Commits)
	var wg sync.WaitGroup
	for i := range samples {
		gap := cfg.MinGap
		if cfg.MaxGap > cfg.MinGap {
			gap += rand.N(cfg.MaxGap - cfg.MinGap)
		}
		select {
		case <-time.After(gap):
		case <-ctx.Done():
			wg.Wait()
			return nil, failed(ctx.Err())
		}
		if err := repo.change(); err != nil {
			return nil, err
		}
		if err := repo.commitOnly(ctx); err != nil {
			return nil, failed(err)
		}
		committed := time.Now()
		commit, err := repo.head(ctx)
		if err != nil {
			return nil, failed(err)
		}
		s := &sample{commit: commit, committed: committed}
		samples[i] = s
		wg.Go(func() { waitSample(ctx, results, s, cfg.ResultTimeout) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, failed(ctx.Err())
	}
	var total Durations
	for i, s := range samples {
		if s.err != nil {
			return nil, failed(fmt.Errorf("commit %d of %d (%s): %w", i+1, len(samples), s.commit[:12], s.err))
		}
		total = append(total, s.total())
	}
	// Stop the daemons before measuring the floor, so it runs on a quiet
	// machine as the builds did.
	cancel()
	if err := stop(); err != nil {
		return nil, err
	}

	logger.Info("latency: running the suite directly for the floor", "runs", cfg.Commits)
	floor, err := measureFloor(context.WithoutCancel(ctx), cfg.Python, repoDir, cfg.Commits, cfg.ResultTimeout)
	if err != nil {
		return nil, err
	}
	return latencyResult(cfg, samples, total, floor), nil
}

// startInProcess starts the control plane, a runner and an observer in this
// process, as runDev composes them. A daemon that fails cancels ctx
// (through cancel); stop waits for all three after ctx is canceled and
// returns the first failure.
func startInProcess(ctx context.Context, cancel context.CancelFunc, tmp, repoDir, results, python string, logger *slog.Logger) (stop func() error, err error) {
	state := filepath.Join(tmp, "state")
	cpCfg := controlplane.DefaultConfig()
	cpCfg.Listen = "127.0.0.1:0"
	cpCfg.DataDir = filepath.Join(state, "controlplane")
	cpCfg.ResultsDir = results
	srv, err := controlplane.New(ctx, cpCfg, daemonLogger(logger, "controlplane"))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cpCfg.Listen)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	url := "http://" + ln.Addr().String()

	workdir, err := runnerWorkdir()
	if err != nil {
		ln.Close()
		srv.Close()
		return nil, fmt.Errorf("runner workdir: %w", err)
	}
	rCfg := runnerd.DefaultConfig()
	rCfg.ControlPlane = dial.URLs(url)
	rCfg.Workdir = workdir
	rCfg.Name = "bench"
	if python != "python3" {
		rCfg.TestCommand = shellQuote(python) + " -m unittest discover -s tests -v"
	}
	runner, err := runnerd.New(rCfg, daemonLogger(logger, "runner"))
	if err != nil {
		ln.Close()
		srv.Close()
		os.RemoveAll(workdir)
		return nil, err
	}
	oCfg := observerd.DefaultConfig()
	oCfg.ControlPlane = dial.URLs(url)
	oCfg.Repo = repoDir
	oCfg.DataDir = filepath.Join(state, "observer")
	oCfg.Mode = observerd.ModeEvery
	observer, err := observerd.New(oCfg, daemonLogger(logger, "observer"))
	if err != nil {
		ln.Close()
		srv.Close()
		os.RemoveAll(workdir)
		return nil, err
	}

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		failure error
	)
	for name, run := range map[string]func() error{
		"control plane": func() error { return srv.Serve(ctx, ln) },
		"runner":        func() error { return runner.Run(ctx) },
		"observer":      func() error { return observer.Run(ctx) },
	} {
		wg.Go(func() {
			err := run()
			if err == nil && ctx.Err() == nil {
				err = errors.New("stopped by itself")
			}
			if err != nil {
				mu.Lock()
				if failure == nil {
					failure = fmt.Errorf("%s: %w", name, err)
				}
				mu.Unlock()
				cancel()
			}
		})
	}
	return func() error {
		wg.Wait()
		os.RemoveAll(workdir)
		mu.Lock()
		defer mu.Unlock()
		return failure
	}, nil
}

// runnerWorkdir creates a workdir for a bench's runner. A runner running as
// root runs steps as its step_user, which must reach the workdir, so it is
// a searchable directory of its own rather than one below a private
// temporary one. The caller removes it.
func runnerWorkdir() (string, error) {
	dir, err := os.MkdirTemp("", "pontus-bench-runner-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		return "", fmt.Errorf("runner workdir: %w", err)
	}
	return dir, nil
}

// shellQuote quotes s for sh -c.
func shellQuote(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, `'\''`...)
			continue
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// resultPoll is how often waitSample looks for a result file.
const resultPoll = 2 * time.Millisecond

// waitSample waits (a 2 ms stat loop) for results/<commit>.json, then reads
// it. It sets s.result and s.build, or s.err.
func waitSample(ctx context.Context, results string, s *sample, timeout time.Duration) {
	path := filepath.Join(results, s.commit+".json")
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(resultPoll)
	defer tick.Stop()
	for {
		if _, err := os.Stat(path); err == nil {
			s.result = time.Now()
			break
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			s.err = fmt.Errorf("no result file %s.json within %s", s.commit, timeout)
			return
		case <-ctx.Done():
			s.err = fmt.Errorf("waiting for the result: %w", ctx.Err())
			return
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		s.err = fmt.Errorf("read result: %w", err)
		return
	}
	b := new(pontusv1.Build)
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, b); err != nil {
		s.err = fmt.Errorf("parse result %s.json: %w", s.commit, err)
		return
	}
	s.build = b
	if b.Status != pontusv1.BuildStatus_BUILD_STATUS_PASSED {
		s.err = fmt.Errorf("build ended %s (%s), but the suite passes", b.Status, b.Reason)
	}
}

// measureFloor runs the suite directly n times in dir and returns the wall
// time of each run.
func measureFloor(ctx context.Context, python, dir string, n int, timeout time.Duration) (Durations, error) {
	var out Durations
	for i := range n {
		runCtx, cancel := context.WithTimeout(ctx, timeout)
		cmd := exec.CommandContext(runCtx, python, suiteArgs...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
		start := time.Now()
		output, err := cmd.CombinedOutput()
		took := time.Since(start)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("floor run %d: %s %v: %w\n%s", i+1, python, suiteArgs, err, lastLines(string(output), 10))
		}
		out = append(out, took)
	}
	return out, nil
}

// latencyResult summarises the samples.
func latencyResult(cfg LatencyConfig, samples []*sample, total, floor Durations) *Result {
	r := &Result{}
	p50, p95, mx := total.Percentile(50), total.Percentile(95), total.Max()
	fp50 := floor.Percentile(50)
	over := p50 - fp50

	// Stages from the result's own timestamps (one clock: one process).
	var detect, dispatch, run, write Durations
	for _, s := range samples {
		b := s.build
		if b == nil || b.CreatedAt == nil || b.StartedAt == nil || b.FinishedAt == nil {
			continue
		}
		created, started, finished := b.CreatedAt.AsTime(), b.StartedAt.AsTime(), b.FinishedAt.AsTime()
		detect = append(detect, created.Sub(s.committed))
		dispatch = append(dispatch, started.Sub(created))
		run = append(run, finished.Sub(started))
		write = append(write, s.result.Sub(finished))
	}
	r.say("commit→result over %d commits (%s–%s apart), Python suite of 2 files:", len(total), cfg.MinGap, cfg.MaxGap)
	r.say("  min %s  p50 %s  p95 %s  max %s", ms(total.Min()), ms(p50), ms(p95), ms(mx))
	r.say("floor (%s -m unittest discover -s tests -v, %d runs): min %s  p50 %s  max %s",
		cfg.Python, len(floor), ms(floor.Min()), ms(fp50), ms(floor.Max()))
	r.say("stages, p50: commit→reported %s, reported→leased %s, leased→finished (checkout, tests, log, complete) %s, finished→result file %s",
		ms(detect.Percentile(50)), ms(dispatch.Percentile(50)), ms(run.Percentile(50)), ms(write.Percentile(50)))
	r.say("overhead p50 (p50 − floor p50): %s — target ≤ 100 ms: %s", ms(over), verdict(over <= 100*time.Millisecond))
	r.add("p50_s", seconds(p50), 3)
	r.add("p95_s", seconds(p95), 3)
	r.add("max_s", seconds(mx), 3)
	r.add("floor_s", seconds(fp50), 3)
	r.add("overhead_p50_s", seconds(over), 3)
	return r
}
