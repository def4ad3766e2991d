package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pontusAt runs the CLI in this process against the control plane at url.
func pontusAt(t *testing.T, url string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), append(args, "--controlplane", url), &out, &errOut)
	return code, out.String(), errOut.String()
}

// gitRepo makes a repository with n commits on main and returns it and
// its commits, oldest first.
func gitRepo(t *testing.T, n int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	gitIn := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	gitIn("init", "-q", "-b", "main")
	var commits []string
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte{byte('a' + i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		gitIn("add", "f")
		gitIn("commit", "-qm", "commit "+string(rune('a'+i)))
		commits = append(commits, gitIn("rev-parse", "HEAD"))
	}
	gitIn("tag", "v1", commits[0])
	return dir, commits
}

// The CLI takes commits as git users type them: unique prefixes (any
// case), build numbers (#N, short digits), digits that are either, and
// refuses an ambiguous prefix or number naming the candidates.
func TestCLICommitPrefixesAndBuildNumbers(t *testing.T) {
	url := serveTestControlPlane(t)
	abcd1 := "abcd1" + strings.Repeat("e", 35)
	abcd2 := "abcd2" + strings.Repeat("e", 35)
	digits := "0001" + strings.Repeat("9", 36) // all digits, starts like build number 1
	for _, c := range []string{abcd1, abcd2, digits} {
		if code, _, stderr := pontusAt(t, url, "notify", "--repo", "/srv/app", "--branch", "main", c); code != 0 {
			t.Fatalf("notify %s: exit %d: %s", c, code, stderr)
		}
	}
	// Builds 1, 2, 3 are abcd1, abcd2 and digits.
	for _, tc := range []struct {
		arg        string
		code       int
		want       string // in stdout (code 0) or stderr
		wantStdout bool
	}{
		{"abcd1", 0, abcd1, true},
		{"ABCD2", 0, abcd2, true},
		{abcd2, 0, abcd2, true},
		{"2", 0, abcd2, true},
		{"#3", 0, digits, true},
		{"00019", 0, digits, true},               // no build 19: the commit
		{"0001", 1, "'#1' for the build", false}, // build 1 and commit 0001…: refused
		{"abcd", 1, "ambiguous", false},          // two commits
		{"abce", 1, "not_found", false},          // none
		{"1234", 1, "no build #1234", false},     // neither
		{"#0", 2, "not a build number", false},
		{"0", 2, "numbered from 1", false},
	} {
		code, stdout, stderr := pontusAt(t, url, "show", tc.arg)
		got := stderr
		if tc.wantStdout {
			got = stdout
		}
		if code != tc.code || !strings.Contains(got, tc.want) {
			t.Errorf("show %s: exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", tc.arg, code, tc.code, tc.want, stdout, stderr)
		}
	}
	// The ambiguous prefix lists both candidates.
	_, _, stderr := pontusAt(t, url, "show", "abcd")
	if !strings.Contains(stderr, abcd1[:12]) || !strings.Contains(stderr, abcd2[:12]) {
		t.Errorf("show abcd: the candidates are not listed:\n%s", stderr)
	}
	// trigger, logs and cancel take the same references.
	if code, stdout, stderr := pontusAt(t, url, "trigger", "abcd1"); code != 0 || !strings.Contains(stdout, "queued for "+abcd1[:10]) {
		t.Errorf("trigger abcd1: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := pontusAt(t, url, "trigger", "#2"); code != 0 || !strings.Contains(stdout, "queued for "+abcd2[:10]) {
		t.Errorf("trigger #2: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := pontusAt(t, url, "cancel", "abcd1"); code != 0 || !strings.Contains(stdout, "build 4: CANCELED") {
		t.Errorf("cancel abcd1: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := pontusAt(t, url, "logs", "abcd2"); code != 0 {
		t.Errorf("logs abcd2: exit %d\n%s%s", code, stdout, stderr)
	}
}

// Inside a git repository the CLI resolves HEAD, branches, tags and
// HEAD~N with git; outside one it says so, and what else it accepts.
func TestCLIResolvesRevisionsWithGit(t *testing.T) {
	url := serveTestControlPlane(t)
	repo, commits := gitRepo(t, 3)
	// notify resolves revisions of --repo too.
	if code, stdout, stderr := pontusAt(t, url, "notify", "HEAD~2", "HEAD~1", "HEAD", "--repo", repo, "--branch", "main"); code != 0 {
		t.Fatalf("notify HEAD~2 HEAD~1 HEAD: exit %d\n%s%s", code, stdout, stderr)
	}
	outside := t.TempDir()
	for _, tc := range []struct {
		dir, arg string
		code     int
		want     string
	}{
		{repo, "HEAD", 0, commits[2]},
		{repo, "main", 0, commits[2]},
		{repo, "HEAD~2", 0, commits[0]},
		{repo, "v1", 0, commits[0]},
		{repo, "main^", 0, commits[1]},
		{repo, "nosuchbranch", 2, "no such commit in the git repository here"},
		{repo, "-x", 2, "no such commit"}, // after --, never an option to git
		{outside, "HEAD", 2, "no git repository here"},
	} {
		args := []string{"show", tc.arg, "--controlplane", url}
		if strings.HasPrefix(tc.arg, "-") {
			args = []string{"show", "--controlplane", url, "--", tc.arg}
		}
		cmd := pontusProcess(t, tc.dir, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		got := stdout.String()
		if tc.code != 0 {
			got = stderr.String()
		}
		if code != tc.code || !strings.Contains(got, tc.want) {
			t.Errorf("show %s in %s: exit %d (%v), want %d with %q\nstdout:\n%s\nstderr:\n%s", tc.arg, tc.dir, code, err, tc.code, tc.want, stdout.String(), stderr.String())
		}
	}
	// pontus logs -f main follows the build of main's head (it is queued:
	// the stream waits; the test only checks it resolved and started).
	cmd := pontusProcess(t, repo, "logs", "-f", "main", "--controlplane", url)
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, _ := bufio.NewReader(stderrPipe).ReadString('\n')
	if !strings.Contains(line, "build 3 is queued") {
		t.Errorf("logs -f main: first line %q, want it to wait for build 3", line)
	}
}
