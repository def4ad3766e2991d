package controlplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"connectrpc.com/connect"
)

// maxCandidates is how many commits the error for an ambiguous commit
// prefix lists.
const maxCandidates = 5

// fullCommit reports whether commit is a whole commit id (SHA-1 or
// SHA-256) rather than a prefix of one.
func fullCommit(commit string) bool { return len(commit) == 40 || len(commit) == 64 }

// resolveCommit returns the full commit id that commit (validated: a full
// id or a prefix of 4+ lowercase hex characters) names: itself when it is
// a full id, else the one commit with builds — stored or live, in repo
// when given — that starts with it. No such commit is not_found; several
// are invalid_argument, listing them.
func (d *dispatcher) resolveCommit(ctx context.Context, commit, repo string) (string, error) {
	if fullCommit(commit) {
		return commit, nil
	}
	found, err := d.st.CommitsByPrefix(ctx, repo, commit, maxCandidates+1)
	if err != nil {
		return "", connect.NewError(connect.CodeInternal, errors.New("store read failed"))
	}
	d.mu.Lock()
	for c, lbs := range d.byCommit { // live builds are in the store too, unless just made
		if !strings.HasPrefix(c, commit) || slices.Contains(found, c) {
			continue
		}
		if repo == "" || slices.ContainsFunc(lbs, func(lb *liveBuild) bool { return lb.b.Repo == repo }) {
			found = append(found, c)
		}
	}
	d.mu.Unlock()
	in := ""
	if repo != "" {
		in = fmt.Sprintf(" in repository %q", repo)
	}
	switch len(found) {
	case 0:
		return "", connect.NewError(connect.CodeNotFound, fmt.Errorf("commit: no build of a commit starting with %s%s", commit, in))
	case 1:
		return found[0], nil
	}
	slices.Sort(found)
	count := fmt.Sprintf("%d commits", len(found))
	if len(found) > maxCandidates {
		found, count = found[:maxCandidates], fmt.Sprintf("more than %d commits, among them", maxCandidates)
	}
	lines := make([]string, len(found))
	for i, c := range found {
		lines[i] = d.describeCommit(ctx, c, repo)
	}
	return "", connect.NewError(connect.CodeInvalidArgument,
		fmt.Errorf("commit: %s is ambiguous%s: it starts %s: %s; give more of the commit id", commit, in, count, strings.Join(lines, "; ")))
}

// describeCommit names a commit for a person choosing among several: the
// start of its id, with the repository, branch and subject of its newest
// build.
func (d *dispatcher) describeCommit(ctx context.Context, commit, repo string) string {
	b := d.liveByCommit(repo, commit)
	if b == nil {
		b, _ = d.st.LatestBuild(ctx, repo, commit)
	}
	if b == nil {
		return commit
	}
	var about []string
	for _, s := range []string{b.Repo, b.Branch} {
		if s != "" {
			about = append(about, s)
		}
	}
	if s := firstLine(b.GetSubject()); s != "" {
		about = append(about, fmt.Sprintf("%q", s))
	}
	return fmt.Sprintf("%s (%s)", commit[:12], strings.Join(about, " "))
}

// firstLine returns s up to its first line break, cut at 60 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

// errFirstBuildNeedsFullID adds to not_found for a prefix what TriggerBuild
// needs for a commit without builds.
func errFirstBuildNeedsFullID(err error, commit string) error {
	if fullCommit(commit) || connect.CodeOf(err) != connect.CodeNotFound {
		return err
	}
	var ce *connect.Error
	msg := err.Error()
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s; to build a commit for the first time give its full id, with repo and branch", msg))
}
