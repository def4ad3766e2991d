package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/pontus-ci/pontus/controlplane/store"
	"github.com/pontus-ci/pontus/internal/buildtext"
	"github.com/pontus-ci/pontus/internal/dial"
	"github.com/pontus-ci/pontus/internal/git"
	"github.com/pontus-ci/pontus/internal/protofmt"
	"github.com/pontus-ci/pontus/internal/termsafe"
	"github.com/pontus-ci/pontus/internal/validate"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// clientFlags are the flags of the client commands.
type clientFlags struct {
	name     string
	stderr   io.Writer
	fs       *flag.FlagSet
	url      string
	caFile   string
	json     bool
	tokenVar string
}

func newClientFlags(name string, h help, stderr io.Writer) *clientFlags {
	c := &clientFlags{name: name, stderr: stderr, fs: newFlagSet(name, h, stderr), tokenVar: "PONTUS_USER_TOKEN"}
	def := os.Getenv("PONTUS_CONTROLPLANE")
	if def == "" {
		def = "http://127.0.0.1:8888"
	}
	c.fs.StringVar(&c.url, "controlplane", def, "control plane `URL`, or several replicas' URLs separated by commas (or $PONTUS_CONTROLPLANE)")
	c.fs.StringVar(&c.caFile, "ca-file", "", "PEM `file` of CA certificates to trust for https")
	c.fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	return c
}

func (c *clientFlags) dial() (connect.HTTPClient, []connect.ClientOption, error) {
	cfg := dial.Config{URL: c.url, Token: strings.TrimSpace(os.Getenv(c.tokenVar)), CAFile: c.caFile}
	hc, err := dial.HTTPClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	c.url = dial.Base(cfg.URL)
	return hc, dial.Options(cfg), nil
}

func (c *clientFlags) builds() (pontusv1connect.BuildServiceClient, error) {
	hc, opts, err := c.dial()
	if err != nil {
		return nil, err
	}
	return pontusv1connect.NewBuildServiceClient(hc, c.url, opts...), nil
}

// parse parses a command's flags, which may come before or after its
// arguments, and returns the arguments.
func (c *clientFlags) parse(args []string) ([]string, error) {
	return parseInterspersed(c.fs, args)
}

// parseBuildRef parses the flags and the one BUILD|COMMIT argument (see
// refHelp) of a command about one build, dials the control plane and
// resolves the argument to a commit (full id or prefix) or a build id.
// repo is the command's --repo flag.
func (c *clientFlags) parseBuildRef(ctx context.Context, args []string, repo *string) (pontusv1connect.BuildServiceClient, string, int64, error) {
	pos, err := c.parse(args)
	if err != nil {
		return nil, "", 0, err
	}
	if len(pos) != 1 {
		return nil, "", 0, c.usage("give one BUILD|COMMIT (a build number, a commit id or prefix, or a git revision such as HEAD), got %d arguments", len(pos))
	}
	ref, err := parseRef(ctx, ".", pos[0])
	if err != nil {
		return nil, "", 0, c.usage("%v", err)
	}
	client, err := c.builds()
	if err != nil {
		return nil, "", 0, err
	}
	commit, id, err := resolve(ctx, client, ref, *repo)
	return client, commit, id, err
}

// usage reports a problem with the command line: exit status 2.
func (c *clientFlags) usage(format string, args ...any) error {
	return usageError(c.stderr, c.name, format+" (see pontus %s -h)", append(args, c.name)...)
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protofmt.JSON(m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func short(commit string) string {
	if len(commit) > 10 {
		return commit[:10]
	}
	return commit
}

func status(s pontusv1.BuildStatus) string {
	return buildtext.Status(s)
}

// maxSubject is where pontus builds cuts a commit subject (never below 40
// characters).
const maxSubject = 60

// subject is a commit subject cut to max characters, on one line.
func subject(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}

func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Format("2006-01-02")
}

func buildDuration(b *pontusv1.Build) string {
	if b.Duration != nil {
		return b.Duration.AsDuration().Round(time.Millisecond).String()
	}
	if b.StartedAt != nil {
		return time.Since(b.StartedAt.AsTime()).Round(time.Second).String() + "…"
	}
	return ""
}

func runBuilds(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("builds", help{
		usage:    "builds [flags]",
		about:    "Lists recent builds, newest first; with --watch, the newest builds oldest first,\nthen one line per change until interrupted (one WatchBuilds call).",
		examples: []string{"builds", "builds --branch main --status failed", "builds --limit 100 --json", "builds --watch --branch main"},
	}, stderr)
	branch := c.fs.String("branch", "", "only builds of this `branch`")
	repo := c.fs.String("repo", "", "only builds of this `repository`")
	st := c.fs.String("status", "", "only builds in this `status` (queued, running, passed, failed, error, timed_out, canceled)")
	limit := c.fs.Int("limit", 20, "at most `n` builds")
	watch := c.fs.Bool("watch", false, "print the builds, then one line per change until interrupted")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return c.usage("unexpected argument %q: filter with --branch, --repo or --status", pos[0])
	}
	req := &pontusv1.ListBuildsRequest{Branch: *branch, Repo: *repo, Limit: int32(*limit)}
	if *st != "" {
		v, ok := pontusv1.BuildStatus_value["BUILD_STATUS_"+strings.ToUpper(*st)]
		if !ok {
			return c.usage("--status: unknown status %q (queued, leased, running, passed, failed, error, timed_out, canceled)", *st)
		}
		req.Status = pontusv1.BuildStatus(v)
	}
	client, err := c.builds()
	if err != nil {
		return err
	}
	if *watch {
		return watchBuilds(ctx, client, req, c.json, stdout, stderr)
	}
	res, err := client.ListBuilds(ctx, req)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, res)
	}
	safe := termsafe.NewWriter(stdout) // reasons come from runners and tests
	defer safe.Flush()
	tw := tabwriter.NewWriter(safe, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUILD\tSTATUS\tCOMMIT\tSUBJECT\tAUTHOR\tBRANCH\tDURATION\tCREATED\tATTEMPT\tRUNNER\tREASON")
	for _, b := range res.Builds {
		reason := b.Reason
		switch {
		case b.Culprit != "":
			reason = strings.TrimSpace("culprit: " + short(b.Culprit) + "  " + reason)
		case b.BisectOf != 0:
			reason = strings.TrimSpace(fmt.Sprintf("bisecting build %d  %s", b.BisectOf, reason))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", b.Id, status(b.Status), short(b.Commit),
			orPlaceholder(subject(b.Subject, maxSubject), "-"), orPlaceholder(subject(b.Author, 24), "-"), b.Branch,
			buildDuration(b), age(b.CreatedAt.AsTime()), b.Attempt, b.RunnerName, subject(reason, 200))
	}
	return tw.Flush()
}

func runShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("show", help{
		usage:    "show [flags] BUILD|COMMIT",
		about:    "Shows one build: status, why it is pending, per-test results.\n\n" + refHelp,
		examples: []string{"show HEAD", "show 0b6cd8e --exit-status", "show '#12' --json", "show main --repo /srv/git/app.git"},
	}, stderr)
	exitStatus := c.fs.Bool("exit-status", false, "exit 0 if the build passed, 1 if it failed or errored, 3 if it has not finished")
	repo := c.fs.String("repo", "", "the `repository`, when several are watched")
	client, commit, id, err := c.parseBuildRef(ctx, args, repo)
	if err != nil {
		return err
	}
	res, err := client.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: commit, BuildId: id, Repo: *repo})
	if err != nil {
		return err
	}
	b := res.Build
	if c.json {
		err = printJSON(stdout, b)
	} else {
		// Test names and messages come from the build: no terminal escapes.
		safe := termsafe.NewWriter(stdout)
		err = errors.Join(printBuild(safe, b), safe.Flush())
	}
	if err != nil || !*exitStatus {
		return err
	}
	switch b.Status {
	case pontusv1.BuildStatus_BUILD_STATUS_PASSED:
		return nil
	case pontusv1.BuildStatus_BUILD_STATUS_QUEUED, pontusv1.BuildStatus_BUILD_STATUS_LEASED, pontusv1.BuildStatus_BUILD_STATUS_RUNNING:
		return exitError{3}
	}
	return exitError{1}
}

func printBuild(w io.Writer, b *pontusv1.Build) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("build", strconv.FormatInt(b.Id, 10))
	row("status", status(b.Status))
	if b.Status == pontusv1.BuildStatus_BUILD_STATUS_QUEUED {
		row("waiting", b.Reason)
	} else {
		row("reason", b.Reason)
	}
	row("commit", strings.TrimSpace(b.Commit+"  "+subject(b.Subject, 200)))
	author := buildtext.Author(b)
	if t := b.CommittedAt; t.IsValid() && t.AsTime().Unix() > 0 {
		author = strings.TrimPrefix(author+", "+t.AsTime().Local().Format("2006-01-02 15:04 MST"), ", ")
	}
	row("author", author)
	row("repo", b.Repo)
	row("branch", b.Branch)
	if len(b.Labels) > 0 {
		row("labels", strings.Join(b.Labels, " "))
	}
	if b.Attempt > 0 && len(b.Shards) == 0 {
		row("runner", fmt.Sprintf("%s (%s)", b.RunnerName, b.RunnerId))
		row("attempt", fmt.Sprintf("%d of at most %d", b.Attempt, b.MaxAttempts))
	}
	for _, r := range buildtext.ShardRows(b) {
		row(r[0], r[1])
	}
	row("duration", buildDuration(b))
	row("created", b.CreatedAt.AsTime().Local().Format(time.RFC3339))
	for _, a := range b.Attempts {
		if a.Number != b.Attempt {
			row("lost", fmt.Sprintf("attempt %d on %s: %s", a.Number, a.RunnerName, a.Reason))
		}
	}
	row("bisection", b.Bisection)
	if b.BisectOf != 0 {
		row("bisecting", fmt.Sprintf("build %d (a culprit search)", b.BisectOf))
	}
	row("tests", buildtext.Summary(b.Tests))
	if err := tw.Flush(); err != nil {
		return err
	}
	if b.Culprit != "" {
		// Unpadded, so "culprit: <commit>" reads (and greps) the same everywhere.
		fmt.Fprintf(w, "culprit: %s\n", b.Culprit)
	}
	printTests(w, b.Tests)
	return nil
}

// printTests prints per-test results, one line per test and the message of
// each that did not pass, after a blank line; nothing when there are none.
func printTests(w io.Writer, tests []*pontusv1.TestCase) {
	if len(tests) == 0 {
		return
	}
	fmt.Fprintln(w)
	for _, t := range tests {
		runs := ""
		if t.Runs > 1 {
			runs = fmt.Sprintf("  (%d runs)", t.Runs)
		}
		fmt.Fprintf(w, "%-*s %s%s\n", buildtext.OutcomeWidth, buildtext.Outcome(t.Outcome), t.Name, runs)
		if t.Message != "" && t.Outcome != pontusv1.TestOutcome_TEST_OUTCOME_PASSED {
			for _, line := range strings.Split(strings.TrimRight(t.Message, "\n"), "\n") {
				fmt.Fprintf(w, "%*s %s\n", buildtext.OutcomeWidth, "", line)
			}
		}
	}
}

func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("logs", help{
		usage:    "logs [flags] BUILD|COMMIT",
		about:    "Prints a build's log; -f follows it live until the build ends.\n\n" + refHelp,
		examples: []string{"logs -f HEAD", "logs main -f", "logs 0b6cd8e"},
	}, stderr)
	follow := c.fs.Bool("f", false, "follow the log until the build ends")
	repo := c.fs.String("repo", "", "the `repository`, when several are watched")
	client, commit, id, err := c.parseBuildRef(ctx, args, repo)
	if err != nil {
		return err
	}
	if *follow {
		// A long wait says why it waits.
		res, err := client.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: commit, BuildId: id, Repo: *repo})
		if err != nil {
			return err
		}
		if b := res.Build; b.Status == pontusv1.BuildStatus_BUILD_STATUS_QUEUED {
			fmt.Fprintf(stderr, "--- build %d is queued: %s; waiting for it to start ---\n", b.Id, b.Reason)
		}
	}
	stream, err := client.TailLog(ctx, &pontusv1.TailLogRequest{Commit: commit, BuildId: id, Repo: *repo, Follow: *follow})
	if err != nil {
		return err
	}
	defer stream.Close()
	// The log is the tests' output: no terminal escapes reach the terminal.
	safe := termsafe.NewWriter(stdout)
	defer safe.Flush()
	for stream.Receive() {
		m := stream.Msg()
		if m.Reset_ {
			safe.Flush()
			fmt.Fprintf(stderr, "\n--- attempt %d started; log restarts ---\n", m.Attempt)
		}
		if _, err := safe.Write(m.Data); err != nil {
			return err
		}
		if m.Eof {
			safe.Flush()
		}
		if m.Eof && *follow {
			fmt.Fprintf(stderr, "--- build %s ---\n", status(m.Status))
		}
	}
	if err := stream.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

func runRunners(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("runners", help{
		usage:    "runners [flags]",
		about:    "Lists the runners the control plane knows, with their state and builds.",
		examples: []string{"runners", "runners --json"},
	}, stderr)
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return c.usage("unexpected argument %q", pos[0])
	}
	client, err := c.builds()
	if err != nil {
		return err
	}
	res, err := client.ListRunners(ctx, &pontusv1.ListRunnersRequest{})
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSTATE\tLABELS\tCAPACITY\tBUILDS\tLAST SEEN")
	for _, r := range res.Runners {
		ids := make([]string, len(r.BuildIds))
		for i, id := range r.BuildIds {
			ids[i] = strconv.FormatInt(id, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Name, r.Id,
			strings.TrimPrefix(r.State.String(), "RUNNER_STATE_"), strings.Join(r.Labels, " "), r.Capacity,
			strings.Join(ids, " "), age(r.LastSeen.AsTime()))
	}
	return tw.Flush()
}

func runTrigger(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("trigger", help{
		usage: "trigger [flags] BUILD|COMMIT",
		about: "Queues a new build of a commit (a re-run), in the repository and branch of its\n" +
			"newest build unless --repo and --branch say otherwise. A commit never built\n" +
			"before needs its full id, --repo and --branch.\n\n" + refHelp,
		examples: []string{"trigger HEAD", "trigger 0b6cd8e", "trigger '#12'"},
	}, stderr)
	repo := c.fs.String("repo", "", "the `repository` (needed for a commit never built before; an observer must have reported it)")
	branch := c.fs.String("branch", "", "the `branch` (needed for a commit never built before)")
	client, commit, id, err := c.parseBuildRef(ctx, args, repo)
	if err != nil {
		return err
	}
	if id > 0 { // a build number: re-run its commit, in its repository
		res, err := client.GetBuild(ctx, &pontusv1.GetBuildRequest{BuildId: id})
		if err != nil {
			return err
		}
		commit = res.Build.Commit
		if *repo == "" {
			*repo = res.Build.Repo
		}
	}
	res, err := client.TriggerBuild(ctx, &pontusv1.TriggerBuildRequest{Commit: commit, Repo: *repo, Branch: *branch})
	if connect.CodeOf(err) == connect.CodePermissionDenied {
		return fmt.Errorf("%w\nA repository is first built when an observer reports it. With the observer token:\n"+
			"  PONTUS_OBSERVER_TOKEN=... pontus notify --repo %s --branch %s %s", err, orPlaceholder(*repo, "REPO"), orPlaceholder(*branch, "BRANCH"), commit)
	}
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, res.Build)
	}
	fmt.Fprintf(stdout, "build %d queued for %s (%s)\n", res.Build.Id, short(res.Build.Commit), res.Build.Reason)
	return nil
}

// orPlaceholder returns v, or placeholder when v is empty.
func orPlaceholder(v, placeholder string) string {
	if v == "" {
		return placeholder
	}
	return v
}

func runCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("cancel", help{
		usage:    "cancel [flags] BUILD|COMMIT",
		about:    "Cancels a build: a queued one at once, a running one when its runner has\nstopped it.\n\n" + refHelp,
		examples: []string{"cancel HEAD", "cancel '#12'", "cancel 0b6cd8e --repo /srv/git/app.git"},
	}, stderr)
	repo := c.fs.String("repo", "", "the `repository`, when several are watched")
	client, commit, id, err := c.parseBuildRef(ctx, args, repo)
	if err != nil {
		return err
	}
	res, err := client.CancelBuild(ctx, &pontusv1.CancelBuildRequest{Commit: commit, BuildId: id, Repo: *repo})
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, res.Build)
	}
	fmt.Fprintf(stdout, "build %d: %s (%s)\n", res.Build.Id, status(res.Build.Status), res.Build.Reason)
	return nil
}

func runNotify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newClientFlags("notify", help{
		usage: "notify --repo R --branch B [flags] COMMIT...",
		about: "Reports commits to the control plane at once, as an observer would (for git\n" +
			"hooks); needs the observer token in $PONTUS_OBSERVER_TOKEN when tokens are set.\n" +
			"COMMIT is a full id or a revision (HEAD, main) of --repo when it is a local\n" +
			"directory, else of the repository in the current directory.",
		examples: []string{
			`notify --repo "$(git rev-parse --show-toplevel)" --branch "$(git branch --show-current)" HEAD`,
			"notify 3f2a9c… --repo /srv/git/app.git --branch main",
		},
	}, stderr)
	c.tokenVar = "PONTUS_OBSERVER_TOKEN"
	repo := c.fs.String("repo", "", "the `repository` as the observer names it (path or URL)")
	branch := c.fs.String("branch", "", "the `branch` the commit is on")
	cloneURL := c.fs.String("clone-url", "", "`URL` runners fetch from, if not the repository")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	switch {
	case *repo == "":
		return c.usage("--repo is required: the repository as the observer names it")
	case *branch == "":
		return c.usage("--branch is required: the branch the commits are on")
	case len(pos) == 0:
		return c.usage("give at least one COMMIT")
	}
	// Revisions (HEAD, main) are resolved in the repository when it is a
	// local directory, else in the current one.
	dir := "."
	if fi, err := os.Stat(*repo); err == nil && fi.IsDir() {
		dir = *repo
	}
	commits := make([]string, len(pos))
	for i, a := range pos {
		if validate.CommitID("", a) == nil {
			commits[i] = a
			continue
		}
		full, err := revParse(ctx, dir, a)
		if err != nil {
			return c.usage("%v", err)
		}
		commits[i] = full
	}
	hc, opts, err := c.dial()
	if err != nil {
		return err
	}
	client := pontusv1connect.NewObserverServiceClient(hc, c.url, opts...)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := client.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{
		Repo: *repo, Branch: *branch, Commits: commits, CloneUrl: *cloneURL, KeepCursor: true,
		Details: describeForNotify(ctx, *repo, commits, stderr),
	})
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, res)
	}
	for _, b := range res.Builds {
		fmt.Fprintf(stdout, "build %d: %s %s\n", b.Id, short(b.Commit), status(b.Status))
	}
	return nil
}

// describeForNotify reads the subjects, authors, times and trees of commits
// from the repository (repo when it is a local directory, else the current
// one, which is where git runs hooks). Without them the commits are still
// reported, with a warning.
func describeForNotify(ctx context.Context, repo string, commits []string, stderr io.Writer) []*pontusv1.CommitInfo {
	for _, id := range commits {
		if validate.CommitID("commit", id) != nil {
			return nil // the control plane names the bad id
		}
	}
	dir := "."
	if fi, err := os.Stat(repo); err == nil && fi.IsDir() {
		dir = repo
	}
	out, err := git.Output(ctx, dir, git.DescribeArgs(commits)...)
	var infos []*pontusv1.CommitInfo
	if err == nil {
		infos, err = git.ParseDescribe(out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pontus notify: reporting without commit subjects and authors: %v\n", err)
		return nil
	}
	return infos
}

// printProgress prints one line per build state change (for pontus dev).
func printProgress(ctx context.Context, url, token string, w io.Writer) {
	hc, err := dial.HTTPClient(dial.Config{URL: url})
	if err != nil {
		return
	}
	client := pontusv1connect.NewBuildServiceClient(hc, url, dial.Options(dial.Config{URL: url, Token: token})...)
	backoff := dial.NewBackoff(100*time.Millisecond, 2*time.Second)
	type shown struct {
		status  pontusv1.BuildStatus
		culprit string
	}
	last := map[int64]shown{}
	first := true
	for ctx.Err() == nil {
		// The stream starts with a snapshot. At the first connection the
		// builds that had finished before dev started are history, not
		// progress: they are noted, not printed. After a reconnection
		// whatever changed meanwhile is printed.
		stream, err := client.WatchBuilds(ctx, &pontusv1.WatchBuildsRequest{})
		if err == nil {
			snapshot := true
			for stream.Receive() {
				backoff.Reset()
				m := stream.Msg()
				if m.SnapshotDone {
					snapshot, first = false, false
				}
				b := m.Build
				if b == nil {
					continue
				}
				prev, now := last[b.Id], shown{b.Status, b.Culprit}
				if prev == now {
					continue
				}
				last[b.Id] = now
				if snapshot && first && store.IsTerminal(b.Status) {
					continue
				}
				if prev.status == now.status {
					// Only the culprit is new: a search named it.
					fmt.Fprintf(w, "%s  build %-4d culprit: %s\n", time.Now().Format("15:04:05"), b.Id, b.Culprit)
					continue
				}
				fmt.Fprintln(w, termsafe.String(progressLine(b)))
			}
			stream.Close()
		}
		dial.Sleep(ctx, backoff.Next())
	}
}

func progressLine(b *pontusv1.Build) string {
	line := fmt.Sprintf("%s  build %-4d %-10s %-9s %s", time.Now().Format("15:04:05"), b.Id, short(b.Commit), status(b.Status), b.Branch)
	if b.Subject != "" {
		line += "  " + strconv.Quote(subject(b.Subject, maxSubject))
	}
	if b.Duration != nil {
		line += "  " + b.Duration.AsDuration().Round(time.Millisecond).String()
	}
	var failing []string
	for _, t := range b.Tests {
		if t.Outcome == pontusv1.TestOutcome_TEST_OUTCOME_FAILED || t.Outcome == pontusv1.TestOutcome_TEST_OUTCOME_ERROR {
			failing = append(failing, t.Name)
		}
	}
	if len(failing) > 0 {
		line += "  failing: " + strings.Join(failing, ", ")
	}
	if b.Reason != "" && b.Status != pontusv1.BuildStatus_BUILD_STATUS_QUEUED {
		line += "  (" + b.Reason + ")"
	}
	if b.BisectOf != 0 {
		line += fmt.Sprintf("  [bisecting build %d]", b.BisectOf)
	}
	if b.Culprit != "" {
		line += "  culprit: " + b.Culprit
	}
	return line
}
