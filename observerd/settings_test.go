package observerd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// commitFile commits content as path and returns the commit id.
func commitFile(tb testing.TB, dir, path, content, msg string) string {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(dir, path), []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	gitT(tb, dir, "add", path)
	gitT(tb, dir, "commit", "--quiet", "-m", msg)
	return gitT(tb, dir, "rev-parse", "HEAD")
}

// In head mode, a burst of commits is reported as its head, with the commits
// it skipped (oldest first) and the previous head they follow, so the
// control plane can bisect them.
func TestHeadModeReportsSkippedCommits(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	c0 := headOf(t, dir, "main")
	startObserver(t, testConfig(t, cp, dir))
	cp.waitCursor(t, repo, "main", c0)

	// Three commits arrive at once, as a push does.
	gitT(t, dir, "checkout", "--quiet", "-b", "work")
	c1 := commit(t, dir, "one")
	c2 := commit(t, dir, "two")
	c3 := commit(t, dir, "three")
	gitT(t, dir, "checkout", "--quiet", "main")
	gitT(t, dir, "merge", "--quiet", "--ff-only", "work")
	cp.waitCursor(t, repo, "main", c3)

	req := cp.requestOf(c3)
	if diff := cmp.Diff([]string{c3}, req.GetCommits()); diff != "" {
		t.Errorf("commits (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{c1, c2}, req.GetSkipped()); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
	if req.GetSkippedAfter() != c0 {
		t.Errorf("skipped_after = %s, want %s", req.GetSkippedAfter(), c0)
	}
	// The skipped commits are described too: bisection builds need their trees.
	if info := cp.detailsOf(c1); info.GetTree() != gitT(t, dir, "rev-parse", c1+"^{tree}") {
		t.Errorf("skipped commit described as %v", info)
	}
	want := &pontusv1.BuildSettings{Shards: 1, Bisect: true, Reuse: true}
	if !proto.Equal(req.GetSettings(), want) {
		t.Errorf("settings = %v, want %v", req.GetSettings(), want)
	}
}

// A repository's .pontus.toml lowers the observer's settings for the
// commits that carry it; a broken one is logged and ignored.
func TestRepoSettingsAreCeilinged(t *testing.T) {
	t.Parallel()
	cp := newFakeCP(t)
	dir := newRepo(t)
	repo := realpath(t, dir)
	cfg := testConfig(t, cp, dir)
	cfg.Mode = ModeEvery
	cfg.Retries, cfg.Shards, cfg.Reuse = 1, 4, false
	stop, logs := startObserver(t, cfg)
	cp.waitCursor(t, repo, "main", headOf(t, dir, "main"))

	asks := commitFile(t, dir, ".pontus.toml", "test_command = \"make\"\n[build]\nretries = 3\nshards = 2\nbisect = false\nreuse = true\n", "settings")
	cp.waitCursor(t, repo, "main", asks)
	broken := commitFile(t, dir, ".pontus.toml", "[build]\nshards = 0\n", "broken settings")
	cp.waitCursor(t, repo, "main", broken)
	stop()

	obs := &pontusv1.BuildSettings{Retries: 1, Shards: 4, Bisect: true}
	if got := cp.requestOf(asks).GetSettings(); !proto.Equal(got, obs) {
		t.Errorf("report settings = %v, want %v", got, obs)
	}
	// More retries and reuse than the observer allows are not granted.
	want := &pontusv1.BuildSettings{Retries: 1, Shards: 2}
	if got := cp.detailsOf(asks).GetSettings(); !proto.Equal(got, want) {
		t.Errorf("commit settings = %v, want %v", got, want)
	}
	if got := cp.detailsOf(broken).GetSettings(); got != nil {
		t.Errorf("a broken .pontus.toml gave settings %v; want the observer's", got)
	}
	if n := logs.count("the commit's .pontus.toml is not usable; building it with the observer's settings"); n != 1 {
		t.Errorf("%d warnings about the broken .pontus.toml, want 1", n)
	}

	// With repo_settings = false the file is not read.
	cfg.RepoSettings = false
	stop, _ = startObserver(t, cfg)
	ignored := commitFile(t, dir, ".pontus.toml", "[build]\nshards = 1\n", "ignored settings")
	cp.waitCursor(t, repo, "main", ignored)
	stop()
	if got := cp.detailsOf(ignored).GetSettings(); got != nil {
		t.Errorf("repo_settings = false, yet the commit got settings %v", got)
	}
}
