package store

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Control-plane replicas sharing a PostgreSQL store each write the result
// files of every finished build into their own results_dir, and record it
// here, per replica, beside the builds' own "reported" flag (which follows
// the leader's files). The table is created by CreateReplicaTables, which
// replicas run at start with whatever else they keep (controlplane).

// ReplicaReportsSchema creates the per-replica marks if they are missing.
const ReplicaReportsSchema = `CREATE TABLE IF NOT EXISTS replica_reports (
	replica  TEXT NOT NULL,
	build_id BIGINT NOT NULL,
	PRIMARY KEY (replica, build_id)
)`

// CreateReplicaTables runs schema (statements that create what is missing)
// serialised with migrations (the same transaction-scoped advisory lock),
// so replicas starting together do not race.
func (s *Postgres) CreateReplicaTables(ctx context.Context, schema string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("create replica tables: %w", err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return fmt.Errorf("create replica tables: %w", err)
	}
	if _, err := tx.Exec(ctx, schema); err != nil {
		return fmt.Errorf("create replica tables: %w", err)
	}
	return tx.Commit(ctx)
}

// ReplicaUnreported returns up to limit finished builds with an id above
// after whose result files replica has not marked written, oldest first.
// floor is an id at or below which every build was finished before the
// builds were read: once a caller has written every build up to a call
// that returned fewer than limit, it may pass floor as after from then on.
func (s *Postgres) ReplicaUnreported(ctx context.Context, replica string, after int64, limit int) (builds []*pontusv1.Build, floor int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT coalesce((SELECT min(id) - 1 FROM builds WHERE live = 1), (SELECT coalesce(max(id), 0) FROM builds))`).Scan(&floor)
	if err != nil {
		return nil, 0, fmt.Errorf("read builds: %w", err)
	}
	rows, err := s.pool.Query(ctx, `
SELECT b.data FROM builds b
WHERE b.live = 0 AND b.id > $2
  AND NOT EXISTS (SELECT 1 FROM replica_reports r WHERE r.replica = $1 AND r.build_id = b.id)
ORDER BY b.id LIMIT $3`, replica, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("read finished builds: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, 0, err
		}
		b := &pontusv1.Build{}
		if err := proto.Unmarshal(data, b); err != nil {
			return nil, 0, fmt.Errorf("decode build: %w", err)
		}
		builds = append(builds, b)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read finished builds: %w", err)
	}
	return builds, floor, nil
}

// MarkReplicaReported records that replica wrote the result files of the
// builds ids. It is not fenced: every replica, leader or not, marks its
// own files.
func (s *Postgres) MarkReplicaReported(ctx context.Context, replica string, ids []int64) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO replica_reports (replica, build_id) SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING`, replica, ids); err != nil {
		return fmt.Errorf("record written result files: %w", err)
	}
	return nil
}

// ForgetDeletedReports removes replica's marks of builds that retention
// deleted.
func (s *Postgres) ForgetDeletedReports(ctx context.Context, replica string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM replica_reports r WHERE r.replica = $1
AND NOT EXISTS (SELECT 1 FROM builds b WHERE b.id = r.build_id)`, replica)
	return err
}
