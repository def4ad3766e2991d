package store

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// SQLiteOptions tune the embedded store.
type SQLiteOptions struct {
	// Fsync makes every commit durable against power loss
	// (synchronous=FULL). Without it commits survive a process crash, which
	// is what WAL with synchronous=NORMAL guarantees.
	Fsync bool
	// MaxBatch caps how many queued writes share one transaction.
	MaxBatch int
	// WriteHealth, if set, is called from the writer when writing starts
	// to fail (with the error) and when it succeeds again (with nil).
	WriteHealth func(err error)
}

// SQLite is the embedded Store.
type SQLite struct {
	queue
	reader
	write *sql.DB
	opts  SQLiteOptions
	stmts [opCount]*sql.Stmt // prepared once, per write kind
}

// op is a mutation prepared for the writer: payloads marshalled at enqueue
// time, so later changes to the caller's objects do not leak in.
type op struct {
	kind   int
	id     int64
	key    string
	repo   string
	branch string
	commit string
	status int32
	live   bool
	data   []byte
	// finished is when a build finished (Unix seconds), 0 while live.
	finished int64
	// lastJob is the highest id the build takes (LastJobID).
	lastJob int64
	// tests are a finished build's test results for the history (opBuild).
	tests []testRow
	// reuseKey is the build's ReuseKey when its verdict may be reused.
	reuseKey string
}

const (
	opBuild = iota + 1
	opRunner
	opDeleteRunner
	opCursor
	opReported
	opDeleteBuild
	opLogsPruned
	opDeleteTests // a build's test history, replaced when it is written
	opTestRun     // testRunChunk rows of it
	opCount
)

// migrations take a store from one schema version to the next:
// migrations[i] makes version i+1 of version i. The version is kept in
// PRAGMA user_version. A store made before versions were recorded has
// version 0 and the tables of version 1, which is why version 1 creates
// only what is missing. Append to this list; never change an entry.
var migrations = []func(tx *sql.Tx) error{
	// 1: builds, runners and cursors.
	func(tx *sql.Tx) error {
		_, err := tx.Exec(`
CREATE TABLE IF NOT EXISTS builds (
	id        INTEGER PRIMARY KEY,
	repo      TEXT NOT NULL,
	branch    TEXT NOT NULL,
	commit_id TEXT NOT NULL,
	status    INTEGER NOT NULL,
	live      INTEGER NOT NULL,
	reported  INTEGER NOT NULL DEFAULT 0,
	data      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_commit ON builds(commit_id, id);
CREATE INDEX IF NOT EXISTS builds_repo_commit ON builds(repo, commit_id, id);
CREATE INDEX IF NOT EXISTS builds_branch ON builds(branch, id);
CREATE INDEX IF NOT EXISTS builds_repo ON builds(repo, id);
CREATE INDEX IF NOT EXISTS builds_status ON builds(status, id);
CREATE INDEX IF NOT EXISTS builds_live ON builds(live) WHERE live = 1;
CREATE INDEX IF NOT EXISTS builds_unreported ON builds(reported) WHERE reported = 0;
CREATE TABLE IF NOT EXISTS runners (
	id   TEXT PRIMARY KEY,
	data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
	repo      TEXT NOT NULL,
	branch    TEXT NOT NULL,
	commit_id TEXT NOT NULL,
	PRIMARY KEY (repo, branch)
);`)
		return err
	},
	// 2: for retention: when each finished build finished (Unix seconds,
	// 0 while live; filled in from the stored builds) and whether its logs
	// are still kept.
	func(tx *sql.Tx) error {
		if _, err := tx.Exec(`
ALTER TABLE builds ADD COLUMN finished INTEGER NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN logs_kept INTEGER NOT NULL DEFAULT 1;
CREATE INDEX builds_repo_branch ON builds(repo, branch, status, id);
CREATE INDEX builds_logs_kept ON builds(id) WHERE logs_kept = 1 AND live = 0;`); err != nil {
			return err
		}
		finished := map[int64]int64{}
		err := eachBuild(tx, `SELECT id, data FROM builds WHERE live = 0`, nil, func(id int64, b *pontusv1.Build) {
			finished[id] = finishedUnix(b)
		})
		if err != nil {
			return err
		}
		for id, f := range finished {
			if _, err := tx.Exec(`UPDATE builds SET finished = ? WHERE id = ?`, f, id); err != nil {
				return err
			}
		}
		_, err = tx.Exec(`CREATE INDEX builds_finished ON builds(finished) WHERE live = 0`)
		return err
	},
	// 3: sharded builds. A build of n > 1 shards has n jobs with the ids
	// after its own (id+1 … id+n); last_job is the highest id a build
	// takes (its own when unsharded), so ids stay unique and a job's build
	// is found by range.
	func(tx *sql.Tx) error {
		if _, err := tx.Exec(`ALTER TABLE builds ADD COLUMN last_job INTEGER NOT NULL DEFAULT 0`); err != nil {
			return err
		}
		_, err := tx.Exec(`UPDATE builds SET last_job = id`)
		return err
	},
	// 4: per-test history: each recorded build's test results (see
	// testRows), written with the build's completion and deleted with it.
	func(tx *sql.Tx) error {
		_, err := tx.Exec(`
CREATE TABLE test_runs (
	build_id    INTEGER NOT NULL,
	repo        TEXT NOT NULL,
	branch      TEXT NOT NULL,
	commit_id   TEXT NOT NULL,
	suite       TEXT NOT NULL,
	name        TEXT NOT NULL,
	outcome     INTEGER NOT NULL,
	duration_us INTEGER NOT NULL,
	runs        INTEGER NOT NULL
);
CREATE INDEX test_runs_build ON test_runs(build_id);
CREATE INDEX test_runs_repo ON test_runs(repo, build_id);
CREATE INDEX test_runs_branch ON test_runs(repo, branch, build_id);
CREATE INDEX test_runs_test ON test_runs(repo, name, suite, build_id);`)
		return err
	},
	// 5: for verdict reuse: each verdict's ReuseKey (tree, labels,
	// retries), filled in from the stored builds.
	func(tx *sql.Tx) error {
		if _, err := tx.Exec(`
ALTER TABLE builds ADD COLUMN reuse_key TEXT NOT NULL DEFAULT '';
CREATE INDEX builds_reuse ON builds(repo, reuse_key, id) WHERE reuse_key <> '';`); err != nil {
			return err
		}
		keys := map[int64]string{}
		err := eachBuild(tx, `SELECT id, data FROM builds WHERE status IN (?, ?)`,
			[]any{int32(pontusv1.BuildStatus_BUILD_STATUS_PASSED), int32(pontusv1.BuildStatus_BUILD_STATUS_FAILED)},
			func(id int64, b *pontusv1.Build) {
				if k := reuseKeyOf(b); k != "" {
					keys[id] = k
				}
			})
		if err != nil {
			return err
		}
		for id, k := range keys {
			if _, err := tx.Exec(`UPDATE builds SET reuse_key = ? WHERE id = ?`, k, id); err != nil {
				return err
			}
		}
		return nil
	},
}

// eachBuild calls f with each build a migration's query selects (id, data).
func eachBuild(tx *sql.Tx, query string, args []any, f func(id int64, b *pontusv1.Build)) error {
	rows, err := tx.Query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var data []byte
		if err := rows.Scan(&id, &data); err != nil {
			return err
		}
		b := new(pontusv1.Build)
		if err := proto.Unmarshal(data, b); err != nil {
			return fmt.Errorf("decode build %d: %w", id, err)
		}
		f(id, b)
	}
	return rows.Err()
}

// SchemaVersion is the store schema this Pontus writes.
var SchemaVersion = len(migrations)

// finishedUnix is when a build finished, 0 if it has not.
func finishedUnix(b *pontusv1.Build) int64 {
	if b.FinishedAt == nil || !IsTerminal(b.Status) {
		return 0
	}
	return b.FinishedAt.AsTime().Unix()
}

// migrate brings the store at path to SchemaVersion in one transaction,
// or refuses a store written by a newer Pontus.
func migrate(db *sql.DB, path string) error {
	tx, err := db.Begin()
	if err != nil {
		return fmt.Errorf("open store %s: %w", path, err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("read store schema version of %s: %w", path, err)
	}
	if version > SchemaVersion {
		return fmt.Errorf("store %s has schema version %d, newer than this Pontus knows (%d): run the Pontus that wrote it (or newer), or restore a backup made by this version", path, version, SchemaVersion)
	}
	if version == SchemaVersion {
		return nil
	}
	for v := version; v < SchemaVersion; v++ {
		if err := migrations[v](tx); err != nil {
			return fmt.Errorf("migrate store %s from schema version %d to %d: %w", path, v, v+1, err)
		}
	}
	if _, err := tx.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, SchemaVersion)); err != nil {
		return fmt.Errorf("migrate store %s: %w", path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate store %s: %w", path, err)
	}
	return nil
}

// writeSQL is the statement of each write kind, shared by both stores
// (placeholders are rewritten for PostgreSQL).
var writeSQL = [opCount]string{
	opBuild: `INSERT INTO builds (id, repo, branch, commit_id, status, live, reported, data, finished, last_job, reuse_key)
		VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET status = excluded.status, live = excluded.live,
		reported = 0, data = excluded.data, branch = excluded.branch, finished = excluded.finished,
		last_job = excluded.last_job, reuse_key = excluded.reuse_key`,
	opRunner: `INSERT INTO runners (id, data) VALUES (?, ?)
		ON CONFLICT(id) DO UPDATE SET data = excluded.data`,
	opDeleteRunner: `DELETE FROM runners WHERE id = ?`,
	opCursor: `INSERT INTO cursors (repo, branch, commit_id) VALUES (?, ?, ?)
		ON CONFLICT(repo, branch) DO UPDATE SET commit_id = excluded.commit_id`,
	opReported:    `UPDATE builds SET reported = 1 WHERE id = ?`,
	opDeleteBuild: `DELETE FROM builds WHERE id = ? AND live = 0`,
	opLogsPruned:  `UPDATE builds SET logs_kept = 0 WHERE id = ?`,
	opDeleteTests: `DELETE FROM test_runs WHERE build_id = ?`,
	opTestRun:     testRunInsert(testRunChunk),
}

// uriPath escapes what a file: URI would otherwise read as its query,
// fragment or an escape ("?", "#", "%"), so a data_dir may contain them.
func uriPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path)
}

// OpenSQLite opens (creating if needed) the store at path.
func OpenSQLite(path string, opts SQLiteOptions) (*SQLite, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	sync := "NORMAL"
	if opts.Fsync {
		sync = "FULL"
	}
	dsn := "file:" + uriPath(path) + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(" + sync + ")"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	w.SetMaxOpenConns(1)
	if err := migrate(w, path); err != nil {
		w.Close()
		return nil, err
	}
	s := &SQLite{write: w, opts: opts}
	for kind, q := range writeSQL {
		if q == "" {
			continue
		}
		if s.stmts[kind], err = w.Prepare(q); err != nil {
			w.Close()
			return nil, fmt.Errorf("prepare store statement: %w", err)
		}
	}
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	r.SetMaxOpenConns(4)
	s.reader = reader{read: r}
	s.queue.start(opts.MaxBatch, opts.WriteHealth, s.apply)
	return s, nil
}

func prepare(m Mutation) (op, error) {
	switch {
	case m.PutBuild != nil:
		b := m.PutBuild
		data, err := proto.Marshal(b)
		if err != nil {
			return op{}, fmt.Errorf("encode build: %w", err)
		}
		return op{kind: opBuild, id: b.Id, repo: b.Repo, branch: b.Branch, commit: b.Commit,
			status: int32(b.Status), live: !IsTerminal(b.Status), data: data, finished: finishedUnix(b),
			lastJob: LastJobID(b), tests: testRows(b), reuseKey: reuseKeyOf(b)}, nil
	case m.PutRunner != nil:
		data, err := proto.Marshal(m.PutRunner)
		if err != nil {
			return op{}, fmt.Errorf("encode runner: %w", err)
		}
		return op{kind: opRunner, key: m.PutRunner.Id, data: data}, nil
	case m.DeleteRunner != "":
		return op{kind: opDeleteRunner, key: m.DeleteRunner}, nil
	case m.PutCursor != nil:
		return op{kind: opCursor, repo: m.PutCursor.Repo, branch: m.PutCursor.Branch, commit: m.PutCursor.Commit}, nil
	case m.Reported != 0:
		return op{kind: opReported, id: m.Reported}, nil
	case m.DeleteBuild != 0:
		return op{kind: opDeleteBuild, id: m.DeleteBuild}, nil
	case m.LogsPruned != 0:
		return op{kind: opLogsPruned, id: m.LogsPruned}, nil
	}
	return op{}, errors.New("empty mutation")
}

func (s *SQLite) apply(batch []pendingWrite) error {
	tx, err := s.write.Begin()
	if err != nil {
		return fmt.Errorf("begin store transaction: %w", err)
	}
	defer tx.Rollback()
	for _, pw := range batch {
		o := pw.op
		if o.kind == 0 {
			continue
		}
		st := tx.Stmt(s.stmts[o.kind])
		var err error
		switch o.kind {
		case opBuild:
			_, err = st.Exec(o.id, o.repo, o.branch, o.commit, o.status, o.live, o.data, o.finished, o.lastJob, o.reuseKey)
			if err == nil && !o.live {
				err = s.putTestRuns(tx, o)
			}
		case opRunner:
			_, err = st.Exec(o.key, o.data)
		case opDeleteRunner:
			_, err = st.Exec(o.key)
		case opCursor:
			_, err = st.Exec(o.repo, o.branch, o.commit)
		case opReported, opLogsPruned:
			_, err = st.Exec(o.id)
		case opDeleteBuild:
			_, err = st.Exec(o.id)
			if err == nil {
				_, err = tx.Stmt(s.stmts[opDeleteTests]).Exec(o.id)
			}
		}
		if err != nil {
			return fmt.Errorf("store write: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit store transaction: %w", err)
	}
	return nil
}

// Close implements Store: pending writes are committed first.
func (s *SQLite) Close() error {
	if !s.queue.close() {
		return nil
	}
	for _, st := range s.stmts {
		if st != nil {
			st.Close()
		}
	}
	return errors.Join(s.read.Close(), s.write.Close())
}
