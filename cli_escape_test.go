package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/controlplane"
	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// A test's output cannot drive the terminal of whoever reads it with
// pontus logs or pontus show: colours, OSC 52 (clipboard) and other
// controls arrive neutralised.
func TestLogsAndShowNeutraliseTerminalEscapes(t *testing.T) {
	t.Parallel()
	cfg := controlplane.DefaultConfig()
	dir := t.TempDir()
	cfg.DataDir, cfg.ResultsDir = filepath.Join(dir, "data"), filepath.Join(dir, "results")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	cfg.Listen = "127.0.0.1:0"
	go func() { done <- serveControlPlane(ctx, cfg, slog.New(slog.DiscardHandler), ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	url := "http://" + addr.String()
	hc, err := dial.HTTPClient(dial.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	runners := pontusv1connect.NewRunnerServiceClient(hc, url)
	observer := pontusv1connect.NewObserverServiceClient(hc, url)
	commit := strings.Repeat("e", 40)
	if _, err := observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main", Commits: []string{commit}}); err != nil {
		t.Fatal(err)
	}
	reg, err := runners.Register(ctx, &pontusv1.RegisterRequest{Name: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	job, err := runners.AcquireJob(ctx, &pontusv1.AcquireJobRequest{RunnerId: reg.RunnerId, Wait: durationpb.New(5 * time.Second)})
	if err != nil || job.Job == nil {
		t.Fatalf("AcquireJob: %v %v", job, err)
	}
	hostile := []byte("\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07plain \x1b[31mred\x1b[0m\r\n")
	if _, err := runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.Job.JobId, Attempt: 1, Data: hostile}); err != nil {
		t.Fatal(err)
	}
	if _, err := runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.Job.JobId, Attempt: 1,
		Status: pontusv1.BuildStatus_BUILD_STATUS_FAILED, LogSize: int64(len(hostile)), Reason: "exit \x1b[31mstatus 1",
		Tests: []*pontusv1.TestCase{{Name: "test_\x1b]0;title\x07x", Outcome: pontusv1.TestOutcome_TEST_OUTCOME_FAILED, Message: "boom\x1b[1A\x08"}}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "--controlplane", url, commit}, "plain red\n"},
		{[]string{"logs", "-f", "--controlplane", url, commit}, "plain red\n"},
		{[]string{"show", "--controlplane", url, commit}, "boom^H"},
		{[]string{"builds", "--controlplane", url}, "exit status 1"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(ctx, c.args, &stdout, &stderr); code != 0 {
			t.Fatalf("pontus %v: exit %d: %s", c.args, code, stderr.String())
		}
		got := stdout.String()
		if strings.ContainsAny(got, "\x1b\x07\x08\r") || !strings.Contains(got, c.want) {
			t.Errorf("pontus %v printed %q, want it to contain %q and no escapes", c.args, got, c.want)
		}
	}
}
