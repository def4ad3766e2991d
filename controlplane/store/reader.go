package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// reader is the read side both stores share: the same SQL over
// database/sql, written with ? placeholders, which dollar rewrites to
// PostgreSQL's $1, $2, ...
type reader struct {
	read   *sql.DB
	dollar bool
}

// rebind rewrites ? placeholders to $n for PostgreSQL. Queries must not
// contain a literal ?.
func (s *reader) rebind(query string) string {
	if !s.dollar {
		return query
	}
	return rebindDollar(query)
}

func rebindDollar(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// query runs a read. On PostgreSQL, a read that fails because its pooled
// connection died (the server restarted) is tried again on another.
func (s *reader) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	query = s.rebind(query)
	rows, err := s.read.QueryContext(ctx, query, args...)
	for try := 0; err != nil && s.dollar && try < 3 && retriable(err) && ctx.Err() == nil; try++ {
		time.Sleep(time.Duration(try) * 100 * time.Millisecond)
		rows, err = s.read.QueryContext(ctx, query, args...)
	}
	return rows, err
}

// queryInt64 returns the single integer (0 for NULL) a query selects.
func (s *reader) queryInt64(ctx context.Context, query string, args ...any) (int64, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var v sql.NullInt64
	if rows.Next() {
		if err := rows.Scan(&v); err != nil {
			return 0, err
		}
	}
	return v.Int64, rows.Err()
}

// Load implements Store.
func (s *reader) Load(ctx context.Context) (*State, error) {
	st := &State{NextID: 1}
	var err error
	if st.Live, err = s.queryBuilds(ctx, `SELECT data FROM builds WHERE live = 1 ORDER BY id`); err != nil {
		return nil, err
	}
	if st.Unreported, err = s.Unreported(ctx); err != nil {
		return nil, err
	}
	maxID, err := s.queryInt64(ctx, `SELECT MAX(last_job) FROM builds`)
	if err != nil {
		return nil, fmt.Errorf("load store: %w", err)
	}
	st.NextID = maxID + 1
	rows, err := s.query(ctx, `SELECT data FROM runners`)
	if err != nil {
		return nil, fmt.Errorf("load runners: %w", err)
	}
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load runners: %w", err)
		}
		r := new(pontusv1.Runner)
		if err := proto.Unmarshal(data, r); err != nil {
			rows.Close()
			return nil, fmt.Errorf("decode runner: %w", err)
		}
		st.Runners = append(st.Runners, r)
	}
	rows.Close()
	rows, err = s.query(ctx, `SELECT repo, branch, commit_id FROM cursors`)
	if err != nil {
		return nil, fmt.Errorf("load cursors: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c Cursor
		if err := rows.Scan(&c.Repo, &c.Branch, &c.Commit); err != nil {
			return nil, fmt.Errorf("load cursors: %w", err)
		}
		st.Cursors = append(st.Cursors, c)
	}
	return st, rows.Err()
}

func (s *reader) queryBuilds(ctx context.Context, query string, args ...any) ([]*pontusv1.Build, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query builds: %w", err)
	}
	defer rows.Close()
	var out []*pontusv1.Build
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("query builds: %w", err)
		}
		b := new(pontusv1.Build)
		if err := proto.Unmarshal(data, b); err != nil {
			return nil, fmt.Errorf("decode build: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// ListBuilds implements Store.
func (s *reader) ListBuilds(ctx context.Context, q Query) ([]*pontusv1.Build, error) {
	var where []string
	var args []any
	if q.Repo != "" {
		where, args = append(where, "repo = ?"), append(args, q.Repo)
	}
	if q.Branch != "" {
		where, args = append(where, "branch = ?"), append(args, q.Branch)
	}
	if q.Commit != "" {
		where, args = append(where, "commit_id = ?"), append(args, q.Commit)
	}
	if q.Status != pontusv1.BuildStatus_BUILD_STATUS_UNSPECIFIED {
		where, args = append(where, "status = ?"), append(args, int32(q.Status))
	}
	if q.BeforeID > 0 {
		where, args = append(where, "id < ?"), append(args, q.BeforeID)
	}
	query := "SELECT data FROM builds"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 50
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	return s.queryBuilds(ctx, query, args...)
}

// JobBuild implements Store. Builds' id ranges do not overlap, so the
// job's build can only be the one with the highest id not above it.
func (s *reader) JobBuild(ctx context.Context, jobID int64) (*pontusv1.Build, error) {
	bs, err := s.queryBuilds(ctx, `SELECT data FROM builds WHERE id = (SELECT MAX(id) FROM builds WHERE id <= ?) AND last_job >= ?`, jobID, jobID)
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, ErrNotFound
	}
	return bs[0], nil
}

// GetBuild implements Store.
func (s *reader) GetBuild(ctx context.Context, id int64) (*pontusv1.Build, error) {
	bs, err := s.queryBuilds(ctx, `SELECT data FROM builds WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, ErrNotFound
	}
	return bs[0], nil
}

// LatestBuild implements Store.
func (s *reader) LatestBuild(ctx context.Context, repo, commit string) (*pontusv1.Build, error) {
	bs, err := s.ListBuilds(ctx, Query{Repo: repo, Commit: commit, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, ErrNotFound
	}
	return bs[0], nil
}

// Reusable implements Store.
func (s *reader) Reusable(ctx context.Context, repo, key string) (*pontusv1.Build, error) {
	if key == "" {
		return nil, ErrNotFound
	}
	bs, err := s.queryBuilds(ctx, `SELECT data FROM builds WHERE repo = ? AND reuse_key = ? ORDER BY id DESC LIMIT 1`, repo, key)
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, ErrNotFound
	}
	return bs[0], nil
}

// CommitsByPrefix implements Store.
func (s *reader) CommitsByPrefix(ctx context.Context, repo, prefix string, limit int) ([]string, error) {
	query, args := "SELECT DISTINCT commit_id FROM builds WHERE commit_id >= ?", []any{prefix}
	if end := PrefixEnd(prefix); end != "" {
		query, args = query+" AND commit_id < ?", append(args, end)
	}
	if repo != "" {
		query, args = query+" AND repo = ?", append(args, repo)
	}
	query, args = query+" ORDER BY commit_id LIMIT ?", append(args, limit)
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("commits by prefix: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("commits by prefix: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Unreported implements Store.
func (s *reader) Unreported(ctx context.Context) ([]*pontusv1.Build, error) {
	return s.queryBuilds(ctx, `SELECT data FROM builds WHERE reported = 0 AND live = 0 ORDER BY id`)
}

// Expired implements Store.
func (s *reader) Expired(ctx context.Context, q ExpiredQuery) ([]ExpiredBuild, error) {
	where := []string{"live = 0", "reported = 1",
		// The newest build of each branch, and its newest passing build.
		"id NOT IN (SELECT MAX(id) FROM builds GROUP BY repo, branch)",
		"id NOT IN (SELECT MAX(id) FROM builds WHERE status = ? GROUP BY repo, branch)"}
	args := []any{int32(pontusv1.BuildStatus_BUILD_STATUS_PASSED)}
	if q.Logs {
		where = append(where, "logs_kept = 1")
	}
	switch {
	case q.Keep.Count > 0:
		where = append(where, "id NOT IN (SELECT id FROM builds WHERE live = 0 ORDER BY id DESC LIMIT ?)")
		args = append(args, q.Keep.Count)
	case q.Keep.Age > 0:
		where = append(where, "finished < ?")
		args = append(args, q.Now.Add(-q.Keep.Age).Unix())
	default:
		return nil, nil // keep everything
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	args = append(args, limit)
	rows, err := s.query(ctx, `SELECT id, commit_id, last_job FROM builds WHERE `+strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("query expired builds: %w", err)
	}
	defer rows.Close()
	var out []ExpiredBuild
	for rows.Next() {
		var e ExpiredBuild
		if err := rows.Scan(&e.ID, &e.Commit, &e.LastJob); err != nil {
			return nil, fmt.Errorf("query expired builds: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
