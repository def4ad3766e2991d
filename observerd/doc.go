// Package observerd is the repository watcher: it watches one git
// repository (a local path, or any URL git can fetch) and a set of
// branches, and reports new commits to the control plane's ObserverService.
//
// # Local repositories
//
// The observer never writes into a watched local repository: it runs only
// read-only plumbing (for-each-ref, rev-list, merge-base --is-ancestor,
// cat-file -e, rev-parse) with GIT_OPTIONAL_LOCKS=0 and --git-dir, never
// fetch, status, gc or anything that refreshes the index. It watches the
// files that hold the branches with fsnotify — HEAD in the git directory,
// packed-refs in the common directory and refs/heads/** (reftable/ for
// repositories in that format) — and after a burst of events (git writes
// "<ref>.lock" and renames it) waits a few milliseconds and re-reads all
// branches with one `git for-each-ref`. A poll every poll_interval is the
// safety net for lost events. Linked worktrees (.git is a file) and bare
// repositories work: the git directory and the common directory are asked
// of `git rev-parse`.
//
// A local repository is reported by its absolute top level (its git
// directory when bare), so "." and a subdirectory name the same repository.
//
// # Remote repositories
//
// A remote is mirrored (branches only, no tags) into a bare repository
// under data_dir/mirrors, named by a hash of the URL, and fetched with
// --prune every poll_interval (bounded by a timeout). Branches and history
// are read from the mirror. The reported repository is the URL as
// configured.
//
// # Which branches
//
// The configured names or path.Match globs, matched against short branch
// names ("release/*" matches "release/1.2", not "release/1/2"); branches
// that appear are picked up at once, deleted ones are forgotten. With no
// branches configured, the repository's current branch: HEAD's branch for a
// local repository (followed when HEAD moves to another branch), the
// remote's HEAD (read once per Run) for a remote one.
//
// # What is reported
//
// The cursor — the last commit reported per (repository, branch) — lives on
// the control plane. On start and after any failure the observer asks for
// it with GetCursor; between failures it keeps the cursor it last moved in
// memory, so an idle observer makes no calls at all. With no cursor, only
// the branch's current head is reported, never the history. In mode "head"
// a changed branch reports its new head. In mode "every" it reports each
// commit of `git rev-list --reverse --topo-order <cursor>..<head>` (the
// newest max_backlog of them), oldest first; when the cursor is unknown to
// the repository or not an ancestor of the head (a force-push), the new
// head only. ReportCommits is idempotent, so resending after a lost answer
// is harmless, and a restarted observer resumes from the control plane's
// cursor without gaps or repeats.
//
// When the control plane is down (or refuses a call), the cycle is retried
// with capped exponential backoff (100 ms to 5 s, jittered) forever; no
// commit is lost, because the next successful cycle starts from the cursor.
package observerd
