package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"google.golang.org/protobuf/proto"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// BackupSQLite writes a consistent copy of the store at src to dest (which
// must not exist) with VACUUM INTO: one read transaction, so it sees one
// committed state however busy the serving control plane is, and it never
// blocks that control plane's writer (WAL). It returns each build's
// current attempt in the copy, so the caller can copy the matching logs.
func BackupSQLite(ctx context.Context, src, dest string) (attempts map[int64]int32, err error) {
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup destination %s already exists", dest)
	}
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO '`+strings.ReplaceAll(dest, "'", "''")+`'`); err != nil {
		os.Remove(dest)
		return nil, fmt.Errorf("copy store %s to %s: %w", src, dest, err)
	}
	if err := os.Chmod(dest, 0o600); err != nil {
		return nil, fmt.Errorf("copy store: %w", err)
	}
	copyDB, err := sql.Open("sqlite", "file:"+dest+"?_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("open the copy: %w", err)
	}
	defer copyDB.Close()
	rows, err := copyDB.QueryContext(ctx, `SELECT id, data FROM builds`)
	if err != nil {
		return nil, fmt.Errorf("read the copy: %w", err)
	}
	defer rows.Close()
	attempts = map[int64]int32{}
	for rows.Next() {
		var id int64
		var data []byte
		if err := rows.Scan(&id, &data); err != nil {
			return nil, fmt.Errorf("read the copy: %w", err)
		}
		b := new(pontusv1.Build)
		if err := proto.Unmarshal(data, b); err != nil {
			return nil, fmt.Errorf("decode build %d: %w", id, err)
		}
		attempts[id] = b.Attempt
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the copy: %w", err)
	}
	f, err := os.Open(dest)
	if err == nil {
		err = errors.Join(f.Sync(), f.Close())
	}
	return attempts, err
}
