package controlplane

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Health goes NOT_SERVING while the store cannot commit (here a table the
// writer needs is gone) and SERVING again once it can; /metrics says so.
func TestStoreWriteFailureIsNotServing(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cp := serveCP(t, cfg)
	ctx := context.Background()
	cp.register(t, "r1")
	checkHealth(t, cp, "", "SERVING")

	db, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.DataDir, storeFile)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`ALTER TABLE runners RENAME TO runners_away`); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.runners.Register(ctx, &pontusv1.RegisterRequest{Name: "r2"}); err == nil {
		t.Fatal("Register succeeded while the store cannot write runners")
	}
	checkHealth(t, cp, "", "NOT_SERVING")
	checkHealth(t, cp, "pontus.v1.RunnerService", "NOT_SERVING")
	if v, _ := series(metricsText(t, cp, nil), "pontus_store_writes_failing"); v != 1 {
		t.Errorf("pontus_store_writes_failing = %v, want 1", v)
	}

	if _, err := db.Exec(`ALTER TABLE runners_away RENAME TO runners`); err != nil {
		t.Fatal(err)
	}
	cp.register(t, "r3")
	checkHealth(t, cp, "", "SERVING")
	if v, _ := series(metricsText(t, cp, nil), "pontus_store_writes_failing"); v != 0 {
		t.Errorf("pontus_store_writes_failing = %v, want 0", v)
	}
}

// A log append the disk refuses is answered unavailable (runners keep the
// log and retry), counted in /metrics, and does not take the control plane
// out of service; once the disk takes writes again the build completes with
// its whole log.
func TestUnwritableLogsAreRetried(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cp := serveCP(t, cfg)
	ctx := context.Background()
	runner := cp.register(t, "r1")
	cp.report(t, "main", nil, commitA)
	job := cp.acquire(t, runner, 5*time.Second)
	logs := filepath.Join(cfg.DataDir, "logs")
	if err := os.Rename(logs, logs+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logs, nil, 0o600); err != nil { // in the way, even for root
		t.Fatal(err)
	}
	out := []byte("ok\n")
	_, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Data: out})
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("append to an unwritable log: %v, want unavailable", err)
	}
	checkHealth(t, cp, "", "SERVING")
	if v, _ := series(metricsText(t, cp, nil), "pontus_log_write_errors_total"); v != 1 {
		t.Errorf("pontus_log_write_errors_total = %v, want 1", v)
	}
	os.Remove(logs)
	if err := os.Rename(logs+".away", logs); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Data: out}); err != nil {
		t.Fatalf("retried append: %v", err)
	}
	if _, err := cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: 1, Status: passed, LogSize: int64(len(out))}); err != nil {
		t.Fatal(err)
	}
	waitResult(t, cfg.ResultsDir, commitA, job.JobId)
}
