package main

import (
	"bytes"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// A commit reported by pontus notify from a real repository is listed by
// pontus builds with its subject (not cut below 40 characters) and author,
// and pontus show prints its subject, author <email> and date.
func TestCLIShowsCommitSubjects(t *testing.T) {
	url := serveTestControlPlane(t)
	repo := t.TempDir()
	subj := "Count doctest lines again so that simplejson shows 181 tests"
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"-c", "user.name=Ada Lovelace", "-c", "user.email=ada@example.com", "commit", "-q", "--allow-empty", "-m", subj + "\n\nThe body is not shown."},
	} {
		if out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	head, err := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	commit := strings.TrimSpace(string(head))
	pontus := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if code := run(t.Context(), append([]string{args[0], "--controlplane", url}, args[1:]...), &out, &errOut); code != 0 {
			t.Fatalf("pontus %v: exit %d\n%s%s", args, code, out.String(), errOut.String())
		}
		return out.String()
	}
	pontus("notify", "--repo", repo, "--branch", "main", commit)

	list := pontus("builds")
	if !strings.Contains(list, "SUBJECT") || !strings.Contains(list, "AUTHOR") {
		t.Errorf("pontus builds has no SUBJECT or AUTHOR column:\n%s", list)
	}
	if !strings.Contains(list, subj[:40]) || !strings.Contains(list, "Ada Lovelace") {
		t.Errorf("pontus builds lacks the subject's first 40 characters or the author:\n%s", list)
	}
	if !strings.Contains(list, commit[:10]) || strings.Contains(list, "The body") {
		t.Errorf("pontus builds:\n%s", list)
	}

	show := pontus("show", commit)
	for _, want := range []string{subj, "Ada Lovelace <ada@example.com>", "QUEUED"} {
		if !strings.Contains(show, want) {
			t.Errorf("pontus show lacks %q:\n%s", want, show)
		}
	}
	if !regexp.MustCompile(`author: +Ada Lovelace <ada@example.com>, \d{4}-\d\d-\d\d \d\d:\d\d`).MatchString(show) {
		t.Errorf("pontus show has no author line with a date:\n%s", show)
	}
}

// pontus show spells statuses and outcomes as the API does, prints a tests
// summary with plurals right, and keeps the test names in one column.
func TestPrintBuildFormat(t *testing.T) {
	t.Parallel()
	tc := func(name string, o pontusv1.TestOutcome, msg string) *pontusv1.TestCase {
		return &pontusv1.TestCase{Name: name, Outcome: o, Message: msg, Duration: durationpb.New(0)}
	}
	b := &pontusv1.Build{
		Id: 7, Status: pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT, Reason: "timed out after 3s",
		Commit: strings.Repeat("b", 40), Branch: "main", Repo: "/srv/app",
		Tests: []*pontusv1.TestCase{
			tc("test_fail", pontusv1.TestOutcome_TEST_OUTCOME_FAILED, "AssertionError: 1 != 2"),
			tc("test_err1", pontusv1.TestOutcome_TEST_OUTCOME_ERROR, "boom"),
			tc("test_err2", pontusv1.TestOutcome_TEST_OUTCOME_ERROR, ""),
			tc("test_flaky", pontusv1.TestOutcome_TEST_OUTCOME_FLAKY, ""),
			tc("test_skip", pontusv1.TestOutcome_TEST_OUTCOME_SKIPPED, "not today"),
			tc("test_ok", pontusv1.TestOutcome_TEST_OUTCOME_PASSED, ""),
		},
	}
	var out bytes.Buffer
	if err := printBuild(&out, b); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, re := range []string{`\nstatus: +TIMED_OUT\n`, `\nreason: +timed out after 3s\n`,
		`\ntests: +1 passed, 1 failed, 2 errors, 1 skipped, 1 flaky\n`} {
		if !regexp.MustCompile(re).MatchString(s) {
			t.Errorf("pontus show does not match %s:\n%s", re, s)
		}
	}
	for _, want := range []string{"FAILED  test_fail\n        AssertionError: 1 != 2\n", "SKIPPED test_skip\n        not today\n",
		"FLAKY   test_flaky\n", "ERROR   test_err1\n", "PASSED  test_ok\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("pontus show lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "TIMED OUT") {
		t.Errorf("status spelled two ways:\n%s", s)
	}
	b.Tests = b.Tests[5:]
	out.Reset()
	if err := printBuild(&out, b); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`\ntests: +1 passed, 0 failed\n`).MatchString(out.String()) {
		t.Errorf("summary of one passing test:\n%s", out.String())
	}
}
