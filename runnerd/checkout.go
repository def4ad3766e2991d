package runnerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pontus-ci/pontus/internal/git"
)

// repoCache keeps one bare clone per repository under root and checks each
// job out of it into a repository of its own under jobs, which borrows the
// clone's objects (objects/info/alternates) and shares nothing writable
// with it: a job cannot change the cache clone, its config or its hooks,
// and so cannot change what a later job runs. Git operations on one clone
// are serialized; different repositories proceed in parallel.
type repoCache struct {
	root   string // Workdir/repos
	jobs   string // Workdir/jobs
	logger *slog.Logger
	// user owns each checkout when steps run as another user.
	user *stepUser

	mu    sync.Mutex
	locks map[string]*sync.Mutex // by clone directory
}

func newRepoCache(workdir string, user *stepUser, logger *slog.Logger) *repoCache {
	return &repoCache{
		root:   filepath.Join(workdir, "repos"),
		jobs:   filepath.Join(workdir, "jobs"),
		logger: logger,
		user:   user,
		locks:  make(map[string]*sync.Mutex),
	}
}

// cloneDir is where the cache clone of url lives.
func (c *repoCache) cloneDir(url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(c.root, hex.EncodeToString(sum[:])[:16]+".git")
}

func (c *repoCache) lock(dir string) func() {
	c.mu.Lock()
	m := c.locks[dir]
	if m == nil {
		m = new(sync.Mutex)
		c.locks[dir] = m
	}
	c.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// prepare creates the directories and removes what a runner that died left
// behind: checkouts and half-made clones. Only one runner uses a workdir at
// a time, so nothing here is in use.
func (c *repoCache) prepare() error {
	for _, d := range []string{c.root, c.jobs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	jobs, err := os.ReadDir(c.jobs)
	if err != nil {
		return fmt.Errorf("read %s: %w", c.jobs, err)
	}
	for _, e := range jobs {
		if err := removeAll(filepath.Join(c.jobs, e.Name())); err != nil {
			return fmt.Errorf("remove stale checkout: %w", err)
		}
	}
	repos, err := os.ReadDir(c.root)
	if err != nil {
		return fmt.Errorf("read %s: %w", c.root, err)
	}
	for _, e := range repos {
		p := filepath.Join(c.root, e.Name())
		switch {
		case strings.Contains(e.Name(), ".tmp-"):
			if err := removeAll(p); err != nil {
				return fmt.Errorf("remove half-made clone: %w", err)
			}
		case strings.HasSuffix(e.Name(), ".git"):
			// Steps read the objects of their checkouts here (clones made
			// by earlier versions were private to the runner).
			if err := os.Chmod(p, 0o755); err != nil {
				return fmt.Errorf("open cache clone to steps: %w", err)
			}
		}
	}
	return nil
}

// checkout makes a clean checkout of exactly commit from url in a new
// directory named name under jobs, fetching into the cache clone only when
// the commit is missing. url and commit must have been validated. It returns
// the directory and a description of what it did, for the log. Its errors
// say what git said ("clone URL: fatal: …").
func (c *repoCache) checkout(ctx context.Context, url, commit, name string) (dir, did string, err error) {
	clone := c.cloneDir(url)
	unlock := c.lock(clone)
	defer unlock()

	did = "cached"
	if _, err := os.Stat(clone); errors.Is(err, fs.ErrNotExist) {
		if err := c.clone(ctx, url, clone); err != nil {
			return "", "", err
		}
		did = "cloned"
	} else if err != nil {
		return "", "", fmt.Errorf("stat cache clone: %w", err)
	}
	if !hasCommit(ctx, clone, commit) {
		// Fetch from url itself, not from a remote the clone's config
		// names. Housekeeping (gc) runs after the job instead (see
		// remove), off the path from acquisition to result.
		if _, err := git.Output(ctx, clone, "fetch", "--quiet", "--prune", "--no-auto-maintenance", url, "+refs/heads/*:refs/heads/*"); err != nil {
			return "", "", fmt.Errorf("fetch %s: %s", url, gitSaid(err))
		}
		did = "fetched"
		if !hasCommit(ctx, clone, commit) {
			// Not on any branch (a tag, a deleted branch): ask for it by id,
			// which servers allow for reachable commits.
			_, err := git.Output(ctx, clone, "fetch", "--quiet", "--no-auto-maintenance", url, commit)
			if err == nil && !hasCommit(ctx, clone, commit) {
				err = errors.New("the fetch did not bring it")
			}
			if err != nil {
				return "", "", fmt.Errorf("commit %s not found in %s: %s", commit, url, gitSaid(err))
			}
		}
	}

	dir = filepath.Join(c.jobs, name)
	for _, d := range []string{dir, homeDir(dir)} {
		if err := removeAll(d); err != nil {
			return "", "", fmt.Errorf("remove old checkout: %w", err)
		}
	}
	if err := c.populate(ctx, clone, dir, commit); err != nil {
		_ = removeAll(dir)
		_ = removeAll(homeDir(dir))
		return "", "", err
	}
	return dir, did, nil
}

// populate makes dir a repository of its own that borrows clone's objects
// (objects/info/alternates), with commit checked out and HEAD detached at
// it, and, when steps run as another user, owned by that user. The
// repository is written by hand and filled by one git call: this is what
// keeps a checkout as cheap as a worktree of the cache clone.
func (c *repoCache) populate(ctx context.Context, clone, dir, commit string) error {
	gitDir := filepath.Join(dir, ".git")
	files := []struct{ name, text string }{
		{"HEAD", "ref: refs/heads/pontus\n"}, // unborn until the checkout
		{"config", "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = false\n"},
		{"objects/info/alternates", filepath.Join(clone, "objects") + "\n"},
	}
	for _, d := range []string{"objects/info", "objects/pack", "refs/heads", "refs/tags"} {
		if err := os.MkdirAll(filepath.Join(gitDir, d), 0o755); err != nil {
			return fmt.Errorf("create checkout: %w", err)
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(gitDir, f.name), []byte(f.text), 0o644); err != nil {
			return fmt.Errorf("create checkout: %w", err)
		}
	}
	if _, err := git.Output(ctx, dir, "read-tree", "--reset", "-u", commit); err != nil {
		return fmt.Errorf("check out %s: %s", commit, gitSaid(err))
	}
	if err := os.WriteFile(filepath.Join(gitDir, "HEAD"), []byte(commit+"\n"), 0o644); err != nil {
		return fmt.Errorf("create checkout: %w", err)
	}
	if c.user != nil {
		if err := c.user.chownTree(dir); err != nil {
			return fmt.Errorf("give the checkout to step_user: %w", err)
		}
		if err := c.user.privateDir(homeDir(dir)); err != nil {
			return fmt.Errorf("create step_user's home: %w", err)
		}
	}
	return nil
}

// homeDir is the home of a job's steps when they run as step_user: new
// for each job, so that nothing a job leaves in it (a ~/.gitconfig, a
// Python usercustomize, a pip.conf) changes what a later job runs.
func homeDir(checkout string) string {
	return checkout + ".home"
}

func (c *repoCache) clone(ctx context.Context, url, clone string) error {
	tmp, err := os.MkdirTemp(c.root, filepath.Base(clone)+".tmp-")
	if err != nil {
		return fmt.Errorf("create clone directory: %w", err)
	}
	// MkdirTemp makes it private; steps read the objects of their
	// checkouts through it.
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = removeAll(tmp)
		return fmt.Errorf("create clone directory: %w", err)
	}
	if _, err := git.Output(ctx, c.root, "clone", "--quiet", "--bare", "--", url, tmp); err != nil {
		_ = removeAll(tmp)
		return fmt.Errorf("clone %s: %s", url, gitSaid(err))
	}
	if err := os.Rename(tmp, clone); err != nil {
		_ = removeAll(tmp)
		return fmt.Errorf("move clone into place: %w", err)
	}
	return nil
}

// gitSaid is what git said when err is a git failure, else err's text.
func gitSaid(err error) string {
	var gerr *git.Error
	if errors.As(err, &gerr) {
		return gerr.Message()
	}
	return err.Error()
}

// remove deletes a job's checkout, and after a fetch lets git do the
// housekeeping it would have done then. It runs when the job ends,
// whatever happened, so it ignores the job's context.
func (c *repoCache) remove(url, dir string, fetched bool) {
	if dir == "" {
		return
	}
	for _, d := range []string{dir, homeDir(dir)} {
		if err := removeAll(d); err != nil {
			c.logger.Error("remove checkout", "dir", d, "err", err)
		}
	}
	if !fetched {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clone := c.cloneDir(url)
	unlock := c.lock(clone)
	defer unlock()
	if _, err := git.Output(ctx, clone, "maintenance", "run", "--auto", "--quiet"); err != nil {
		c.logger.Warn("git maintenance", "dir", clone, "err", err)
	}
}

func hasCommit(ctx context.Context, clone, commit string) bool {
	return git.Command(ctx, clone, "cat-file", "-e", commit+"^{commit}").Run() == nil
}

// removeAll is os.RemoveAll that also removes directories a test made
// read-only (Go's module cache does that). It makes them writable from
// inside dir only (os.Root), so a symlink a step left cannot point it
// elsewhere.
func removeAll(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	root, rerr := os.OpenRoot(dir)
	if rerr != nil {
		return err
	}
	_ = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = root.Chmod(p, 0o755)
		}
		return nil
	})
	root.Close()
	return os.RemoveAll(dir)
}
