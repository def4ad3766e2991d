package runnerd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// stepUser is the unprivileged user native steps run as when the runner
// runs as root (Config.StepUser).
type stepUser struct {
	name     string
	uid, gid int
	// cache holds the user's caches (Go build and module caches, pip's,
	// XDG_CACHE_HOME) under the workdir, kept between jobs.
	cache string
}

// stepUserFor returns the user native steps run as — nil unless the runner
// runs as root — after checking that it can reach workdir (absolute).
func stepUserFor(name, workdir string) (*stepUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := lookupStepUser(name)
	if err != nil {
		return nil, err
	}
	if err := u.checkWorkdir(workdir); err != nil {
		return nil, err
	}
	return u, nil
}

// CheckStepUser makes New's checks of step_user without creating anything:
// when the runner runs as root, step_user must exist and be able to reach
// cfg.Workdir.
func CheckStepUser(cfg Config) error {
	wd, err := filepath.Abs(cfg.Workdir)
	if err != nil {
		return fmt.Errorf("resolve runner.workdir: %w", err)
	}
	_, err = stepUserFor(cfg.StepUser, wd)
	return err
}

// lookupStepUser finds name in the user database.
func lookupStepUser(name string) (*stepUser, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("runner.step_user: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("runner.step_user %s: %w", name, err)
	}
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("runner.step_user %s: must not be root or in group root", name)
	}
	return &stepUser{name: name, uid: uid, gid: gid}, nil
}

// env sets the user's identity, its home for this job and its caches in a
// step's environment.
func (u *stepUser) env(env []string, home string) []string {
	set := [][2]string{
		{"HOME", home},
		{"USER", u.name},
		{"LOGNAME", u.name},
		{"XDG_CACHE_HOME", u.cache},
		{"GOCACHE", filepath.Join(u.cache, "go-build")},
		{"GOMODCACHE", filepath.Join(u.cache, "go-mod")},
		{"GOPATH", filepath.Join(home, "go")},
		{"PIP_CACHE_DIR", filepath.Join(u.cache, "pip")},
	}
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(set, func(s [2]string) bool { return s[0] == k }) {
			out = append(out, kv)
		}
	}
	for _, s := range set {
		out = append(out, s[0]+"="+s[1])
	}
	return out
}

// prepareCache creates the user's cache directory under workdir, owned by
// the user and private to it, after checking that the user can reach
// workdir at all.
func (u *stepUser) prepareCache(workdir string) error {
	if err := reachable(workdir, u.uid, u.gid); err != nil {
		return fmt.Errorf("runner.workdir %s: step_user %s cannot reach it (make every directory above it searchable, or choose another workdir): %w", workdir, u.name, err)
	}
	u.cache = filepath.Join(workdir, "cache")
	if err := u.privateDir(u.cache); err != nil {
		return fmt.Errorf("create step_user's caches: %w", err)
	}
	return nil
}

// privateDir creates dir (if need be), owned by the user, mode 0700.
func (u *stepUser) privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != u.uid || int(st.Gid) != u.gid {
		// New, or kept from another step_user: all of it becomes this one's.
		if err := u.chownTree(dir); err != nil {
			return err
		}
	}
	return os.Chmod(dir, 0o700)
}

// chownTree gives every file under dir to the user. It works inside dir
// only (os.Root: no symlink leads out) and bottom up, so that while it
// works on an entry, the directories above it are still not the user's and
// cannot be changed under it by a step running as that user.
func (u *stepUser) chownTree(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	var paths []string
	if err := fs.WalkDir(root.FS(), ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	}); err != nil {
		return err
	}
	for _, p := range slices.Backward(paths) {
		if err := root.Lchown(p, u.uid, u.gid); err != nil {
			return err
		}
	}
	return nil
}

// canRead reports whether the user could read the file at path.
func (u *stepUser) canRead(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || reachable(filepath.Dir(path), u.uid, u.gid) != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	mode := fi.Mode().Perm()
	switch {
	case int(st.Uid) == u.uid:
		return mode&0o400 != 0
	case int(st.Gid) == u.gid:
		return mode&0o040 != 0
	}
	return mode&0o004 != 0
}

// checkWorkdir checks, before the runner creates anything, that the user
// will be able to reach workdir: every directory above it that exists
// already must be searchable (Run checks workdir itself once it exists).
func (u *stepUser) checkWorkdir(workdir string) error {
	p := workdir
	for {
		if _, err := os.Stat(p); err == nil || p == filepath.Dir(p) {
			break
		}
		p = filepath.Dir(p)
	}
	if err := reachable(p, u.uid, u.gid); err != nil {
		return fmt.Errorf("runner.workdir %s: step_user %s cannot reach it (make every directory above it searchable, or choose another workdir): %w", workdir, u.name, err)
	}
	return nil
}

// reachable checks that uid (with gid) may search every directory from
// the root down to dir.
func reachable(dir string, uid, gid int) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		mode := fi.Mode().Perm()
		var x fs.FileMode
		switch {
		case int(st.Uid) == uid:
			x = mode & 0o100
		case int(st.Gid) == gid:
			x = mode & 0o010
		default:
			x = mode & 0o001
		}
		if x == 0 {
			return fmt.Errorf("%s is mode %#o, owned by uid %d", p, mode, st.Uid)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
