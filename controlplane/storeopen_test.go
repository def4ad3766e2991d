package controlplane

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/pgtest"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// bothStores runs f with testConfig on SQLite, then on a fresh PostgreSQL
// database (skipped, saying why, without PostgreSQL).
func bothStores(t *testing.T, f func(t *testing.T, cfg Config)) {
	t.Run("sqlite", func(t *testing.T) { f(t, testConfig(t)) })
	t.Run("postgres", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Store = pgtest.Shared(t).NewDatabase(t)
		f(t, cfg)
	})
}

// Two control planes on one PostgreSQL database, each with its own
// data_dir and results_dir: the second serves the first's build, its log
// and its result files.
func TestPostgresReplicasShareBuildsAndLogs(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	cfgA := testConfig(t)
	cfgA.Store = url
	a := startCP(t, cfgA)
	ctx := context.Background()
	a.report(t, "main", nil, commitA)
	r := a.register(t, "r")
	job := a.acquire(t, r, time.Second)
	out := "a line\nanother line\n"
	if _, err := a.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Data: []byte(out)}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: 1,
		Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED, LogSize: int64(len(out))}); err != nil {
		t.Fatal(err)
	}
	a.stop()

	cfgB := testConfig(t)
	cfgB.Store = url
	b := startCP(t, cfgB)
	if got := b.build(t, job.JobId); got.Status != pontusv1.BuildStatus_BUILD_STATUS_PASSED {
		t.Fatalf("build on the second replica: %v", got)
	}
	stream, err := b.builds.TailLog(ctx, &pontusv1.TailLogRequest{BuildId: job.JobId})
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	for stream.Receive() {
		log.Write(stream.Msg().Data)
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if log.String() != out {
		t.Fatalf("log on the second replica: %q, want %q", log.String(), out)
	}
}

func TestStoreURLIsValidated(t *testing.T) {
	cfg := testConfig(t)
	cfg.Store = "mysql://root:hunter2@db/pontus"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "controlplane.store") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("got %v, want a controlplane.store error without the password", err)
	}
}
