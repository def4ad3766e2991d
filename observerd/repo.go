package observerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pontus-ci/pontus/internal/git"
	"github.com/pontus-ci/pontus/internal/settings"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const (
	// fetchTimeout bounds one fetch of a remote repository.
	fetchTimeout = 2 * time.Minute
	// firstFetchTimeout bounds the first fetch into an empty mirror, which
	// downloads the whole history: a killed fetch keeps nothing, so a
	// large repository must be given the time to arrive once.
	firstFetchTimeout = time.Hour
	// gitTimeout bounds one local plumbing call.
	gitTimeout = 30 * time.Second
	// mirrorRefspec mirrors branches only: no tags, no pull-request refs.
	mirrorRefspec = "+refs/heads/*:refs/heads/*"
)

// isRemote reports whether repo names a remote repository, with git's own
// rule: a URL ("scheme://"), or scp-like "[user@]host:path" — a colon
// before any slash. Anything else is a local path.
func isRemote(repo string) bool {
	if strings.Contains(repo, "://") {
		return true
	}
	i := strings.IndexByte(repo, ':')
	return i > 0 && !strings.Contains(repo[:i], "/")
}

// repository is the git directory the observer reads refs and history from:
// the watched repository itself when it is local (read only), or a bare
// mirror under DataDir for a remote.
type repository struct {
	// name is what is reported to the control plane: the absolute top
	// level (or git directory, when bare) of a local repository, or the
	// URL as configured.
	name string
	// gitDir is passed as --git-dir to every git call. For a linked
	// worktree it is the worktree's private git directory.
	gitDir string
	// commonDir holds refs/ and packed-refs (differs from gitDir only for
	// a linked worktree).
	commonDir string
	// url is the remote's URL; empty for a local repository.
	url string
}

func (r *repository) remote() bool { return r.url != "" }

// ref is one branch and the commit it points at.
type ref struct {
	commit string
	// head is true when the branch is the repository's HEAD (local only).
	head bool
}

// runGit runs git against the repository's git directory and returns its
// standard output without the trailing newline. GIT_OPTIONAL_LOCKS=0 makes
// sure not even an opportunistic write happens in a watched repository.
func runGit(ctx context.Context, gitDir string, args ...string) (string, error) {
	full := append([]string{"--git-dir=" + gitDir}, args...)
	return gitOutput(ctx, gitDir, full...)
}

// gitOutput is git.Output with no optional locks and a bounded wait for
// helper processes (ssh, remote helpers) that outlive a killed git.
func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := git.Command(ctx, dir, args...)
	cmd.Env = append(cmd.Env, "GIT_OPTIONAL_LOCKS=0")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("git %s: %w", gitVerb(args), ctx.Err())
		}
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		return "", &gitError{verb: gitVerb(args), err: err, stderr: msg}
	}
	return strings.TrimRight(stdout.String(), "\n"), nil
}

func gitVerb(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return "?"
}

type gitError struct {
	verb   string
	err    error
	stderr string
}

func (e *gitError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("git %s: %v", e.verb, e.err)
	}
	return fmt.Sprintf("git %s: %v: %s", e.verb, e.err, e.stderr)
}

func (e *gitError) Unwrap() error { return e.err }

// exitCode returns git's exit status, or -1 if it did not exit normally.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// openLocal resolves a local repository without writing to it: the top
// level (or the git directory of a bare repository), the git directory and
// the common directory, all absolute.
func openLocal(ctx context.Context, path string) (*repository, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve repository path %q: %w", path, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("open repository %s: not a directory", abs)
	}
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	out, err := gitOutput(ctx, abs, "rev-parse", "--is-bare-repository", "--absolute-git-dir", "--git-common-dir")
	if err != nil {
		return nil, fmt.Errorf("open repository %s (is it a git repository?): %w", abs, err)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 3 {
		return nil, fmt.Errorf("open repository %s: unexpected git rev-parse output %q", abs, out)
	}
	bare, gitDir, commonDir := lines[0] == "true", lines[1], lines[2]
	if !filepath.IsAbs(commonDir) {
		commonDir = filepath.Join(abs, commonDir)
	}
	commonDir = filepath.Clean(commonDir)
	r := &repository{name: gitDir, gitDir: gitDir, commonDir: commonDir}
	if !bare {
		// Inside a .git directory there is no top level; name the
		// repository by its git directory then.
		if top, err := gitOutput(ctx, abs, "rev-parse", "--show-toplevel"); err == nil && top != "" {
			r.name = top
		}
	}
	if err := validate.Repo("repo", r.name); err != nil {
		return nil, err
	}
	return r, nil
}

// mirrorDir is where the mirror of url lives under dataDir: a directory
// named by a hash of the URL, so any URL gives a safe, stable name.
func mirrorDir(dataDir, url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(dataDir, "mirrors", hex.EncodeToString(sum[:16])+".git")
}

// openRemote returns the bare mirror of url under dataDir, creating it
// (without any network access) when it does not exist yet.
func openRemote(ctx context.Context, dataDir, url string) (*repository, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("resolve data_dir: %w", err)
	}
	dir := mirrorDir(dataDir, url)
	r := &repository{name: url, gitDir: dir, commonDir: dir, url: url}
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		// Keep the mirror pointed at the configured URL.
		if _, err := runGit(ctx, dir, "config", "remote.origin.url", url); err != nil {
			return nil, fmt.Errorf("open mirror %s: %w", dir, err)
		}
		return r, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("create mirror directory: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".new-")
	if err != nil {
		return nil, fmt.Errorf("create mirror directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	steps := [][]string{
		{"init", "--bare", "--quiet", tmp},
		{"--git-dir=" + tmp, "config", "remote.origin.url", url},
		{"--git-dir=" + tmp, "config", "remote.origin.fetch", mirrorRefspec},
		{"--git-dir=" + tmp, "config", "remote.origin.tagOpt", "--no-tags"},
		{"--git-dir=" + tmp, "config", "gc.autoDetach", "false"},
	}
	for _, args := range steps {
		if _, err := gitOutput(ctx, filepath.Dir(dir), args...); err != nil {
			return nil, fmt.Errorf("create mirror of %s: %w", url, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("create mirror of %s: %w", url, err)
	}
	return r, nil
}

// fetch brings the mirror up to date with the remote, pruning deleted
// branches.
func (r *repository) fetch(ctx context.Context) error {
	timeout := fetchTimeout
	if out, err := runGit(ctx, r.gitDir, "for-each-ref", "--count=1", "--format=%(refname)", "refs/heads/"); err == nil && strings.TrimSpace(out) == "" {
		timeout = firstFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := runGit(ctx, r.gitDir, "fetch", "--prune", "--no-tags", "--quiet", "origin"); err != nil {
		return fmt.Errorf("fetch %s: %w", r.url, err)
	}
	return nil
}

// remoteHead asks the remote which branch its HEAD points at.
func (r *repository) remoteHead(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	out, err := runGit(ctx, r.gitDir, "ls-remote", "--symref", "origin", "HEAD")
	if err != nil {
		return "", fmt.Errorf("read remote HEAD of %s: %w", r.url, err)
	}
	for _, line := range strings.Split(out, "\n") {
		// "ref: refs/heads/main\tHEAD"
		target, ok := strings.CutPrefix(line, "ref: ")
		if !ok {
			continue
		}
		target, _, _ = strings.Cut(target, "\t")
		if b, ok := strings.CutPrefix(target, "refs/heads/"); ok {
			return b, nil
		}
	}
	return "", fmt.Errorf("read remote HEAD of %s: HEAD is not a branch", r.url)
}

// refs lists the branches with git plumbing: short name → commit.
func (r *repository) refs(ctx context.Context) (map[string]ref, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	out, err := runGit(ctx, r.gitDir, "for-each-ref", "--format=%(objectname)%09%(HEAD)%09%(refname)", "refs/heads/")
	if err != nil {
		return nil, fmt.Errorf("list branches: %w", err)
	}
	refs := make(map[string]ref)
	if out == "" {
		return refs, nil
	}
	for _, line := range strings.Split(out, "\n") {
		parts := strings.SplitN(line, "\t", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("list branches: unexpected line %q", line)
		}
		name, ok := strings.CutPrefix(parts[2], "refs/heads/")
		if !ok {
			continue
		}
		refs[name] = ref{commit: parts[0], head: parts[1] == "*"}
	}
	return refs, nil
}

// hasCommit reports whether id is a commit of the repository.
func (r *repository) hasCommit(ctx context.Context, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	_, err := runGit(ctx, r.gitDir, "cat-file", "-e", id+"^{commit}")
	switch {
	case err == nil:
		return true, nil
	case ctx.Err() != nil:
		return false, err
	case exitCode(err) > 0:
		return false, nil
	}
	return false, fmt.Errorf("look up commit %s: %w", id, err)
}

// isAncestor reports whether ancestor is reachable from head.
func (r *repository) isAncestor(ctx context.Context, ancestor, head string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	_, err := runGit(ctx, r.gitDir, "merge-base", "--is-ancestor", ancestor, head)
	switch {
	case err == nil:
		return true, nil
	case exitCode(err) == 1:
		return false, nil
	}
	return false, fmt.Errorf("compare %s with %s: %w", ancestor, head, err)
}

// describe returns the subject, author, commit time and tree of each of
// ids (validated commit ids the repository has).
func (r *repository) describe(ctx context.Context, ids []string) ([]*pontusv1.CommitInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	out, err := runGit(ctx, r.gitDir, git.DescribeArgs(ids)...)
	if err != nil {
		return nil, fmt.Errorf("describe commits: %w", err)
	}
	return git.ParseDescribe(out)
}

// between lists the commits reachable from head but not from base, oldest
// first (parents before children), keeping at most the newest max. It also
// reports whether older commits were left out.
func (r *repository) between(ctx context.Context, base, head string, max int) ([]string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	// --max-count is applied before --reverse: the newest max, oldest first.
	out, err := runGit(ctx, r.gitDir, "rev-list", "--reverse", "--topo-order",
		fmt.Sprintf("--max-count=%d", max+1), base+".."+head, "--")
	if err != nil {
		return nil, false, fmt.Errorf("list commits %s..%s: %w", base, head, err)
	}
	if out == "" {
		return nil, false, nil
	}
	ids := strings.Split(out, "\n")
	truncated := len(ids) > max
	if truncated {
		ids = ids[1:]
	}
	return ids, truncated, nil
}

// buildTable reads the [build] table of the .pontus.toml in commit's tree
// (read with git plumbing, never checked out or run). It returns the
// file's blob id ("" when the commit has none) so callers can cache by
// content.
func (r *repository) buildTable(ctx context.Context, commit string, cache map[string]settings.Table) (settings.Table, string, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	out, err := runGit(ctx, r.gitDir, "ls-tree", "-l", "--full-tree", commit, "--", settings.File)
	if err != nil {
		return settings.Table{}, "", fmt.Errorf("look for %s: %w", settings.File, err)
	}
	if out == "" {
		return settings.Table{}, "", nil
	}
	// "<mode> <type> <object> <size>\t<path>"
	meta, _, _ := strings.Cut(out, "\t")
	f := strings.Fields(meta)
	if len(f) != 4 || f[1] != "blob" {
		return settings.Table{}, out, fmt.Errorf("%s is not a file", settings.File)
	}
	blob := f[2]
	if t, ok := cache[blob]; ok {
		return t, blob, nil
	}
	if size, err := strconv.ParseInt(f[3], 10, 64); err != nil || size > settings.MaxFileBytes {
		return settings.Table{}, blob, fmt.Errorf("%s is larger than %d bytes", settings.File, settings.MaxFileBytes)
	}
	if err := validate.CommitID("blob", blob); err != nil {
		return settings.Table{}, blob, err
	}
	data, err := runGit(ctx, r.gitDir, "cat-file", "blob", blob)
	if err != nil {
		return settings.Table{}, blob, fmt.Errorf("read %s: %w", settings.File, err)
	}
	t, err := settings.Parse([]byte(data))
	if err != nil {
		return settings.Table{}, blob, err
	}
	if len(cache) >= 1000 {
		clear(cache)
	}
	cache[blob] = t
	return t, blob, nil
}

// firstParentsSince lists head's first-parent line back to base, oldest
// first, without base: nil unless base is on that line within max commits
// (a force-push, a base that is gone, too long a line). One git call.
func (r *repository) firstParentsSince(ctx context.Context, base, head string, max int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	// Each line: a commit and its parents, newest first.
	out, err := runGit(ctx, r.gitDir, "rev-list", "--first-parent", "--parents", fmt.Sprintf("--max-count=%d", max),
		base+".."+head, "--")
	if err != nil {
		if exitCode(err) > 0 && ctx.Err() == nil {
			return nil, nil // base is not a commit of the repository (any more)
		}
		return nil, fmt.Errorf("list commits %s..%s: %w", base, head, err)
	}
	if out == "" {
		return nil, nil
	}
	lines := strings.Split(out, "\n")
	ids := make([]string, len(lines))
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			return nil, fmt.Errorf("list commits: unexpected line %q", line)
		}
		ids[len(lines)-1-i] = f[0]
		if i == len(lines)-1 && (len(f) < 2 || f[1] != base) {
			return nil, nil // the oldest listed does not follow base
		}
	}
	return ids, nil
}
