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

	"github.com/pontus-ci/pontus/internal/dial"
)

// rssEvery is how often Fleet samples the control plane's RSS.
const rssEvery = 250 * time.Millisecond

// FleetConfig configures Fleet.
type FleetConfig struct {
	// Runners is how many idle simulated runners long-poll the control plane.
	Runners int
	// Duration is the measuring window.
	Duration time.Duration
	// Binary is the pontus binary that runs the control plane.
	Binary string
	// Conns is how many HTTP/2 connections the runners share; 0 gives each
	// runner its own, as a real fleet of runner processes has.
	Conns int
	// Settle is the pause between every runner polling and the window.
	Settle time.Duration
	// PhaseTimeout bounds the setup (registering, first polls).
	PhaseTimeout time.Duration
	// CPUProfile, when set, is passed to the control plane as
	// PONTUS_CPUPROFILE (an absolute path).
	CPUProfile string
	// TempDir is where the bench's temporary directory goes ("" = the
	// system's).
	TempDir string
}

// DefaultFleetConfig returns 2000 runners measured for 60 s.
func DefaultFleetConfig() FleetConfig {
	return FleetConfig{
		Runners:      2000,
		Duration:     60 * time.Second,
		Settle:       2 * time.Second,
		PhaseTimeout: 2 * time.Minute,
	}
}

// Validate checks the configuration, naming the flag that is wrong.
func (c *FleetConfig) Validate() error {
	var errs []error
	if c.Runners < 1 || c.Runners > 10000 {
		errs = append(errs, fmt.Errorf("--runners: must be between 1 and 10000, got %d", c.Runners))
	}
	errs = append(errs, checkWindow(c.Duration))
	if c.Binary == "" {
		errs = append(errs, errors.New("binary: the pontus binary to start the control plane is not set"))
	}
	if c.Conns < 0 || c.Conns > 10000 {
		errs = append(errs, fmt.Errorf("--conns: must be between 0 (one per runner) and 10000, got %d", c.Conns))
	}
	if c.Settle < 0 {
		errs = append(errs, fmt.Errorf("settle: must not be negative, got %s", c.Settle))
	}
	if c.PhaseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--phase-timeout: must be positive, got %s", c.PhaseTimeout))
	}
	if c.CPUProfile != "" && !filepath.IsAbs(c.CPUProfile) {
		errs = append(errs, fmt.Errorf("--cpuprofile: must be an absolute path, got %q", c.CPUProfile))
	}
	return errors.Join(errs...)
}

func checkWindow(d time.Duration) error {
	if d < 100*time.Millisecond || d > time.Hour {
		return fmt.Errorf("--duration: must be between 100ms and 1h, got %s", d)
	}
	return nil
}

// Fleet measures what a fleet of idle runners costs the control plane:
// Runners simulated runners register and long-poll (AcquireJob with the
// server's poll timeout; idle runners send no heartbeats) against a control
// plane in its own process; over the Duration window the bench reads the
// process's CPU time and samples its RSS. Each runner's first poll waits a
// random part of the poll timeout, so the polls are spread over time as in
// a fleet whose runners started at different moments.
func Fleet(ctx context.Context, cfg FleetConfig, logger *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cfg.TempDir, "pontus-bench-fleet-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	var env []string
	if cfg.CPUProfile != "" {
		env = append(env, "PONTUS_CPUPROFILE="+cfg.CPUProfile)
	}
	cp, err := startControlPlane(ctx, cfg.Binary, tmp, env)
	if err != nil {
		return nil, err
	}
	defer cp.stop()
	logger.Info("fleet: control plane started", "url", cp.url, "pid", cp.pid())

	nconns := cfg.Conns
	if nconns == 0 {
		nconns = cfg.Runners
	}
	conns := make([]*conn, min(nconns, cfg.Runners))
	for i := range conns {
		c, err := newConn(cp.url, "", "")
		if err != nil {
			return nil, err
		}
		defer c.close()
		conns[i] = c
	}

	setup, cancelSetup := context.WithTimeout(ctx, cfg.PhaseTimeout)
	defer cancelSetup()
	logger.Info("fleet: registering runners", "runners", cfg.Runners, "connections", len(conns))
	runners, err := registerAll(setup, conns, cfg.Runners, "fleet")
	if err != nil {
		return nil, phaseErr("fleet setup", setup, cfg.PhaseTimeout, "registering runners", err)
	}

	run, stop := context.WithCancel(ctx)
	defer stop()
	fe := &firstError{cancel: stop}
	var (
		wg      sync.WaitGroup
		polling atomic.Int64 // runners that have sent their first AcquireJob
		polls   atomic.Int64 // AcquireJob calls that came back
		jobs    atomic.Int64
	)
	for _, r := range runners {
		wg.Go(func() {
			first := time.Second + rand.N(max(r.poll-time.Second, 1))
			polling.Add(1)
			for wait := first; run.Err() == nil; wait = 0 {
				job, err := r.acquire(run, wait)
				if err != nil {
					fe.set(err)
					return
				}
				if run.Err() != nil {
					return
				}
				polls.Add(1)
				if job != nil { // nobody reports commits here, but be a good runner
					jobs.Add(1)
					if _, _, err := r.finish(run, job, 0); err != nil {
						fe.set(err)
						return
					}
				}
			}
		})
	}
	defer wg.Wait()
	defer stop()

	for polling.Load() < int64(len(runners)) {
		if !dial.Sleep(setup, 10*time.Millisecond) {
			return nil, phaseErr("fleet setup", setup, cfg.PhaseTimeout,
				fmt.Sprintf("%d of %d runners polling", polling.Load(), len(runners)), setup.Err())
		}
	}
	cancelSetup()
	if !dial.Sleep(run, cfg.Settle) {
		return nil, fleetStopped(ctx, fe, cp)
	}

	logger.Info("fleet: measuring", "duration", cfg.Duration)
	polls0 := polls.Load()
	w, err := measureWindow(run, cfg.Duration, []*process{cp.process})
	if err != nil {
		if e := fleetStopped(ctx, fe, cp); e != nil {
			return nil, e
		}
		return nil, err
	}
	pollsIn := polls.Load() - polls0
	stop()
	wg.Wait()
	if err := fe.get(); err != nil {
		return nil, err
	}
	if err := cp.stop(); err != nil {
		return nil, fmt.Errorf("stop control plane: %w", err)
	}

	r := &Result{}
	cores := w.cores(0)
	r.say("fleet: %d idle runners, each on its own HTTP/2 connection unless --conns says otherwise (%d connection(s)), long-polling with the server's poll timeout (%s)",
		cfg.Runners, len(conns), runners[0].poll)
	r.say("control plane over %s: CPU %.3f cores, RSS peak %.1f MiB (%.1f MiB at the end)",
		w.took.Round(time.Millisecond), cores, mib(w.peak[0]), mib(w.last[0]))
	r.say("  %d AcquireJob long-polls ended in the window (%.1f/s); %d jobs handed out (expected 0)",
		pollsIn, float64(pollsIn)/w.took.Seconds(), jobs.Load())
	r.say("targets at 2000 runners: ≤ 0.5 core: %s; ≤ 200 MB: %s", verdict(cores <= 0.5), verdict(mib(w.peak[0]) <= 200))
	r.add("runners", float64(cfg.Runners), 0)
	r.add("cp_cpu_cores", cores, 3)
	r.add("cp_rss_mb", mib(w.peak[0]), 1)
	profileNote(r, cfg.CPUProfile)
	return r, nil
}

// fleetStopped explains why the fleet stopped early: a runner's error, the
// control plane exiting, or ctx.
func fleetStopped(ctx context.Context, fe *firstError, cp *controlPlane) error {
	if err := fe.get(); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	if cp.exited() {
		return cp.exitErr()
	}
	return ctx.Err()
}

// window is what measureWindow read, per process.
type window struct {
	took time.Duration
	cpu  []time.Duration // CPU time used in the window
	peak []int64         // largest RSS seen
	last []int64         // RSS at the end
}

func (w *window) cores(i int) float64 { return w.cpu[i].Seconds() / w.took.Seconds() }

// measureWindow reads the CPU time of procs at the start and end of a
// window of length d and samples their RSS meanwhile. A process that exits
// fails the measurement.
func measureWindow(ctx context.Context, d time.Duration, procs []*process) (*window, error) {
	w := &window{cpu: make([]time.Duration, len(procs)), peak: make([]int64, len(procs)), last: make([]int64, len(procs))}
	read := func() ([]procSample, error) {
		out := make([]procSample, len(procs))
		for i, p := range procs {
			if p.exited() {
				return nil, p.exitErr()
			}
			s, err := readProc(p.pid())
			if err != nil {
				return nil, err
			}
			out[i] = s
			w.peak[i] = max(w.peak[i], s.rss)
			w.last[i] = s.rss
		}
		return out, nil
	}
	start := time.Now()
	first, err := read()
	if err != nil {
		return nil, err
	}
	end := start.Add(d)
	tick := time.NewTicker(rssEvery)
	defer tick.Stop()
	for time.Now().Before(end) {
		timer := time.NewTimer(time.Until(end))
		select {
		case <-tick.C:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		}
		timer.Stop()
		if _, err := read(); err != nil {
			return nil, err
		}
	}
	final, err := read()
	if err != nil {
		return nil, err
	}
	w.took = time.Since(start)
	for i := range procs {
		w.cpu[i] = final[i].cpu - first[i].cpu
	}
	return w, nil
}

// IdleConfig configures Idle.
type IdleConfig struct {
	// Duration is the measuring window.
	Duration time.Duration
	// Binary is the pontus binary that runs the three daemons.
	Binary string
	// Settle is the pause between the first build's result and the window.
	Settle time.Duration
	// PhaseTimeout bounds the setup (start, first build).
	PhaseTimeout time.Duration
	// TempDir is where the bench's temporary directory goes ("" = the
	// system's).
	TempDir string
}

// DefaultIdleConfig returns a 60 s window.
func DefaultIdleConfig() IdleConfig {
	return IdleConfig{Duration: 60 * time.Second, Settle: 2 * time.Second, PhaseTimeout: 2 * time.Minute}
}

// Validate checks the configuration, naming the flag that is wrong.
func (c *IdleConfig) Validate() error {
	var errs []error
	errs = append(errs, checkWindow(c.Duration))
	if c.Binary == "" {
		errs = append(errs, errors.New("binary: the pontus binary to start the daemons is not set"))
	}
	if c.Settle < 0 {
		errs = append(errs, fmt.Errorf("settle: must not be negative, got %s", c.Settle))
	}
	if c.PhaseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--phase-timeout: must be positive, got %s", c.PhaseTimeout))
	}
	return errors.Join(errs...)
}

// Idle measures what an idle Pontus costs: a control plane, one runner and
// one observer, three processes of Binary, on a fresh repository with the
// latency bench's suite. Once the first commit's build has finished (the
// observer reports the head on first start) and a settling pause has
// passed, it reads the CPU time of all three over the window.
func Idle(ctx context.Context, cfg IdleConfig, logger *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cfg.TempDir, "pontus-bench-idle-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	workdir, err := runnerWorkdir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(workdir)
	repoDir := filepath.Join(tmp, "repo")
	_, head, err := newSuiteRepo(ctx, repoDir)
	if err != nil {
		return nil, err
	}

	cp, err := startControlPlane(ctx, cfg.Binary, tmp, nil)
	if err != nil {
		return nil, err
	}
	procs := []*process{cp.process}
	// Stop in reverse order of start: observer, runner, control plane.
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].stop()
		}
	}()
	runner, err := startProcess("runner", cfg.Binary, tmp, childEnv(),
		"runnerd", "--controlplane", cp.url, "--workdir", workdir, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	procs = append(procs, runner)
	observer, err := startProcess("observer", cfg.Binary, tmp, childEnv(),
		"observerd", "--controlplane", cp.url, "--repo", repoDir, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	procs = append(procs, observer)
	logger.Info("idle: daemons started; waiting for the first commit's build",
		"controlplane", cp.pid(), "runner", runner.pid(), "observer", observer.pid())

	setup, cancel := context.WithTimeout(ctx, cfg.PhaseTimeout)
	defer cancel()
	first := &sample{commit: head, committed: time.Now()}
	resultsDir := filepath.Join(tmp, "results")
	if err := os.MkdirAll(resultsDir, 0o755); err != nil {
		return nil, fmt.Errorf("create results dir: %w", err)
	}
	waitDone := make(chan struct{})
	go func() { defer close(waitDone); waitSample(setup, resultsDir, first, cfg.PhaseTimeout) }()
	if err := waitOrExit(waitDone, procs); err != nil {
		cancel()
		<-waitDone
		return nil, err
	}
	firstStatus := "not finished"
	if first.build != nil {
		firstStatus = first.build.GetStatus().String()
	}
	if first.err != nil && first.build == nil {
		return nil, phaseErr("idle setup", setup, cfg.PhaseTimeout, "waiting for the first build", first.err)
	}
	if !dial.Sleep(ctx, cfg.Settle) {
		return nil, ctx.Err()
	}

	logger.Info("idle: measuring", "duration", cfg.Duration)
	w, err := measureWindow(ctx, cfg.Duration, procs)
	if err != nil {
		return nil, err
	}
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].stop(); err != nil {
			return nil, fmt.Errorf("stop: %w", err)
		}
	}

	var total time.Duration
	for _, c := range w.cpu {
		total += c
	}
	totalCores := total.Seconds() / w.took.Seconds()
	r := &Result{}
	r.say("idle: control plane, runner and observer (separate processes) on a fresh repository, after its first build (%s), for %s",
		firstStatus, w.took.Round(time.Millisecond))
	for i, name := range []string{"control plane", "runner", "observer"} {
		r.say("  %-13s CPU %.4f cores (%s), RSS %.1f MiB", name, w.cores(i), w.cpu[i], mib(w.last[i]))
	}
	r.say("total CPU %.4f cores — target ≤ 0.01: %s", totalCores, verdict(totalCores <= 0.01))
	r.add("total_cpu_cores", totalCores, 4)
	r.add("cp_cpu_cores", w.cores(0), 4)
	r.add("runner_cpu_cores", w.cores(1), 4)
	r.add("observer_cpu_cores", w.cores(2), 4)
	return r, nil
}

// waitOrExit waits for done, failing if one of procs exits first.
func waitOrExit(done <-chan struct{}, procs []*process) error {
	exits := make(chan *process, len(procs))
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	for _, p := range procs {
		go func() {
			select {
			case <-p.done:
				exits <- p
			case <-stopWatch:
			}
		}()
	}
	select {
	case <-done:
		return nil
	case p := <-exits:
		return p.exitErr()
	}
}
