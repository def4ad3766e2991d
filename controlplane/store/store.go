// Package store is the control plane's durable state: builds (with their
// queue position, lease and attempts), runners and observer cursors.
//
// Writes are ordered and group-committed: the dispatcher enqueues mutations
// in the order it makes them (under its own lock) and waits, outside that
// lock, until they are durable. Many concurrent RPCs therefore share one
// transaction and one sync, which is what lets a single SQLite file hand out
// thousands of jobs a second while every answer still follows its write.
//
// Two implementations share that queue (queue.go), their read SQL
// (reader.go) and one test suite: SQLite (pure Go, modernc.org/sqlite), the
// embedded default, and PostgreSQL (pgx), which several control-plane
// replicas can share.
package store

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// ErrNotFound is returned for a build that does not exist.
var ErrNotFound = errors.New("not found")

// Store is the durable state of a control plane.
type Store interface {
	// Load returns everything the dispatcher keeps in memory: builds that
	// are not finished, runners, cursors, builds whose result files may not
	// have been written, and the next build id (above every build's
	// LastJobID).
	Load(ctx context.Context) (*State, error)
	// Enqueue queues mutations for the next group commit, in call order,
	// and returns a Commit to wait on. It must not block on I/O, so callers
	// may hold their own lock while calling it.
	Enqueue(muts ...Mutation) *Commit
	// ListBuilds returns builds matching q, newest first.
	ListBuilds(ctx context.Context, q Query) ([]*pontusv1.Build, error)
	// GetBuild returns one build by id.
	GetBuild(ctx context.Context, id int64) (*pontusv1.Build, error)
	// JobBuild returns the build job jobID belongs to: the build with that
	// id, or the sharded build whose shard jobs include it (LastJobID).
	JobBuild(ctx context.Context, jobID int64) (*pontusv1.Build, error)
	// LatestBuild returns the newest build of a commit; repo may be empty
	// to match any repository.
	LatestBuild(ctx context.Context, repo, commit string) (*pontusv1.Build, error)
	// Reusable returns the newest build of repo whose verdict may be
	// reused for key (a ReuseKey): a PASSED or FAILED build that ran, of
	// the same tree, labels and retries. ErrNotFound when there is none.
	Reusable(ctx context.Context, repo, key string) (*pontusv1.Build, error)
	// CommitsByPrefix returns the distinct commit ids of stored builds
	// that start with prefix (lowercase hex; in repo, if not empty), in
	// ascending order, at most limit. It is a range scan of the commit
	// index: commit_id >= prefix AND commit_id < PrefixEnd(prefix).
	CommitsByPrefix(ctx context.Context, repo, prefix string, limit int) ([]string, error)
	// Unreported returns finished builds whose result files are not
	// recorded as written, oldest first.
	Unreported(ctx context.Context) ([]*pontusv1.Build, error)
	// Expired returns finished builds (or, with q.Logs, finished builds
	// whose logs are kept) beyond q.Keep, oldest first, never the newest
	// build of a branch nor its newest passing build, nor a build whose
	// result files are not written yet.
	Expired(ctx context.Context, q ExpiredQuery) ([]ExpiredBuild, error)
	// TestRuns returns the per-test history q selects, newest build first.
	// A finished build's runs (see RecordsTests) are written in the same
	// transaction as the build, replaced when it is written again, and
	// deleted with it (DeleteBuild).
	TestRuns(ctx context.Context, q TestRunQuery) ([]TestRun, error)
	// Close flushes pending writes and closes the store.
	Close() error
}

// State is what Load returns.
type State struct {
	Live       []*pontusv1.Build // not in a terminal status
	Unreported []*pontusv1.Build // terminal, result files not confirmed written
	Runners    []*pontusv1.Runner
	Cursors    []Cursor
	NextID     int64
}

// Cursor is the last commit reported for a branch.
type Cursor struct {
	Repo, Branch, Commit string
}

// Query filters ListBuilds. Zero fields match everything.
type Query struct {
	Repo     string
	Branch   string
	Commit   string
	Status   pontusv1.BuildStatus
	BeforeID int64
	Limit    int
}

// Mutation is one change to durable state. Exactly one field is set.
type Mutation struct {
	PutBuild     *pontusv1.Build
	PutRunner    *pontusv1.Runner
	DeleteRunner string
	PutCursor    *Cursor
	// Reported marks a finished build's result files as written.
	Reported int64
	// DeleteBuild deletes a finished build (retention).
	DeleteBuild int64
	// LogsPruned records that a finished build's logs were deleted.
	LogsPruned int64
}

// Retention is how much history to keep: the newest Count finished
// builds, or those finished within Age. The zero value keeps everything.
type Retention struct {
	Count int
	Age   time.Duration
}

// ExpiredQuery asks which builds a Retention no longer keeps.
type ExpiredQuery struct {
	Keep  Retention
	Logs  bool      // builds whose logs are kept, rather than builds
	Now   time.Time // for Keep.Age
	Limit int       // at most this many (default 1000)
}

// ExpiredBuild is a build that retention may delete.
type ExpiredBuild struct {
	ID     int64
	Commit string
	// LastJob is the build's LastJobID: its jobs are ID … LastJob.
	LastJob int64
}

// Commit is a pending group commit.
type Commit struct {
	done chan struct{}
	err  error
}

// Wait blocks until the mutations are durable (or failed), or ctx ends. A
// canceled wait does not cancel the write.
func (c *Commit) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LastJobID is the highest id build b takes: a build of n > 1 shards has
// the jobs id+1 … id+n (Build.shards), an unsharded build's one job has the
// build's own id. New ids are allocated above every stored LastJobID.
func LastJobID(b *pontusv1.Build) int64 {
	id := b.Id
	for _, s := range b.Shards {
		id = max(id, s.JobId)
	}
	return id
}

// IsTerminal reports whether a status is final.
func IsTerminal(s pontusv1.BuildStatus) bool {
	switch s {
	case pontusv1.BuildStatus_BUILD_STATUS_PASSED, pontusv1.BuildStatus_BUILD_STATUS_FAILED,
		pontusv1.BuildStatus_BUILD_STATUS_ERROR, pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT,
		pontusv1.BuildStatus_BUILD_STATUS_CANCELED:
		return true
	}
	return false
}

// ReuseKey names what a verdict depends on besides the repository: the
// commit's tree, the labels its runners carried and how often failed tests
// were retried. Runners sharing labels are taken to be equivalent; shards,
// bisection and reuse change how a build runs, not its verdict. Empty when
// the tree is unknown. Labels are validated (no spaces), so the key is
// unambiguous.
func ReuseKey(tree string, labels []string, retries int32) string {
	if tree == "" {
		return ""
	}
	ls := slices.Clone(labels)
	slices.Sort(ls)
	ls = slices.Compact(ls)
	return tree + " " + strconv.Itoa(int(retries)) + " " + strings.Join(ls, " ")
}

// reuseKeyOf is the key a stored build is found by: set for a PASSED or
// FAILED build that ran (not one that took another's verdict).
func reuseKeyOf(b *pontusv1.Build) string {
	if b.ReusedBuild != 0 || (b.Status != pontusv1.BuildStatus_BUILD_STATUS_PASSED && b.Status != pontusv1.BuildStatus_BUILD_STATUS_FAILED) {
		return ""
	}
	return ReuseKey(b.Tree, b.Labels, b.GetSettings().GetRetries())
}

// PrefixEnd returns the least lowercase-hex string above every string
// that starts with prefix ("abcf" → "abd0"), or "" when there is none
// ("ffff"), so a prefix lookup is a range scan in any collation that
// orders hex digits as ASCII does.
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		switch c := b[i]; {
		case c == 'f':
			continue
		case c == '9':
			b[i] = 'a'
		default:
			b[i] = c + 1
		}
		return string(b[:i+1])
	}
	return ""
}
