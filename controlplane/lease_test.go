package controlplane

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pontus-ci/pontus/controlplane/store"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// newTestDispatcher builds a dispatcher on a real store, without a server,
// so timing can run on synctest's clock.
func newTestDispatcher(t *testing.T, cfg Config) *dispatcher {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(cfg.DataDir, "pontus.db"), store.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := fileLogStore(filepath.Join(cfg.DataDir, "logs"), 1<<20, false)
	d := newDispatcher(cfg, st, logs, &resultWriter{dir: cfg.ResultsDir, logs: logs}, newMetrics(),
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := d.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.results.start(d.resultsWritten)
	t.Cleanup(d.results.stop)
	return d
}

// With the default intervals, a lease renewed by heartbeats is kept, and a
// runner that stops heartbeating loses its job exactly one lease later —
// well inside the 10 s target for a SIGKILLed runner.
func TestLeaseTimingWithDefaults(t *testing.T) {
	cfg := DefaultConfig()
	dir := t.TempDir()
	cfg.DataDir, cfg.ResultsDir = filepath.Join(dir, "data"), filepath.Join(dir, "results")
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		d := newTestDispatcher(t, cfg)
		r, err := d.register(ctx, "r", nil, 1, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.report(ctx, &pontusv1.ReportCommitsRequest{Repo: "/repo", Branch: "main", Commits: []string{commitA}}); err != nil {
			t.Fatal(err)
		}
		job, err := d.acquire(ctx, r.Id, time.Second)
		if err != nil || job == nil {
			t.Fatalf("acquire: %v %v", job, err)
		}
		status := func() pontusv1.BuildStatus {
			b, err := d.find(ctx, job.JobId, "", "")
			if err != nil {
				t.Fatal(err)
			}
			return b.Status
		}
		lease := []*pontusv1.JobRef{{JobId: job.JobId, Attempt: job.Attempt}}
		// Heartbeats every 2 s for 20 s keep the job.
		for range 10 {
			time.Sleep(cfg.HeartbeatInterval)
			if _, lost, err := d.heartbeat(ctx, r.Id, lease); err != nil || len(lost) > 0 {
				t.Fatalf("heartbeat: lost=%v err=%v", lost, err)
			}
			d.expireLeases()
		}
		if s := status(); s != statusRunning {
			t.Fatalf("heartbeating runner lost its job: %s", s)
		}
		// The runner dies. Just before a lease has passed it still holds the job…
		time.Sleep(cfg.LeaseDuration - time.Millisecond)
		d.expireLeases()
		if s := status(); s != statusRunning {
			t.Fatalf("lease expired early: %s", s)
		}
		// …and just after, the job is back in the queue for attempt 2.
		time.Sleep(2 * time.Millisecond)
		d.expireLeases()
		if s := status(); s != statusQueued {
			t.Fatalf("after the lease: %s, want QUEUED", s)
		}
		next, err := d.acquire(ctx, r.Id, time.Second)
		if err != nil || next == nil || next.Attempt != 2 {
			t.Fatalf("re-acquire: %v %v", next, err)
		}
	})
}
