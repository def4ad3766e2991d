package web_test

import (
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
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/pontus-ci/pontus/controlplane/web"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// fakeBuilds is an in-memory BuildService. The test changes builds with put
// and appendLog; WatchBuilds and TailLog streams see those changes live.
type fakeBuilds struct {
	pontusv1connect.UnimplementedBuildServiceHandler

	mu       sync.Mutex
	builds   map[int64]*pontusv1.Build
	logs     map[int64][]byte
	runners  []*pontusv1.Runner
	changed  chan struct{} // closed and replaced on every change
	watchers map[chan *pontusv1.WatchBuildsResponse]*pontusv1.WatchBuildsRequest
	tailers  int
	triggers []*pontusv1.TriggerBuildRequest // TriggerBuild calls, in order
	cancels  []*pontusv1.CancelBuildRequest  // CancelBuild calls, in order
	listings int                             // ListRunners calls
	hold     chan struct{}                   // when set, TriggerBuild and CancelBuild wait for it to close
	err      error                           // when set, unary calls fail with it
	kick     chan struct{}                   // closed to end every open stream, as a network cut would
	stop     chan struct{}
	stopOnce sync.Once
}

func newFake() *fakeBuilds {
	return &fakeBuilds{
		builds:   map[int64]*pontusv1.Build{},
		logs:     map[int64][]byte{},
		changed:  make(chan struct{}),
		watchers: map[chan *pontusv1.WatchBuildsResponse]*pontusv1.WatchBuildsRequest{},
		stop:     make(chan struct{}),
		kick:     make(chan struct{}),
	}
}

// cutStreams ends every open WatchBuilds and TailLog stream with unavailable.
func (f *fakeBuilds) cutStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.kick)
	f.kick = make(chan struct{})
}

// putQuietly stores a build without telling the watchers, as if the change
// were dropped.
func (f *fakeBuilds) putQuietly(b *pontusv1.Build) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.builds[b.GetId()] = proto.CloneOf(b)
	f.notifyLocked()
}

// resync tells every watcher it missed changes.
func (f *fakeBuilds) resync() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.watchers {
		ch <- &pontusv1.WatchBuildsResponse{Resync: true}
	}
}

// newAttempt starts the build's next attempt after a lost runner: the log
// starts again, empty.
func (f *fakeBuilds) newAttempt(id int64, runner string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := proto.CloneOf(f.builds[id])
	if n := len(b.Attempts); n > 0 {
		b.Attempts[n-1].Status = pontusv1.BuildStatus_BUILD_STATUS_ERROR
		b.Attempts[n-1].Reason = "runner lost"
		b.Attempts[n-1].EndedAt = timestamppb.Now()
	}
	b.Attempt++
	b.RunnerName = runner
	b.Status = pontusv1.BuildStatus_BUILD_STATUS_RUNNING
	b.Attempts = append(b.Attempts, &pontusv1.Attempt{Number: b.Attempt, RunnerName: runner, Status: b.Status, StartedAt: timestamppb.Now()})
	f.builds[id] = b
	f.logs[id] = nil
	f.notifyLocked()
}

// shutdown ends every open stream with unavailable, as the control plane does.
func (f *fakeBuilds) shutdown() { f.stopOnce.Do(func() { close(f.stop) }) }

func (f *fakeBuilds) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// put stores a build (a copy) and tells the watchers.
func (f *fakeBuilds) put(b *pontusv1.Build) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.putLocked(b)
}

func (f *fakeBuilds) putLocked(b *pontusv1.Build) {
	b = proto.CloneOf(b)
	f.builds[b.GetId()] = b
	for ch, filter := range f.watchers {
		if (filter.GetBranch() != "" && filter.GetBranch() != b.GetBranch()) || (filter.GetRepo() != "" && filter.GetRepo() != b.GetRepo()) {
			continue
		}
		select {
		case ch <- &pontusv1.WatchBuildsResponse{Build: proto.CloneOf(b)}:
		default:
			// A slow watcher: tell it to resync instead of blocking.
			select {
			case ch <- &pontusv1.WatchBuildsResponse{Resync: true}:
			default:
			}
		}
	}
	f.notifyLocked()
}

// update changes a stored build and puts it again.
func (f *fakeBuilds) update(id int64, change func(b *pontusv1.Build)) {
	f.mu.Lock()
	b := proto.CloneOf(f.builds[id])
	f.mu.Unlock()
	change(b)
	f.put(b)
}

func (f *fakeBuilds) appendLog(id int64, s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs[id] = append(f.logs[id], s...)
	f.notifyLocked()
}

func (f *fakeBuilds) setRunners(r []*pontusv1.Runner) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runners = r
}

func (f *fakeBuilds) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeBuilds) counts() (watchers, tailers int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watchers), f.tailers
}

func (f *fakeBuilds) ListBuilds(_ context.Context, req *pontusv1.ListBuildsRequest) (*pontusv1.ListBuildsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []*pontusv1.Build
	for _, b := range f.builds {
		if (req.GetBranch() != "" && b.GetBranch() != req.GetBranch()) ||
			(req.GetRepo() != "" && b.GetRepo() != req.GetRepo()) ||
			(req.GetStatus() != 0 && b.GetStatus() != req.GetStatus()) ||
			(req.GetBeforeId() != 0 && b.GetId() >= req.GetBeforeId()) ||
			(req.GetSearch() != "" && !strings.Contains(b.GetSubject(), req.GetSearch())) {
			continue
		}
		out = append(out, proto.CloneOf(b))
	}
	slices.SortFunc(out, func(a, b *pontusv1.Build) int { return int(b.GetId() - a.GetId()) })
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 50
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return &pontusv1.ListBuildsResponse{Builds: out}, nil
}

func (f *fakeBuilds) GetBuild(_ context.Context, req *pontusv1.GetBuildRequest) (*pontusv1.GetBuildResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	b, ok := f.builds[req.GetBuildId()]
	if c := req.GetCommit(); c != "" { // the newest build of the commit a prefix starts
		for _, x := range f.builds {
			if strings.HasPrefix(x.GetCommit(), c) && (b == nil || x.GetId() > b.GetId()) {
				b, ok = x, true
			}
		}
	}
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no such build"))
	}
	return &pontusv1.GetBuildResponse{Build: proto.CloneOf(b)}, nil
}

func (f *fakeBuilds) ListRunners(context.Context, *pontusv1.ListRunnersRequest) (*pontusv1.ListRunnersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listings++
	if f.err != nil {
		return nil, f.err
	}
	out := make([]*pontusv1.Runner, len(f.runners))
	for i, r := range f.runners {
		out[i] = proto.CloneOf(r)
	}
	return &pontusv1.ListRunnersResponse{Runners: out}, nil
}

// holdActions makes TriggerBuild and CancelBuild wait until the returned
// function is called, so a test can see the page while a call is in flight.
func (f *fakeBuilds) holdActions() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.hold = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			f.hold = nil
			f.mu.Unlock()
			close(ch)
		})
	}
}

// wait blocks while actions are held.
func (f *fakeBuilds) wait(ctx context.Context) error {
	f.mu.Lock()
	hold := f.hold
	f.mu.Unlock()
	if hold == nil {
		return nil
	}
	select {
	case <-hold:
		return nil
	case <-ctx.Done():
		return connect.NewError(connect.CodeCanceled, ctx.Err())
	}
}

// calls returns copies of the TriggerBuild and CancelBuild requests seen and
// the number of ListRunners calls.
func (f *fakeBuilds) calls() (triggers []*pontusv1.TriggerBuildRequest, cancels []*pontusv1.CancelBuildRequest, listings int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.triggers {
		triggers = append(triggers, proto.CloneOf(r))
	}
	for _, r := range f.cancels {
		cancels = append(cancels, proto.CloneOf(r))
	}
	return triggers, cancels, f.listings
}

// TriggerBuild queues a new build of a known commit, as the control plane
// does: repository and branch default to those of the commit's newest build.
func (f *fakeBuilds) TriggerBuild(ctx context.Context, req *pontusv1.TriggerBuildRequest) (*pontusv1.TriggerBuildResponse, error) {
	f.mu.Lock()
	f.triggers = append(f.triggers, proto.CloneOf(req))
	f.mu.Unlock()
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	for _, err := range []error{
		validate.CommitID("commit", req.GetCommit()),
		validateIfSet(validate.Repo, "repo", req.GetRepo()),
		validateIfSet(validate.Branch, "branch", req.GetBranch()),
	} {
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var prev *pontusv1.Build
	var next int64 = 1
	for id, b := range f.builds {
		next = max(next, id+1)
		if b.GetCommit() == req.GetCommit() && (req.GetRepo() == "" || b.GetRepo() == req.GetRepo()) && (prev == nil || id > prev.GetId()) {
			prev = b
		}
	}
	repo, branch := req.GetRepo(), req.GetBranch()
	if prev != nil {
		repo, branch = cmp.Or(repo, prev.GetRepo()), cmp.Or(branch, prev.GetBranch())
	} else if repo == "" || branch == "" {
		return nil, connect.NewError(connect.CodeNotFound,
			fmt.Errorf("commit: no build of commit %s; give repo and branch to build it for the first time", req.GetCommit()))
	}
	b := &pontusv1.Build{
		Id: next, Repo: repo, Branch: branch, Commit: req.GetCommit(), Status: pontusv1.BuildStatus_BUILD_STATUS_QUEUED,
		CreatedAt: timestamppb.Now(), MaxAttempts: 3, Labels: prev.GetLabels(), Reason: "waiting for a runner",
	}
	f.putLocked(b)
	return &pontusv1.TriggerBuildResponse{Build: proto.CloneOf(b)}, nil
}

func validateIfSet(check func(field, s string) error, field, s string) error {
	if s == "" {
		return nil
	}
	return check(field, s)
}

// CancelBuild ends a queued build at once and asks a leased or running
// one's runner to stop, as the control plane does.
func (f *fakeBuilds) CancelBuild(ctx context.Context, req *pontusv1.CancelBuildRequest) (*pontusv1.CancelBuildResponse, error) {
	f.mu.Lock()
	f.cancels = append(f.cancels, proto.CloneOf(req))
	f.mu.Unlock()
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	b, ok := f.builds[req.GetBuildId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("build_id: no build %d", req.GetBuildId()))
	}
	b = proto.CloneOf(b)
	switch b.GetStatus() {
	case pontusv1.BuildStatus_BUILD_STATUS_QUEUED:
		b.Status, b.Reason, b.FinishedAt, b.ExitCode = pontusv1.BuildStatus_BUILD_STATUS_CANCELED, "canceled before it ran", timestamppb.Now(), -1
	case pontusv1.BuildStatus_BUILD_STATUS_LEASED, pontusv1.BuildStatus_BUILD_STATUS_RUNNING:
		b.CancelRequested = true
		b.Reason = "cancel requested; waiting for the runner to stop it"
	default:
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("build %d has already finished (%s)", b.GetId(), strings.ToLower(strings.TrimPrefix(b.GetStatus().String(), "BUILD_STATUS_"))))
	}
	f.putLocked(b)
	return &pontusv1.CancelBuildResponse{Build: proto.CloneOf(b)}, nil
}

func (f *fakeBuilds) WatchBuilds(ctx context.Context, req *pontusv1.WatchBuildsRequest, stream *connect.ServerStream[pontusv1.WatchBuildsResponse]) error {
	ch := make(chan *pontusv1.WatchBuildsResponse, 256)
	f.mu.Lock()
	f.watchers[ch] = req
	kick := f.kick
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.watchers, ch)
		f.mu.Unlock()
	}()
	if !req.GetChangesOnly() { // the snapshot, as the control plane sends it
		res, err := f.ListBuilds(ctx, &pontusv1.ListBuildsRequest{Repo: req.GetRepo(), Branch: req.GetBranch(), Limit: req.GetSnapshotLimit()})
		if err != nil {
			return err
		}
		for _, b := range slices.Backward(res.GetBuilds()) {
			if err := stream.Send(&pontusv1.WatchBuildsResponse{Build: b}); err != nil {
				return err
			}
		}
		if err := stream.Send(&pontusv1.WatchBuildsResponse{SnapshotDone: true}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.stop:
			return connect.NewError(connect.CodeUnavailable, errors.New("server shutting down"))
		case <-kick:
			return connect.NewError(connect.CodeUnavailable, errors.New("stream cut"))
		case m := <-ch:
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

func finished(s pontusv1.BuildStatus) bool {
	return s >= pontusv1.BuildStatus_BUILD_STATUS_PASSED
}

func (f *fakeBuilds) TailLog(ctx context.Context, req *pontusv1.TailLogRequest, stream *connect.ServerStream[pontusv1.TailLogResponse]) error {
	f.mu.Lock()
	f.tailers++
	_, ok := f.builds[req.GetBuildId()]
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.tailers--
		f.mu.Unlock()
	}()
	if !ok {
		return connect.NewError(connect.CodeNotFound, errors.New("no such build"))
	}
	f.mu.Lock()
	attempt := f.builds[req.GetBuildId()].GetAttempt()
	kick := f.kick
	f.mu.Unlock()
	offset := req.GetOffset()
	for {
		f.mu.Lock()
		b := f.builds[req.GetBuildId()]
		log := f.logs[req.GetBuildId()]
		changed := f.changed
		f.mu.Unlock()
		if b.GetAttempt() != attempt {
			attempt, offset = b.GetAttempt(), 0
			if err := stream.Send(&pontusv1.TailLogResponse{Reset_: true, Attempt: attempt, Status: b.GetStatus()}); err != nil {
				return err
			}
		}
		if offset < int64(len(log)) {
			if err := stream.Send(&pontusv1.TailLogResponse{
				Offset: offset, Data: log[offset:], Attempt: attempt, Status: b.GetStatus(),
			}); err != nil {
				return err
			}
			offset = int64(len(log))
		}
		if finished(b.GetStatus()) || !req.GetFollow() {
			return stream.Send(&pontusv1.TailLogResponse{Offset: offset, Eof: true, Attempt: attempt, Status: b.GetStatus()})
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.stop:
			return connect.NewError(connect.CodeUnavailable, errors.New("server shutting down"))
		case <-kick:
			return connect.NewError(connect.CodeUnavailable, errors.New("stream cut"))
		case <-changed:
		}
	}
}

// server is a real HTTP server on 127.0.0.1 serving the Connect API and the
// dashboard on one mux, as the control plane does.
type server struct {
	fake *fakeBuilds
	url  string
}

func startServer(t testing.TB, opts web.Options) *server {
	t.Helper()
	fake := newFake()
	mux := http.NewServeMux()
	mux.Handle(pontusv1connect.NewBuildServiceHandler(fake))
	mux.Handle("/", web.New(fake, opts))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(fake.shutdown)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shut down test server: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return &server{fake: fake, url: "http://" + ln.Addr().String()}
}

// Fixtures.

var t0 = time.Now().Add(-time.Hour).Truncate(time.Second)

func commitN(n int) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 40)
	for i := range b {
		b[i] = hex[(n*7+i*3)%16]
	}
	return string(b)
}

func newBuild(id int64, branch string, status pontusv1.BuildStatus) *pontusv1.Build {
	b := &pontusv1.Build{
		Id:          id,
		Repo:        "/srv/git/demo.git",
		Branch:      branch,
		Commit:      commitN(int(id)),
		Status:      status,
		CreatedAt:   timestamppb.New(t0.Add(time.Duration(id) * time.Minute)),
		MaxAttempts: 3,
	}
	if status != pontusv1.BuildStatus_BUILD_STATUS_QUEUED {
		b.Attempt = 1
		b.RunnerId = "r-1"
		b.RunnerName = "runner-one"
		b.StartedAt = timestamppb.New(t0.Add(time.Duration(id)*time.Minute + time.Second))
	}
	if finished(status) {
		b.Duration = durationpb.New(1500 * time.Millisecond)
		b.FinishedAt = timestamppb.New(b.StartedAt.AsTime().Add(1500 * time.Millisecond))
	}
	return b
}
