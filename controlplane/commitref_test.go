package controlplane

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// Every RPC that names a build by commit takes a unique prefix of 4+ hex
// characters; an ambiguous one lists its candidates, a short or non-hex one
// says what is accepted, build numbers included.
func TestCommitPrefixes(t *testing.T) {
	cp := startCP(t, testConfig(t))
	ctx := context.Background()
	abcd1 := "abcd1" + strings.Repeat("0", 35)
	abcd2 := "abcd2" + strings.Repeat("0", 35)
	res, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{
		Repo: "/srv/repo", Branch: "main", Commits: []string{abcd1, abcd2},
		Details: []*pontusv1.CommitInfo{{Id: abcd2, Subject: "fix the parser"}},
	})
	if err != nil || len(res.Builds) == 0 {
		t.Fatalf("ReportCommits: %v %v", res, err)
	}

	// Unique: GetBuild, TailLog, TriggerBuild and CancelBuild all resolve it.
	for _, p := range []string{"abcd1", "abcd2", abcd2} {
		got, err := cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: p})
		if err != nil || !strings.HasPrefix(got.Build.Commit, p) {
			t.Fatalf("GetBuild %s: %v %v", p, got, err)
		}
	}
	tr, err := cp.builds.TriggerBuild(ctx, &pontusv1.TriggerBuildRequest{Commit: "abcd1"})
	if err != nil || tr.Build.Commit != abcd1 {
		t.Fatalf("TriggerBuild abcd1: %v %v", tr, err)
	}
	tail, err := cp.builds.TailLog(ctx, &pontusv1.TailLogRequest{Commit: "abcd1"})
	if err != nil {
		t.Fatalf("TailLog abcd1: %v", err)
	}
	for tail.Receive() {
	}
	if err := tail.Err(); err != nil {
		t.Fatalf("TailLog abcd1: %v", err)
	}
	c, err := cp.builds.CancelBuild(ctx, &pontusv1.CancelBuildRequest{Commit: "abcd1"})
	if err != nil || c.Build.Id != tr.Build.Id || c.Build.Status != pontusv1.BuildStatus_BUILD_STATUS_CANCELED {
		t.Fatalf("CancelBuild abcd1 canceled %v, %v; want the triggered build %d", c, err, tr.Build.Id)
	}

	// Ambiguous: invalid_argument naming both, with what is known of each.
	_, err = cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: "abcd"})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "ambiguous") ||
		!strings.Contains(err.Error(), abcd1[:12]) || !strings.Contains(err.Error(), abcd2[:12]) ||
		!strings.Contains(err.Error(), `"fix the parser"`) || !strings.Contains(err.Error(), "/srv/repo main") {
		t.Errorf("GetBuild abcd: %v; want invalid_argument listing both commits", err)
	}
	_, err = cp.builds.TriggerBuild(ctx, &pontusv1.TriggerBuildRequest{Commit: "abcd"})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("TriggerBuild abcd: %v; want invalid_argument", err)
	}

	// No such commit: not_found; one never built cannot be triggered by prefix.
	_, err = cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: "abce"})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "starting with abce") {
		t.Errorf("GetBuild abce: %v; want not_found", err)
	}
	_, err = cp.builds.TriggerBuild(ctx, &pontusv1.TriggerBuildRequest{Commit: "abce", Repo: "/srv/repo", Branch: "main"})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "full id") {
		t.Errorf("TriggerBuild of an unknown prefix: %v; want not_found asking for the full id", err)
	}
	// In another repository: not found there.
	_, err = cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: "abcd1", Repo: "/srv/other"})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("GetBuild abcd1 in /srv/other: %v; want not_found", err)
	}

	// Too short, not hex, a build number in commit: invalid_argument that
	// points to build_id.
	for _, bad := range []string{"abc", "12", "HEAD", "ABCD", "abcd-", strings.Repeat("a", 65)} {
		_, err := cp.builds.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: bad})
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "build_id") {
			t.Errorf("GetBuild %q: %v; want invalid_argument mentioning build_id", bad, err)
		}
	}
}

// A commit that only a live build has (not yet in the store's answer) is
// found by prefix too: resolveCommit overlays the live builds.
func TestCommitPrefixSeesLiveBuilds(t *testing.T) {
	cp := startCP(t, testConfig(t))
	d := cp.server.d
	commit := "feed" + strings.Repeat("1", 36)
	d.mu.Lock()
	d.newBuildLocked(&pontusv1.Build{Repo: "/srv/repo", Branch: "main", Commit: commit}) // its write not enqueued
	d.mu.Unlock()
	got, err := d.resolveCommit(context.Background(), "feed", "")
	if err != nil || got != commit {
		t.Fatalf("resolveCommit feed = %q, %v; want the live build's commit", got, err)
	}
}
