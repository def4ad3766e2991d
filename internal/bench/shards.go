package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/git"
	"github.com/pontus-ci/pontus/runnerd"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// ShardsConfig configures Shards.
type ShardsConfig struct {
	// Tests is how many equal tests the suite has, each in its own module.
	Tests int
	// Shards is the builds' settings.shards, and how many runner slots run.
	Shards int
	// TestTime is how long each test sleeps.
	TestTime time.Duration
	// Runs is how many builds are timed after a warm-up build.
	Runs int
	// ResultTimeout is the longest one build may take.
	ResultTimeout time.Duration
	// TempDir is where the bench's temporary directory goes ("" = the
	// system's).
	TempDir string
}

// DefaultShardsConfig is eight one-second tests in four shards, timed three times.
func DefaultShardsConfig() ShardsConfig {
	return ShardsConfig{Tests: 8, Shards: 4, TestTime: time.Second, Runs: 3, ResultTimeout: 2 * time.Minute}
}

// Validate checks the configuration, naming the flag that is wrong.
func (c *ShardsConfig) Validate() error {
	var errs []error
	if c.Tests < 1 || c.Tests > 1000 {
		errs = append(errs, fmt.Errorf("--tests: must be between 1 and 1000, got %d", c.Tests))
	}
	if c.Shards < 1 || c.Shards > 64 {
		errs = append(errs, fmt.Errorf("--shards: must be between 1 and 64, got %d", c.Shards))
	}
	if c.TestTime < 0 || c.TestTime > time.Hour {
		errs = append(errs, fmt.Errorf("--test-time: must be between 0 and 1h, got %s", c.TestTime))
	}
	if c.Runs < 1 || c.Runs > 1000 {
		errs = append(errs, fmt.Errorf("--runs: must be between 1 and 1000, got %d", c.Runs))
	}
	if c.ResultTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--result-timeout: must be positive, got %s", c.ResultTimeout))
	}
	for _, tool := range []string{"git", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			errs = append(errs, fmt.Errorf("%s not found: %w", tool, err))
		}
	}
	return errors.Join(errs...)
}

// slowTest is a test module whose one test sleeps.
const slowTest = `import time
import unittest


class Slow(unittest.TestCase):
    def test_sleep(self):
        time.sleep(%g)
`

// Shards runs a control plane and cfg.Shards runners of capacity 1 in this
// process on a repository of cfg.Tests equal Python tests, and times builds
// with settings.shards = cfg.Shards from ReportCommits to the result file,
// against the target 1.25 × (tests / shards × test time) + 0.5 s. A first
// build warms the runners' clones (and records the tests' durations).
func Shards(ctx context.Context, cfg ShardsConfig, logger *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cfg.TempDir, "pontus-bench-shards-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	repo := &suiteRepo{dir: filepath.Join(tmp, "repo")}
	if err := os.MkdirAll(filepath.Join(repo.dir, "tests"), 0o755); err != nil {
		return nil, fmt.Errorf("create repository: %w", err)
	}
	files := map[string]string{suiteDataFile: "commit 0\n"}
	for i := range cfg.Tests {
		files[fmt.Sprintf("tests/test_slow%03d.py", i)] = fmt.Sprintf(slowTest, cfg.TestTime.Seconds())
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(repo.dir, name), []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("write repository: %w", err)
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}} {
		if _, err := git.Output(ctx, repo.dir, args...); err != nil {
			return nil, err
		}
	}
	if err := repo.commitOnly(ctx); err != nil {
		return nil, err
	}
	results := filepath.Join(tmp, "results")

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	url, stop, err := startShardFleet(ctx, cancel, tmp, results, cfg.Shards, logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		cancel()
		_ = stop()
	}()
	hc, err := dial.HTTPClient(dial.Config{URL: url})
	if err != nil {
		return nil, err
	}
	observer := pontusv1connect.NewObserverServiceClient(hc, url)
	build := func() (*sample, error) {
		head, err := repo.head(ctx)
		if err != nil {
			return nil, err
		}
		s := &sample{commit: head, committed: time.Now()}
		if _, err := observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: repo.dir, Branch: "main",
			Commits: []string{head}, Settings: &pontusv1.BuildSettings{Shards: int32(cfg.Shards)}}); err != nil {
			return nil, fmt.Errorf("report %s: %w", head, err)
		}
		waitSample(ctx, results, s, cfg.ResultTimeout)
		if s.err == nil && len(s.build.Tests) != cfg.Tests {
			s.err = fmt.Errorf("build of %s has %d test results, want %d", head, len(s.build.Tests), cfg.Tests)
		}
		return s, s.err
	}
	logger.Info("shards: warm-up build (every runner's first clone)")
	if _, err := build(); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var walls Durations
	var overlap int
	for i := range cfg.Runs {
		if err := repo.change(); err != nil {
			return nil, err
		}
		if err := repo.commitOnly(ctx); err != nil {
			return nil, err
		}
		s, err := build()
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i+1, err)
		}
		walls = append(walls, s.total())
		overlap = max(overlap, concurrentShards(s.build))
		logger.Info("shards: build done", "run", i+1, "wall", ms(s.total()))
	}
	ideal := time.Duration(float64(cfg.Tests) / float64(cfg.Shards) * float64(cfg.TestTime))
	target := time.Duration(1.25*float64(ideal)) + 500*time.Millisecond
	r := &Result{}
	p50, mx := walls.Percentile(50), walls.Max()
	r.say("%d tests of %s in %d shards on %d runner slots, %d builds after a warm-up, ReportCommits → result file:",
		cfg.Tests, cfg.TestTime, cfg.Shards, cfg.Shards, len(walls))
	r.say("  min %s  p50 %s  max %s; unsharded the tests alone take %s, ideally split %s",
		ms(walls.Min()), ms(p50), ms(mx), ms(time.Duration(cfg.Tests)*cfg.TestTime), ms(ideal))
	r.say("  most shards running at once: %d", overlap)
	r.say("target max ≤ 1.25 × %s + 0.5 s = %s: %s", ms(ideal), ms(target), verdict(mx <= target))
	r.add("p50_s", seconds(p50), 3)
	r.add("max_s", seconds(mx), 3)
	r.add("target_s", seconds(target), 3)
	r.add("concurrent_shards", float64(overlap), 0)
	return r, nil
}

// concurrentShards is the most shards of b that ran at the same moment.
func concurrentShards(b *pontusv1.Build) int {
	best := 0
	for _, s := range b.Shards {
		if s.StartedAt == nil {
			continue
		}
		at, n := s.StartedAt.AsTime(), 0
		for _, o := range b.Shards {
			if o.StartedAt != nil && o.FinishedAt != nil && !o.StartedAt.AsTime().After(at) && o.FinishedAt.AsTime().After(at) {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

// startShardFleet starts a control plane and n runners of capacity 1 in
// this process. stop waits for them after ctx is canceled.
func startShardFleet(ctx context.Context, cancel context.CancelFunc, tmp, results string, n int, logger *slog.Logger) (string, func() error, error) {
	cpCfg := controlplane.DefaultConfig()
	cpCfg.Listen = "127.0.0.1:0"
	cpCfg.DataDir = filepath.Join(tmp, "state", "controlplane")
	cpCfg.ResultsDir = results
	srv, err := controlplane.New(ctx, cpCfg, daemonLogger(logger, "controlplane"))
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", cpCfg.Listen)
	if err != nil {
		srv.Close()
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	url := "http://" + ln.Addr().String()
	runs := map[string]func() error{"control plane": func() error { return srv.Serve(ctx, ln) }}
	var workdirs []string
	cleanup := func() {
		for _, w := range workdirs {
			os.RemoveAll(w)
		}
	}
	for i := range n {
		workdir, err := runnerWorkdir()
		if err != nil {
			ln.Close()
			srv.Close()
			cleanup()
			return "", nil, err
		}
		workdirs = append(workdirs, workdir)
		rCfg := runnerd.DefaultConfig()
		rCfg.ControlPlane, rCfg.Workdir, rCfg.Name = dial.URLs(url), workdir, fmt.Sprintf("bench-%d", i+1)
		runner, err := runnerd.New(rCfg, daemonLogger(logger, rCfg.Name))
		if err != nil {
			ln.Close()
			srv.Close()
			cleanup()
			return "", nil, err
		}
		runs[rCfg.Name] = func() error { return runner.Run(ctx) }
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		failure error
	)
	for name, run := range runs {
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
	return url, func() error {
		wg.Wait()
		cleanup()
		mu.Lock()
		defer mu.Unlock()
		return failure
	}, nil
}
