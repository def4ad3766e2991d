package bench

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// jobCallTimeout bounds AppendLog and CompleteJob of a simulated job.
const jobCallTimeout = 30 * time.Second

// pollSlack is added to the poll timeout for AcquireJob's client deadline,
// as runnerd does.
const pollSlack = 5 * time.Second

// conn is one HTTP/2 connection to the control plane (an http.Client with
// its own transport) and the Connect clients over it.
type conn struct {
	hc       *http.Client
	runner   pontusv1connect.RunnerServiceClient
	observer pontusv1connect.ObserverServiceClient
}

func newConn(url, runnerToken, observerToken string) (*conn, error) {
	hc, err := dial.HTTPClient(dial.Config{URL: url})
	if err != nil {
		return nil, err
	}
	return &conn{
		hc:       hc,
		runner:   pontusv1connect.NewRunnerServiceClient(hc, dial.Base(url), dial.Options(dial.Config{Token: runnerToken})...),
		observer: pontusv1connect.NewObserverServiceClient(hc, dial.Base(url), dial.Options(dial.Config{Token: observerToken})...),
	}, nil
}

func (c *conn) close() { c.hc.CloseIdleConnections() }

// simRunner is a simulated runner: it registers and takes jobs like runnerd
// but runs nothing — each job is one AppendLog chunk and CompleteJob PASSED.
type simRunner struct {
	id     string
	client pontusv1connect.RunnerServiceClient
	poll   time.Duration // the server's poll timeout
}

func register(ctx context.Context, client pontusv1connect.RunnerServiceClient, name string) (*simRunner, error) {
	resp, err := client.Register(ctx, &pontusv1.RegisterRequest{Name: name, Capacity: 1, Version: "bench"})
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	poll := resp.GetPollTimeout().AsDuration()
	if poll <= 0 {
		poll = 30 * time.Second
	}
	return &simRunner{id: resp.GetRunnerId(), client: client, poll: poll}, nil
}

// acquire calls AcquireJob once. wait 0 means the server's poll timeout.
// A nil job with a nil error means the poll ended empty or ctx ended.
func (s *simRunner) acquire(ctx context.Context, wait time.Duration) (*pontusv1.Job, error) {
	req := &pontusv1.AcquireJobRequest{RunnerId: s.id}
	limit := s.poll
	if wait > 0 {
		req.Wait = durationpb.New(wait)
		limit = wait
	}
	callCtx, cancel := context.WithTimeout(ctx, limit+pollSlack)
	defer cancel()
	resp, err := s.client.AcquireJob(callCtx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("AcquireJob: %w", err)
	}
	return resp.GetJob(), nil
}

// jobLog is what every simulated job logs.
var jobLog = []byte("bench: no-op job\n")

// finish runs the no-op job: one AppendLog chunk, then CompleteJob PASSED,
// and returns how long each call took. It is not canceled with the bench's
// phase: a job taken is a job finished.
func (s *simRunner) finish(ctx context.Context, job *pontusv1.Job, took time.Duration) (appendTook, completeTook time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jobCallTimeout)
	defer cancel()
	start := time.Now()
	if _, err := s.client.AppendLog(ctx, &pontusv1.AppendLogRequest{
		JobId: job.GetJobId(), Attempt: job.GetAttempt(), Offset: 0, Data: jobLog,
	}); err != nil {
		return 0, 0, fmt.Errorf("AppendLog job %d: %w", job.GetJobId(), err)
	}
	mid := time.Now()
	if _, err := s.client.CompleteJob(ctx, &pontusv1.CompleteJobRequest{
		JobId: job.GetJobId(), Attempt: job.GetAttempt(), Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED,
		LogSize: int64(len(jobLog)), Duration: durationpb.New(took),
	}); err != nil {
		return 0, 0, fmt.Errorf("CompleteJob job %d: %w", job.GetJobId(), err)
	}
	return mid.Sub(start), time.Since(mid), nil
}

// firstError keeps the first error of many goroutines and cancels their
// context when it arrives.
type firstError struct {
	mu     sync.Mutex
	err    error
	cancel context.CancelFunc
}

func (f *firstError) set(err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	if f.err == nil {
		f.err = err
		if f.cancel != nil {
			f.cancel()
		}
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// commitIDs makes valid, unique 40-hex commit ids: sha1 of a random run
// nonce and a counter, so runs against the same control plane never
// collide (ReportCommits is idempotent per commit).
type commitIDs struct {
	nonce [8]byte
	mu    sync.Mutex
	n     int
}

func newCommitIDs() *commitIDs {
	c := &commitIDs{}
	_, _ = rand.Read(c.nonce[:])
	return c
}

func (c *commitIDs) next() string {
	c.mu.Lock()
	c.n++
	n := c.n
	c.mu.Unlock()
	h := sha1.Sum(fmt.Appendf(append([]byte(nil), c.nonce[:]...), "-%d", n))
	return hex.EncodeToString(h[:])
}

// registerAll registers n simulated runners, at most 32 at a time, runner i
// over conns[i % len(conns)].
func registerAll(ctx context.Context, conns []*conn, n int, prefix string) ([]*simRunner, error) {
	runners := make([]*simRunner, n)
	sem := make(chan struct{}, 32)
	fe := &firstError{}
	var wg sync.WaitGroup
	for i := range runners {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		if fe.get() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r, err := register(ctx, conns[i%len(conns)].runner, fmt.Sprintf("%s-%d", prefix, i+1))
			fe.set(err)
			runners[i] = r
		})
	}
	wg.Wait()
	if err := fe.get(); err != nil {
		return nil, err
	}
	return runners, nil
}

// isCanceled reports whether err is a cancellation the bench caused.
func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || connect.CodeOf(err) == connect.CodeCanceled
}
