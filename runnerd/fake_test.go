package runnerd

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// fakeCP is a control plane for tests: a RunnerService that keeps its state
// in memory, served by the generated Connect handler over real h2c HTTP on
// 127.0.0.1. It can be stopped and started again on the same address with
// its state intact (a control-plane restart), forget its runners, cancel or
// take away jobs, and inject errors with hooks.
type fakeCP struct {
	t                      testing.TB
	heartbeat, lease, poll time.Duration
	// patience is how long waits for the runner last (default a minute).
	patience            time.Duration
	addr                string // host:port, fixed after the first start
	mu                  sync.Mutex
	srv                 *http.Server
	changed             chan struct{} // closed and replaced on every change
	nextJob             int64
	nextRunner          int
	runners             map[string]bool
	registers           int
	queue               []*pontusv1.Job
	jobs                map[jobKey]*pontusv1.Job
	logs                map[jobKey][]byte
	appends             map[jobKey]int
	outOfRange          int // out_of_range answers given to AppendLog
	completed           map[jobKey]*pontusv1.CompleteJobRequest
	heartbeats          []*pontusv1.HeartbeatRequest
	cancel, lost, stale map[jobKey]bool
	auth                []string                                        // Authorization headers seen
	appendHook          func(f *fakeCP, req *pontusv1.AppendLogRequest) // called with mu held
	completeHook        func(f *fakeCP, req *pontusv1.CompleteJobRequest)
	pontusv1connect.UnimplementedRunnerServiceHandler
}

func newFakeCP(t testing.TB) *fakeCP {
	t.Helper()
	f := &fakeCP{
		t:         t,
		heartbeat: 200 * time.Millisecond,
		lease:     5 * time.Second,
		poll:      5 * time.Second,
		changed:   make(chan struct{}),
		runners:   map[string]bool{},
		jobs:      map[jobKey]*pontusv1.Job{},
		logs:      map[jobKey][]byte{},
		appends:   map[jobKey]int{},
		completed: map[jobKey]*pontusv1.CompleteJobRequest{},
		cancel:    map[jobKey]bool{},
		lost:      map[jobKey]bool{},
		stale:     map[jobKey]bool{},
	}
	t.Cleanup(f.stop)
	return f
}

// listen binds addr (127.0.0.1:0 the first time) and serves on it.
func (f *fakeCP) start() {
	f.t.Helper()
	addr := f.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		ln, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the port may linger for a moment after a stop
	}
	if err != nil {
		f.t.Fatalf("listen: %v", err)
	}
	f.serve(ln)
}

func (f *fakeCP) serve(ln net.Listener) {
	mux := http.NewServeMux()
	path, h := pontusv1connect.NewRunnerServiceHandler(f)
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: p, ReadHeaderTimeout: 5 * time.Second}
	f.mu.Lock()
	f.addr = ln.Addr().String()
	f.srv = srv
	f.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.t.Errorf("serve: %v", err)
		}
	}()
}

// stop closes the server and every connection: the control plane is down.
func (f *fakeCP) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.bump()
	f.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (f *fakeCP) url() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return "http://" + f.addr
}

// bump wakes everyone waiting for a change. Called with f.mu held.
func (f *fakeCP) bump() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// enqueue queues a job for commit of the repository at dir.
func (f *fakeCP) enqueue(dir, commit string) jobKey {
	return f.enqueueJob(&pontusv1.Job{Repo: dir, CloneUrl: dir, Branch: "main", Commit: commit})
}

func (f *fakeCP) enqueueJob(job *pontusv1.Job) jobKey {
	f.mu.Lock()
	defer f.mu.Unlock()
	if job.JobId == 0 {
		f.nextJob++
		job.JobId = f.nextJob
	}
	if job.Attempt == 0 {
		job.Attempt = 1
	}
	job.BuildId = job.JobId
	key := jobKey{job.JobId, job.Attempt}
	f.jobs[key] = job
	f.queue = append(f.queue, job)
	f.bump()
	return key
}

func (f *fakeCP) set(m map[jobKey]bool, key jobKey) {
	f.mu.Lock()
	m[key] = true
	f.bump()
	f.mu.Unlock()
}

// forgetRunners makes the control plane forget every runner id.
func (f *fakeCP) forgetRunners() {
	f.mu.Lock()
	clear(f.runners)
	f.bump()
	f.mu.Unlock()
}

func (f *fakeCP) Register(_ context.Context, req *pontusv1.RegisterRequest) (*pontusv1.RegisterResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.GetName() == "" || req.GetCapacity() < 1 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("name and capacity are required"))
	}
	f.nextRunner++
	id := fmt.Sprintf("r%d", f.nextRunner)
	f.runners[id] = true
	f.registers++
	f.bump()
	return &pontusv1.RegisterResponse{
		RunnerId:          id,
		HeartbeatInterval: durationpb.New(f.heartbeat),
		LeaseDuration:     durationpb.New(f.lease),
		PollTimeout:       durationpb.New(f.poll),
	}, nil
}

func (f *fakeCP) AcquireJob(ctx context.Context, req *pontusv1.AcquireJobRequest) (*pontusv1.AcquireJobResponse, error) {
	wait := f.poll
	if w := req.GetWait().AsDuration(); w > 0 && w < wait {
		wait = w
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		f.mu.Lock()
		if !f.runners[req.GetRunnerId()] {
			f.mu.Unlock()
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown runner %q", req.GetRunnerId()))
		}
		if len(f.queue) > 0 && ctx.Err() == nil {
			job := f.queue[0]
			f.queue = f.queue[1:]
			f.bump()
			f.mu.Unlock()
			return &pontusv1.AcquireJobResponse{Job: job}, nil
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return &pontusv1.AcquireJobResponse{}, nil
		case <-ctx.Done():
			return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
}

func (f *fakeCP) Heartbeat(_ context.Context, req *pontusv1.HeartbeatRequest) (*pontusv1.HeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.runners[req.GetRunnerId()] {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown runner %q", req.GetRunnerId()))
	}
	f.heartbeats = append(f.heartbeats, req)
	f.bump()
	resp := &pontusv1.HeartbeatResponse{}
	for _, ref := range req.GetLeases() {
		key := jobKey{ref.GetJobId(), ref.GetAttempt()}
		switch {
		case f.lost[key] || f.jobs[key] == nil:
			resp.Lost = append(resp.Lost, ref)
		case f.cancel[key]:
			resp.Cancel = append(resp.Cancel, ref)
		}
	}
	return resp, nil
}

func (f *fakeCP) AppendLog(_ context.Context, req *pontusv1.AppendLogRequest) (*pontusv1.AppendLogResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := jobKey{req.GetJobId(), req.GetAttempt()}
	if f.jobs[key] == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no job %d attempt %d", key.id, key.attempt))
	}
	if f.stale[key] {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("attempt %d is stale", key.attempt))
	}
	f.appends[key]++
	if f.appendHook != nil {
		f.appendHook(f, req)
	}
	stored := f.logs[key]
	if req.GetOffset() > int64(len(stored)) {
		f.outOfRange++
		return nil, connect.NewError(connect.CodeOutOfRange,
			fmt.Errorf("offset %d is beyond the end of the log: stored size %d", req.GetOffset(), len(stored)))
	}
	if end := req.GetOffset() + int64(len(req.GetData())); end > int64(len(stored)) {
		stored = append(stored, req.GetData()[int64(len(stored))-req.GetOffset():]...)
		f.logs[key] = stored
	}
	f.bump()
	return &pontusv1.AppendLogResponse{Size: int64(len(stored))}, nil
}

func (f *fakeCP) CompleteJob(_ context.Context, req *pontusv1.CompleteJobRequest) (*pontusv1.CompleteJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := jobKey{req.GetJobId(), req.GetAttempt()}
	if f.jobs[key] == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("no job %d attempt %d", key.id, key.attempt))
	}
	if f.stale[key] {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("attempt %d is stale", key.attempt))
	}
	if f.completeHook != nil {
		f.completeHook(f, req)
	}
	if n := int64(len(f.logs[key])); req.GetLogSize() != n {
		return nil, connect.NewError(connect.CodeOutOfRange,
			fmt.Errorf("log_size %d but the log is incomplete: stored size %d", req.GetLogSize(), n))
	}
	f.completed[key] = req
	f.bump()
	return &pontusv1.CompleteJobResponse{Build: &pontusv1.Build{Id: key.id, Status: req.GetStatus()}}, nil
}

// waitFor waits until cond holds, or fails the test after a deadline with
// the last state cond described.
func (f *fakeCP) waitFor(what string, cond func(f *fakeCP) (bool, string)) {
	f.t.Helper()
	deadline := time.NewTimer(cmp.Or(f.patience, 60*time.Second))
	defer deadline.Stop()
	for {
		f.mu.Lock()
		ok, state := cond(f)
		ch := f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-time.After(200 * time.Millisecond): // for conditions outside the fake
		case <-deadline.C:
			f.t.Fatalf("timed out waiting for %s; last state: %s", what, state)
		}
	}
}

// waitDone waits for the job's CompleteJob and returns it with the log.
func (f *fakeCP) waitDone(key jobKey) (*pontusv1.CompleteJobRequest, string) {
	f.t.Helper()
	var req *pontusv1.CompleteJobRequest
	var log []byte
	f.waitFor(fmt.Sprintf("job %d attempt %d to complete", key.id, key.attempt), func(f *fakeCP) (bool, string) {
		req, log = f.completed[key], slices.Clone(f.logs[key])
		return req != nil, fmt.Sprintf("not completed; log so far (%d bytes): %s", len(log), tail(log))
	})
	return req, string(log)
}

// waitLog waits until the job's log contains s.
func (f *fakeCP) waitLog(key jobKey, s string) {
	f.t.Helper()
	f.waitFor(fmt.Sprintf("log of job %d to contain %q", key.id, s), func(f *fakeCP) (bool, string) {
		log := f.logs[key]
		return bytes.Contains(log, []byte(s)), fmt.Sprintf("log (%d bytes): %s", len(log), tail(log))
	})
}

func (f *fakeCP) completion(key jobKey) *pontusv1.CompleteJobRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.completed[key]
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.ToValidUTF8(string(b), "?")
}
