package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/pgtest"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// testReplica is one replica served on a loopback port.
type testReplica struct {
	cfg  Config
	url  string
	r    *Replica
	stop func()
}

func startReplica(t *testing.T, cfg Config) *testReplica {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := NewReplica(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	tr := &testReplica{cfg: cfg, url: "http://" + ln.Addr().String(), r: r}
	var once sync.Once
	tr.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve replica: %v", err)
			}
		})
	}
	t.Cleanup(tr.stop)
	return tr
}

func (tr *testReplica) status(t *testing.T) ReplicaStatus {
	t.Helper()
	res, err := http.Get(tr.url + "/replica")
	if err != nil {
		return ReplicaStatus{Role: "down: " + err.Error()}
	}
	defer res.Body.Close()
	var st ReplicaStatus
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// leaderOf waits until exactly one of rs leads and says so, and every
// other one forwards to it.
func leaderOf(t *testing.T, rs ...*testReplica) *testReplica {
	t.Helper()
	var lead *testReplica
	waitFor(t, "one leader", 30*time.Second, func() (bool, string) {
		lead = nil
		var seen []string
		for _, r := range rs {
			st := r.status(t)
			seen = append(seen, fmt.Sprintf("%s=%s(epoch %d, leader %s)", st.Name, st.Role, st.Epoch, st.Leader))
			if st.Role == "leader" {
				if lead != nil {
					return false, strings.Join(seen, " ")
				}
				lead = r
			}
		}
		if lead == nil {
			return false, strings.Join(seen, " ")
		}
		for _, r := range rs {
			if st := r.status(t); r != lead && (st.Leader != lead.r.Name() || r.r.forwardTarget() == nil) {
				return false, strings.Join(seen, " ")
			}
		}
		return true, ""
	})
	return lead
}

func replicaConfig(t *testing.T, store string) Config {
	cfg := testConfig(t)
	cfg.Store = store
	cfg.LeaseDuration = 3 * time.Second // outlives a failover
	cfg.HeartbeatInterval = 100 * time.Millisecond
	return cfg
}

type clients struct {
	runners  pontusv1connect.RunnerServiceClient
	observer pontusv1connect.ObserverServiceClient
	builds   pontusv1connect.BuildServiceClient
}

func dialAll(t *testing.T, urls ...string) clients {
	t.Helper()
	list := strings.Join(urls, ",")
	hc, err := dial.HTTPClient(dial.Config{URL: list})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	base := dial.Base(list)
	return clients{
		runners:  pontusv1connect.NewRunnerServiceClient(hc, base),
		observer: pontusv1connect.NewObserverServiceClient(hc, base),
		builds:   pontusv1connect.NewBuildServiceClient(hc, base),
	}
}

// retry calls fn until it succeeds, as a runner does across a failover.
func retry[T any](t *testing.T, what string, fn func() (T, error)) T {
	t.Helper()
	var v T
	var err error
	waitFor(t, what, 30*time.Second, func() (bool, string) {
		v, err = fn()
		if err != nil && !dial.Retryable(err) {
			t.Fatalf("%s: %v", what, err)
		}
		return err == nil, fmt.Sprint(err)
	})
	return v
}

// Two replicas on one database: one leads, the other forwards (a long-poll
// through the standby gets its job the moment it is queued); the leader
// stops while a runner holds a job, the standby takes over, the runner's
// heartbeats and result go to it with the same attempt, and both
// replicas' results_dir get the files — the stopped one when it returns.
func TestReplicasFailOverKeepingTheLease(t *testing.T) {
	db := pgtest.Shared(t).NewDatabase(t)
	a := startReplica(t, replicaConfig(t, db))
	b := startReplica(t, replicaConfig(t, db))
	lead := leaderOf(t, a, b)
	standby := map[*testReplica]*testReplica{a: b, b: a}[lead]

	// Everything through the standby: forwarded to the leader.
	viaStandby := dialAll(t, standby.url)
	reg, err := viaStandby.runners.Register(t.Context(), &pontusv1.RegisterRequest{Name: "r1"})
	if err != nil {
		t.Fatalf("Register through the standby: %v", err)
	}
	got := make(chan *pontusv1.Job, 1)
	go func() {
		res, err := viaStandby.runners.AcquireJob(context.Background(), &pontusv1.AcquireJobRequest{RunnerId: reg.RunnerId, Wait: durationpb.New(20 * time.Second)})
		if err != nil {
			t.Errorf("AcquireJob through the standby: %v", err)
		}
		got <- res.GetJob()
	}()
	time.Sleep(200 * time.Millisecond) // let the long-poll wait at the leader
	if _, err := dialAll(t, lead.url).observer.ReportCommits(t.Context(), &pontusv1.ReportCommitsRequest{
		Repo: "/srv/repo", Branch: "main", Commits: []string{commitA}}); err != nil {
		t.Fatal(err)
	}
	job := <-got
	if job == nil {
		t.Fatal("the long-poll through the standby got no job")
	}

	// The runner talks to both; a follower of the live log reads it
	// through the standby, as it is written.
	c := dialAll(t, lead.url, standby.url)
	tailCtx, stopTail := context.WithCancel(t.Context())
	defer stopTail()
	tail, err := viaStandby.builds.TailLog(tailCtx, &pontusv1.TailLogRequest{BuildId: job.BuildId, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.runners.AppendLog(t.Context(), &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: job.Attempt, Data: []byte("before\n")}); err != nil {
		t.Fatal(err)
	}
	var followed []byte
	for !strings.Contains(string(followed), "before") && tail.Receive() {
		followed = append(followed, tail.Msg().Data...)
	}
	if !strings.Contains(string(followed), "before") {
		t.Fatalf("live log through the standby: %q, %v", followed, tail.Err())
	}
	stopTail()

	// The leader goes away mid-job.
	lead.stop()
	if leaderOf(t, standby) != standby {
		t.Fatal("the standby did not take over")
	}
	hb := retry(t, "heartbeat after failover", func() (*pontusv1.HeartbeatResponse, error) {
		return c.runners.Heartbeat(t.Context(), &pontusv1.HeartbeatRequest{RunnerId: reg.RunnerId,
			Leases: []*pontusv1.JobRef{{JobId: job.JobId, Attempt: job.Attempt}}})
	})
	if len(hb.Lost) > 0 {
		t.Fatalf("the lease was lost across the failover: %v", hb.Lost)
	}
	retry(t, "append after failover", func() (*pontusv1.AppendLogResponse, error) {
		return c.runners.AppendLog(t.Context(), &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: job.Attempt, Offset: 7, Data: []byte("after\n")})
	})
	retry(t, "complete after failover", func() (*pontusv1.CompleteJobResponse, error) {
		return c.runners.CompleteJob(t.Context(), &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: job.Attempt,
			Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED, LogSize: 13})
	})
	b1, err := c.builds.GetBuild(t.Context(), &pontusv1.GetBuildRequest{BuildId: job.BuildId})
	if err != nil || b1.Build.Status != pontusv1.BuildStatus_BUILD_STATUS_PASSED || b1.Build.Attempt != 1 || len(b1.Build.Attempts) > 1 {
		t.Fatalf("build after failover: %v %v", b1.GetBuild(), err)
	}
	resultIn := func(r *testReplica) func() (bool, string) {
		return func() (bool, string) {
			data, err := os.ReadFile(filepath.Join(r.cfg.ResultsDir, commitA))
			return err == nil && strings.HasPrefix(string(data), "PASSED"), fmt.Sprint(err)
		}
	}
	waitFor(t, "the result in the new leader's results_dir", 10*time.Second, resultIn(standby))

	// The old leader returns as a standby and catches up.
	back := startReplica(t, lead.cfg)
	if leaderOf(t, standby, back) != standby {
		t.Fatal("leadership moved back")
	}
	waitFor(t, "the result in the returned replica's results_dir", 10*time.Second, resultIn(back))
	res, err := dialAll(t, back.url).builds.GetBuild(t.Context(), &pontusv1.GetBuildRequest{BuildId: job.BuildId})
	if err != nil || res.Build.Status != pontusv1.BuildStatus_BUILD_STATUS_PASSED {
		t.Fatalf("GetBuild through the returned standby: %v %v", res.GetBuild(), err)
	}
	for _, r := range []*testReplica{standby, back} {
		m := replicaMetrics(t, r.url)
		want := map[*testReplica]string{standby: "pontus_replica_leader 1", back: "pontus_replica_leader 0"}[r]
		if !strings.Contains(m, want) || !strings.Contains(m, "pontus_replica_epoch 2") {
			t.Errorf("%s /metrics lacks %q or epoch 2", r.r.Name(), want)
		}
	}
}

func replicaMetrics(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// A replica that knows no leader answers unavailable, so clients retry
// (on another replica), and its health says NOT_SERVING.
func TestReplicaWithoutLeaderIsUnavailable(t *testing.T) {
	cfg := replicaConfig(t, pgtest.Shared(t).NewDatabase(t))
	r, err := NewReplica(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r.Handler(), Protocols: serverProtocols()}
	go srv.Serve(ln)
	defer srv.Close()
	url := "http://" + ln.Addr().String()
	_, err = dialAll(t, url).builds.ListBuilds(t.Context(), &pontusv1.ListBuildsRequest{})
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("ListBuilds with no leader: %v, want unavailable", err)
	}
	res, err := grpchealth.NewClient(http.DefaultClient, url).Check(t.Context(), &grpchealth.CheckRequest{})
	if err != nil || res.Status != grpchealth.StatusNotServing {
		t.Fatalf("health with no leader: %v %v, want NOT_SERVING", res, err)
	}
}
