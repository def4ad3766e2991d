package controlplane

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pontus-ci/pontus/controlplane/store"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Culprit finding. A build that FAILED and carries skipped commits (an
// observer in head mode reported its commit alone after a burst of
// pushes: Build.skipped, oldest first, after Build.skipped_after) starts a
// search over the line [skipped_after, skipped…, its commit]: the newest
// commit known to pass before the first known to fail is narrowed by
// building the middle commit, one build at a time, until they are
// neighbours — the failing one is the culprit, written into the failed
// build (Build.culprit) and its result files. About log₂(n) builds, each an
// ordinary build with bisect_of set, queued behind every other build
// (queue.go). Verdicts already known (any build of those commits, of any
// branch) are used and not built again.
//
// The search runs on one goroutine (bisectLoop), woken whenever a build of
// a commit on a search's line finishes. Its state is the store's: the
// failed build says "searching …" from the moment it fails, and the
// bisection builds carry bisect_of, so a restarted control plane resumes
// the searches it finds (loadSearches). A search stops, naming why, when
// the line's first commit did not pass (the branch was already broken) or
// a bisection build ended without a verdict (error, timeout, cancel);
// CancelBuild of the failed build cancels its search.

// searchingPrefix starts Build.bisection while a search is under way.
const searchingPrefix = "searching "

// maxSearchesResumed is how many of the newest failed builds a start looks
// at for searches under way (besides those live bisection builds name).
const maxSearchesResumed = 200

// search is one culprit search.
type search struct {
	failed *pontusv1.Build // the failed build, as last written
	line   []string        // skipped_after, skipped…, the failed commit
	on     map[string]bool // the commits of line
	// seen holds the newest finished build of each commit of line seen
	// since the search began (the store may not have it yet).
	seen map[string]*pontusv1.Build
}

func newSearch(f *pontusv1.Build) *search {
	f = proto.Clone(f).(*pontusv1.Build)
	s := &search{failed: f, on: map[string]bool{}, seen: map[string]*pontusv1.Build{}}
	s.line = append(append([]string{f.SkippedAfter}, f.Skipped...), f.Commit)
	for _, c := range s.line {
		s.on[c] = true
	}
	s.seen[f.Commit] = verdictOf(f)
	return s
}

// verdictOf keeps what a search needs of a finished build.
func verdictOf(b *pontusv1.Build) *pontusv1.Build {
	return &pontusv1.Build{Id: b.Id, Commit: b.Commit, Status: b.Status, BisectOf: b.BisectOf}
}

// finishedLocked is called for every build that reaches a final status,
// before it is persisted: a failed build with skipped commits starts a
// search (and says so), and the searches whose line holds the commit are
// woken.
func (d *dispatcher) finishedLocked(b *pontusv1.Build) {
	if b.BisectOf == 0 && b.Status == pontusv1.BuildStatus_BUILD_STATUS_FAILED && len(b.Skipped) > 0 &&
		b.SkippedAfter != "" && b.GetSettings().GetBisect() && b.Culprit == "" && d.searches[b.Id] == nil {
		b.Bisection = fmt.Sprintf("%s%d untested commits for the first failing one", searchingPrefix, len(b.Skipped))
		d.searches[b.Id] = newSearch(b)
	}
	for id, s := range d.searches {
		if s.failed.Repo != b.Repo || !s.on[b.Commit] {
			continue
		}
		if prev := s.seen[b.Commit]; prev == nil || prev.Id <= b.Id {
			s.seen[b.Commit] = verdictOf(b)
		}
		d.bisectDue[id] = true
	}
	if len(d.bisectDue) > 0 {
		select {
		case d.bisectWake <- struct{}{}:
		default:
		}
	}
}

// loadSearches finds the searches under way when the control plane
// stopped: failed builds that say "searching", and those that live
// bisection builds name.
func (d *dispatcher) loadSearches(ctx context.Context) error {
	ids := map[int64]bool{}
	d.mu.Lock()
	for _, lb := range d.builds {
		if lb.b.BisectOf != 0 {
			ids[lb.b.BisectOf] = true
		}
	}
	d.mu.Unlock()
	failed, err := d.st.ListBuilds(ctx, store.Query{Status: pontusv1.BuildStatus_BUILD_STATUS_FAILED, Limit: maxSearchesResumed})
	if err != nil {
		return err
	}
	for _, b := range failed {
		if strings.HasPrefix(b.Bisection, searchingPrefix) && b.Culprit == "" {
			ids[b.Id] = true
		}
	}
	for id := range ids {
		f, err := d.st.GetBuild(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if f.Status != pontusv1.BuildStatus_BUILD_STATUS_FAILED || f.Culprit != "" || len(f.Skipped) == 0 {
			continue
		}
		d.mu.Lock()
		d.searches[id] = newSearch(f)
		d.bisectDue[id] = true
		d.mu.Unlock()
	}
	if len(ids) > 0 {
		d.log.Info("culprit searches resumed", "count", len(ids))
	}
	return nil
}

// bisectLoop runs due search steps until ctx ends.
func (d *dispatcher) bisectLoop(ctx context.Context) {
	for {
		d.mu.Lock()
		var id int64
		for id = range d.bisectDue {
			break
		}
		delete(d.bisectDue, id)
		d.mu.Unlock()
		if id == 0 {
			select {
			case <-ctx.Done():
				return
			case <-d.bisectWake:
			}
			continue
		}
		if err := d.bisectStep(ctx, id); err != nil {
			if ctx.Err() != nil {
				return
			}
			d.log.Error("culprit search; retrying in 5s", "build", id, "err", err)
			time.AfterFunc(5*time.Second, func() {
				d.mu.Lock()
				d.bisectDue[id] = true
				d.mu.Unlock()
				select {
				case d.bisectWake <- struct{}{}:
				default:
				}
			})
		}
	}
}

func isPassFail(b *pontusv1.Build) bool {
	return b != nil && (b.Status == pontusv1.BuildStatus_BUILD_STATUS_PASSED || b.Status == pontusv1.BuildStatus_BUILD_STATUS_FAILED)
}

// bisectStep moves search id one step: it names the culprit, builds the
// next commit (or takes the verdict of a build of its tree), waits (a
// build of the next commit is under way), or stops.
func (d *dispatcher) bisectStep(ctx context.Context, id int64) error {
	d.mu.Lock()
	s := d.searches[id]
	if s == nil {
		d.mu.Unlock()
		return nil
	}
	f, line, seen := s.failed, s.line, maps.Clone(s.seen)
	d.mu.Unlock()

	// The newest finished build of each commit: seen since the search
	// began, else the store's.
	known := make([]*pontusv1.Build, len(line))
	for i, c := range line {
		if b := seen[c]; b != nil {
			known[i] = b
			continue
		}
		b, err := d.st.LatestBuild(ctx, f.Repo, c)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if store.IsTerminal(b.Status) {
			known[i] = verdictOf(b)
		}
	}
	culprit, next, stop := bisectPlan(line, known, id)
	var nb, from *pontusv1.Build
	if next >= 0 {
		nb = &pontusv1.Build{Repo: f.Repo, Branch: f.Branch, Commit: line[next], CloneUrl: f.CloneUrl, Labels: f.Labels,
			Settings: proto.Clone(f.Settings).(*pontusv1.BuildSettings), BisectOf: id}
		for _, info := range f.SkippedDetails {
			if info.Id == nb.Commit {
				nb.Subject, nb.Author, nb.AuthorEmail = info.Subject, info.Author, info.AuthorEmail
				nb.CommittedAt, nb.Tree = info.CommittedAt, info.Tree
			}
		}
		var err error
		if from, err = d.reusable(ctx, nb); err != nil {
			return err
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.searches[id] != s {
		return nil // canceled meanwhile
	}
	switch {
	case stop != "":
		d.endSearchLocked(s, "", stop)
		return nil
	case culprit != "":
		builds := 0
		for _, b := range known {
			if b != nil && b.BisectOf == id {
				builds++
			}
		}
		found := "found from earlier builds"
		if builds > 0 {
			found = fmt.Sprintf("found after %d bisection builds", builds)
		}
		d.endSearchLocked(s, culprit, found)
		d.log.Info("culprit found", "build", id, "culprit", culprit, "bisection_builds", builds)
		return nil
	}
	for _, lb := range d.byCommit[nb.Commit] {
		if lb.b.Repo == f.Repo {
			return nil // under way: its end wakes the search
		}
	}
	if from != nil {
		// The commit's tree was tested already: its verdict, at once (and
		// its end wakes the search).
		b, m := d.reusedBuildLocked(nb, from)
		d.st.Enqueue(m)
		d.reportResults(b)
		return nil
	}
	if err := d.roomLocked(1); err != nil {
		return err
	}
	if err := d.labelRoomLocked(f.Labels); err != nil {
		return err
	}
	_, m := d.newBuildLocked(nb)
	d.st.Enqueue(m)
	d.dispatchLocked()
	return nil
}

// bisectPlan decides a search's next move from the newest finished build
// known of each commit of its line: the culprit, or the index of the
// commit to build next, or why the search stops.
func bisectPlan(line []string, known []*pontusv1.Build, id int64) (culprit string, next int, stop string) {
	if b := known[0]; b != nil && b.Status == pontusv1.BuildStatus_BUILD_STATUS_FAILED {
		return "", -1, fmt.Sprintf("not searched: the branch's previous head %s failed too", line[0])
	}
	hi := -1
	for i := 1; i < len(line); i++ {
		if isPassFail(known[i]) && known[i].Status == pontusv1.BuildStatus_BUILD_STATUS_FAILED {
			hi = i
			break
		}
	}
	if hi < 0 {
		return "", -1, fmt.Sprintf("stopped: %s passed when built again (a flaky failure?)", line[len(line)-1])
	}
	lo := -1
	for i := hi - 1; i >= 0; i-- {
		if isPassFail(known[i]) && known[i].Status == pontusv1.BuildStatus_BUILD_STATUS_PASSED {
			lo = i
			break
		}
	}
	if lo == hi-1 {
		return line[hi], -1, ""
	}
	next = 0 // the line's first commit must pass for a search to mean anything
	if lo >= 0 {
		next = (lo + hi) / 2
	}
	if b := known[next]; b != nil && b.BisectOf == id {
		return "", -1, fmt.Sprintf("stopped: bisection build %d of %s ended %s", b.Id, line[next], statusName(b.Status))
	}
	return "", next, ""
}

// endSearchLocked ends search s, writing the culprit (if found) and how
// the search went into the failed build and its result files.
func (d *dispatcher) endSearchLocked(s *search, culprit, how string) {
	delete(d.searches, s.failed.Id)
	f := proto.Clone(s.failed).(*pontusv1.Build)
	f.Culprit, f.Bisection = culprit, how
	s.failed = f
	d.st.Enqueue(store.Mutation{PutBuild: f})
	d.publishLocked(f)
	d.reportResults(proto.Clone(f).(*pontusv1.Build))
}

// cancelSearchLocked cancels the search for failed build id, if one is
// under way, and the bisection builds it queued. It reports whether there
// was one.
func (d *dispatcher) cancelSearchLocked(id int64) (*pontusv1.Build, []*store.Commit, []*pontusv1.Build) {
	s := d.searches[id]
	if s == nil {
		return nil, nil, nil
	}
	var commits []*store.Commit
	var finished []*pontusv1.Build
	for _, lb := range d.builds {
		if lb.b.BisectOf != id {
			continue
		}
		commits = append(commits, d.cancelLiveLocked(lb, " (its culprit search was canceled)"))
		if store.IsTerminal(lb.b.Status) {
			finished = append(finished, lb.b)
		}
	}
	d.endSearchLocked(s, "", "canceled")
	return s.failed, commits, finished
}
