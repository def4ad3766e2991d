package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// testNet is a bridge in the root network namespace with one veth-linked
// namespace per simulated host. Addresses come from 198.18.0.0/15, the
// range set aside for benchmark networks, and exist only inside the test.
type testNet struct {
	t      *testing.T
	bridge string
	subnet string // first three octets
	hostIP string
	hosts  map[string]*testHost
	tag    string
}

type testHost struct {
	ns, hostLink, ip string
}

func run(t *testing.T, args ...string) error {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// newTestNet makes the bridge, or skips the test where namespaces cannot be made.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace test needs root (ip netns); skipping")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("network namespace test needs iproute2's ip; skipping")
	}
	removeStaleNets()
	// The tag (the test process's id) names this run's devices, and its
	// own /24 keeps runs side by side (two checkouts' tests) apart.
	tag := strconv.Itoa(os.Getpid())
	subnet := fmt.Sprintf("198.18.%d", os.Getpid()%250+1)
	n := &testNet{t: t, bridge: "pbr" + tag, subnet: subnet, hostIP: subnet + ".1", hosts: map[string]*testHost{}, tag: tag}
	if err := run(t, "ip", "link", "add", n.bridge, "type", "bridge"); err != nil {
		t.Skipf("cannot create network devices here (%v); skipping", err)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", n.bridge).Run() })
	for _, args := range [][]string{
		{"ip", "addr", "add", n.hostIP + "/24", "dev", n.bridge},
		{"ip", "link", "set", n.bridge, "up"},
	} {
		if err := run(t, args...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// staleNet matches the devices and namespaces of a run, named by its
// process id.
var staleNet = regexp.MustCompile(`^(?:pbr|pns[a-z]+|pv[a-z]+)(\d+)$`)

// removeStaleNets deletes what runs killed before their cleanup left
// behind (a bridge left up keeps its address and routes).
func removeStaleNets() {
	dead := func(name string) bool {
		m := staleNet.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		_, err := os.Stat("/proc/" + m[1])
		return os.IsNotExist(err)
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for line := range strings.Lines(string(out)) {
			// "12: pbr123@if3: <...": the name is the second field.
			f := strings.Fields(line)
			if len(f) > 1 {
				if name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@"); dead(name) {
					exec.Command("ip", "link", "del", name).Run()
				}
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for line := range strings.Lines(string(out)) {
			if f := strings.Fields(line); len(f) > 0 && dead(f[0]) {
				exec.Command("ip", "netns", "del", f[0]).Run()
			}
		}
	}
}

// addHost makes a namespace linked to the bridge, with address SUBNET.<n>.
func (n *testNet) addHost(name string, octet int) *testHost {
	t := n.t
	t.Helper()
	h := &testHost{ns: "pns" + name + n.tag, hostLink: "pv" + name + n.tag, ip: fmt.Sprintf("%s.%d", n.subnet, octet)}
	peer := "pp" + name + n.tag
	if err := run(t, "ip", "netns", "add", h.ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", h.ns).Run()
		exec.Command("ip", "link", "del", h.hostLink).Run()
	})
	for _, args := range [][]string{
		{"ip", "link", "add", h.hostLink, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", peer, "netns", h.ns},
		{"ip", "link", "set", h.hostLink, "master", n.bridge},
		{"ip", "link", "set", h.hostLink, "up"},
		{"ip", "netns", "exec", h.ns, "ip", "addr", "add", h.ip + "/24", "dev", peer},
		{"ip", "netns", "exec", h.ns, "ip", "link", "set", peer, "up"},
		{"ip", "netns", "exec", h.ns, "ip", "link", "set", "lo", "up"},
	} {
		if err := run(t, args...); err != nil {
			t.Fatal(err)
		}
	}
	n.hosts[name] = h
	return h
}

// cut and heal take a host's link down and up.
func (n *testNet) cut(h *testHost) {
	n.t.Helper()
	must(n.t, run(n.t, "ip", "link", "set", h.hostLink, "down"))
}
func (n *testNet) heal(h *testHost) {
	n.t.Helper()
	must(n.t, run(n.t, "ip", "link", "set", h.hostLink, "up"))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Runners on other hosts reach the control plane and fetch the repository
// over a real non-loopback link; one runner is cut off mid-job: its job is
// re-run elsewhere, and when the link heals its late report is rejected and
// it takes new work.
func TestRunnersOnOtherHostsSurviveAPartition(t *testing.T) {
	net := newTestNet(t)
	hostA := net.addHost("a", 2)
	hostB := net.addHost("b", 3)

	repo := NewRepo(t, map[string]string{"tests/test_slow.py": pyTest("test_slow", "import time\n        time.sleep(4)")})
	dir := TempDir(t)
	// The repository is served to the other hosts by git daemon.
	gitPort := strings.Split(FreeAddr(t), ":")[1]
	gitd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--base-path="+filepath.Dir(repo.Dir),
		"--listen="+net.hostIP, "--port="+gitPort, filepath.Dir(repo.Dir))
	must(t, gitd.Start())
	t.Cleanup(func() { gitd.Process.Kill(); gitd.Wait() })
	cloneURL := fmt.Sprintf("git://%s:%s/repo", net.hostIP, gitPort)

	// With tokens, the control plane may listen off loopback.
	tokens := []string{"PONTUS_RUNNER_TOKEN=runner-secret", "PONTUS_OBSERVER_TOKEN=observer-secret", "PONTUS_USER_TOKEN=user-secret"}
	cpPort := strings.Split(FreeAddr(t), ":")[1]
	url := fmt.Sprintf("http://%s:%s", net.hostIP, cpPort)
	results := filepath.Join(dir, "results")
	config := filepath.Join(dir, "pontus.toml")
	must(t, os.WriteFile(config, []byte(fmt.Sprintf(`[controlplane]
listen = "%s:%s"
data_dir = %q
results_dir = %q

[observer]
controlplane = %q
repo = %q
clone_url = %q
branches = ["main"]
data_dir = %q
`, net.hostIP, cpPort, filepath.Join(dir, "cp"), results, url, repo.Dir, cloneURL, filepath.Join(dir, "obs"))), 0o644))
	Start(t, "controlplane", dir, tokens, "controlplane", "--config", config)
	hc, err := dial.HTTPClient(dial.Config{URL: url})
	must(t, err)
	builds := pontusv1connect.NewBuildServiceClient(hc, url, dial.Options(dial.Config{URL: url, Token: "user-secret"})...)
	WaitFor(t, "control plane up", 20*time.Second, func() (bool, string) {
		_, err := builds.ListRunners(context.Background(), &pontusv1.ListRunnersRequest{})
		return err == nil, fmt.Sprint(err)
	})

	startRunner := func(name string, h *testHost) *Proc {
		cfg := filepath.Join(dir, name+".toml")
		must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("[runner]\ncontrolplane = %q\nname = %q\nworkdir = %q\n",
			url, name, filepath.Join(dir, "work-"+name))), 0o644))
		// ip netns exec runs the binary inside the host's namespace.
		cmd := exec.Command("ip", "netns", "exec", h.ns, Binary(t), "runnerd", "--config", cfg)
		cmd.Dir = dir
		return StartCmd(t, "runner "+name, cmd, tokens[:1])
	}
	runnerA := startRunner("host-a", hostA)
	Start(t, "observer", dir, tokens[1:2], "observerd", "--config", config)

	commit := repo.Head(t)
	WaitFor(t, "the build running on host-a", 30*time.Second, func() (bool, string) {
		res, err := builds.GetBuild(context.Background(), &pontusv1.GetBuildRequest{Commit: commit})
		if err != nil {
			return false, err.Error()
		}
		b := res.Build
		return b.Status == pontusv1.BuildStatus_BUILD_STATUS_RUNNING && b.RunnerName == "host-a", b.Status.String() + " " + b.RunnerName
	})
	net.cut(hostA)
	cutAt := time.Now()
	runnerB := startRunner("host-b", hostB)

	b := WaitResultStatus(t, results, commit, 40*time.Second, pontusv1.BuildStatus_BUILD_STATUS_PASSED)
	t.Logf("re-run elsewhere: result %.1fs after the cut", time.Since(cutAt).Seconds())
	if b.Attempt != 2 || b.RunnerName != "host-b" || !strings.Contains(b.Attempts[0].Reason, "runner lost") {
		t.Fatalf("result: attempt %d on %s, attempts %v", b.Attempt, b.RunnerName, b.Attempts)
	}

	// Heal: host-a's test has finished by now; its late report is refused.
	net.heal(hostA)
	WaitFor(t, "host-a's late report to be refused", 30*time.Second, func() (bool, string) {
		out := runnerA.Output()
		return strings.Contains(out, "not current") || strings.Contains(out, "stale") || strings.Contains(out, "lost"), lastLines(out, 3)
	})
	final := WaitResult(t, results, commit, time.Second)
	if final.Attempt != 2 || final.RunnerName != "host-b" {
		t.Fatalf("the stale runner overwrote the result: attempt %d on %s", final.Attempt, final.RunnerName)
	}

	// host-a takes new work: stop host-b and commit again.
	runnerB.Kill()
	next := repo.Commit(t, "more", map[string]string{"tests/test_slow.py": pyTest("test_slow", "pass")})
	b = WaitResultStatus(t, results, next, 60*time.Second, pontusv1.BuildStatus_BUILD_STATUS_PASSED)
	if b.RunnerName != "host-a" {
		t.Fatalf("new work ran on %s, want host-a", b.RunnerName)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
