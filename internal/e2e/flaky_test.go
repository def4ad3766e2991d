package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// reportWithRetries reports commit on main with build settings retries.
func (c *cluster) reportWithRetries(t *testing.T, commit string, retries int32) {
	t.Helper()
	hc, err := dial.HTTPClient(dial.Config{URL: c.url})
	if err != nil {
		t.Fatal(err)
	}
	obs := pontusv1connect.NewObserverServiceClient(hc, c.url)
	if _, err := obs.ReportCommits(context.Background(), &pontusv1.ReportCommitsRequest{
		Repo: c.repo.Dir, Branch: "main", Commits: []string{commit},
		Settings: &pontusv1.BuildSettings{Retries: retries, Shards: 1}}); err != nil {
		t.Fatalf("ReportCommits: %v", err)
	}
}

// pontusCLI runs the pontus binary against the cluster and returns its
// stdout, failing the test on a non-zero exit.
func (c *cluster) pontusCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(Binary(t), append(args, "--controlplane", c.url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pontus %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func testCase(b *pontusv1.Build, name string) *pontusv1.TestCase {
	for _, tc := range b.Tests {
		if strings.HasPrefix(tc.Name, name+" ") || tc.Name == name {
			return tc
		}
	}
	return nil
}

// A unittest that fails on its first run and passes on its retry is FLAKY
// and its build passes; a test that always fails stays FAILED after three
// runs; `pontus tests --flaky` lists the flaky one with its flip rate, the
// history survives a restart of the control plane, and retention deletes
// it with its build.
func TestFlakyTestsAndHistory(t *testing.T) {
	t.Parallel()
	markers := TempDir(t)
	if err := os.Chmod(markers, 0o777); err != nil {
		t.Fatal(err)
	}
	flaky := fmt.Sprintf("import os\n        m = %q\n        if not os.path.exists(m):\n            open(m, 'w').close()\n            self.fail('first run fails')",
		filepath.Join(markers, "marker"))
	repo := NewRepo(t, map[string]string{
		"tests/test_flaky.py":  pyTest("test_flaky", flaky),
		"tests/test_steady.py": pyTest("test_steady", "pass"),
	})
	c := newCluster(t, repo, "head", "")
	c.startCP(t)
	c.startRunner(t, "a")

	first := repo.Head(t)
	c.reportWithRetries(t, first, 1)
	b := WaitResultStatus(t, c.results, first, 60*time.Second, passed)
	if tc := testCase(b, "test_flaky"); tc == nil || tc.Outcome != pontusv1.TestOutcome_TEST_OUTCOME_FLAKY || tc.Runs != 2 {
		t.Fatalf("test_flaky: %v", tc)
	}
	report, err := os.ReadFile(filepath.Join(c.results, first))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`1 flaky`, `\nFLAKY +test_flaky \(test_flaky\.T\.test_flaky\)  \[2 runs\]\n`, `\[pontus: retrying test_flaky .*\(1 of 1\)\]`} {
		if !regexp.MustCompile(s).Match(report) {
			t.Errorf("report lacks %q:\n%s", s, report)
		}
	}
	if show := c.pontusCLI(t, "show", first); !strings.Contains(show, "FLAKY") || !strings.Contains(show, "(2 runs)") {
		t.Errorf("pontus show:\n%s", show)
	}

	second := repo.Commit(t, "still fine", map[string]string{"README": "x\n"})
	c.reportWithRetries(t, second, 1)
	WaitResultStatus(t, c.results, second, 60*time.Second, passed)

	third := repo.Commit(t, "break it", map[string]string{"tests/test_broken.py": pyTest("test_broken", "self.fail('always')")})
	c.reportWithRetries(t, third, 2)
	b = WaitResultStatus(t, c.results, third, 60*time.Second, failed)
	if tc := testCase(b, "test_broken"); tc == nil || tc.Outcome != pontusv1.TestOutcome_TEST_OUTCOME_FAILED || tc.Runs != 3 {
		t.Fatalf("test_broken: %v", tc)
	}

	// test_flaky ran F P (build 1), P, P: one flip in three steps.
	out := c.pontusCLI(t, "tests", "--flaky")
	if !strings.Contains(out, "test_flaky") || !strings.Contains(out, "33%") || strings.Contains(out, "test_steady") || !strings.Contains(out, "~..") {
		t.Errorf("pontus tests --flaky:\n%s", out)
	}
	var list pontusv1.ListTestsResponse
	raw := c.pontusCLI(t, "tests", "--json", "--branch", "main", "--flaky")
	if err := protojson.Unmarshal([]byte(raw), &list); err != nil {
		t.Fatalf("--json: %v\n%s", err, raw)
	}
	if len(list.Tests) != 1 || list.Tests[0].Flaky != 1 || list.Tests[0].Passed != 2 || len(list.Tests[0].Recent) != 3 {
		t.Errorf("pontus tests --json --flaky: %s", raw)
	}
	client := c.buildClient(t)
	res, err := client.ListTests(context.Background(), &pontusv1.ListTestsRequest{Repo: repo.Dir, Sort: pontusv1.TestSort_TEST_SORT_FLAKIEST})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tests) != 3 || res.Builds != 3 || !strings.Contains(res.Tests[0].Name, "test_flaky") {
		t.Fatalf("ListTests: %v", res.Tests)
	}
	for _, ts := range res.Tests {
		switch {
		case strings.Contains(ts.Name, "test_broken"):
			if ts.Failed != 1 || ts.Passed != 0 || ts.FlipRate != 0 {
				t.Errorf("test_broken: %v", ts)
			}
		case strings.Contains(ts.Name, "test_steady"):
			if ts.Passed != 3 || ts.FlipRate != 0 {
				t.Errorf("test_steady: %v", ts)
			}
		}
	}

	// The history is in the store: a restarted control plane has it.
	c.cp.Kill()
	c.startCP(t)
	if out := c.pontusCLI(t, "tests", "--flaky"); !strings.Contains(out, "test_flaky") {
		t.Errorf("after a restart, pontus tests --flaky:\n%s", out)
	}
	out = c.pontusCLI(t, "tests", "test_flaky (test_flaky.T.test_flaky)")
	outcomes := ""
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 6 && f[2] == "main" {
			outcomes += f[3] + " "
		}
	}
	if outcomes != "PASSED PASSED FLAKY " {
		t.Errorf("pontus tests TEST: runs %q, want PASSED PASSED FLAKY (newest first):\n%s", outcomes, out)
	}

	// Retention keeps the branch's newest build and newest passing one:
	// the first build goes, and its FLAKY run with it.
	c.cp.Kill()
	cfg, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "[controlplane]\n", "[controlplane]\nkeep_builds = \"1\"\n", 1))
	if err := os.WriteFile(c.config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	c.startCP(t)
	WaitFor(t, "the first build pruned", 20*time.Second, func() (bool, string) {
		bs := c.builds(t, first)
		return len(bs) == 0, fmt.Sprint(len(bs), " builds of the first commit")
	})
	if out := c.pontusCLI(t, "tests", "--flaky"); strings.Contains(out, "test_flaky") || !strings.Contains(out, "no flaky tests") {
		t.Errorf("after retention, pontus tests --flaky:\n%s", out)
	}
	res, err = client.ListTests(context.Background(), &pontusv1.ListTestsRequest{Repo: repo.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Builds != 2 {
		t.Errorf("after retention the history spans %d builds, want 2", res.Builds)
	}
}
