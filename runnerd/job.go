package runnerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/testreport"
	"github.com/pontus-ci/pontus/internal/testrun"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Bounds on what a result carries (the full output is in the log).
const (
	maxReason      = 2000
	maxTestName    = 1024
	maxTestText    = 32 << 10 // per test case message or output
	maxTestsOutput = 1 << 20  // all test cases' messages and outputs
	maxTests       = 100000
	maxTestsBytes  = 4 << 20 // the whole encoded list
)

// runJob runs one job from acquisition to report. It returns when the job
// is reported, found stale or lost, or cannot be reported before the
// shutdown grace ends; its checkout is being removed by then (Run waits for
// that before it returns).
func (r *Runner) runJob(ctx context.Context, job *pontusv1.Job) {
	start := time.Now()
	key := jobKey{job.GetJobId(), job.GetAttempt()}
	log := r.logger.With(keyJob, key.id, keyAttempt, key.attempt, keyCommit, job.GetCommit())
	log.Info("job acquired", "repo", job.GetRepo(), "branch", job.GetBranch())

	// The job's own context ends when the control plane cancels it, its
	// lease is lost, its attempt turns out stale, or the runner stops.
	jobCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	defer context.AfterFunc(ctx, func() { cancel(errShutdown) })()
	r.hold(key, cancel)
	defer r.release(key)

	// Reporting outlives a shutdown by a little, so that canceled jobs are
	// still reported when the control plane answers quickly.
	rctx, rcancel := graceContext(ctx, r.cfg.KillGrace+reportGrace)
	defer rcancel()

	stream := newLogStream(r.client.AppendLog, key, int64(r.cfg.OutputLimitMiB)<<20, log, func(err error) { cancel(err) })
	sctx, scancel := context.WithCancel(rctx)
	var sender sync.WaitGroup
	sender.Go(func() { stream.Run(sctx) })
	defer func() { scancel(); sender.Wait() }()

	res, cleanup := r.execute(jobCtx, job, stream)
	// The checkout goes once the job is reported (or dropped), in the
	// background, so the slot can ask for its next job at once.
	defer r.cleanups.Go(cleanup)

	if cause := context.Cause(jobCtx); errors.Is(cause, errLost) || errors.Is(cause, errStale) || errors.Is(cause, errRejected) {
		log.Info("job stopped; not reporting it", "why", cause)
		return
	}
	if errors.Is(context.Cause(jobCtx), errShutdown) {
		// Not a result of the build: leave it unreported, so its lease
		// runs out and the control plane runs it on another runner.
		log.Info("job stopped by the runner's shutdown; it will run again elsewhere")
		return
	}
	if res.Status == testrun.Canceled && jobCtx.Err() != nil {
		res.Reason = causeText(jobCtx)
	}
	stream.Printf("%s", summary(res, time.Since(start)))

	tests := res.Tests
	if tests == nil {
		tests = testreport.Parse(stream.OutputBytes())
	}
	req := &pontusv1.CompleteJobRequest{
		JobId:              key.id,
		Attempt:            key.attempt,
		Status:             buildStatus(res.Status),
		Reason:             truncate(res.Reason, maxReason),
		ExitCode:           int32(res.ExitCode),
		Tests:              trimTests(tests),
		OutputDroppedBytes: stream.Dropped(),
		Duration:           durationpb.New(time.Since(start)),
	}
	r.complete(rctx, stream, req, log)
}

// execute validates the job, checks it out and runs its tests. The returned
// cleanup removes the checkout.
func (r *Runner) execute(ctx context.Context, job *pontusv1.Job, stream *logStream) (testrun.Result, func()) {
	nop := func() {}
	cloneURL := job.GetCloneUrl()
	if cloneURL == "" {
		cloneURL = job.GetRepo()
	}
	runnerID := ""
	if s := r.session(); s != nil {
		runnerID = s.id
	}
	err := checkJob(job, cloneURL)
	if err == nil {
		var checked string
		cloneURL, checked, err = normalizeCloneURL(cloneURL)
		if err == nil && !allowedRepository(checked, r.cfg.AllowedRepositories) {
			err = fmt.Errorf("repository %s is not in this runner's allowed_repositories", checked)
		}
	}
	if err != nil {
		stream.Printf("[pontus: runner %s (%s), job %d attempt %d]", r.cfg.Name, runnerID, job.GetJobId(), job.GetAttempt())
		return errored("invalid job: %v", err), nop
	}
	stream.Printf("[pontus: runner %s (%s), job %d attempt %d: %s branch %s commit %s]",
		r.cfg.Name, runnerID, job.GetJobId(), job.GetAttempt(), job.GetRepo(), job.GetBranch(), job.GetCommit())

	began := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, r.cfg.Timeout)
	dir, did, err := r.repos.checkout(cctx, cloneURL, job.GetCommit(), fmt.Sprintf("%d-%d", job.GetJobId(), job.GetAttempt()))
	timedOut := errors.Is(cctx.Err(), context.DeadlineExceeded)
	ccancel()
	switch {
	case err != nil && ctx.Err() != nil:
		return testrun.Result{Status: testrun.Canceled, ExitCode: -1, Reason: causeText(ctx)}, nop
	case err != nil && timedOut:
		return errored("checkout timed out after %v", r.cfg.Timeout), nop
	case err != nil:
		// What git said, which the summary line puts in the log too.
		return errored("%s", redact(err.Error(), cloneURL)), nop
	}
	cleanup := func() { r.repos.remove(cloneURL, dir, did == "fetched") }

	steps, why := r.planSteps(ctx, dir)
	if why != "" {
		stream.Printf("[pontus: checked out in %v (%s)]", roundDuration(time.Since(began)), did)
		return errored("%s", why), cleanup
	}
	if job.GetShardCount() > 1 {
		var note string
		steps, note = shardSteps(job, dir, steps)
		stream.Printf("%s", note)
		if len(steps) == 0 {
			return testrun.Result{Status: testrun.Passed, Tests: []*pontusv1.TestCase{}}, cleanup
		}
	}
	run := make([]string, len(steps))
	for i, st := range steps {
		run[i] = st.describe()
	}
	stream.Printf("[pontus: checked out in %v (%s); running: %s]", roundDuration(time.Since(began)), did, strings.Join(run, "; then "))
	return r.runSteps(ctx, job, dir, steps, stream), cleanup
}

// normalizeCloneURL returns the clone URL git is given (fetch) and the
// form the allow-list is checked against (checked), which names what git
// fetches: a path is cleaned; a file:// URL has its percent-escapes decoded
// (git decodes them) and its path cleaned, and git is given that decoded
// form; a network URL's path is decoded as its server would. A URL whose
// decoded path has "." or ".." elements, or a file:// URL that still holds
// '%' once decoded or names a host, is refused.
func normalizeCloneURL(raw string) (fetch, checked string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("clone_url: clone URL %q %s", raw, why)
	}
	dotted := func(p string) bool {
		for _, e := range strings.Split(p, "/") {
			if e == ".." || e == "." {
				return true
			}
		}
		return false
	}
	switch {
	case strings.HasPrefix(raw, "/"):
		return path.Clean(raw), path.Clean(raw), nil
	case strings.HasPrefix(raw, "file://"):
		u, err := url.Parse(raw)
		if err != nil {
			return bad("cannot be parsed")
		}
		if u.Host != "" && u.Host != "localhost" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return bad("must be file:///path")
		}
		if dotted(u.Path) {
			return bad("has a '.' or '..' path element once decoded")
		}
		if strings.Contains(u.Path, "%") || strings.ContainsFunc(u.Path, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return bad("holds '%' or a control character once decoded")
		}
		u2 := "file://" + path.Clean(u.Path)
		return u2, u2, nil
	case strings.Contains(raw, "://"):
		u, err := url.Parse(raw)
		if err != nil {
			return bad("cannot be parsed")
		}
		if dotted(u.Path) {
			return bad("has a '.' or '..' path element once decoded")
		}
		checked := u.Scheme + "://"
		if u.User != nil {
			checked += u.User.Username() + "@"
		}
		return raw, checked + u.Host + u.Path, nil
	}
	return raw, raw, nil
}

// allowedRepository reports whether the runner may fetch from cloneURL: any
// URL when patterns is empty, else one matching a pattern (path.Match
// syntax, where "*" stops at "/"; a trailing "/**" matches everything below).
func allowedRepository(cloneURL string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "/**"); ok && strings.HasPrefix(cloneURL, prefix+"/") {
			return true
		}
		if ok, _ := path.Match(p, cloneURL); ok {
			return true
		}
	}
	return false
}

// checkJob validates what of a job reaches git, a path or the environment.
func checkJob(job *pontusv1.Job, cloneURL string) error {
	if job.GetJobId() <= 0 || job.GetAttempt() <= 0 {
		return fmt.Errorf("job id %d attempt %d: both must be positive", job.GetJobId(), job.GetAttempt())
	}
	if n, i := job.GetShardCount(), job.GetShardIndex(); n < 0 || n > 1000 || i < 0 || (n > 1 && i >= n) || (n <= 1 && i != 0) {
		return fmt.Errorf("shard %d of %d: not a shard of the build", i, n)
	}
	if err := validate.CommitID("commit", job.GetCommit()); err != nil {
		return err
	}
	if err := validate.CloneURL("clone_url", cloneURL); err != nil {
		return err
	}
	if job.GetRepo() != "" {
		if err := validate.Repo("repo", job.GetRepo()); err != nil {
			return err
		}
	}
	if job.GetBranch() != "" {
		if err := validate.Branch("branch", job.GetBranch()); err != nil {
			return err
		}
	}
	return nil
}

// complete reports the job with CompleteJob, sending whatever log the
// control plane lacks first. It retries until the report is taken, the
// attempt is stale, or ctx ends.
func (r *Runner) complete(ctx context.Context, stream *logStream, req *pontusv1.CompleteJobRequest, log *slog.Logger) {
	bo := dial.NewBackoff(backoffMin, backoffMax)
	failures, rejections, ranges := 0, 0, 0
	for {
		if err := stream.Flush(ctx); err != nil {
			if errors.Is(err, errStale) || errors.Is(err, errRejected) {
				log.Info("job not reported", "status", req.Status, "why", err)
			} else {
				log.Warn("gave up reporting the job: control plane unreachable", "status", req.Status, "err", err)
			}
			return
		}
		req.LogSize = stream.Size()
		callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
		_, err := r.client.CompleteJob(callCtx, req)
		cancel()
		if err == nil {
			log.Info("job reported", "status", req.Status, "reason", req.Reason, "exit_code", req.ExitCode,
				"tests", len(req.Tests), "log_size", req.LogSize, "duration", req.Duration.AsDuration())
			return
		}
		if ctx.Err() != nil {
			log.Warn("gave up reporting the job: control plane unreachable", "status", req.Status, "err", err)
			return
		}
		switch code := connect.CodeOf(err); {
		case code == connect.CodeFailedPrecondition || code == connect.CodeNotFound:
			log.Info("attempt is stale; result dropped", "status", req.Status, "err", err)
			return
		case code == connect.CodeInvalidArgument && len(req.Tests) > 0:
			// The outcome matters more than the per-test details.
			log.Warn("control plane refused the result; sending it again without per-test results", "err", err)
			req.Tests = nil
		case code == connect.CodeOutOfRange:
			n, ok := storedSize(err)
			log.Info("control plane lacks part of the log; resending it", "stored", n, "parsed", ok, "log_size", req.LogSize)
			stream.Rewind(n)
			if ranges++; ranges > 2 {
				dial.Sleep(ctx, bo.Next())
			}
		case !dial.Retryable(err):
			if rejections++; rejections >= maxRejections {
				log.Error("control plane keeps rejecting the result; giving up", "status", req.Status, "err", err)
				return
			}
			dial.Sleep(ctx, bo.Next())
		default:
			if failures++; failures == 1 {
				log.Warn("report failed; retrying with backoff", "err", err)
			} else {
				log.Debug("report failed", "err", err, "failures", failures)
			}
			dial.Sleep(ctx, bo.Next())
		}
	}
}

func buildStatus(s testrun.Status) pontusv1.BuildStatus {
	switch s {
	case testrun.Passed:
		return pontusv1.BuildStatus_BUILD_STATUS_PASSED
	case testrun.Failed:
		return pontusv1.BuildStatus_BUILD_STATUS_FAILED
	case testrun.TimedOut:
		return pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT
	case testrun.Canceled:
		return pontusv1.BuildStatus_BUILD_STATUS_CANCELED
	default:
		return pontusv1.BuildStatus_BUILD_STATUS_ERROR
	}
}

// summary is the log's last line.
func summary(res testrun.Result, took time.Duration) string {
	took = roundDuration(took)
	switch res.Status {
	case testrun.Passed:
		return fmt.Sprintf("[pontus: passed in %v]", took)
	case testrun.Failed:
		return fmt.Sprintf("[pontus: failed with exit code %d in %v]", res.ExitCode, took)
	case testrun.TimedOut:
		return fmt.Sprintf("[pontus: %s]", res.Reason)
	}
	return fmt.Sprintf("[pontus: %s: %s]", res.Status, res.Reason)
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(10 * time.Millisecond)
}

// graceContext returns a context that ends grace after parent ends, or when
// its cancel is called.
func graceContext(parent context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() {
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(ctx, func() { t.Stop() })
	})
	return ctx, func() { stop(); cancel() }
}

// redact removes the user information (which may be a token) of rawURL
// wherever it appears in msg.
func redact(msg, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return msg
	}
	u.User = url.User("***")
	return strings.ReplaceAll(msg, rawURL, u.String())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// trimTests bounds the per-test results so that a huge or chatty suite
// cannot make CompleteJob too big for the control plane (which takes at most
// 100000 test cases in a message of at most 8 MiB): names are cut at
// maxTestName, each message and output at maxTestText, outputs are left out
// once maxTestsOutput is spent, and test cases beyond maxTests or
// maxTestsBytes are left out, failures kept first. Unnamed cases are dropped.
func trimTests(tests []*pontusv1.TestCase) []*pontusv1.TestCase {
	tests = slices.DeleteFunc(tests, func(tc *pontusv1.TestCase) bool { return tc == nil || tc.GetName() == "" })
	budget := maxTestsOutput
	for _, tc := range tests {
		tc.Name = truncate(tc.Name, maxTestName)
		tc.Suite = truncate(tc.Suite, maxTestName)
		tc.Message = truncate(tc.Message, maxTestText)
		tc.Output = truncate(tc.Output, maxTestText)
		if n := len(tc.Message) + len(tc.Output); n <= budget {
			budget -= n
		} else {
			tc.Output = ""
			tc.Message = truncate(tc.Message, max(budget, 0))
			budget -= len(tc.Message)
		}
	}
	// Keep failures (and errors, skips) before passes when something must go.
	keep := make([]bool, len(tests))
	n, size := 0, 0
	for _, pass := range []bool{false, true} {
		for i, tc := range tests {
			if (tc.GetOutcome() == pontusv1.TestOutcome_TEST_OUTCOME_PASSED) != pass {
				continue
			}
			s := proto.Size(tc) + 8
			if n >= maxTests || size+s > maxTestsBytes {
				continue
			}
			keep[i] = true
			n++
			size += s
		}
	}
	out := tests[:0]
	for i, tc := range tests {
		if keep[i] {
			out = append(out, tc)
		}
	}
	return out
}
