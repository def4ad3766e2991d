package plugins

import (
	"fmt"
	"io"
	"io/fs"
	"sync"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/sys"
)

// errLimit is what a guest gets when a sandbox limit refuses an open, a
// write or a create. wazero passes only its own short list of errnos to the
// guest (anything else becomes EIO), which has neither EMFILE nor ENOSPC;
// the host notes in the output and the result which limit was reached.
const errLimit = experimentalsys.EIO

// sandboxLimits is one run's budget of open files (over both mounts) and of
// /tmp space and entries. The guest is single-threaded, but wazero may
// close its files from another goroutine, so the counters are locked.
type sandboxLimits struct {
	maxOpen    int
	maxBytes   int64
	maxEntries int

	mu      sync.Mutex
	open    int                      // files and directories open, both mounts
	bytes   int64                    // sizes of the regular files in /tmp
	entries int                      // files and directories in /tmp
	inodes  map[sys.Inode]*openInode // /tmp files open, by inode
	// Which limits refused something, for the end-of-run note.
	hitOpen, hitBytes, hitEntries bool
}

// openInode counts the open handles of a /tmp file. A file unlinked while
// open keeps its space until the last handle closes.
type openInode struct {
	handles  int
	unlinked bool
}

func newSandboxLimits(maxOpen int, maxBytes int64, maxEntries int) *sandboxLimits {
	return &sandboxLimits{maxOpen: maxOpen, maxBytes: maxBytes, maxEntries: maxEntries, inodes: map[sys.Inode]*openInode{}}
}

// notes describes the limits that refused the guest something.
func (l *sandboxLimits) notes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	if l.hitOpen {
		out = append(out, fmt.Sprintf("open-file limit reached (%d open at once): further opens failed with EIO", l.maxOpen))
	}
	if l.hitBytes {
		out = append(out, fmt.Sprintf("/tmp size limit reached (%s): writes beyond it failed with EIO", formatBytes(l.maxBytes)))
	}
	if l.hitEntries {
		out = append(out, fmt.Sprintf("/tmp file limit reached (%d files and directories): creating more failed with EIO", l.maxEntries))
	}
	return out
}

func (l *sandboxLimits) takeOpen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.maxOpen {
		l.hitOpen = true
		return false
	}
	l.open++
	return true
}

func (l *sandboxLimits) releaseOpen() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
}

func (l *sandboxLimits) takeEntry() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.entries >= l.maxEntries {
		l.hitEntries = true
		return false
	}
	l.entries++
	return true
}

func (l *sandboxLimits) releaseEntry() {
	l.mu.Lock()
	l.entries = max(0, l.entries-1)
	l.mu.Unlock()
}

// takeBytes reserves n more bytes of /tmp (n <= 0 always succeeds).
func (l *sandboxLimits) takeBytes(n int64) bool {
	if n <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n > l.maxBytes-l.bytes {
		l.hitBytes = true
		return false
	}
	l.bytes += n
	return true
}

func (l *sandboxLimits) releaseBytes(n int64) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	l.bytes = max(0, l.bytes-n)
	l.mu.Unlock()
}

// removed accounts for a /tmp entry that is gone (unlinked, removed or
// replaced by a rename), given its Lstat from before when known.
func (l *sandboxLimits) removed(st sys.Stat_t, known bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = max(0, l.entries-1)
	if !known || !st.Mode.IsRegular() || st.Nlink > 1 {
		return
	}
	if oi := l.inodes[st.Ino]; oi != nil {
		oi.unlinked = true // freed when its last handle closes
		return
	}
	l.bytes = max(0, l.bytes-st.Size)
}

// srcFS counts the opens of the read-only checkout mount against the
// run's open-file limit.
type srcFS struct {
	experimentalsys.FS
	lim *sandboxLimits
}

func (f srcFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if !f.lim.takeOpen() {
		return nil, errLimit
	}
	file, errno := f.FS.OpenFile(path, flag, perm)
	if errno != 0 {
		f.lim.releaseOpen()
		return nil, errno
	}
	return wrapFile(&limitedFile{File: file, lim: f.lim}), 0
}

// scratchFS is the writable /tmp of a run. It refuses to create symbolic
// and hard links: wazero's directory mounts follow links on the host, so a
// guest allowed to create "x -> ../../../etc/passwd" in its scratch
// directory could read through it (wazero issue #2321); without links,
// every path stays inside the directory (wazero cleans and validates the
// paths the guest passes). It also counts its opens against the run's
// open-file limit, and the bytes and entries the guest keeps in it against
// the /tmp limits.
type scratchFS struct {
	experimentalsys.FS
	lim *sandboxLimits
}

func (scratchFS) Symlink(string, string) experimentalsys.Errno { return experimentalsys.EPERM }
func (scratchFS) Link(string, string) experimentalsys.Errno    { return experimentalsys.EPERM }

func (f scratchFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if !f.lim.takeOpen() {
		return nil, errLimit
	}
	var before sys.Stat_t
	exists := true
	if flag&(experimentalsys.O_CREAT|experimentalsys.O_TRUNC) != 0 {
		st, errno := f.FS.Lstat(path)
		switch errno {
		case 0:
			before = st
		case experimentalsys.ENOENT:
			exists = false
		}
	}
	creates := !exists && flag&experimentalsys.O_CREAT != 0
	if creates && !f.lim.takeEntry() {
		f.lim.releaseOpen()
		return nil, errLimit
	}
	file, errno := f.FS.OpenFile(path, flag, perm)
	if errno != 0 {
		if creates {
			f.lim.releaseEntry()
		}
		f.lim.releaseOpen()
		return nil, errno
	}
	if exists && flag&experimentalsys.O_TRUNC != 0 && before.Mode.IsRegular() {
		f.lim.releaseBytes(before.Size)
	}
	lf := &limitedFile{File: file, lim: f.lim, scratch: true}
	if ino, errno := file.Ino(); errno == 0 && ino != 0 {
		lf.ino, lf.tracked = ino, true
		f.lim.mu.Lock()
		oi := f.lim.inodes[ino]
		if oi == nil {
			oi = &openInode{}
			f.lim.inodes[ino] = oi
		}
		oi.handles++
		f.lim.mu.Unlock()
	}
	return wrapFile(lf), 0
}

func (f scratchFS) Mkdir(path string, perm fs.FileMode) experimentalsys.Errno {
	if !f.lim.takeEntry() {
		return errLimit
	}
	errno := f.FS.Mkdir(path, perm)
	if errno != 0 {
		f.lim.releaseEntry()
	}
	return errno
}

func (f scratchFS) Rmdir(path string) experimentalsys.Errno {
	errno := f.FS.Rmdir(path)
	if errno == 0 {
		f.lim.releaseEntry()
	}
	return errno
}

func (f scratchFS) Unlink(path string) experimentalsys.Errno {
	st, serr := f.FS.Lstat(path)
	errno := f.FS.Unlink(path)
	if errno == 0 {
		f.lim.removed(st, serr == 0)
	}
	return errno
}

func (f scratchFS) Rename(from, to string) experimentalsys.Errno {
	fromSt, ferr := f.FS.Lstat(from)
	toSt, terr := f.FS.Lstat(to)
	errno := f.FS.Rename(from, to)
	if errno == 0 && terr == 0 && (ferr != 0 || fromSt.Ino != toSt.Ino) {
		f.lim.removed(toSt, true) // "to" was replaced
	}
	return errno
}

// limitedFile is a file of a run: closing it frees its open-file slot. A
// /tmp file (scratch) also charges what it grows by to the run's /tmp
// budget, and refuses to grow beyond it.
type limitedFile struct {
	experimentalsys.File
	lim     *sandboxLimits
	scratch bool
	tracked bool // ino is counted in lim.inodes
	ino     sys.Inode
	closed  bool
}

func (f *limitedFile) Close() experimentalsys.Errno {
	if f.closed {
		return f.File.Close()
	}
	f.closed = true
	var freed int64
	if f.tracked {
		f.lim.mu.Lock()
		oi := f.lim.inodes[f.ino]
		last := oi != nil && oi.handles == 1
		unlinked := last && oi.unlinked
		f.lim.mu.Unlock()
		if unlinked {
			if st, errno := f.File.Stat(); errno == 0 {
				freed = st.Size
			}
		}
		f.lim.mu.Lock()
		if oi != nil {
			if oi.handles--; oi.handles <= 0 {
				delete(f.lim.inodes, f.ino)
			}
		}
		f.lim.mu.Unlock()
	}
	errno := f.File.Close()
	f.lim.releaseBytes(freed)
	f.lim.releaseOpen()
	return errno
}

func (f *limitedFile) Write(p []byte) (int, experimentalsys.Errno) {
	if !f.scratch || len(p) == 0 {
		return f.File.Write(p)
	}
	st, errno := f.File.Stat()
	if errno != 0 {
		return 0, errno
	}
	pos := st.Size
	if !f.File.IsAppend() {
		if pos, errno = f.File.Seek(0, io.SeekCurrent); errno != 0 {
			return 0, errno
		}
	}
	return f.grow(st.Size, pos, len(p), func() (int, experimentalsys.Errno) { return f.File.Write(p) })
}

func (f *limitedFile) Pwrite(p []byte, off int64) (int, experimentalsys.Errno) {
	if !f.scratch || len(p) == 0 {
		return f.File.Pwrite(p, off)
	}
	st, errno := f.File.Stat()
	if errno != 0 {
		return 0, errno
	}
	return f.grow(st.Size, off, len(p), func() (int, experimentalsys.Errno) { return f.File.Pwrite(p, off) })
}

// grow runs write, of n bytes at pos of a file of size bytes, if the run
// may keep what it adds to the file.
func (f *limitedFile) grow(size, pos int64, n int, write func() (int, experimentalsys.Errno)) (int, experimentalsys.Errno) {
	growth := max(0, pos+int64(n)-size)
	if !f.lim.takeBytes(growth) {
		return 0, errLimit
	}
	written, errno := write()
	f.lim.releaseBytes(growth - max(0, pos+int64(written)-size)) // what was not written after all
	return written, errno
}

func (f *limitedFile) Truncate(size int64) experimentalsys.Errno {
	if !f.scratch {
		return f.File.Truncate(size)
	}
	st, errno := f.File.Stat()
	if errno != 0 {
		return errno
	}
	growth := size - st.Size
	if !f.lim.takeBytes(growth) {
		return errLimit
	}
	if errno := f.File.Truncate(size); errno != 0 {
		f.lim.releaseBytes(growth)
		return errno
	}
	f.lim.releaseBytes(-growth) // shrunk
	return 0
}

// wrapFile returns f as a PollableFile when the file it wraps is one, so
// that wazero treats it as before (fd_fdstat_set_flags, poll_oneoff).
func wrapFile(f *limitedFile) experimentalsys.File {
	if pf, ok := f.File.(experimentalsys.PollableFile); ok {
		return &pollableFile{limitedFile: f, pf: pf}
	}
	return f
}

type pollableFile struct {
	*limitedFile
	pf experimentalsys.PollableFile
}

func (f *pollableFile) IsNonblock() bool { return f.pf.IsNonblock() }

func (f *pollableFile) SetNonblock(enable bool) experimentalsys.Errno {
	return f.pf.SetNonblock(enable)
}

func (f *pollableFile) Poll(flag experimentalsys.Pflag, timeoutMillis int32) (bool, experimentalsys.Errno) {
	return f.pf.Poll(flag, timeoutMillis)
}
