package plugins

import (
	"io/fs"
	"syscall"
	"time"
)

// accessTime returns the last access time of a file, or the zero time.
func accessTime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Sec, st.Atim.Nsec)
	}
	return time.Time{}
}
