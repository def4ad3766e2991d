package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/pgtest"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// FailoverConfig configures Failover.
type FailoverConfig struct {
	// Binary is the pontus binary to start the replicas from.
	Binary string
	// Replicas is how many control planes share the database.
	Replicas int
	// Kills is how many times the leader is SIGKILLed (and restarted).
	Kills int
	// PhaseTimeout bounds each failover.
	PhaseTimeout time.Duration
}

// DefaultFailoverConfig is three replicas, five kills.
func DefaultFailoverConfig() FailoverConfig {
	return FailoverConfig{Replicas: 3, Kills: 5, PhaseTimeout: time.Minute}
}

// Validate checks the configuration.
func (c FailoverConfig) Validate() error {
	var errs []error
	if c.Replicas < 2 || c.Replicas > 9 {
		errs = append(errs, fmt.Errorf("--replicas: must be between 2 and 9, got %d", c.Replicas))
	}
	if c.Kills < 1 || c.Kills > 100 {
		errs = append(errs, fmt.Errorf("--kills: must be between 1 and 100, got %d", c.Kills))
	}
	if c.PhaseTimeout <= 0 {
		errs = append(errs, errors.New("--phase-timeout: must be positive"))
	}
	return errors.Join(errs...)
}

// failoverReplica is one replica process and where it listens.
type failoverReplica struct {
	addr, dir string
	proc      *process
}

func (r *failoverReplica) url() string { return "http://" + r.addr }

func (r *failoverReplica) start(binary, store string) error {
	p, err := startProcess("control plane "+r.addr, binary, r.dir, childEnv(), "controlplane",
		"--store", store, "--listen", r.addr, "--data", filepath.Join(r.dir, "data"),
		"--results", filepath.Join(r.dir, "results"), "--log-level", "warn")
	r.proc = p
	return err
}

// role asks GET /replica.
func (r *failoverReplica) role(ctx context.Context) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url()+"/replica", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "down"
	}
	defer res.Body.Close()
	var st struct{ Role string }
	if json.NewDecoder(res.Body).Decode(&st) != nil {
		return "?"
	}
	return st.Role
}

// Failover starts Replicas control planes on a throwaway PostgreSQL
// server and a simulated runner given all their URLs, then Kills times:
// SIGKILLs the leader while the runner long-polls, reports a commit at
// once, and times how long until the runner is handed its job (through
// whichever replica it reaches); then restarts the killed replica.
func Failover(ctx context.Context, cfg FailoverConfig, logger *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pg, err := pgtest.NewServer(ctx)
	if err != nil {
		return nil, err
	}
	defer pg.Remove()
	store, err := pg.CreateDatabase(ctx, "pontus")
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "pontus-bench-failover-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	var rs []*failoverReplica
	defer func() {
		for _, r := range rs {
			if r.proc != nil {
				_ = r.proc.stop()
			}
		}
	}()
	var urls []string
	for i := range cfg.Replicas {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		r := &failoverReplica{addr: addr, dir: filepath.Join(tmp, fmt.Sprint("cp", i))}
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return nil, err
		}
		if err := r.start(cfg.Binary, store); err != nil {
			return nil, err
		}
		rs = append(rs, r)
		urls = append(urls, r.url())
	}
	c, err := newConn(strings.Join(urls, ","), "", "")
	if err != nil {
		return nil, err
	}
	defer c.close()
	leader := func() (*failoverReplica, error) {
		deadline := time.Now().Add(cfg.PhaseTimeout)
		for {
			for _, r := range rs {
				if r.role(ctx) == "leader" {
					return r, nil
				}
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return nil, fmt.Errorf("no replica leads after %s", cfg.PhaseTimeout)
			}
			dial.Sleep(ctx, 50*time.Millisecond)
		}
	}
	if _, err := leader(); err != nil {
		return nil, err
	}
	var runner *simRunner
	if err := retryFor(ctx, cfg.PhaseTimeout, func() error {
		runner, err = register(ctx, c.runner, "bench-failover")
		return err
	}); err != nil {
		return nil, err
	}
	logger.Info("replicas up", "replicas", cfg.Replicas, "store", "throwaway PostgreSQL server on this host")

	ids := newCommitIDs()
	var took Durations
	for k := range cfg.Kills {
		lead, err := leader()
		if err != nil {
			return nil, err
		}
		got := make(chan time.Time, 1)
		jobs := make(chan *pontusv1.Job, 1)
		pollCtx, stopPoll := context.WithTimeout(ctx, cfg.PhaseTimeout)
		go func() {
			for pollCtx.Err() == nil {
				job, err := runner.acquire(pollCtx, 2*time.Second)
				if job != nil {
					got <- time.Now()
					jobs <- job
					return
				}
				if err != nil {
					dial.Sleep(pollCtx, 20*time.Millisecond)
				}
			}
		}()
		dial.Sleep(ctx, 300*time.Millisecond) // the poll waits at the leader
		_ = lead.proc.cmd.Process.Kill()
		<-lead.proc.done
		killed := time.Now()
		err = retryFor(ctx, cfg.PhaseTimeout, func() error {
			_, err := c.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/bench/failover", Branch: "main", Commits: []string{ids.next()}})
			return err
		})
		if err != nil {
			stopPoll()
			return nil, fmt.Errorf("report a commit after kill %d: %w", k+1, err)
		}
		var at time.Time
		select {
		case at = <-got:
		case <-pollCtx.Done():
			stopPoll()
			return nil, fmt.Errorf("kill %d: no job handed out within %s", k+1, cfg.PhaseTimeout)
		}
		stopPoll()
		job := <-jobs
		took = append(took, at.Sub(killed))
		logger.Info("failover", "kill", k+1, "from", lead.addr, "next_job_after", at.Sub(killed).Round(time.Millisecond))
		if err := retryFor(ctx, cfg.PhaseTimeout, func() error { _, _, err := runner.finish(ctx, job, 0); return err }); err != nil {
			return nil, fmt.Errorf("finish the job after kill %d: %w", k+1, err)
		}
		if err := lead.start(cfg.Binary, store); err != nil {
			return nil, err
		}
	}
	res := &Result{}
	res.say("failover: %d replicas on one PostgreSQL (throwaway server on this host), one simulated runner given every URL", cfg.Replicas)
	res.say("SIGKILL of the leader → next job handed out, over %d kills: p50 %s  max %s — target ≤ 10 s: %s",
		len(took), ms(took.Percentile(50)), ms(took.Max()), verdict(took.Max() <= 10*time.Second))
	res.add("failover_p50_s", seconds(took.Percentile(50)), 3)
	res.add("failover_max_s", seconds(took.Max()), 3)
	return res, nil
}

// retryFor calls fn until it succeeds, fails for good, or d passes.
func retryFor(ctx context.Context, d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	bo := dial.NewBackoff(20*time.Millisecond, 500*time.Millisecond)
	for {
		err := fn()
		if err == nil || !dial.Retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		dial.Sleep(ctx, bo.Next())
	}
}
