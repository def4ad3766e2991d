package store

import (
	"context"
	"fmt"
)

// Build logs on PostgreSQL live in log_chunks, one row per appended chunk
// at its byte offset, so that every replica serves every log. These
// methods are the raw chunk operations; the control plane's log store
// keeps the cap and its marker on top of them, as it does for files.

// WriteLog stores data at byte offset off of an attempt's log, replacing
// a chunk written at the same offset before (a retried append).
func (s *Postgres) WriteLog(ctx context.Context, build int64, attempt int32, off int64, data []byte) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO log_chunks (build_id, attempt, off, data) VALUES ($1, $2, $3, $4)
		ON CONFLICT (build_id, attempt, off) DO UPDATE SET data = excluded.data`, build, attempt, off, data)
	if err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	return nil
}

// LogSize returns the stored size of an attempt's log (0 if none yet).
func (s *Postgres) LogSize(ctx context.Context, build int64, attempt int32) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(off + length(data)), 0) FROM log_chunks
		WHERE build_id = $1 AND attempt = $2`, build, attempt).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("log size: %w", err)
	}
	return n, nil
}

// ReadLog returns up to n bytes (n < 0: all) of an attempt's log from off,
// stopping at the first gap.
func (s *Postgres) ReadLog(ctx context.Context, build int64, attempt int32, off int64, n int) ([]byte, error) {
	end := int64(1<<62 - 1)
	if n >= 0 {
		end = off + int64(n)
	}
	rows, err := s.pool.Query(ctx, `SELECT off, data FROM log_chunks
		WHERE build_id = $1 AND attempt = $2 AND off < $4 AND off + length(data) > $3
		ORDER BY off`, build, attempt, off, end)
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer rows.Close()
	var out []byte
	pos := off
	for rows.Next() {
		var at int64
		var data []byte
		if err := rows.Scan(&at, &data); err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		if at > pos {
			break // a gap: nothing stored there yet
		}
		data = data[pos-at:]
		if rest := end - pos; int64(len(data)) > rest {
			data = data[:rest]
		}
		out = append(out, data...)
		pos += int64(len(data))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	return out, nil
}

// DeleteLogs deletes every attempt's log of a build.
func (s *Postgres) DeleteLogs(ctx context.Context, build int64) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM log_chunks WHERE build_id = $1`, build); err != nil {
		return fmt.Errorf("delete logs: %w", err)
	}
	return nil
}
