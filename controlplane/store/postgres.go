package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgresOptions tune the PostgreSQL store.
type PostgresOptions struct {
	// MaxBatch caps how many queued writes share one transaction.
	MaxBatch int
	// WriteHealth, if set, is called from the writer when writing starts
	// to fail (with the error) and when it succeeds again (with nil).
	WriteHealth func(err error)
	// OnConnect, if set, runs on the writer's dedicated connection after
	// every (re)connect, before that connection writes anything: the place
	// to take a session advisory lock (pg_try_advisory_lock) that fences
	// writes. Since every write goes through that one connection, and the
	// lock lives exactly as long as it, holding the lock there already
	// means no other holder can write. An error fails the batch at hand
	// with a *FenceError (not retried); the next batch connects again.
	OnConnect func(ctx context.Context, conn *pgx.Conn) error
	// Fence, if set, runs first in every write transaction, on the
	// writer's connection (for example: check that this replica still
	// holds the advisory lock, or that the leadership epoch in a table is
	// still its own, locking that row FOR SHARE). An error aborts the
	// transaction and fails every commit of the batch; it is not retried
	// and is returned wrapped in a *FenceError.
	Fence func(ctx context.Context, tx pgx.Tx) error
	// FenceStatement, if set, is the same check in one statement, sent
	// first in each batch's pipeline, so a fenced batch still costs one
	// round trip instead of four (BEGIN, check, writes, COMMIT). It must
	// raise an error when the write is fenced, e.g.
	//
	//	SELECT 1 / (SELECT CASE WHEN epoch = $1 THEN 1 ELSE 0 END
	//	            FROM leader WHERE id = 1 FOR SHARE)
	//
	// which fails with division_by_zero once the epoch moved on; that
	// error fails the batch's commits as a *FenceError. It is called as
	// each write is enqueued (from the caller's goroutine), and the write
	// is applied under the statement it returned then, retries included:
	// a write queued in an earlier term never lands under a later one.
	FenceStatement func() (sql string, args []any)
	// RetryFor is how long a batch that failed because the connection or
	// the server went away (a PostgreSQL restart or failover) is retried
	// on a new connection before its commits fail. Every write is an
	// idempotent upsert or delete, so retrying a batch whose COMMIT may
	// have reached the server is safe. Default 30s; negative: no retry.
	RetryFor time.Duration
	// MaxReadConns caps the read pool (default 8).
	MaxReadConns int
}

// FenceError is a write refused by PostgresOptions.Fence.
type FenceError struct{ Err error }

func (e *FenceError) Error() string { return "store write fenced: " + e.Err.Error() }
func (e *FenceError) Unwrap() error { return e.Err }

// Postgres is the Store on a PostgreSQL database, shared by any number of
// control-plane replicas. Reads go through a pool; writes are group
// committed, like SQLite's, on one dedicated connection (see
// PostgresOptions.OnConnect and Fence for fencing them).
type Postgres struct {
	queue
	reader
	pool *pgxpool.Pool
	cfg  *pgx.ConnConfig
	opts PostgresOptions
	sql  [len(writeSQL)]string

	conn *pgx.Conn // the writer's; writer goroutine only
}

// pgMigrations are the PostgreSQL schema versions: the SQLite store's
// tables and columns (BYTEA for data, BIGINT for ids and times, SMALLINT
// 0/1 for flags, so both stores share their SQL), plus what only a shared
// database needs (log_chunks). Version n is recorded as a row of
// schema_migrations. Append to this list; never change an entry.
var pgMigrations = []string{
	// 1: builds, runners and cursors.
	`
CREATE TABLE builds (
	id        BIGINT PRIMARY KEY,
	repo      TEXT NOT NULL,
	branch    TEXT NOT NULL,
	commit_id TEXT NOT NULL,
	status    INTEGER NOT NULL,
	live      SMALLINT NOT NULL,
	reported  SMALLINT NOT NULL DEFAULT 0,
	data      BYTEA NOT NULL
);
CREATE INDEX builds_commit ON builds(commit_id, id);
CREATE INDEX builds_repo_commit ON builds(repo, commit_id, id);
CREATE INDEX builds_branch ON builds(branch, id);
CREATE INDEX builds_repo ON builds(repo, id);
CREATE INDEX builds_status ON builds(status, id);
CREATE INDEX builds_live ON builds(live) WHERE live = 1;
CREATE INDEX builds_unreported ON builds(reported) WHERE reported = 0;
CREATE TABLE runners (
	id   TEXT PRIMARY KEY,
	data BYTEA NOT NULL
);
CREATE TABLE cursors (
	repo      TEXT NOT NULL,
	branch    TEXT NOT NULL,
	commit_id TEXT NOT NULL,
	PRIMARY KEY (repo, branch)
);`,
	// 2: for retention: when each finished build finished (Unix seconds,
	// 0 while live) and whether its logs are still kept.
	`
ALTER TABLE builds ADD COLUMN finished BIGINT NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN logs_kept SMALLINT NOT NULL DEFAULT 1;
CREATE INDEX builds_repo_branch ON builds(repo, branch, status, id);
CREATE INDEX builds_logs_kept ON builds(id) WHERE logs_kept = 1 AND live = 0;
CREATE INDEX builds_finished ON builds(finished) WHERE live = 0;`,
	// 3: build logs, so that every replica serves them (see WriteLog).
	`
CREATE TABLE log_chunks (
	build_id BIGINT NOT NULL,
	attempt  INTEGER NOT NULL,
	off      BIGINT NOT NULL,
	data     BYTEA NOT NULL,
	PRIMARY KEY (build_id, attempt, off)
);`,
	// 4: sharded builds, as the SQLite store's version 3: the highest
	// id each build takes (its shard jobs' ids follow its own).
	`
ALTER TABLE builds ADD COLUMN last_job BIGINT NOT NULL DEFAULT 0;
UPDATE builds SET last_job = id;`,
	// 5: per-test history, as SQLite's migration 4.
	`
CREATE TABLE test_runs (
	build_id    BIGINT NOT NULL,
	repo        TEXT NOT NULL,
	branch      TEXT NOT NULL,
	commit_id   TEXT NOT NULL,
	suite       TEXT NOT NULL,
	name        TEXT NOT NULL,
	outcome     INTEGER NOT NULL,
	duration_us BIGINT NOT NULL,
	runs        INTEGER NOT NULL
);
CREATE INDEX test_runs_build ON test_runs(build_id);
CREATE INDEX test_runs_repo ON test_runs(repo, build_id);
CREATE INDEX test_runs_branch ON test_runs(repo, branch, build_id);
CREATE INDEX test_runs_test ON test_runs(repo, name, suite, build_id);`,
	// 6: for verdict reuse: each verdict's ReuseKey (tree, labels,
	// retries). Unlike SQLite's migration 5 it cannot decode stored builds
	// to fill it in, so builds finished before it are not reused.
	`
ALTER TABLE builds ADD COLUMN reuse_key TEXT NOT NULL DEFAULT '';
CREATE INDEX builds_reuse ON builds(repo, reuse_key, id) WHERE reuse_key <> '';`,
}

// PostgresSchemaVersion is the PostgreSQL schema this Pontus writes.
var PostgresSchemaVersion = len(pgMigrations)

// migrateLock is the transaction-scoped advisory lock key that serialises
// migrations of replicas starting together ("pontus" in ASCII).
const migrateLock = 0x706f6e747573

// RedactURL returns a store URL fit for logs and errors: without its
// password, and without query parameters (which may carry one).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery = ""
	return u.Redacted()
}

// ValidatePostgresURL checks a store URL at the edge: postgres:// or
// postgresql://, with a host and a database name.
func ValidatePostgresURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("store URL does not parse (want postgres://user@host:port/db?sslmode=...)")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("store URL %s: scheme must be postgres:// or postgresql://", RedactURL(raw))
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return fmt.Errorf("store URL %s: no host", RedactURL(raw))
	}
	if strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("store URL %s: no database name (postgres://user@host:port/DB)", RedactURL(raw))
	}
	if _, err := pgx.ParseConfig(raw); err != nil {
		return fmt.Errorf("store URL %s: %s", RedactURL(raw), redactErr(err, raw))
	}
	return nil
}

// redactErr keeps a password that an error may quote out of its text.
func redactErr(err error, raw string) string {
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// OpenPostgres connects to the database at rawURL, brings its schema to
// PostgresSchemaVersion (or refuses one written by a newer Pontus), and starts the
// writer.
func OpenPostgres(ctx context.Context, rawURL string, opts PostgresOptions) (*Postgres, error) {
	if err := ValidatePostgresURL(rawURL); err != nil {
		return nil, err
	}
	where := RedactURL(rawURL)
	if opts.RetryFor == 0 {
		opts.RetryFor = 30 * time.Second
	}
	if opts.MaxReadConns <= 0 {
		opts.MaxReadConns = 8
	}
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store %s: %s", where, redactErr(err, rawURL))
	}
	pcfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store %s: %s", where, redactErr(err, rawURL))
	}
	pcfg.MaxConns = int32(opts.MaxReadConns)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	if err := pgMigrate(ctx, pool, where); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Postgres{pool: pool, cfg: cfg, opts: opts}
	for kind, q := range writeSQL {
		s.sql[kind] = rebindDollar(q)
	}
	s.reader = reader{read: stdlib.OpenDBFromPool(pool), dollar: true}
	if opts.FenceStatement != nil {
		s.queue.fence = func() *fenceStamp {
			q, args := opts.FenceStatement()
			return &fenceStamp{sql: q, args: args}
		}
	}
	s.queue.start(opts.MaxBatch, opts.WriteHealth, s.apply)
	return s, nil
}

// pgMigrate brings the database to PostgresSchemaVersion in one
// transaction.
func pgMigrate(ctx context.Context, pool *pgxpool.Pool, where string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("open store %s: %w", where, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return fmt.Errorf("open store %s: lock for migration: %w", where, err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`); err != nil {
		return fmt.Errorf("open store %s: %w", where, err)
	}
	var version int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&version); err != nil {
		return fmt.Errorf("read store schema version of %s: %w", where, err)
	}
	if version > PostgresSchemaVersion {
		return fmt.Errorf("store %s has schema version %d, newer than this Pontus knows (%d): run the Pontus that wrote it (or newer)", where, version, PostgresSchemaVersion)
	}
	if version == PostgresSchemaVersion {
		return nil
	}
	for v := version; v < PostgresSchemaVersion; v++ {
		if _, err := tx.Exec(ctx, pgMigrations[v]); err != nil {
			return fmt.Errorf("migrate store %s from schema version %d to %d: %w", where, v, v+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v+1); err != nil {
			return fmt.Errorf("migrate store %s: %w", where, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate store %s: %w", where, err)
	}
	return nil
}

// Pool is the store's read pool, for components that keep their own
// tables in the same database (logs, leadership).
func (s *Postgres) Pool() *pgxpool.Pool { return s.pool }

// apply writes one batch, retrying on a new connection while the server
// is unreachable (up to RetryFor).
func (s *Postgres) apply(batch []pendingWrite) error {
	deadline := time.Now().Add(s.opts.RetryFor)
	wait := 50 * time.Millisecond
	for {
		err := s.applyOnce(batch)
		if err == nil || !retriable(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}

func (s *Postgres) applyOnce(batch []pendingWrite) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.conn == nil || s.conn.IsClosed() {
		if s.conn != nil {
			s.conn.Close(ctx)
			s.conn = nil
		}
		conn, err := pgx.ConnectConfig(ctx, s.cfg)
		if err != nil {
			return fmt.Errorf("connect store writer: %w", err)
		}
		if s.opts.OnConnect != nil {
			if err := s.opts.OnConnect(ctx, conn); err != nil {
				conn.Close(ctx)
				return &FenceError{Err: err}
			}
		}
		s.conn = conn
	}
	var b pgx.Batch
	fenced := s.opts.FenceStatement != nil
	if fenced {
		f := batch[0].fence // the batch's writes share it
		b.Queue(f.sql, f.args...)
	}
	for _, pw := range batch {
		if pw.log != nil {
			b.Queue(writeLogSQL, pw.log.build, pw.log.attempt, pw.log.off, pw.log.data)
			continue
		}
		o := pw.op
		if o.kind == 0 {
			continue
		}
		b.Queue(s.sql[o.kind], pgArgs(o)...)
		switch {
		case o.kind == opBuild && !o.live:
			s.queueTestRuns(&b, o)
		case o.kind == opDeleteBuild:
			b.Queue(s.sql[opDeleteTests], o.id)
		}
	}
	if s.opts.Fence == nil {
		// One round trip: a pipelined batch runs in one implicit
		// transaction, all or nothing.
		if b.Len() == 0 {
			return nil
		}
		return batchResult(s.conn.SendBatch(ctx, &b), fenced)
	}
	tx, err := s.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin store transaction: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := s.opts.Fence(ctx, tx); err != nil {
		return &FenceError{Err: err}
	}
	if b.Len() > 0 {
		if err := batchResult(tx.SendBatch(ctx, &b), fenced); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit store transaction: %w", err)
	}
	return nil
}

// pgArgs are the parameters of o's statement in writeSQL on PostgreSQL
// (flags as 0/1). Add each new write kind here too.
func pgArgs(o op) []any {
	switch o.kind {
	case opBuild:
		live := 0
		if o.live {
			live = 1
		}
		return []any{o.id, o.repo, o.branch, o.commit, o.status, live, o.data, o.finished, o.lastJob, o.reuseKey}
	case opRunner:
		return []any{o.key, o.data}
	case opDeleteRunner:
		return []any{o.key}
	case opCursor:
		return []any{o.repo, o.branch, o.commit}
	case opReported, opDeleteBuild, opLogsPruned:
		return []any{o.id}
	}
	return nil
}

// batchResult reads a sent batch's outcome; with fenced, its first
// statement is FenceStatement's, whose error is a FenceError (unless the
// connection or server failed, which is retried).
func batchResult(br pgx.BatchResults, fenced bool) error {
	if fenced {
		if _, err := br.Exec(); err != nil {
			br.Close()
			var pe *pgconn.PgError
			if errors.As(err, &pe) && !retriable(err) {
				return &FenceError{Err: err}
			}
			return fmt.Errorf("store write: %w", err)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("store write: %w", err)
	}
	return nil
}

// retriable reports whether a failed batch may succeed on a new
// connection: the connection broke, the server is shutting down or
// starting, or the transaction lost a conflict.
func retriable(err error) bool {
	var fe *FenceError
	if errors.As(err, &fe) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "57", "40", "53": // connection, operator intervention, rollback, resources
			return true
		}
		return false
	}
	return true
}

// Close implements Store: pending writes are committed first.
func (s *Postgres) Close() error {
	if !s.queue.close() {
		return nil
	}
	if s.conn != nil {
		s.conn.Close(context.Background())
	}
	err := s.read.Close()
	s.pool.Close()
	return err
}

var _ Store = (*Postgres)(nil)
var _ Store = (*SQLite)(nil)
