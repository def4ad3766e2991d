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
