//go:build !linux

package plugins

import (
	"io/fs"
	"time"
)

// accessTime returns the zero time outside Linux: the cache is pruned by
// modification time alone.
func accessTime(fs.FileInfo) time.Time { return time.Time{} }
