package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

func TestParseRetention(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"": "{0 0s}", "1000": "{1000 0s}", "30d": "{0 720h0m0s}", "36h": "{0 36h0m0s}",
		"0": "error", "-3": "error", "30m": "error", "d": "error", "forever": "error", "1.5d": "error",
	} {
		r, err := parseRetention(in)
		got := fmt.Sprint(r)
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("parseRetention(%q) = %s (%v), want %s", in, got, err, want)
		}
	}
}

// Retention deletes old finished builds and logs, keeps each branch's
// newest build and its newest passing build, and touches result files only
// with prune_results.
func TestRetention(t *testing.T) {
	t.Parallel()
	for _, pruneResults := range []bool{false, true} {
		t.Run(fmt.Sprint("prune_results=", pruneResults), func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.KeepBuilds, cfg.KeepLogs, cfg.PruneResults = "3", "2", pruneResults
			cp := serveCP(t, cfg)
			runner := cp.register(t, "r1")
			ctx := context.Background()
			// main: 1 PASSED, 2 FAILED, 3 FAILED; dev: 4 FAILED; main: 5 FAILED, 6 FAILED
			var commits []string
			for i, st := range []pontusv1.BuildStatus{passed, failed, failed, failed, failed, failed} {
				commit := fmt.Sprintf("%040x", 0xabc0+i)
				commits = append(commits, commit)
				branch := "main"
				if i == 3 {
					branch = "dev"
				}
				if _, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: branch, Commits: []string{commit}}); err != nil {
					t.Fatal(err)
				}
				job := cp.acquire(t, runner, 0)
				out := []byte("output\n")
				if _, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: 1, Data: out}); err != nil {
					t.Fatal(err)
				}
				if _, err := cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: 1, Status: st, LogSize: int64(len(out))}); err != nil {
					t.Fatal(err)
				}
				waitResult(t, cfg.ResultsDir, commit, job.JobId)
			}
			builds, logs, err := cp.srv.prune(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// keep_builds = 3 keeps 4, 5, 6 (the newest three) and 1 (main's
			// newest passing build); 2 and 3 go. keep_logs = 2 then keeps the
			// logs of 5 and 6, and of 1 (newest passing) and 4 (dev's newest).
			if builds != 2 || logs != 0 {
				t.Errorf("pruned %d builds and %d logs, want 2 and 0", builds, logs)
			}
			res, err := cp.builds.ListBuilds(ctx, &pontusv1.ListBuildsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, b := range res.Builds {
				ids = append(ids, b.Id)
			}
			if fmt.Sprint(ids) != "[6 5 4 1]" {
				t.Errorf("builds left: %v, want [6 5 4 1]", ids)
			}
			ents, _ := os.ReadDir(filepath.Join(cfg.DataDir, "logs"))
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			slices.Sort(names)
			if strings.Join(names, " ") != "1-1.log 4-1.log 5-1.log 6-1.log" {
				t.Errorf("logs left: %v", names)
			}
			for i, c := range commits {
				_, err := os.Stat(filepath.Join(cfg.ResultsDir, c+".json"))
				gone := pruneResults && (i == 1 || i == 2)
				if gone != (err != nil) {
					t.Errorf("prune_results=%v: result files of build %d: %v", pruneResults, i+1, err)
				}
			}
			// A second round has nothing to do.
			if b, l, err := cp.srv.prune(ctx); b != 0 || l != 0 || err != nil {
				t.Errorf("second round pruned %d builds, %d logs (%v)", b, l, err)
			}
			if v, _ := series(metricsText(t, cp, nil), "pontus_pruned_total", `what="builds"`); v < 2 {
				t.Errorf("pontus_pruned_total{what=builds} = %v", v)
			}
		})
	}
}

// keep_logs alone deletes logs but keeps the builds.
func TestRetentionOfLogsOnly(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.KeepLogs = "1"
	cp := serveCP(t, cfg)
	runner := cp.register(t, "r1")
	first := runJob(t, &cp.testCP, runner, "/srv/repo", commitA, failed, "one\n")
	runJob(t, &cp.testCP, runner, "/srv/repo", commitB, failed, "two\n")
	waitResult(t, cfg.ResultsDir, commitB, first+1)
	waitResult(t, cfg.ResultsDir, commitA, first)
	// Both are on main: build 2 is main's newest; build 1 is neither newest
	// nor passing, and beyond keep_logs = 1.
	builds, logs, err := cp.srv.prune(context.Background())
	if err != nil || builds != 0 || logs != 1 {
		t.Fatalf("pruned %d builds, %d logs (%v); want 0 and 1", builds, logs, err)
	}
	if b := cp.build(t, first); b.Status != failed {
		t.Fatalf("build %d: %v", first, b.Status)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "logs", fmt.Sprintf("%d-1.log", first))); err == nil {
		t.Fatal("build 1's log is still there")
	}
}
