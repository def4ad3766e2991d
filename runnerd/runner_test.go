package runnerd

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const (
	passed      = pontusv1.BuildStatus_BUILD_STATUS_PASSED
	failed      = pontusv1.BuildStatus_BUILD_STATUS_FAILED
	errorStatus = pontusv1.BuildStatus_BUILD_STATUS_ERROR
	timedOut    = pontusv1.BuildStatus_BUILD_STATUS_TIMED_OUT
	canceled    = pontusv1.BuildStatus_BUILD_STATUS_CANCELED
)

func wantStatus(t testing.TB, req *pontusv1.CompleteJobRequest, log string, want pontusv1.BuildStatus) {
	t.Helper()
	if req.GetStatus() != want {
		t.Fatalf("status %v (reason %q, exit code %d), want %v; log:\n%s", req.GetStatus(), req.GetReason(), req.GetExitCode(), want, log)
	}
	if req.GetLogSize() != int64(len(log)) {
		t.Errorf("log_size %d, but the control plane holds %d bytes", req.GetLogSize(), len(log))
	}
}

// A passing commit passes; the next commit edits the test to fail and fails
// (the runner fetches it and never reuses the old files); going back to the
// first commit passes again; a commit without tests is an ERROR that says
// what was looked for. Every checkout is removed after its job.
func TestPythonCommits(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	good := repo.commit(map[string]string{"tests/test_ok.py": passingTest, "README": "demo\n"})
	cfg := testConfig(t, fake)
	startRunner(t, cfg)

	key := fake.enqueue(repo.dir, good)
	req, log := fake.waitDone(key)
	wantStatus(t, req, log, passed)
	for _, s := range []string{"[pontus: runner test-runner (r1), job 1 attempt 1", good, "hello from the test", "Ran 1 test", "\nOK\n", "[pontus: passed in"} {
		if !strings.Contains(log, s) {
			t.Errorf("log lacks %q:\n%s", s, log)
		}
	}
	if req.GetExitCode() != 0 || req.GetDuration().AsDuration() <= 0 {
		t.Errorf("exit code %d, duration %v", req.GetExitCode(), req.GetDuration().AsDuration())
	}
	if i := slices.IndexFunc(req.GetTests(), func(tc *pontusv1.TestCase) bool {
		return strings.Contains(tc.GetName(), "test_ok") && tc.GetOutcome() == pontusv1.TestOutcome_TEST_OUTCOME_PASSED
	}); i < 0 {
		t.Errorf("tests %v: no passed test_ok", req.GetTests())
	}
	waitDirEmpty(t, filepath.Join(cfg.Workdir, "jobs"))

	bad := repo.commit(map[string]string{"tests/test_ok.py": failingTest})
	key = fake.enqueue(repo.dir, bad)
	req, log = fake.waitDone(key)
	wantStatus(t, req, log, failed)
	if !strings.Contains(log, "FAILED (failures=1)") || req.GetExitCode() != 1 {
		t.Errorf("exit code %d; log:\n%s", req.GetExitCode(), log)
	}
	if !strings.Contains(log, "(fetched)") {
		t.Errorf("the new commit was not fetched; log:\n%s", log)
	}

	key = fake.enqueue(repo.dir, good)
	req, log = fake.waitDone(key)
	wantStatus(t, req, log, passed)
	if !strings.Contains(log, "(cached)") {
		t.Errorf("a commit already in the cache clone cost a fetch; log:\n%s", log)
	}

	none := repo.commit(map[string]string{"tests/test_ok.py": ""})
	key = fake.enqueue(repo.dir, none)
	req, log = fake.waitDone(key)
	wantStatus(t, req, log, errorStatus)
	if req.GetReason() != noTestsReason || !strings.Contains(log, noTestsReason) {
		t.Errorf("reason %q; log:\n%s", req.GetReason(), log)
	}
	waitDirEmpty(t, filepath.Join(cfg.Workdir, "jobs"))
}

// repoGit runs git in the runner's cache clone of url.
func repoGit(t testing.TB, cfg Config, url string, args ...string) string {
	t.Helper()
	c := newRepoCache(cfg.Workdir, nil, nil)
	out, err := exec.Command("git", append([]string{"-C", c.cloneDir(url)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// A Go module with tests/*_test.go runs go test.
func TestGoCommit(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go on PATH")
	}
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(map[string]string{
		"go.mod":              "module example.com/demo\n\ngo 1.22\n",
		"tests/demo_test.go":  "package tests\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif 1+1 != 2 {\n\t\tt.Fatal(\"math\")\n\t}\n}\n",
		"tests/helper_go.txt": "not go\n",
	})
	startRunner(t, goStepConfig(t, fake))
	req, log := fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, passed)
	if !strings.Contains(log, "running: go test -v ./tests/...") || !strings.Contains(log, "--- PASS: TestAdd") {
		t.Errorf("log:\n%s", log)
	}
}

// 1 MB of output arrives whole; output over the cap is cut, marked and counted.
func TestOutput(t *testing.T) {
	t.Parallel()
	const line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
	repo := newRepo(t)
	c := repo.commit(map[string]string{"README": "x\n"})

	t.Run("1MB", func(t *testing.T) {
		t.Parallel()
		fake := newFakeCP(t)
		fake.start()
		cfg := testConfig(t, fake)
		cfg.TestCommand = "yes " + strings.TrimSpace(line) + " | head -c 1000000"
		startRunner(t, cfg)
		req, log := fake.waitDone(fake.enqueue(repo.dir, c))
		wantStatus(t, req, log, passed)
		want := strings.Repeat(line, 1000000/len(line)+1)[:1000000]
		if !strings.Contains(log, want) {
			t.Errorf("log of %d bytes does not hold the 1000000 bytes of output", len(log))
		}
		if req.GetOutputDroppedBytes() != 0 || strings.Contains(log, "truncated") {
			t.Errorf("dropped %d", req.GetOutputDroppedBytes())
		}
		fake.mu.Lock()
		n := fake.appends[jobKey{1, 1}]
		fake.mu.Unlock()
		if n < 4 {
			t.Errorf("%d AppendLog calls for 1 MB: chunks are larger than 256 KiB", n)
		}
	})
	t.Run("cap", func(t *testing.T) {
		t.Parallel()
		fake := newFakeCP(t)
		fake.start()
		cfg := testConfig(t, fake)
		cfg.OutputLimitMiB = 1
		cfg.TestCommand = "yes " + strings.TrimSpace(line) + " | head -c 3000000"
		startRunner(t, cfg)
		req, log := fake.waitDone(fake.enqueue(repo.dir, c))
		wantStatus(t, req, log, passed)
		const dropped = 3000000 - 1<<20
		if req.GetOutputDroppedBytes() != dropped {
			t.Errorf("output_dropped_bytes %d, want %d", req.GetOutputDroppedBytes(), dropped)
		}
		marker := fmt.Sprintf("\n[pontus: output truncated: %d bytes dropped]\n[pontus: passed in", dropped)
		if strings.Count(log, "[pontus: output truncated") != 1 || !strings.Contains(log, marker) {
			t.Errorf("no single marker %q at the end of the output; log tail:\n%s", marker, tail([]byte(log)))
		}
		if out := log[strings.Index(log, "head -c 3000000]\n")+len("head -c 3000000]\n") : strings.Index(log, marker)]; len(out) != 1<<20 {
			t.Errorf("kept %d bytes of output, want %d", len(out), 1<<20)
		}
	})
}

// slowCommand starts a grandchild and sleeps until the test creates dir/go;
// it writes the pids of both to dir.
func slowCommand(dir string) string {
	return fmt.Sprintf(`if [ -f slow ]; then sleep 300 & echo $! > %[1]s/child.$PONTUS_BUILD_ID; echo $$ > %[1]s/shell.$PONTUS_BUILD_ID; `+
		`while [ ! -f %[1]s/go ]; do sleep 0.05; done; fi; echo finished`, dir)
}

// A test that forks a child and runs past the timeout is TIMED_OUT, and both
// processes are gone.
func TestTimeout(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(map[string]string{"slow": "1\n"})
	pids := openDir(t)
	cfg := testConfig(t, fake)
	cfg.Timeout = 2 * time.Second
	cfg.KillGrace = 500 * time.Millisecond
	cfg.TestCommand = slowCommand(pids)
	startRunner(t, cfg)
	key := fake.enqueue(repo.dir, c)
	child, shell := readPID(t, pids+"/child.1"), readPID(t, pids+"/shell.1")
	req, log := fake.waitDone(key)
	wantStatus(t, req, log, timedOut)
	if req.GetReason() != "timed out after 2s" || req.GetExitCode() != -1 {
		t.Errorf("reason %q exit code %d", req.GetReason(), req.GetExitCode())
	}
	waitGone(t, child, shell)
}

// A job named in a heartbeat's cancel list is stopped and reported CANCELED;
// one in the lost list is stopped and not reported. Heartbeats name every
// job held; with capacity 2, two jobs run at once.
func TestHeartbeatCancelAndLost(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.heartbeat = 50 * time.Millisecond
	fake.start()
	repo := newRepo(t)
	slow := repo.commit(map[string]string{"slow": "1\n"})
	pids := openDir(t)
	cfg := testConfig(t, fake)
	cfg.Capacity = 2
	cfg.TestCommand = slowCommand(pids)
	startRunner(t, cfg)

	k1, k2 := fake.enqueue(repo.dir, slow), fake.enqueue(repo.dir, slow)
	c1, s1 := readPID(t, pids+"/child.1"), readPID(t, pids+"/shell.1")
	c2, s2 := readPID(t, pids+"/child.2"), readPID(t, pids+"/shell.2")
	fake.waitFor("a heartbeat naming both jobs", func(f *fakeCP) (bool, string) {
		for _, hb := range f.heartbeats {
			if len(hb.GetLeases()) == 2 && hb.GetLeases()[0].GetJobId() == 1 && hb.GetLeases()[1].GetJobId() == 2 {
				return true, ""
			}
		}
		return false, fmt.Sprint(len(f.heartbeats), " heartbeats")
	})

	fake.set(fake.cancel, k1)
	req, log := fake.waitDone(k1)
	wantStatus(t, req, log, canceled)
	if req.GetReason() != "canceled by the control plane" {
		t.Errorf("reason %q", req.GetReason())
	}
	waitGone(t, c1, s1)

	fake.set(fake.lost, k2)
	waitGone(t, c2, s2)
	// The slot is free again only when the lost job has ended; a quick job
	// run after it proves the lost one was dropped, not reported.
	quick := repo.commit(map[string]string{"slow": ""})
	req, log = fake.waitDone(fake.enqueue(repo.dir, quick))
	req2, _ := fake.waitDone(fake.enqueue(repo.dir, quick))
	wantStatus(t, req, log, passed)
	wantStatus(t, req2, fake.logOf(jobKey{req2.GetJobId(), 1}), passed)
	if got := fake.completion(k2); got != nil {
		t.Errorf("a lost job was reported: %v", got)
	}
}

func (f *fakeCP) logOf(key jobKey) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.logs[key])
}

// Stopping the runner stops its jobs' processes and does not report them:
// their leases run out and the control plane gives them to another runner.
func TestGracefulStop(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(map[string]string{"slow": "1\n"})
	pids := openDir(t)
	cfg := testConfig(t, fake)
	cfg.TestCommand = slowCommand(pids)
	tr := startRunner(t, cfg)
	key := fake.enqueue(repo.dir, c)
	child, shell := readPID(t, pids+"/child.1"), readPID(t, pids+"/shell.1")
	tr.stop(t)
	waitGone(t, child, shell)
	waitDirEmpty(t, filepath.Join(cfg.Workdir, "jobs"))
	if req := fake.completion(key); req != nil {
		t.Fatalf("a job stopped by the runner's shutdown was reported %s; it should be left to run elsewhere", req.GetStatus())
	}
}

// A SIGKILLed runner takes its job's processes with it.
func TestRunnerKilled(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(map[string]string{"slow": "1\n"})
	pids := openDir(t)
	cmd, _ := startHelper(t, fake, "", filepath.Join(openDir(t), "work"), slowCommand(pids), nil, nil)
	fake.enqueue(repo.dir, c)
	child, shell := readPID(t, pids+"/child.1"), readPID(t, pids+"/shell.1")
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitGone(t, child, shell)
}

// AppendLog answering out_of_range makes the runner resend from the size the
// control plane states, and so does CompleteJob; the log ends up whole and
// without duplicates.
func TestOutOfRange(t *testing.T) {
	t.Parallel()
	repo := newRepo(t)
	c := repo.commit(map[string]string{"README": "x\n"})
	command := `for i in 1 2 3; do echo "line $i"; sleep 0.3; done`
	for _, tc := range []struct {
		name  string
		setup func(f *fakeCP)
	}{
		{"AppendLog", func(f *fakeCP) {
			f.appendHook = func(f *fakeCP, req *pontusv1.AppendLogRequest) {
				key := jobKey{req.GetJobId(), req.GetAttempt()}
				if f.appends[key] == 3 { // the control plane lost all but 10 bytes
					f.logs[key] = f.logs[key][:10]
				}
			}
		}},
		{"CompleteJob", func(f *fakeCP) {
			done := false
			f.completeHook = func(f *fakeCP, req *pontusv1.CompleteJobRequest) {
				key := jobKey{req.GetJobId(), req.GetAttempt()}
				if !done {
					done = true
					f.logs[key] = f.logs[key][:len(f.logs[key])/2]
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeCP(t)
			tc.setup(fake)
			fake.start()
			cfg := testConfig(t, fake)
			cfg.TestCommand = command
			startRunner(t, cfg)
			req, log := fake.waitDone(fake.enqueue(repo.dir, c))
			wantStatus(t, req, log, passed)
			if !strings.HasPrefix(log, "[pontus: runner test-runner") || strings.Count(log, "[pontus: runner") != 1 ||
				!strings.Contains(log, "line 1\nline 2\nline 3\n[pontus: passed in") {
				t.Errorf("log not whole or duplicated:\n%s", log)
			}
			if tc.name == "AppendLog" && fake.outOfRange != 1 {
				t.Errorf("%d out_of_range answers, want 1", fake.outOfRange)
			}
		})
	}
}

// A job keeps running while the control plane is down and is reported, log
// whole, once it is back on the same address.
func TestControlPlaneDown(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(map[string]string{"README": "x\n"})
	dir := openDir(t)
	cfg := testConfig(t, fake)
	cfg.TestCommand = fmt.Sprintf(`echo start; while [ ! -f %[1]s/go ]; do sleep 0.05; done; echo end; touch %[1]s/done`, dir)
	startRunner(t, cfg)
	key := fake.enqueue(repo.dir, c)
	fake.waitLog(key, "start\n")
	fake.stop()
	if err := os.WriteFile(dir+"/go", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFile(t, dir+"/done")
	fake.start()
	req, log := fake.waitDone(key)
	wantStatus(t, req, log, passed)
	if !strings.Contains(log, "start\nend\n") {
		t.Errorf("log:\n%s", log)
	}
}

// The runner keeps trying to register until the control plane comes up.
func TestRegisterRetries(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	fake := newFakeCP(t)
	fake.addr = addr
	repo := newRepo(t)
	cfg := testConfig(t, fake)
	cfg.TestCommand = "true"
	tr := startRunner(t, cfg)
	tr.waitLog(t, "cannot register with the control plane")
	fake.start()
	req, log := fake.waitDone(fake.enqueue(repo.dir, repo.commit(nil)))
	wantStatus(t, req, log, passed)
}

// When the control plane forgets the runner, the runner registers again; a
// job running meanwhile is still reported, and new jobs are taken.
func TestRegisterAgain(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.heartbeat = 50 * time.Millisecond
	fake.start()
	repo := newRepo(t)
	c := repo.commit(nil)
	dir := openDir(t)
	cfg := testConfig(t, fake)
	cfg.TestCommand = fmt.Sprintf(`echo start; while [ ! -f %[1]s/go ]; do sleep 0.05; done; echo end`, dir)
	tr := startRunner(t, cfg)
	key := fake.enqueue(repo.dir, c)
	fake.waitLog(key, "start\n")
	fake.forgetRunners()
	fake.waitFor("the runner to register again", func(f *fakeCP) (bool, string) {
		return f.registers >= 2, fmt.Sprint(f.registers, " registrations")
	})
	tr.waitLog(t, "registering again")
	os.WriteFile(dir+"/go", nil, 0o644)
	req, log := fake.waitDone(key)
	wantStatus(t, req, log, passed)
	req, log = fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, passed)
}

// The test command sees CI metadata and none of Pontus's settings, and the
// runner sends its token.
func TestEnvironment(t *testing.T) {
	t.Setenv("PONTUS_RUNNER_TOKEN", "sekrit-runner")
	t.Setenv("PONTUS_OBSERVER_TOKEN", "sekrit-observer")
	t.Setenv("PONTUS_USER_TOKEN", "sekrit-user")
	t.Setenv("PONTUS_DATA", "/somewhere")
	t.Setenv("CI", "false")
	t.Setenv("GOCACHE_FOR_TEST", "kept")
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	c := repo.commit(nil)
	cfg := testConfig(t, fake)
	cfg.Token = "the-runner-token"
	cfg.TestCommand = "env | sort"
	startRunner(t, cfg)
	req, log := fake.waitDone(fake.enqueue(repo.dir, c))
	wantStatus(t, req, log, passed)
	for _, bad := range []string{"sekrit", "PONTUS_RUNNER_TOKEN", "PONTUS_DATA", "CI=false"} {
		if strings.Contains(log, bad) {
			t.Errorf("the test command saw %q:\n%s", bad, log)
		}
	}
	for _, good := range []string{"\nCI=true\n", "\nPONTUS=true\n", "\nPONTUS_COMMIT=" + c + "\n", "\nPONTUS_BRANCH=main\n",
		"\nPONTUS_BUILD_ID=1\n", "\nPONTUS_JOB_ATTEMPT=1\n", "\nPONTUS_REPO=" + repo.dir + "\n", "\nGOCACHE_FOR_TEST=kept\n"} {
		if !strings.Contains(log, good) {
			t.Errorf("the test command did not see %q:\n%s", strings.TrimSpace(good), log)
		}
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	for _, a := range fake.auth {
		if a != "Bearer the-runner-token" {
			t.Errorf("Authorization %q", a)
		}
	}
}

// Malicious job fields are an ERROR and reach neither git nor a shell.
func TestMaliciousJob(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	repo := newRepo(t)
	good := repo.commit(map[string]string{"tests/test_ok.py": passingTest})
	cwd, _ := os.Getwd()
	cfg := testConfig(t, fake)
	startRunner(t, cfg)
	for _, tc := range []struct {
		job   *pontusv1.Job
		field string
	}{
		{&pontusv1.Job{Repo: repo.dir, CloneUrl: repo.dir, Commit: "HEAD;touch pwned"}, "commit"},
		{&pontusv1.Job{Repo: repo.dir, CloneUrl: repo.dir, Commit: "$(touch pwned)"}, "commit"},
		{&pontusv1.Job{Repo: repo.dir, CloneUrl: repo.dir, Commit: "--output=pwned"}, "commit"},
		{&pontusv1.Job{Repo: repo.dir, CloneUrl: "ext::sh -c touch% pwned", Commit: good}, "clone_url"},
		{&pontusv1.Job{Repo: repo.dir, CloneUrl: "--upload-pack=touch pwned", Commit: good}, "clone_url"},
		{&pontusv1.Job{Repo: "-oops", Commit: good}, "clone_url"},
		{&pontusv1.Job{Repo: repo.dir, CloneUrl: repo.dir, Commit: good, Branch: "main\n[pontus: passed]"}, "branch"},
	} {
		key := fake.enqueueJob(tc.job)
		req, log := fake.waitDone(key)
		wantStatus(t, req, log, errorStatus)
		if !strings.HasPrefix(req.GetReason(), "invalid job: "+tc.field+":") {
			t.Errorf("job %v: reason %q", tc.job, req.GetReason())
		}
	}
	for _, dir := range []string{cwd, cfg.Workdir, repo.dir} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.Contains(d.Name(), "pwned") {
				t.Errorf("%s was created", p)
			}
			return nil
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(cfg.Workdir, "repos")); len(entries) != 0 {
		t.Errorf("a bad job reached git: %v", entries)
	}
}

// Two runners cannot share a workdir.
func TestWorkdirLock(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	cfg := testConfig(t, fake)
	tr := startRunner(t, cfg)
	tr.waitLog(t, "registered")
	r2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "in use by another runner") {
		t.Errorf("second runner on one workdir: %v", err)
	}
}

// A runner that was killed leaves checkouts behind; the next one removes them.
func TestStaleCheckoutsRemoved(t *testing.T) {
	t.Parallel()
	fake := newFakeCP(t)
	fake.start()
	cfg := testConfig(t, fake)
	stale := filepath.Join(cfg.Workdir, "jobs", "7-1", "tests")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(stale, 0o555)
	tr := startRunner(t, cfg)
	tr.waitLog(t, "registered")
	waitDirEmpty(t, filepath.Join(cfg.Workdir, "jobs"))
}
