package controlplane

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/controlplane/store"
	"github.com/pontus-ci/pontus/internal/git"
	"github.com/pontus-ci/pontus/internal/settings"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Limits on request fields, checked at the edge.
const (
	maxCommitsPerReport = 1000
	maxLogChunk         = 4 << 20
	maxCapacity         = 1024
	maxVersionLen       = 128
)

// invalid turns a validation failure into invalid_argument; the message
// names the field.
func invalid(err error) error {
	return connect.NewError(connect.CodeInvalidArgument, err)
}

func invalidf(field, format string, args ...any) error {
	return invalid(&validate.Error{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func checkJobRef(jobID int64, attempt int32) error {
	if jobID <= 0 {
		return invalidf("job_id", "must be a positive job id, got %d", jobID)
	}
	if attempt <= 0 {
		return invalidf("attempt", "must be at least 1, got %d", attempt)
	}
	return nil
}

// runnerService implements RunnerService.
type runnerService struct{ d *dispatcher }

func (s runnerService) Register(ctx context.Context, req *pontusv1.RegisterRequest) (*pontusv1.RegisterResponse, error) {
	if req.Name == "" {
		req.Name = "runner"
	}
	if err := validate.Name("name", req.Name); err != nil {
		return nil, invalid(err)
	}
	if err := validate.Labels("labels", req.Labels); err != nil {
		return nil, invalid(err)
	}
	if req.Capacity == 0 {
		req.Capacity = 1
	}
	if req.Capacity < 0 || req.Capacity > maxCapacity {
		return nil, invalidf("capacity", "must be between 1 and %d, got %d", maxCapacity, req.Capacity)
	}
	if len(req.Version) > maxVersionLen {
		return nil, invalidf("version", "longer than %d bytes", maxVersionLen)
	}
	for _, c := range req.Version {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._+-()/:, =@~", c)) {
			return nil, invalidf("version", "may hold only letters, digits, spaces and . _ + - ( ) / : , = @ ~, got %q", req.Version)
		}
	}
	r, err := s.d.register(ctx, req.Name, req.Labels, req.Capacity, req.Version)
	if err != nil {
		return nil, err
	}
	cfg := s.d.cfg
	return &pontusv1.RegisterResponse{
		RunnerId:          r.Id,
		HeartbeatInterval: durationpb.New(cfg.HeartbeatInterval),
		LeaseDuration:     durationpb.New(cfg.LeaseDuration),
		PollTimeout:       durationpb.New(cfg.PollTimeout),
	}, nil
}

func checkRunnerID(id string) error {
	if id == "" || len(id) > 64 {
		return invalidf("runner_id", "must be the id Register returned, got %d bytes", len(id))
	}
	return nil
}

func (s runnerService) Heartbeat(ctx context.Context, req *pontusv1.HeartbeatRequest) (*pontusv1.HeartbeatResponse, error) {
	if err := checkRunnerID(req.RunnerId); err != nil {
		return nil, err
	}
	if len(req.Leases) > maxCapacity {
		return nil, invalidf("leases", "at most %d leases, got %d", maxCapacity, len(req.Leases))
	}
	for i, l := range req.Leases {
		if l == nil {
			return nil, invalidf(fmt.Sprintf("leases[%d]", i), "is empty")
		}
		if err := checkJobRef(l.JobId, l.Attempt); err != nil {
			return nil, err
		}
	}
	cancel, lost, err := s.d.heartbeat(ctx, req.RunnerId, req.Leases)
	if err != nil {
		return nil, err
	}
	return &pontusv1.HeartbeatResponse{Cancel: cancel, Lost: lost}, nil
}

func (s runnerService) AcquireJob(ctx context.Context, req *pontusv1.AcquireJobRequest) (*pontusv1.AcquireJobResponse, error) {
	if err := checkRunnerID(req.RunnerId); err != nil {
		return nil, err
	}
	wait := s.d.cfg.PollTimeout
	if req.Wait != nil {
		if err := req.Wait.CheckValid(); err != nil || req.Wait.AsDuration() < 0 {
			return nil, invalidf("wait", "must be a non-negative duration")
		}
		if w := req.Wait.AsDuration(); w > 0 && w < wait {
			wait = w
		}
	}
	job, err := s.d.acquire(ctx, req.RunnerId, wait)
	if err != nil {
		return nil, err
	}
	return &pontusv1.AcquireJobResponse{Job: job}, nil
}

func (s runnerService) AppendLog(ctx context.Context, req *pontusv1.AppendLogRequest) (*pontusv1.AppendLogResponse, error) {
	if err := checkJobRef(req.JobId, req.Attempt); err != nil {
		return nil, err
	}
	if req.Offset < 0 {
		return nil, invalidf("offset", "must not be negative, got %d", req.Offset)
	}
	if len(req.Data) > maxLogChunk {
		return nil, invalidf("data", "chunk of %d bytes is over the %d byte limit", len(req.Data), maxLogChunk)
	}
	size, err := s.d.appendLog(ctx, req.JobId, req.Attempt, req.Offset, req.Data)
	if err != nil {
		return nil, err
	}
	return &pontusv1.AppendLogResponse{Size: size}, nil
}

func (s runnerService) CompleteJob(ctx context.Context, req *pontusv1.CompleteJobRequest) (*pontusv1.CompleteJobResponse, error) {
	if err := checkJobRef(req.JobId, req.Attempt); err != nil {
		return nil, err
	}
	if !store.IsTerminal(req.Status) {
		return nil, invalidf("status", "must be a final status (PASSED, FAILED, ERROR, TIMED_OUT or CANCELED), got %s", req.Status)
	}
	if req.LogSize < 0 {
		return nil, invalidf("log_size", "must not be negative, got %d", req.LogSize)
	}
	if req.OutputDroppedBytes < 0 {
		return nil, invalidf("output_dropped_bytes", "must not be negative")
	}
	if len(req.Reason) > 4096 {
		return nil, invalidf("reason", "longer than 4096 bytes")
	}
	if len(req.Tests) > 100000 {
		return nil, invalidf("tests", "at most 100000 test cases, got %d", len(req.Tests))
	}
	for i, t := range req.Tests {
		if t == nil || t.Name == "" {
			return nil, invalidf(fmt.Sprintf("tests[%d].name", i), "is empty")
		}
	}
	var dur time.Duration
	if req.Duration != nil {
		if err := req.Duration.CheckValid(); err != nil || req.Duration.AsDuration() < 0 {
			return nil, invalidf("duration", "must be a non-negative duration")
		}
		dur = req.Duration.AsDuration()
	}
	b, err := s.d.complete(ctx, req.JobId, req.Attempt, outcome{
		status: req.Status, reason: req.Reason, exitCode: req.ExitCode, tests: req.Tests,
		logSize: req.LogSize, dropped: req.OutputDroppedBytes, duration: dur,
	})
	if err != nil {
		return nil, err
	}
	return &pontusv1.CompleteJobResponse{Build: b}, nil
}

// observerService implements ObserverService.
type observerService struct{ d *dispatcher }

func checkRepoBranch(repo, branch string) error {
	if err := validate.Repo("repo", repo); err != nil {
		return invalid(err)
	}
	if err := validate.Branch("branch", branch); err != nil {
		return invalid(err)
	}
	return nil
}

func (s observerService) ReportCommits(ctx context.Context, req *pontusv1.ReportCommitsRequest) (*pontusv1.ReportCommitsResponse, error) {
	if err := checkRepoBranch(req.Repo, req.Branch); err != nil {
		return nil, err
	}
	if len(req.Commits) > maxCommitsPerReport {
		return nil, invalidf("commits", "at most %d commits per report, got %d", maxCommitsPerReport, len(req.Commits))
	}
	for i, c := range req.Commits {
		if err := validate.CommitID(fmt.Sprintf("commits[%d]", i), c); err != nil {
			return nil, invalid(err)
		}
		if j := slices.Index(req.Commits[:i], c); j >= 0 {
			return nil, invalidf(fmt.Sprintf("commits[%d]", i), "commit %s is also commits[%d]; list each commit once", c, j)
		}
	}
	if req.CloneUrl != "" {
		if err := validate.CloneURL("clone_url", req.CloneUrl); err != nil {
			return nil, invalid(err)
		}
	} else if err := validate.CloneURL("repo", req.Repo); err != nil {
		return nil, invalid(fmt.Errorf("%w (or give clone_url)", err))
	}
	if err := validate.Labels("labels", req.Labels); err != nil {
		return nil, invalid(err)
	}
	if err := checkSkipped(req); err != nil {
		return nil, err
	}
	if err := checkDetails(append(slices.Clip(req.Commits), req.Skipped...), req.Details); err != nil {
		return nil, err
	}
	if err := checkSettings("settings", req.Settings); err != nil {
		return nil, err
	}
	builds, err := s.d.report(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pontusv1.ReportCommitsResponse{Builds: builds}, nil
}

// Limits on build settings.
const (
	maxRetries = settings.MaxRetries
	maxShards  = settings.MaxShards
)

// checkSkipped validates the commits a report says it skipped: full ids,
// at most maxCommitsPerReport, after a named commit.
func checkSkipped(req *pontusv1.ReportCommitsRequest) error {
	if len(req.Skipped) == 0 {
		if req.SkippedAfter != "" {
			return invalidf("skipped_after", "given without skipped commits")
		}
		return nil
	}
	if len(req.Commits) == 0 {
		return invalidf("skipped", "given without a reported commit")
	}
	if len(req.Skipped) > maxCommitsPerReport {
		return invalidf("skipped", "at most %d commits, got %d", maxCommitsPerReport, len(req.Skipped))
	}
	if err := validate.CommitID("skipped_after", req.SkippedAfter); err != nil {
		return invalid(err)
	}
	for i, c := range req.Skipped {
		if err := validate.CommitID(fmt.Sprintf("skipped[%d]", i), c); err != nil {
			return invalid(err)
		}
		if c == req.SkippedAfter || c == req.Commits[0] {
			return invalidf(fmt.Sprintf("skipped[%d]", i), "commit %s is also skipped_after or the first reported commit", c)
		}
	}
	return nil
}

// checkDetails validates what a report says of its commits: each entry
// describes one of the reported (or skipped) commits, once, within size
// limits.
func checkDetails(commits []string, details []*pontusv1.CommitInfo) error {
	if len(details) > len(commits) {
		return invalidf("details", "%d entries for %d commits", len(details), len(commits))
	}
	known := make(map[string]bool, len(commits))
	for _, c := range commits {
		known[c] = true
	}
	seen := make(map[string]bool, len(details))
	for i, info := range details {
		field := fmt.Sprintf("details[%d]", i)
		if !known[info.Id] {
			return invalidf(field+".id", "%q is not one of the reported or skipped commits", info.Id)
		}
		if seen[info.Id] {
			return invalidf(field+".id", "commit %s described twice", info.Id)
		}
		seen[info.Id] = true
		if len(info.Subject) > git.MaxSubjectBytes || strings.ContainsAny(info.Subject, "\r\n") {
			return invalidf(field+".subject", "must be one line of at most %d bytes", git.MaxSubjectBytes)
		}
		if len(info.Author) > git.MaxAuthorBytes || len(info.AuthorEmail) > git.MaxAuthorBytes ||
			strings.ContainsAny(info.Author+info.AuthorEmail, "\r\n") {
			return invalidf(field+".author", "author and author_email must be one line of at most %d bytes each", git.MaxAuthorBytes)
		}
		if info.Tree != "" {
			if err := validate.CommitID(field+".tree", info.Tree); err != nil {
				return invalid(err)
			}
		}
		if err := checkSettings(field+".settings", info.Settings); err != nil {
			return err
		}
	}
	return nil
}

// checkSettings validates build settings (nil means the defaults).
func checkSettings(field string, s *pontusv1.BuildSettings) error {
	if s == nil {
		return nil
	}
	if s.Retries < 0 || s.Retries > maxRetries {
		return invalidf(field+".retries", "must be 0 to %d, got %d", maxRetries, s.Retries)
	}
	if s.Shards < 0 || s.Shards > maxShards {
		return invalidf(field+".shards", "must be 1 to %d (0 means 1), got %d", maxShards, s.Shards)
	}
	return nil
}

func (s observerService) GetCursor(ctx context.Context, req *pontusv1.GetCursorRequest) (*pontusv1.GetCursorResponse, error) {
	if err := checkRepoBranch(req.Repo, req.Branch); err != nil {
		return nil, err
	}
	return &pontusv1.GetCursorResponse{Commit: s.d.cursor(req.Repo, req.Branch)}, nil
}

// buildService implements BuildService.
type buildService struct{ d *dispatcher }

// buildRef validates the (build_id | commit [, repo]) that names a build.
func buildRef(id int64, commit, repo string) error {
	switch {
	case id < 0:
		return invalidf("build_id", "must be positive, got %d", id)
	case id > 0 && commit != "":
		return invalidf("commit", "give build_id or commit, not both")
	case id == 0 && commit == "":
		return invalidf("commit", "give build_id or commit")
	}
	if commit != "" {
		if err := validate.CommitPrefix("commit", commit); err != nil {
			return invalid(err)
		}
	}
	if repo != "" {
		if err := validate.Repo("repo", repo); err != nil {
			return invalid(err)
		}
	}
	return nil
}

func (s buildService) ListBuilds(ctx context.Context, req *pontusv1.ListBuildsRequest) (*pontusv1.ListBuildsResponse, error) {
	if req.Branch != "" {
		if err := validate.Branch("branch", req.Branch); err != nil {
			return nil, invalid(err)
		}
	}
	if req.Repo != "" {
		if err := validate.Repo("repo", req.Repo); err != nil {
			return nil, invalid(err)
		}
	}
	if _, ok := pontusv1.BuildStatus_name[int32(req.Status)]; !ok {
		return nil, invalidf("status", "unknown status %d", req.Status)
	}
	if req.Limit < 0 || req.Limit > 1000 {
		return nil, invalidf("limit", "must be between 0 and 1000, got %d", req.Limit)
	}
	if req.BeforeId < 0 {
		return nil, invalidf("before_id", "must not be negative")
	}
	q := store.Query{Repo: req.Repo, Branch: req.Branch, Status: req.Status, BeforeID: req.BeforeId, Limit: int(req.Limit)}
	if req.Search != "" {
		if len(req.Search) > maxSearch || strings.ContainsFunc(req.Search, unicode.IsControl) || !utf8.ValidString(req.Search) {
			return nil, invalidf("search", "must be at most %d characters of text without control characters", maxSearch)
		}
		bs, err := s.d.search(ctx, q, req.Search)
		if err != nil {
			return nil, err
		}
		return &pontusv1.ListBuildsResponse{Builds: bs}, nil
	}
	bs, err := s.d.list(ctx, q)
	if err != nil {
		return nil, err
	}
	return &pontusv1.ListBuildsResponse{Builds: bs}, nil
}

func (s buildService) GetBuild(ctx context.Context, req *pontusv1.GetBuildRequest) (*pontusv1.GetBuildResponse, error) {
	if err := buildRef(req.BuildId, req.Commit, req.Repo); err != nil {
		return nil, err
	}
	b, err := s.d.find(ctx, req.BuildId, req.Commit, req.Repo)
	if err != nil {
		return nil, err
	}
	return &pontusv1.GetBuildResponse{Build: b}, nil
}

func (s buildService) WatchBuilds(ctx context.Context, req *pontusv1.WatchBuildsRequest, stream *connect.ServerStream[pontusv1.WatchBuildsResponse]) error {
	if req.Branch != "" {
		if err := validate.Branch("branch", req.Branch); err != nil {
			return invalid(err)
		}
	}
	if req.Repo != "" {
		if err := validate.Repo("repo", req.Repo); err != nil {
			return invalid(err)
		}
	}
	if req.SnapshotLimit < 0 || req.SnapshotLimit > 1000 {
		return invalidf("snapshot_limit", "must be between 0 and 1000, got %d", req.SnapshotLimit)
	}
	// Subscribe before reading the snapshot, so no change falls between.
	sub := s.d.subscribe(req.Repo, req.Branch)
	defer s.d.unsubscribe(sub)
	// Answer with headers at once, so the client knows it is subscribed.
	if err := stream.Send(nil); err != nil {
		return err
	}
	if !req.ChangesOnly {
		bs, err := s.d.snapshot(ctx, store.Query{Repo: req.Repo, Branch: req.Branch, Limit: int(req.SnapshotLimit)})
		if err != nil {
			return err
		}
		for i := len(bs) - 1; i >= 0; i-- { // oldest first, as changes come
			if err := stream.Send(&pontusv1.WatchBuildsResponse{Build: bs[i]}); err != nil {
				return err
			}
		}
		if err := stream.Send(&pontusv1.WatchBuildsResponse{SnapshotDone: true}); err != nil {
			return err
		}
	}
	for {
		select {
		case b := <-sub.ch:
			if err := stream.Send(&pontusv1.WatchBuildsResponse{Build: b}); err != nil {
				return err
			}
		case <-sub.resync:
			if err := stream.Send(&pontusv1.WatchBuildsResponse{Resync: true}); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		case <-s.d.shutdown:
			return errShuttingDown()
		}
	}
}

func (s buildService) TailLog(ctx context.Context, req *pontusv1.TailLogRequest, stream *connect.ServerStream[pontusv1.TailLogResponse]) error {
	if err := buildRef(req.BuildId, req.Commit, req.Repo); err != nil {
		return err
	}
	if req.Offset < 0 {
		return invalidf("offset", "must not be negative, got %d", req.Offset)
	}
	b, err := s.d.find(ctx, req.BuildId, req.Commit, req.Repo)
	if err != nil {
		return err
	}
	if err := stream.Send(nil); err != nil { // headers at once
		return err
	}
	return s.d.tail(ctx, b.Id, req.Offset, req.Follow, stream.Send)
}

func (s buildService) TriggerBuild(ctx context.Context, req *pontusv1.TriggerBuildRequest) (*pontusv1.TriggerBuildResponse, error) {
	if err := validate.CommitPrefix("commit", req.Commit); err != nil {
		return nil, invalid(err)
	}
	if req.Repo != "" {
		if err := validate.Repo("repo", req.Repo); err != nil {
			return nil, invalid(err)
		}
	}
	if req.Branch != "" {
		if err := validate.Branch("branch", req.Branch); err != nil {
			return nil, invalid(err)
		}
	}
	b, err := s.d.trigger(ctx, req.Commit, req.Repo, req.Branch)
	if err != nil {
		return nil, err
	}
	return &pontusv1.TriggerBuildResponse{Build: b}, nil
}

func (s buildService) CancelBuild(ctx context.Context, req *pontusv1.CancelBuildRequest) (*pontusv1.CancelBuildResponse, error) {
	if err := buildRef(req.BuildId, req.Commit, req.Repo); err != nil {
		return nil, err
	}
	b, err := s.d.cancel(ctx, req.BuildId, req.Commit, req.Repo)
	if err != nil {
		return nil, err
	}
	return &pontusv1.CancelBuildResponse{Build: b}, nil
}

func (s buildService) ListRunners(ctx context.Context, req *pontusv1.ListRunnersRequest) (*pontusv1.ListRunnersResponse, error) {
	return &pontusv1.ListRunnersResponse{Runners: s.d.listRunners()}, nil
}
