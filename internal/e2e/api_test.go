package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Commit ids and refs are validated at the edge: the predecessor wrote
// outside its results folder for "../../x" and ran a shell command for
// "HEAD;touch pwned".
func TestHostileIDsRejected(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, DemoFiles(t))
	d := startDev(t, repo)
	WaitResult(t, d.results, repo.Head(t), 30*time.Second)
	ctx := context.Background()
	work := filepath.Dir(d.results)
	pwned := filepath.Join(work, "pwned")
	for _, tc := range []struct{ proc, body string }{
		{"pontus.v1.ObserverService/ReportCommits", `{"repo":"` + repo.Dir + `","branch":"main","commits":["../../x"]}`},
		{"pontus.v1.ObserverService/ReportCommits", `{"repo":"` + repo.Dir + `","branch":"main","commits":["HEAD;touch ` + pwned + `"]}`},
		{"pontus.v1.ObserverService/ReportCommits", `{"repo":"` + repo.Dir + `","branch":"main;touch ` + pwned + `","commits":["` + repo.Head(t) + `"]}`},
		{"pontus.v1.BuildService/GetBuild", `{"commit":"../../x"}`},
		{"pontus.v1.BuildService/TriggerBuild", `{"commit":"HEAD;touch ` + pwned + `"}`},
		{"pontus.v1.BuildService/CancelBuild", `{"commit":"../../../etc/passwd"}`},
	} {
		code, body, err := Curl(ctx, d.url, tc.proc, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		if code != 400 || !strings.Contains(body, "invalid_argument") {
			t.Errorf("%s %s: %d %s, want 400 invalid_argument", tc.proc, tc.body, code, body)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(pwned); err == nil {
		t.Fatal("a hostile id ran a shell command")
	}
	entries, _ := os.ReadDir(d.results)
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".json")
		if len(name) != 40 {
			t.Errorf("unexpected file in results: %s", e.Name())
		}
	}
	for _, p := range []string{filepath.Join(work, "x"), filepath.Join(filepath.Dir(work), "x")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("file written outside results: %s", p)
		}
	}
}

// The README's curl examples, the curl script and the Go client example run
// against a live control plane.
func TestExamplesAgainstLiveControlPlane(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, DemoFiles(t))
	d := startDev(t, repo)
	head := repo.Head(t)
	WaitResult(t, d.results, head, 30*time.Second)
	ctx := context.Background()

	code, body, err := Curl(ctx, d.url, "pontus.v1.BuildService/ListBuilds", "{}")
	if err != nil || code != 200 || !strings.Contains(body, head) || !strings.Contains(body, "BUILD_STATUS_FAILED") {
		t.Fatalf("ListBuilds with curl: %d %s %v", code, body, err)
	}

	cmd := exec.CommandContext(ctx, "go", "run", "./examples/client", "-controlplane", d.url)
	cmd.Dir = Root()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("examples/client: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), head[:10]) || !strings.Contains(string(out), "test_fail") {
		t.Errorf("client output:\n%s", out)
	}

	// The CLI of the walkthrough.
	bin := Binary(t)
	for _, args := range [][]string{
		{"builds", "--controlplane", d.url},
		{"show", "--controlplane", d.url, head},
		{"logs", "--controlplane", d.url, head},
		{"runners", "--controlplane", d.url},
	} {
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("pontus %v: %v\n%s", args, err, out)
		}
		if args[0] == "show" && !strings.Contains(string(out), "test_fail") {
			t.Errorf("pontus show lacks the failing test:\n%s", out)
		}
		if args[0] == "logs" && !strings.Contains(string(out), "I will fail") {
			t.Errorf("pontus logs lacks the output:\n%s", out)
		}
	}
	cmd = exec.CommandContext(ctx, bin, "show", "--exit-status", "--controlplane", d.url, head)
	if err := cmd.Run(); err == nil {
		t.Error("pontus show --exit-status of a failed build exited 0")
	}
	// The curl script last: it triggers a re-run.
	cmd = exec.CommandContext(ctx, "sh", filepath.Join(Root(), "examples", "curl.sh"), d.url, head, repo.Dir, "main")
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("examples/curl.sh: %v\n%s", err, out)
	}
	// The re-run is canceled at once if still queued, else on its runner's
	// next heartbeat.
	if !strings.Contains(string(out), "BUILD_STATUS_CANCELED") && !strings.Contains(string(out), `"cancelRequested":true`) {
		t.Errorf("curl.sh's CancelBuild did not cancel the re-run:\n%s", out)
	}
	for _, want := range []string{"== BuildService/ListBuilds", head, "== BuildService/ListTests", `"tests":`, "== BuildService/TriggerBuild",
		"== BuildService/CancelBuild", "== ObserverService/ReportCommits", `SERVING_STATUS_SERVING`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("curl.sh output lacks %q:\n%s", want, out)
		}
	}

}

// The README's five-minute walkthrough, step by step: the demo copied into
// a new repository, `pontus dev` started inside it with no other flags
// than a free port, the failing test fixed by a commit.
func TestWalkthrough(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(TempDir(t), "demo")
	cmd := exec.Command("cp", "-r", filepath.Join(Root(), "examples", "demo"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	Git(t, dir, "init", "-q", "-b", "main")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-qm", "demo: one passing, one failing test")
	repo := &Repo{Dir: dir}
	addr := FreeAddr(t)
	Start(t, "pontus dev", dir, nil, "dev", "--listen", addr)
	results := filepath.Join(dir, "test_results")
	if b := WaitResult(t, results, repo.Head(t), 30*time.Second); b.Status != failed {
		t.Fatalf("demo: %s", b.Status)
	}
	data, err := os.ReadFile(filepath.Join(dir, "tests", "test_fail.py"))
	if err != nil {
		t.Fatal(err)
	}
	fixed := repo.Commit(t, "fix the test", map[string]string{"tests/test_fail.py": strings.Replace(string(data), "1, 2", "2, 2", 1)})
	if b := WaitResult(t, results, fixed, 30*time.Second); b.Status != passed {
		t.Fatalf("fixed: %s", b.Status)
	}
	human, err := os.ReadFile(filepath.Join(results, fixed))
	if err != nil || !strings.Contains(string(human), "PASSED") {
		t.Fatalf("report: %v\n%s", err, human)
	}
	// As the walkthrough types them: HEAD in the repository, a short id,
	// flags after the argument.
	for _, ref := range []string{"HEAD", fixed[:7]} {
		cmd := exec.Command(Binary(t), "show", ref, "--exit-status", "--controlplane", "http://"+addr)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PASSED") || !strings.Contains(string(out), fixed) {
			t.Fatalf("pontus show %s: %v\n%s", ref, err, out)
		}
	}
	if status := Git(t, dir, "status", "--porcelain"); status != "" {
		t.Errorf("the walkthrough left the repository dirty:\n%s", status)
	}
}
