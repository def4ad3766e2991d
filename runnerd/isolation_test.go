package runnerd

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// huntScript is a step that looks for token everywhere a step could read
// it: every process's environment, every file under the workdir, the token
// file. It never holds the token itself (it is given reversed), and prints
// FOUND for each place that has it.
func huntScript(token, workdir, tokenFile string) string {
	rev := []byte(token)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return fmt.Sprintf(`tok=$(printf %%s '%s' | rev)
for f in /proc/[0-9]*/environ; do grep -qaF "$tok" "$f" 2>/dev/null && echo "FOUND in $f"; done
grep -rlaF "$tok" %s 2>/dev/null | sed 's/^/FOUND in /'
grep -laF "$tok" %s 2>/dev/null | sed 's/^/FOUND in /'
echo "SEARCHED as uid $(id -u) with HOME=$HOME"`, rev, workdir, tokenFile)
}

func randomToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		t.Fatal(err)
	}
	return "tok-" + hex.EncodeToString(b)
}

// A step cannot find the runner's token: not in any process's environment
// (the runner's own included), the workdir or the token file. The runner
// runs as its own process with the token in its environment and in a token
// file, as `pontus runnerd` does. As root, the step runs as step_user with
// a home under the workdir; as another user, the step runs as that user and
// only the runner being non-dumpable keeps /proc/<runner>/environ closed
// (its token file is that user's to read: see the README).
func TestStepCannotReadToken(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the runner as root and as an unprivileged user")
	}
	nobody, err := lookupStepUser(DefaultStepUser)
	if err != nil {
		t.Skip(err)
	}
	for _, asRoot := range []bool{true, false} {
		name := "runner as root"
		if !asRoot {
			name = "runner as " + DefaultStepUser
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeCP(t)
			fake.start()
			top := openDir(t)
			repo := newRepoIn(t, filepath.Join(top, "repo"))
			c := repo.commit(map[string]string{"README": "x\n"})
			token := randomToken(t)
			secrets := filepath.Join(top, "secrets")
			if err := os.Mkdir(secrets, 0o700); err != nil {
				t.Fatal(err)
			}
			tokenFile := filepath.Join(secrets, "runner.token")
			if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			workdir := filepath.Join(top, "work")
			var attr *syscall.SysProcAttr
			search := tokenFile
			if !asRoot {
				// The test binary must be reachable by the runner's user.
				exe, err := os.Executable()
				if err != nil {
					t.Fatal(err)
				}
				data, err := os.ReadFile(exe)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(top, "runnerd.test"), data, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(workdir, 0o755); err != nil {
					t.Fatal(err)
				}
				for _, p := range []string{workdir, secrets, tokenFile} {
					if err := os.Chown(p, nobody.uid, nobody.gid); err != nil {
						t.Fatal(err)
					}
				}
				// git refuses to clone a repository another user owns.
				if err := nobody.chownTree(repo.dir); err != nil {
					t.Fatal(err)
				}
				attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(nobody.uid), Gid: uint32(nobody.gid), Groups: []uint32{}}}
				search = "/dev/null" // the token file is the runner user's own
			}
			exe := ""
			env := []string{"PONTUS_RUNNER_TOKEN=" + token, "PONTUS_RUNNER_TOKEN_FILE=" + tokenFile}
			if !asRoot {
				exe = filepath.Join(top, "runnerd.test")
				env = append(env, "HOME="+workdir)
			}
			cmd, _ := startHelper(t, fake, exe, workdir, huntScript(token, workdir, search), env, attr)
			req, log := fake.waitDone(fake.enqueue(repo.dir, c))
			wantStatus(t, req, log, passed)
			want := fmt.Sprintf("SEARCHED as uid %d with HOME=%s", nobody.uid, filepath.Join(workdir, "jobs", "1-1.home"))
			if !asRoot {
				want = fmt.Sprintf("SEARCHED as uid %d", nobody.uid)
			}
			if strings.Contains(log, "\nFOUND ") || !strings.Contains(log, want) {
				t.Errorf("the step found the token or did not search as %q:\n%s", want, log)
			}
			fake.mu.Lock()
			for _, a := range fake.auth {
				if a != "Bearer "+token {
					t.Errorf("the runner sent Authorization %q, not its token", a)
				}
			}
			fake.mu.Unlock()
			// The runner's environment does hold the token: the search
			// above could have found it.
			environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
			if err != nil || !strings.Contains(string(environ), token) {
				t.Errorf("the runner's environment lacks the token (%v)", err)
			}
		})
	}
}

// A job cannot change what a later job runs. Its step, running as
// step_user, cannot write into the cache clone its checkout borrows objects
// from; and even hooks and a core.hooksPath planted in the cache clone
// (what a step of a runner that is not root could do) never run: the next
// commit's failing test fails.
func TestJobCannotPoisonLaterJobs(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	good := repo.commit(map[string]string{"tests/test_ok.py": passingTest})
	cfg := testConfig(t, fake)
	cfg.Capacity = 1
	marker := filepath.Join(openDir(t), "hook-ran")
	// The step tries every way into the cache clone it can find.
	cfg.TestCommand = `cache=$(dirname "$(cat .git/objects/info/alternates)")
for f in "$cache/hooks/post-checkout" "$cache/config" "$cache/objects/info/alternates" "$cache/HEAD"; do
  if (echo evil >> "$f") 2>/dev/null; then echo "WROTE $f"; fi
done
if mkdir "$cache/hooks/x" 2>/dev/null; then echo "WROTE $cache/hooks"; fi
echo "HEAD is $(git log -1 --format=%H)"
python3 -m unittest discover -s tests`
	startRunner(t, cfg)
	req, log := fake.waitDone(fake.enqueue(repo.dir, good))
	wantStatus(t, req, log, passed)
	if strings.Contains(log, "\nWROTE ") && os.Geteuid() == 0 {
		t.Errorf("a step wrote into the cache clone:\n%s", log)
	}
	// The step's own git reads the commit through the cache's objects.
	if !strings.Contains(log, "\nHEAD is "+good+"\n") {
		t.Errorf("git in the checkout does not see the commit:\n%s", log)
	}

	// Plant hooks in the cache clone and point its core.hooksPath at more:
	// each one makes the tests pass and leaves a marker.
	cache := newRepoCache(cfg.Workdir, nil, nil).cloneDir(repo.dir)
	hook := fmt.Sprintf("#!/bin/sh\ntouch %s\nfor d in \"$PWD\" \"$GIT_WORK_TREE\"; do [ -d \"$d/tests\" ] && printf '%%s' %q > \"$d/tests/test_ok.py\"; done\nexit 0\n",
		marker, passingTest)
	hooksPath := openDir(t)
	for _, dir := range []string{filepath.Join(cache, "hooks"), hooksPath} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"post-checkout", "reference-transaction", "post-merge", "pre-auto-gc"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(hook), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	repoGit(t, cfg, repo.dir, "config", "core.hooksPath", hooksPath)

	bad := repo.commit(map[string]string{"tests/test_ok.py": failingTest})
	req, log = fake.waitDone(fake.enqueue(repo.dir, bad))
	wantStatus(t, req, log, failed)
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("a hook planted in the cache clone ran")
	}
}

// A clone URL is checked against allowed_repositories as git reads it:
// percent-escapes decoded and the path cleaned, so %2e%2e cannot climb out
// of an allowed directory.
func TestPercentEncodedURLRefused(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	top := t.TempDir()
	allowed := newRepoIn(t, filepath.Join(top, "allowed", "app"))
	ok := allowed.commit(map[string]string{"tests/test_ok.py": passingTest})
	evil := newRepoIn(t, filepath.Join(top, "evil"))
	marker := filepath.Join(top, "evil-ran")
	c := evil.commit(map[string]string{"tests/test_evil.py": "import unittest\nopen(" + strconv.Quote(marker) + ", 'w').close()\n"})
	cfg := testConfig(t, fake)
	cfg.AllowedRepositories = []string{filepath.Join(top, "allowed") + "/**", "file://" + filepath.Join(top, "allowed") + "/**"}
	startRunner(t, cfg)

	for _, url := range []string{
		"file://" + top + "/allowed/%2e%2e/evil",
		"file://" + top + "/allowed/%2E%2E/evil",
		"file://" + top + "/allowed/app/%2e%2e%2f%2e%2e/evil",
		"file://" + top + "/allowed/%252e%252e/evil",
	} {
		req, log := fake.waitDone(fake.enqueueJob(&pontusv1.Job{Repo: "evil", CloneUrl: url, Commit: c}))
		wantStatus(t, req, log, errorStatus)
		if !strings.HasPrefix(req.GetReason(), "invalid job: clone_url:") {
			t.Errorf("%s: reason %q", url, req.GetReason())
		}
	}
	// Escapes that name an allowed repository are fine.
	req, log := fake.waitDone(fake.enqueueJob(&pontusv1.Job{Repo: "app", CloneUrl: "file://" + top + "/allowed/%61pp", Commit: ok}))
	wantStatus(t, req, log, passed)
	if _, err := os.Stat(marker); err == nil {
		t.Error("the tests of a repository outside allowed_repositories ran")
	}
}

func TestNormalizeCloneURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ raw, fetch, checked, err string }{
		{raw: "/srv/git/app", fetch: "/srv/git/app", checked: "/srv/git/app"},
		{raw: "/srv/git//app/", fetch: "/srv/git/app", checked: "/srv/git/app"},
		{raw: "file:///srv/git/%61pp", fetch: "file:///srv/git/app", checked: "file:///srv/git/app"},
		{raw: "file:///srv/git/%2e%2e/evil", err: "'..' path element"},
		{raw: "file:///srv/git/%2E/app", err: "'..' path element"},
		{raw: "file:///srv/git/%2525", err: "'%'"},
		{raw: "file://otherhost/srv/git/app", err: "file:///path"},
		{raw: "https://git.example.com/team/%61pp", fetch: "https://git.example.com/team/%61pp", checked: "https://git.example.com/team/app"},
		{raw: "https://git.example.com/team/a%2F..%2F..%2Fother", err: "'..' path element"},
		{raw: "https://git.example.com/team/x%2Fy", fetch: "https://git.example.com/team/x%2Fy", checked: "https://git.example.com/team/x/y"},
		{raw: "git@example.com:team/app.git", fetch: "git@example.com:team/app.git", checked: "git@example.com:team/app.git"},
	} {
		fetch, checked, err := normalizeCloneURL(tc.raw)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one saying %q", tc.raw, err, tc.err)
		case tc.err == "" && (err != nil || fetch != tc.fetch || checked != tc.checked):
			t.Errorf("%s: %q %q %v, want %q %q", tc.raw, fetch, checked, err, tc.fetch, tc.checked)
		}
	}
	if allowedRepository("https://git.example.com/team/x/y", []string{"https://git.example.com/team/*"}) {
		t.Error("a decoded %2F made a deeper path allowed")
	}
}

// A checkout that fails ends ERROR at once with what git said, in the
// reason and the log: a missing repository, a commit the repository does
// not have, an unreachable URL.
func TestCheckoutErrorsSayWhatGitSaid(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	repo.commit(map[string]string{"tests/test_ok.py": passingTest})
	missing := filepath.Join(t.TempDir(), "srv", "app")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + ln.Addr().String() + "/app.git"
	ln.Close()
	absent := strings.Repeat("ab", 20)
	cfg := testConfig(t, fake)
	startRunner(t, cfg)
	for _, tc := range []struct {
		url, commit, want, said string
	}{
		{missing, absent, "clone " + missing + ": fatal: ", "repository '" + missing + "' does not exist"},
		{repo.dir, absent, "commit " + absent + " not found in " + repo.dir + ": fatal: ", "upload-pack: not our ref " + absent},
		{unreachable, absent, "clone " + unreachable + ": fatal: ", "unable to access '" + unreachable + "/': "},
	} {
		began := time.Now()
		req, log := fake.waitDone(fake.enqueueJob(&pontusv1.Job{Repo: "app", CloneUrl: tc.url, Commit: tc.commit}))
		wantStatus(t, req, log, errorStatus)
		if !strings.HasPrefix(req.GetReason(), tc.want) || !strings.Contains(req.GetReason(), tc.said) ||
			!strings.Contains(log, req.GetReason()) || strings.Contains(log, "timed out") {
			t.Errorf("%s: reason %q (after %v), want %q … %q; log:\n%s", tc.url, req.GetReason(), time.Since(began), tc.want, tc.said, log)
		}
	}
}

// A process a test leaves running is killed when the test ends and named
// in the build log.
func TestLeftBehindNamedInLog(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(nil)
	pids := openDir(t)
	cfg := testConfig(t, fake)
	cfg.TestCommand = "setsid sleep 600 & p=$!; echo $p > " + pids + "/left; until grep -qa '^sleep' /proc/$p/cmdline; do sleep 0.01; done"
	startRunner(t, cfg)
	req, log := fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, passed)
	pid := readPID(t, pids+"/left")
	waitGone(t, pid)
	if want := fmt.Sprintf("[pontus: killed 1 process left behind: sleep 600 (pid %d)]\n", pid); !strings.Contains(log, want) {
		t.Errorf("log lacks %q:\n%s", want, log)
	}
}

// A runner SIGKILLed while a test that ignores SIGTERM is in its
// kill-grace period (here after a cancel; a timeout stops a test the same
// way) leaves nothing running: not the test, not a child it moved to a
// session of its own.
func TestRunnerKilledDuringKillGrace(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(nil)
	pids := openDir(t)
	command := fmt.Sprintf(`trap 'echo term > %[1]s/term' TERM
setsid sh -c 'trap "" TERM; echo $$ > %[1]s/setsid; while :; do sleep 1; done' &
echo $$ > %[1]s/shell
while :; do sleep 1; done`, pids)
	cmd, _ := startHelper(t, fake, "", filepath.Join(openDir(t), "work"), command, []string{helperTimingEnv + "=10m 10m"}, nil)
	key := fake.enqueue(repo.dir, c)
	shell, setsid := readPID(t, pids+"/shell"), readPID(t, pids+"/setsid")
	fake.set(fake.cancel, key)
	waitFile(t, pids+"/term") // SIGTERM sent: the grace period runs
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitGone(t, shell, setsid)
}

// A runner that runs as root refuses a token file its steps could read.
func TestTokenFileReadableByStepsRefused(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("steps drop to step_user only under a root runner")
	}
	fake := newFakeCP(t)
	fake.start()
	cfg := testConfig(t, fake)
	cfg.TokenFile = filepath.Join(openDir(t), "runner.token")
	if err := os.WriteFile(cfg.TokenFile, []byte("tok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "runner.token_file "+cfg.TokenFile+" is readable by step_user nobody") {
		t.Errorf("Run: %v", err)
	}
}

// Under a root runner each job's steps get a new home (what a job leaves
// in it cannot change a later job) and share caches kept between jobs.
func TestStepHomePerJobCachesKept(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("steps drop to step_user only under a root runner")
	}
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(nil)
	cfg := testConfig(t, fake)
	cfg.TestCommand = `ls -a "$HOME"; [ -e "$GOCACHE/kept" ] && echo "cache kept"
mkdir -p "$GOCACHE" && touch "$GOCACHE/kept" "$HOME/.gitconfig" && echo "home $HOME"`
	startRunner(t, cfg)
	req, log := fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, passed)
	if strings.Contains(log, ".gitconfig\n") || strings.Contains(log, "\ncache kept\n") {
		t.Fatalf("first job:\n%s", log)
	}
	req, log = fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, passed)
	if strings.Contains(log, ".gitconfig\n") || !strings.Contains(log, "\ncache kept\n") || !strings.Contains(log, "home "+filepath.Join(cfg.Workdir, "jobs", "2-1.home")) {
		t.Errorf("second job saw the first job's home or not its cache:\n%s", log)
	}
}

// A root runner whose workdir step_user cannot reach says so before it
// starts anything.
func TestUnreachableWorkdirRefused(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("steps drop to step_user only under a root runner")
	}
	fake := newFakeCP(t)
	fake.start()
	cfg := testConfig(t, fake)
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg.Workdir = filepath.Join(private, "work")
	_, err := New(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "step_user nobody cannot reach it") {
		t.Fatalf("New: %v", err)
	}
	if _, err := os.Stat(cfg.Workdir); err == nil {
		t.Error("the refused runner created its workdir")
	}
}
