package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/internal/git"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// refHelp says how the commands that take a BUILD|COMMIT argument read it.
const refHelp = `BUILD|COMMIT is read as git users type it:
  #12, 12        build number 12 (digits only, fewer than 4 of them)
  0b6cd8e        a commit: its full id or any unique prefix of 4+ hex digits
  1234567        4+ digits: build 1234567 or a commit starting with 1234567,
                 whichever exists; if both do, the command refuses and asks
                 for #1234567 (the build) or more of the commit id
  HEAD, main, v1.2, HEAD~2
                 any other revision, resolved by git in the repository of
                 the current directory`

// buildRef is what a BUILD|COMMIT argument names.
type buildRef struct {
	arg    string
	id     int64  // a build number, or 0
	commit string // a full commit id or a prefix of one, or ""
}

// parseRef reads a BUILD|COMMIT argument (see refHelp). An argument that
// is all digits, 4 or more of them, sets both id and commit: the server
// decides which exists (resolve). Other revisions are resolved with git in
// dir, without a shell. The error of an argument that names nothing says
// what is accepted.
func parseRef(ctx context.Context, dir, arg string) (buildRef, error) {
	r := buildRef{arg: arg}
	if n, ok := strings.CutPrefix(arg, "#"); ok {
		id, err := strconv.ParseInt(n, 10, 64)
		if err != nil || id < 1 {
			return r, fmt.Errorf("%q is not a build number: # is followed by a positive whole number, as in #12", arg)
		}
		r.id = id
		return r, nil
	}
	lower := strings.ToLower(arg)
	digits := strings.Trim(arg, "0123456789") == "" && arg != ""
	switch {
	case digits && len(arg) < validate.MinCommitPrefix:
		id, _ := strconv.ParseInt(arg, 10, 64)
		if id < 1 {
			return r, fmt.Errorf("%q is not a build number: builds are numbered from 1", arg)
		}
		r.id = id
		return r, nil
	case digits && len(arg) < 19:
		r.id, _ = strconv.ParseInt(arg, 10, 64)
		r.commit = arg
		return r, nil
	case validate.CommitPrefix("", lower) == nil:
		r.commit = lower
		return r, nil
	}
	commit, err := revParse(ctx, dir, arg)
	if err != nil {
		return r, err
	}
	r.commit = commit
	return r, nil
}

// revParse resolves a revision (HEAD, a branch, a tag, HEAD~2) to a full
// commit id with git in dir.
func revParse(ctx context.Context, dir, rev string) (string, error) {
	accepted := "a build number (#12), a commit id or a prefix of 4+ hex digits, or a git revision such as HEAD or main inside a repository"
	if len(rev) > 256 || strings.ContainsAny(rev, "\x00\n\r") || strings.TrimSpace(rev) == "" {
		return "", fmt.Errorf("%q is not %s", rev, accepted)
	}
	out, err := git.Output(ctx, dir, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err == nil && (validate.CommitID("", out) == nil) {
		return out, nil
	}
	if _, gerr := git.Output(ctx, dir, "rev-parse", "--git-dir"); gerr != nil {
		return "", fmt.Errorf("%q is not a build number or commit id, and there is no git repository here to resolve it in; give %s", rev, accepted)
	}
	return "", fmt.Errorf("%q: no such commit in the git repository here; give %s", rev, accepted)
}

// resolve turns a parsed reference into what the API takes: a build id or
// a commit (full id or prefix). Only an all-digit argument of 4+ digits
// costs calls: it is a build number or a commit prefix, whichever exists,
// and refused when both do.
func resolve(ctx context.Context, client pontusv1connect.BuildServiceClient, r buildRef, repo string) (commit string, id int64, err error) {
	if r.id == 0 || r.commit == "" {
		return r.commit, r.id, nil
	}
	var byID, byCommit *pontusv1.Build
	res, idErr := client.GetBuild(ctx, &pontusv1.GetBuildRequest{BuildId: r.id})
	if idErr == nil {
		byID = res.Build
	} else if connect.CodeOf(idErr) != connect.CodeNotFound {
		return "", 0, idErr
	}
	res, commitErr := client.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: r.commit, Repo: repo})
	if commitErr == nil {
		byCommit = res.Build
	}
	notFound := connect.CodeOf(commitErr) == connect.CodeNotFound
	commitExists := byCommit != nil || !notFound // an ambiguous prefix exists too
	switch {
	case byID != nil && commitExists && (byCommit == nil || byCommit.Id != byID.Id):
		return "", 0, fmt.Errorf("%s is ambiguous: it is build #%d, and also the start of a commit id (%s); write '#%d' for the build, or more of the commit id",
			r.arg, byID.Id, describeRef(byCommit, commitErr), byID.Id)
	case byID != nil:
		return "", byID.Id, nil
	case byCommit != nil:
		return byCommit.Commit, 0, nil
	case notFound:
		return "", 0, fmt.Errorf("%s: there is no build #%s and no build of a commit starting with %s", r.arg, r.arg, r.arg)
	}
	return "", 0, commitErr
}

func describeRef(b *pontusv1.Build, err error) string {
	if b != nil {
		return fmt.Sprintf("commit %s, build #%d", short(b.Commit), b.Id)
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}
