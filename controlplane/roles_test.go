package controlplane

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// TestTriggerStaysInItsLane: the user token re-runs what observers reported,
// with the observer's clone URL and labels, and cannot make runners fetch a
// repository nobody reported.
func TestTriggerStaysInItsLane(t *testing.T) {
	cfg := testConfig(t)
	cfg.RunnerToken, cfg.ObserverToken, cfg.UserToken = "runner-secret", "observer-secret", "user-secret"
	cp := startCP(t, cfg)
	cp.connect(t, "runner-secret", "observer-secret", "user-secret")
	ctx := context.Background()
	if _, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{
		Repo: "app", Branch: "main", Commits: []string{commitA}, CloneUrl: "https://git.example.com/app.git", Labels: []string{"wasm"},
	}); err != nil {
		t.Fatal(err)
	}

	// An unreported repository, as a dashboard login would try it.
	_, err := cp.builds.TriggerBuild(ctx, &pontusv1.TriggerBuildRequest{Commit: commitB, Repo: "/tmp/evil", Branch: "main"})
	if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "repo:") ||
		!strings.Contains(err.Error(), "observer token") {
		t.Fatalf("trigger of an unreported repository: got %v, want permission_denied naming repo and the observer token", err)
	}
	list, err := cp.builds.ListBuilds(ctx, &pontusv1.ListBuildsRequest{})
	if err != nil || len(list.Builds) != 1 {
		t.Fatalf("after the refused trigger: %v builds, err %v; want only the reported one", len(list.GetBuilds()), err)
	}

	for _, tc := range []struct {
		name   string
		req    *pontusv1.TriggerBuildRequest
		branch string
	}{
		{"re-run of a reported commit", &pontusv1.TriggerBuildRequest{Commit: commitA}, "main"},
		{"new commit of a reported repository", &pontusv1.TriggerBuildRequest{Commit: commitC, Repo: "app", Branch: "dev"}, "dev"},
	} {
		res, err := cp.builds.TriggerBuild(ctx, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b := res.Build
		if b.Repo != "app" || b.Branch != tc.branch || b.CloneUrl != "https://git.example.com/app.git" ||
			len(b.Labels) != 1 || b.Labels[0] != "wasm" {
			t.Errorf("%s: build has repo %q branch %q clone URL %q labels %v; want the observer's clone URL and labels",
				tc.name, b.Repo, b.Branch, b.CloneUrl, b.Labels)
		}
	}

	// The observer token is the way in for a new repository.
	if _, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{
		Repo: "/srv/other", Branch: "main", Commits: []string{commitB},
	}); err != nil {
		t.Fatalf("report with the observer token: %v", err)
	}
}

// A commit with builds in two repositories is ambiguous without repo:
// every RPC that takes a commit says so, naming both, and repo chooses.
func TestCommitInTwoRepositoriesNeedsRepo(t *testing.T) {
	cp := startCP(t, testConfig(t))
	ctx := context.Background()
	app := cp.report(t, "main", nil, commitA)[0] // in /srv/repo
	res, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/srv/lib", Branch: "main", Commits: []string{commitA}})
	if err != nil {
		t.Fatal(err)
	}
	lib := res.Builds[0]
	ambiguous := func(name string, err error) {
		t.Helper()
		if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), `"/srv/lib"`) ||
			!strings.Contains(err.Error(), `"/srv/repo"`) || !strings.Contains(err.Error(), "repo") {
			t.Errorf("%s without repo: %v; want failed_precondition naming both repositories", name, err)
		}
	}
	_, err = cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: commitA})
	ambiguous("GetBuild", err)
	_, err = cp.builds.TriggerBuild(ctx, &pontusv1.TriggerBuildRequest{Commit: commitA})
	ambiguous("TriggerBuild", err)
	_, err = cp.builds.CancelBuild(ctx, &pontusv1.CancelBuildRequest{Commit: commitA})
	ambiguous("CancelBuild", err)
	stream, err := cp.builds.TailLog(ctx, &pontusv1.TailLogRequest{Commit: commitA})
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
		stream.Close()
	}
	ambiguous("TailLog", err)

	got, err := cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: commitA, Repo: "/srv/lib"})
	if err != nil || got.Build.Id != lib.Id {
		t.Fatalf("GetBuild with repo /srv/lib: %v, %v; want build %d", got.GetBuild().GetId(), err, lib.Id)
	}
	c, err := cp.builds.CancelBuild(ctx, &pontusv1.CancelBuildRequest{Commit: commitA, Repo: "/srv/repo"})
	if err != nil || c.Build.Id != app.Id || c.Build.Status != pontusv1.BuildStatus_BUILD_STATUS_CANCELED {
		t.Fatalf("CancelBuild with repo /srv/repo: %v, %v; want build %d canceled", c.GetBuild(), err, app.Id)
	}
	// Finished or not, the ambiguity stays until repo is given.
	_, err = cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: commitA})
	ambiguous("GetBuild after one finished", err)
	tr, err := cp.builds.TriggerBuild(ctx, &pontusv1.TriggerBuildRequest{Commit: commitA, Repo: "/srv/repo"})
	if err != nil || tr.Build.Repo != "/srv/repo" {
		t.Fatalf("TriggerBuild with repo: %v, %v", tr.GetBuild(), err)
	}
	// A commit of one repository needs no repo.
	cp.report(t, "main", nil, commitB)
	if _, err := cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: commitB}); err != nil {
		t.Fatalf("GetBuild of a commit in one repository: %v", err)
	}
}
