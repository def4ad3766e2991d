package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// TestRun is one test's result in one finished build, as the per-test
// history keeps it.
type TestRun struct {
	BuildID int64
	Repo    string
	Branch  string
	Commit  string
	Suite   string
	Name    string
	Outcome pontusv1.TestOutcome
	// Duration is negative when the test reported none.
	Duration time.Duration
	Runs     int32
}

// TestRunQuery selects per-test history. Zero fields match everything.
type TestRunQuery struct {
	Repo   string
	Branch string
	// Name and Suite select one test (an empty Suite: any).
	Name  string
	Suite string
	// Builds is how many of the newest builds with recorded runs (matching
	// the other fields) to look at; default 50.
	Builds int
	// Limit caps the rows returned; default 1,000,000.
	Limit int
}

// testRow is one row of test_runs.
type testRow struct {
	suite, name string
	outcome     int32
	durationUS  int64
	runs        int32
}

// RecordsTests reports whether a build's test results go into the per-test
// history: a finished build whose tests gave the verdict (PASSED, FAILED,
// TIMED_OUT), that ran rather than took another build's verdict.
func RecordsTests(b *pontusv1.Build) bool {
	switch b.GetStatus() {
	case pontusv1.BuildStatus_BUILD_STATUS_PASSED, pontusv1.BuildStatus_BUILD_STATUS_FAILED,
		pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT:
		return b.GetReusedBuild() == 0
	}
	return false
}

// testRows are the history rows of a build (none unless RecordsTests).
func testRows(b *pontusv1.Build) []testRow {
	if !RecordsTests(b) {
		return nil
	}
	rows := make([]testRow, 0, len(b.GetTests()))
	for _, t := range b.GetTests() {
		r := testRow{suite: t.GetSuite(), name: t.GetName(), outcome: int32(t.GetOutcome()), durationUS: -1, runs: max(t.GetRuns(), 1)}
		if t.Duration != nil {
			r.durationUS = t.Duration.AsDuration().Microseconds()
		}
		rows = append(rows, r)
	}
	return rows
}

// testRunChunk is how many history rows one INSERT writes: one statement
// per row made a build of 1,000 tests hold the group commit ~10× longer.
const testRunChunk = 100

// testRunInsert is the INSERT of n history rows.
func testRunInsert(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO test_runs (build_id, repo, branch, commit_id, suite, name, outcome, duration_us, runs) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	return b.String()
}

// testRunArgs are the parameters of rows' INSERT.
func testRunArgs(o op, rows []testRow) []any {
	args := make([]any, 0, 9*len(rows))
	for _, r := range rows {
		args = append(args, o.id, o.repo, o.branch, o.commit, r.suite, r.name, r.outcome, r.durationUS, r.runs)
	}
	return args
}

// queueTestRuns queues, on PostgreSQL, what putTestRuns does on SQLite.
func (s *Postgres) queueTestRuns(b *pgx.Batch, o op) {
	b.Queue(s.sql[opDeleteTests], o.id)
	for rows := range slices.Chunk(o.tests, testRunChunk) {
		q := s.sql[opTestRun]
		if len(rows) < testRunChunk {
			q = rebindDollar(testRunInsert(len(rows)))
		}
		b.Queue(q, testRunArgs(o, rows)...)
	}
}

// putTestRuns replaces the history rows of the finished build o in tx.
func (s *SQLite) putTestRuns(tx *sql.Tx, o op) error {
	if _, err := tx.Stmt(s.stmts[opDeleteTests]).Exec(o.id); err != nil {
		return err
	}
	for rows := range slices.Chunk(o.tests, testRunChunk) {
		var err error
		if len(rows) == testRunChunk {
			_, err = tx.Stmt(s.stmts[opTestRun]).Exec(testRunArgs(o, rows)...)
		} else {
			_, err = tx.Exec(testRunInsert(len(rows)), testRunArgs(o, rows)...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// TestRuns implements Store for both stores: the runs of q's window of
// builds, newest build first (in no order within a build).
func (s *reader) TestRuns(ctx context.Context, q TestRunQuery) ([]TestRun, error) {
	var where []string
	var args []any
	if q.Repo != "" {
		where, args = append(where, "repo = ?"), append(args, q.Repo)
	}
	if q.Branch != "" {
		where, args = append(where, "branch = ?"), append(args, q.Branch)
	}
	if q.Name != "" {
		where, args = append(where, "name = ?"), append(args, q.Name)
	}
	if q.Suite != "" {
		where, args = append(where, "suite = ?"), append(args, q.Suite)
	}
	filter := ""
	if len(where) > 0 {
		filter = " AND " + strings.Join(where, " AND ")
	}
	builds := q.Builds
	if builds <= 0 {
		builds = 50
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 1_000_000
	}
	// The window: the newest builds that have matching rows.
	query := `SELECT build_id, repo, branch, commit_id, suite, name, outcome, duration_us, runs FROM test_runs
		WHERE build_id >= (SELECT COALESCE(MIN(w.build_id), 0) FROM
			(SELECT DISTINCT build_id FROM test_runs WHERE 1 = 1` + filter + ` ORDER BY build_id DESC LIMIT ?) w)` + filter + `
		ORDER BY build_id DESC LIMIT ?`
	all := append(append(append(append([]any{}, args...), builds), args...), limit)
	rows, err := s.query(ctx, query, all...)
	if err != nil {
		return nil, fmt.Errorf("query test history: %w", err)
	}
	defer rows.Close()
	var out []TestRun
	for rows.Next() {
		var r TestRun
		var outcome int32
		var us int64
		if err := rows.Scan(&r.BuildID, &r.Repo, &r.Branch, &r.Commit, &r.Suite, &r.Name, &outcome, &us, &r.Runs); err != nil {
			return nil, fmt.Errorf("query test history: %w", err)
		}
		r.Outcome = pontusv1.TestOutcome(outcome)
		r.Duration = -1
		if us >= 0 {
			r.Duration = time.Duration(us) * time.Microsecond
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
