// Package runnerd is the runner daemon: it registers with the control plane,
// keeps up to Config.Capacity AcquireJob long-polls open, and runs each job it
// is handed — a clean checkout of exactly the job's commit, the repository's
// tests run by an Executor in their own process group, output capped and
// streamed to the control plane with AppendLog, the outcome reported with
// CompleteJob — then removes the checkout.
//
// # Protocol (client side of pontus.v1.RunnerService)
//
//   - Register once per process (a new id each time; retried forever with
//     capped exponential backoff and jitter, from 100ms up to 5s). The server
//     chooses heartbeat_interval, lease_duration and poll_timeout.
//   - One goroutine per capacity slot keeps an AcquireJob open with a client
//     deadline of poll_timeout plus a few seconds. not_found for the runner id
//     means the control plane forgot it: the runner registers again and goes on;
//     jobs already running keep running and are still reported, because
//     AppendLog and CompleteJob are addressed by (job, attempt), not runner id.
//   - While it holds jobs the runner sends Heartbeat every heartbeat_interval
//     ±20 %, naming every (job, attempt) it holds. A job in the answer's cancel
//     list is stopped and reported CANCELED; one in the lost list is stopped and
//     not reported. An idle runner sends no heartbeats.
//   - The log is streamed with AppendLog at byte offsets, in chunks of at most
//     256 KiB, flushed at least once a second while the job runs and at once
//     when a chunk fills. The first call carries a header line, which is what
//     moves the build to RUNNING. out_of_range makes the runner resend from the
//     size the server stored, read from the error message ("… stored size N";
//     without a number it resends from 0, which is harmless because writing a
//     chunk again is a no-op). failed_precondition or not_found means the
//     attempt is stale: the job is stopped and never reported.
//   - CompleteJob is retried with backoff until it succeeds or the attempt is
//     stale; out_of_range there means the server lacks part of the log, which is
//     resent before trying again. A job that ends while the control plane is
//     down keeps its (capped) log in memory and is reported once it is back.
//
// # Jobs
//
// Each repository has one bare cache clone under Workdir/repos (named by a
// hash of its clone URL), fetched from the job's URL only when the job's
// commit is missing. Each job gets a small repository of its own under
// Workdir/jobs whose objects come from the cache clone
// (objects/info/alternates), checked out at exactly its commit and removed
// when the job ends whatever happened; leftovers of a runner that was killed
// are removed when the next one starts. Nothing of a job's checkout is
// shared writable with the cache clone, and Pontus's git calls ignore hooks
// and fsmonitor whatever a repository's config says (package git), so a job
// cannot change what a later job runs. Git's own message is the reason of a
// checkout that fails. The commit id, clone URL, branch and repository are
// validated before they reach git or the environment, and the clone URL is
// normalised (percent-escapes decoded, path cleaned) before it is checked
// against Config.AllowedRepositories; a bad one is an ERROR result. Nothing
// from a job is ever interpolated into a shell command line.
//
// The test command is Config.TestCommand (run with sh -c in the checkout)
// when set, else detected from the checkout: tests/*.py runs Python unittest
// discovery, go.mod plus tests/*_test.go runs go test -v ./tests/...;
// anything else is an ERROR saying what was looked for. The step's
// environment is the runner's own minus every PONTUS_* variable (credentials
// and settings), plus CI=true, PONTUS=true and PONTUS_COMMIT, PONTUS_BRANCH,
// PONTUS_BUILD_ID, PONTUS_JOB_ATTEMPT, PONTUS_REPO. When the runner runs as
// root, native steps run as Config.StepUser, owning the checkout, with a
// HOME new for each job and caches kept between jobs in Workdir/cache; a
// token file that user could read is refused. The runner makes itself
// non-dumpable, so that no step reads its environment or memory.
//
// Config.Timeout bounds the test step, and separately the checkout. Output
// beyond Config.OutputLimitMiB is dropped and counted, and one marker line
// "[pontus: output truncated: N bytes dropped]" ends the output.
//
// # Executors
//
// The runner consumes the Executor interface. Native runs each command under
// a step supervisor (StepCommand: the runner's own executable re-executed),
// which is a child subreaper, so that every process the step starts stays
// its descendant whatever it does (setsid, double fork). It holds the
// runner's parent-death signal, ignores SIGTERM itself, and kills every
// descendant when the command exits (naming those it finds in the log),
// when it is stopped (SIGTERM to all of them, SIGKILL after the grace
// period) and when the runner dies, even mid-grace.
//
// # Stopping
//
// Cancelling the context given to Run stops taking jobs; running jobs are
// stopped (SIGTERM, then SIGKILL) and not reported: a shutdown says nothing
// about the build, so its lease runs out and the control plane runs it on
// another runner.
//
// Only one runner may use a Workdir at a time (an flock on Workdir/lock).
package runnerd
