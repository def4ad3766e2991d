package observerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"path"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/settings"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// Log attribute keys.
const (
	logRepo   = "repo"
	logBranch = "branch"
	logCommit = "commit"
	logErr    = "err"
)

const (
	// rpcTimeout bounds one call to the control plane.
	rpcTimeout = 30 * time.Second
	// maxReport is the most commits one ReportCommits call may carry.
	maxReport = 1000
	// backoffMin and backoffMax bound the retry delay after a failure.
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// pollJitter spreads the polls of many observers.
	pollJitter = 0.1
)

// Observer watches one repository and reports new commits of its branches
// to the control plane. Create it with New and start it with Run.
type Observer struct {
	cfg    Config
	logger *slog.Logger
	http   *http.Client
	client pontusv1connect.ObserverServiceClient
}

// New checks cfg and returns an observer for it. It does not touch the
// repository or the network; Run does.
func New(cfg Config, logger *slog.Logger) (*Observer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("observer config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Branches = slices.Clone(cfg.Branches)
	cfg.Labels = slices.Clone(cfg.Labels)
	dc := dial.Config{URL: string(cfg.ControlPlane), Token: cfg.Token, CAFile: cfg.CAFile}
	hc, err := dial.HTTPClient(dc)
	if err != nil {
		return nil, fmt.Errorf("observer: %w", err)
	}
	return &Observer{
		cfg:    cfg,
		logger: logger,
		http:   hc,
		client: pontusv1connect.NewObserverServiceClient(hc, dial.Base(dc.URL), dial.Options(dc)...),
	}, nil
}

// Run watches the repository and reports commits until ctx is done, and
// then returns nil. A control plane that is down, or a remote that cannot
// be fetched, is retried forever; only a repository that cannot be opened
// at all (not a git repository, an unusable data_dir) is an error.
func (o *Observer) Run(ctx context.Context) error {
	defer o.http.CloseIdleConnections()
	repo, err := o.open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	cloneURL := o.cfg.CloneURL
	if cloneURL == "" {
		cloneURL = repo.name
		if err := validate.CloneURL("clone_url", cloneURL); err != nil {
			return fmt.Errorf("observer: set clone_url: the repository cannot be used as one: %w", err)
		}
	}
	s := &session{
		o:        o,
		repo:     repo,
		cloneURL: cloneURL,
		logger:   o.logger.With(logRepo, repo.name),
		cursors:  make(map[string]string),
		tables:   make(map[string]settings.Table),
	}
	var wake chan struct{}
	if !repo.remote() {
		wake = make(chan struct{}, 1)
		w, err := newWatcher(repo, s.logger, wake)
		if err != nil {
			s.logger.Warn("cannot watch the repository; polling only", "poll_interval", o.cfg.PollInterval, logErr, err)
		} else {
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); w.run(wctx) }()
			defer func() { cancel(); <-done }()
		}
	}
	s.logger.Info("observing", "branches", o.cfg.Branches, "mode", o.cfg.Mode, "remote", repo.remote())
	loop(ctx, s.cycle, wake, s.next, dial.NewBackoff(backoffMin, backoffMax), s.logger)
	return nil
}

// Check fails if a local repository cannot be opened (it is not a git
// repository), so a daemon can refuse to start before it creates anything.
// A remote is not contacted: Run retries remotes.
func (o *Observer) Check(ctx context.Context) error {
	if isRemote(o.cfg.Repo) {
		return nil
	}
	_, err := openLocal(ctx, o.cfg.Repo)
	return err
}

func (o *Observer) open(ctx context.Context) (*repository, error) {
	if isRemote(o.cfg.Repo) {
		return openRemote(ctx, o.cfg.DataDir, o.cfg.Repo)
	}
	return openLocal(ctx, o.cfg.Repo)
}

// loop runs cycle until ctx is done. After a failure it retries with
// backoff (wake-ups do not cut the wait short: the retry re-reads
// everything anyway). After a success it waits for a wake-up or for the
// delay next returns.
func loop(ctx context.Context, cycle func(context.Context) error, wake <-chan struct{},
	next func() time.Duration, bo *dial.Backoff, logger *slog.Logger) {
	for {
		// A wake-up pending from before this cycle is covered by it.
		select {
		case <-wake:
		default:
		}
		err := cycle(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d := bo.Next()
			logger.Warn("report cycle failed; retrying", "in", d.Round(time.Millisecond), logErr, err)
			if !dial.Sleep(ctx, d) {
				return
			}
			continue
		}
		bo.Reset()
		t := time.NewTimer(next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// session is the state of one Run.
type session struct {
	o        *Observer
	repo     *repository
	cloneURL string
	logger   *slog.Logger

	// cursors is the control plane's cursor per watched branch as last
	// known: read with GetCursor, moved by successful reports. It is
	// dropped after any failure, so the control plane stays the truth.
	cursors map[string]string
	// lastFetch is when the remote was last fetched (remote only).
	lastFetch time.Time
	// remoteHead is the remote's HEAD branch, once known (remote only).
	remoteHead string
	// refused holds branches whose last report was refused.
	refused map[string]refusal
	// warned avoids repeating the same warning every poll.
	warned map[string]bool
	// tables caches the [build] tables of .pontus.toml files by blob id
	// (used by one goroutine at a time).
	tables map[string]settings.Table
}

// next is how long to wait for the next cycle when nothing wakes it.
func (s *session) next() time.Duration {
	d := dial.Jitter(s.o.cfg.PollInterval, pollJitter)
	if s.repo.remote() && !s.lastFetch.IsZero() {
		d = max(time.Until(s.lastFetch.Add(s.o.cfg.PollInterval)), minPollInterval)
	}
	return d
}

// cycle fetches (a remote, when due), reads the branches and reports what
// is new on each watched branch.
func (s *session) cycle(ctx context.Context) error {
	if s.repo.remote() && time.Since(s.lastFetch) >= s.o.cfg.PollInterval {
		err := s.repo.fetch(ctx)
		s.lastFetch = time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			// The mirror still holds what was fetched before; report that
			// and fetch again at the next poll.
			s.warn("fetch", "cannot fetch the remote repository; will retry", logErr, err)
		} else {
			s.unwarn("fetch")
		}
		if s.remoteHead == "" && len(s.o.cfg.Branches) == 0 {
			if b, err := s.repo.remoteHead(ctx); err != nil {
				s.warn("remote-head", "cannot read the remote HEAD; will retry", logErr, err)
			} else {
				s.remoteHead = b
				s.unwarn("remote-head")
			}
		}
	}
	refs, err := s.repo.refs(ctx)
	if err != nil {
		return err
	}
	watched := s.watched(refs)
	for b := range s.cursors {
		if _, ok := watched[b]; !ok {
			s.logger.Info("branch no longer watched", logBranch, b)
			delete(s.cursors, b)
		}
	}
	for b := range s.refused {
		if _, ok := watched[b]; !ok {
			delete(s.refused, b)
		}
	}
	for _, b := range slices.Sorted(maps.Keys(watched)) {
		head := watched[b]
		if r, ok := s.refused[b]; ok && r.head == head && time.Now().Before(r.until) {
			continue
		}
		delete(s.refused, b)
		err := s.branch(ctx, b, head)
		if err == nil {
			continue
		}
		var ce *connect.Error
		if ctx.Err() == nil && (!errors.As(err, &ce) || !dial.Retryable(err)) {
			// The control plane refused this branch (a bad token, a
			// branch or label it does not accept), or git failed on it
			// (a damaged ref): retrying at once cannot help, and must not
			// hold up the other branches. Try again when the branch
			// moves, or after a poll interval.
			msg := "control plane refused the report; will retry"
			if ce == nil {
				msg = "git failed on the branch; will retry"
			}
			s.logger.Error(msg, logBranch, b, logCommit, head, "in", s.o.cfg.PollInterval, logErr, err)
			if s.refused == nil {
				s.refused = make(map[string]refusal)
			}
			s.refused[b] = refusal{head: head, until: time.Now().Add(s.o.cfg.PollInterval)}
			delete(s.cursors, b)
			continue
		}
		// The control plane is unreachable: no use trying the other
		// branches now. Start again from the control plane's cursors.
		clear(s.cursors)
		return fmt.Errorf("branch %s: %w", b, err)
	}
	return nil
}

// refusal remembers a report the control plane refused.
type refusal struct {
	head  string
	until time.Time
}

// watched picks the watched branches from refs: those matching a
// configured pattern, or the current (remote) HEAD's branch.
func (s *session) watched(refs map[string]ref) map[string]string {
	out := make(map[string]string)
	if len(s.o.cfg.Branches) == 0 {
		name := ""
		if s.repo.remote() {
			name = s.remoteHead
		} else {
			for n, r := range refs {
				if r.head {
					name = n
				}
			}
		}
		if r, ok := refs[name]; ok && name != "" {
			out[name] = r.commit
			s.unwarn("no-head")
		} else {
			s.warn("no-head", "HEAD is not on a branch with commits yet; nothing to watch")
		}
		return out
	}
	for name, r := range refs {
		for _, p := range s.o.cfg.Branches {
			if ok, _ := path.Match(p, name); ok {
				out[name] = r.commit
				break
			}
		}
	}
	return out
}

// branch reports what is new on one branch whose head is head.
func (s *session) branch(ctx context.Context, branch, head string) error {
	logger := s.logger.With(logBranch, branch)
	if err := validate.Branch("branch", branch); err != nil {
		s.warn("branch:"+branch, "skipping a branch Pontus cannot name", logErr, err)
		return nil
	}
	if err := validate.CommitID("commit", head); err != nil {
		return fmt.Errorf("read head: %w", err)
	}
	cursor, known := s.cursors[branch]
	if known && cursor == head {
		return nil
	}
	if !known {
		var err error
		if cursor, err = s.getCursor(ctx, branch); err != nil {
			return err
		}
		s.cursors[branch] = cursor
		if cursor == head {
			return nil
		}
	}
	commits, err := s.newCommits(ctx, logger, cursor, head)
	if err != nil {
		return err
	}
	// In head mode the commits since the cursor that are not reported are
	// named, for culprit searches (read alongside the report's details).
	var skipped func() []string
	if s.o.cfg.Mode == ModeHead && s.o.cfg.Bisect && len(commits) == 1 && commits[0] == head && cursor != "" {
		skipped = func() []string {
			ids, err := s.skipped(ctx, cursor, head)
			if err != nil {
				logger.Warn("cannot list the commits before the head; reporting without them (no culprit search)", logErr, err)
			}
			return ids
		}
	}
	for len(commits) > 0 {
		n := min(len(commits), maxReport)
		if err := s.report(ctx, branch, commits[:n], skipped, cursor); err != nil {
			return err
		}
		last := commits[n-1]
		s.cursors[branch] = last
		logger.Info("reported commits", "count", n, logCommit, last)
		commits = commits[n:]
	}
	return nil
}

// skipped returns the commits between cursor and head, oldest first, that
// a report of head alone leaves unbuilt: head's first-parent line since
// cursor, when cursor is on it and they are at most maxReport.
func (s *session) skipped(ctx context.Context, cursor, head string) ([]string, error) {
	if err := validate.CommitID("cursor", cursor); err != nil {
		return nil, nil
	}
	ids, err := s.repo.firstParentsSince(ctx, cursor, head, maxReport+1)
	if err != nil || len(ids) < 2 {
		return nil, err
	}
	for _, id := range ids {
		if err := validate.CommitID("commit", id); err != nil {
			return nil, fmt.Errorf("list commits: %w", err)
		}
	}
	return ids[:len(ids)-1], nil
}

// newCommits returns what to report when a branch moved from cursor to
// head, oldest first.
func (s *session) newCommits(ctx context.Context, logger *slog.Logger, cursor, head string) ([]string, error) {
	if s.o.cfg.Mode == ModeHead || cursor == "" {
		return []string{head}, nil
	}
	if err := validate.CommitID("cursor", cursor); err != nil {
		logger.Warn("control plane returned a bad cursor; reporting the head only", logErr, err)
		return []string{head}, nil
	}
	ok, err := s.repo.hasCommit(ctx, cursor)
	if err != nil {
		return nil, err
	}
	if !ok {
		logger.Info("cursor unknown to the repository; reporting the head only", "cursor", cursor, logCommit, head)
		return []string{head}, nil
	}
	if ok, err = s.repo.isAncestor(ctx, cursor, head); err != nil {
		return nil, err
	} else if !ok {
		logger.Info("branch rewritten (force-push?); reporting the new head only", "cursor", cursor, logCommit, head)
		return []string{head}, nil
	}
	ids, truncated, err := s.repo.between(ctx, cursor, head, s.o.cfg.MaxBacklog)
	if err != nil {
		return nil, err
	}
	if truncated {
		logger.Warn("more new commits than max_backlog; reporting the newest", "max_backlog", s.o.cfg.MaxBacklog)
	}
	for _, id := range ids {
		if err := validate.CommitID("commit", id); err != nil {
			return nil, fmt.Errorf("list commits: %w", err)
		}
	}
	if len(ids) == 0 {
		ids = []string{head}
	}
	return ids, nil
}

func (s *session) getCursor(ctx context.Context, branch string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := s.o.client.GetCursor(ctx, &pontusv1.GetCursorRequest{Repo: s.repo.name, Branch: branch})
	if err != nil {
		return "", rpcError("get cursor", err)
	}
	return resp.GetCommit(), nil
}

// report reports commits of branch; skipped, if set, lists the commits
// before them (after the cursor, after) that are not reported. The three
// reads of the repository run at once: they are on the path from a push to
// its build.
func (s *session) report(ctx context.Context, branch string, commits []string, skipped func() []string, after string) error {
	obs := s.o.cfg.Settings()
	var (
		wg      sync.WaitGroup
		details []*pontusv1.CommitInfo
		derr    error
		own     map[string]*pontusv1.BuildSettings
		before  []string
	)
	wg.Go(func() { details, derr = s.repo.describe(ctx, commits) })
	if s.o.cfg.RepoSettings {
		wg.Go(func() { own = s.commitSettings(ctx, commits, obs) })
	}
	if skipped != nil {
		wg.Go(func() { before = skipped() })
	}
	wg.Wait()
	if derr != nil {
		// The builds matter more than their subjects: report without.
		s.warn("describe", "could not read commit subjects and authors; reporting the commits without them", logErr, derr)
	} else {
		s.unwarn("describe")
	}
	for _, c := range commits {
		if own[c] == nil {
			continue
		}
		i := slices.IndexFunc(details, func(d *pontusv1.CommitInfo) bool { return d.Id == c })
		if i < 0 {
			details = append(details, &pontusv1.CommitInfo{Id: c})
			i = len(details) - 1
		}
		details[i].Settings = own[c]
	}
	req := &pontusv1.ReportCommitsRequest{
		Repo:     s.repo.name,
		Branch:   branch,
		Commits:  commits,
		CloneUrl: s.cloneURL,
		Labels:   s.o.cfg.Labels,
		Details:  details,
		Settings: obs,
	}
	if len(before) > 0 {
		req.Skipped, req.SkippedAfter = before, after
		// Their trees let bisection builds take known verdicts.
		if more, err := s.repo.describe(ctx, before); err == nil {
			req.Details = append(req.Details, more...)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	_, err := s.o.client.ReportCommits(ctx, req)
	if err != nil {
		return rpcError("report commits", err)
	}
	return nil
}

// commitSettings returns the settings of each commit whose .pontus.toml
// lowers the observer's (obs). A .pontus.toml that cannot be read or is
// wrong is logged, and the commit built with obs.
func (s *session) commitSettings(ctx context.Context, commits []string, obs *pontusv1.BuildSettings) map[string]*pontusv1.BuildSettings {
	out := map[string]*pontusv1.BuildSettings{}
	for _, c := range commits {
		t, blob, err := s.repo.buildTable(ctx, c, s.tables)
		if err != nil {
			if ctx.Err() == nil {
				s.warn("pontus.toml:"+blob, "the commit's .pontus.toml is not usable; building it with the observer's settings",
					logCommit, c, logErr, err)
			}
			continue
		}
		if cs := t.Apply(obs); !proto.Equal(cs, obs) {
			out[c] = cs
		}
	}
	return out
}

// rpcError wraps a failed call to the control plane.
func rpcError(verb string, err error) error {
	return fmt.Errorf("%s: %w", verb, err)
}

func (s *session) warn(key, msg string, args ...any) {
	if s.warned == nil {
		s.warned = make(map[string]bool)
	}
	if s.warned[key] {
		return
	}
	s.warned[key] = true
	s.logger.Warn(msg, args...)
}

func (s *session) unwarn(key string) { delete(s.warned, key) }
