package bench

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pontus-ci/pontus/internal/e2e"
	"github.com/pontus-ci/pontus/internal/syncbuf"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(ns ...int) Durations {
		var d Durations
		for _, n := range ns {
			d = append(d, time.Duration(n)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name string
		d    Durations
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"median of even is the lower", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(func() []int {
			var v []int
			for i := 100; i >= 1; i-- {
				v = append(v, i)
			}
			return v
		}()...), 99, 99 * time.Millisecond},
		{"p100 is the max", ms(1, 9, 5), 100, 9 * time.Millisecond},
		{"p0 is the min", ms(4, 2, 8), 0, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.Percentile(tt.p); got != tt.want {
				t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	d := ms(3, 1, 2)
	d.Percentile(50)
	if d[0] != 3*time.Millisecond {
		t.Error("Percentile sorted its receiver")
	}
}

func TestLineRoundTrip(t *testing.T) {
	t.Parallel()
	r := &Result{}
	r.add("p50_s", 0.12345, 3)
	r.add("jobs_per_s", 1234.6, 0)
	r.add("cp_rss_mb", 88, 1)
	if got, want := r.Line(), "p50_s=0.123 jobs_per_s=1235 cp_rss_mb=88.0"; got != want {
		t.Errorf("Line() = %q, want %q", got, want)
	}
	m, err := ParseLine(r.Line())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]float64{"p50_s": 0.123, "jobs_per_s": 1235, "cp_rss_mb": 88}, m); diff != "" {
		t.Errorf("ParseLine (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"novalue", "=1", "k=x"} {
		if _, err := ParseLine(bad); err == nil {
			t.Errorf("ParseLine(%q): no error", bad)
		}
	}
}

func TestParseProc(t *testing.T) {
	t.Parallel()
	// A command name with spaces and parentheses, as a process may choose.
	stat := "4242 (we ird) (name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 800000000 5000 18446744073709551615"
	cpu, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 325 * clockTick; cpu != want {
		t.Errorf("parseStatCPU = %v, want %v", cpu, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 1"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
	rss, err := parseStatusRSS("Name:\tpontus\nVmPeak:\t 9000 kB\nVmRSS:\t   2048 kB\nThreads:\t5\n")
	if err != nil {
		t.Fatal(err)
	}
	if rss != 2048<<10 {
		t.Errorf("parseStatusRSS = %d, want %d", rss, 2048<<10)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseStatusRSS(bad); err == nil {
			t.Errorf("parseStatusRSS(%q): no error", bad)
		}
	}
	self, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.rss <= 0 {
		t.Errorf("readProc(self): RSS %d", self.rss)
	}
}

func TestCheckLoopbackURL(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"http://127.0.0.1:8888", "http://127.1.2.3:1", "http://localhost:9", "http://[::1]:80", "https://127.0.0.1"} {
		if err := CheckLoopbackURL(ok); err != nil {
			t.Errorf("CheckLoopbackURL(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:80", "http://192.168.1.1", "http://example.com", "ftp://127.0.0.1", "127.0.0.1:80", ""} {
		if err := CheckLoopbackURL(bad); err == nil {
			t.Errorf("CheckLoopbackURL(%q): no error", bad)
		}
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	t.Parallel()
	lat := DefaultLatencyConfig()
	lat.Commits = 0
	lat.Python = "no-such-python-for-pontus"
	dis := DefaultDispatchConfig()
	dis.Runners, dis.Jobs, dis.Arrivals, dis.ControlPlane, dis.CPUProfile = -1, 0, "bursty", "http://10.1.1.1:8888", "rel.out"
	fl := DefaultFleetConfig()
	fl.Runners, fl.Duration, fl.Binary = 0, time.Millisecond, "x"
	idle := DefaultIdleConfig()
	idle.Duration = 2 * time.Hour
	wasm := WasmConfig{Runs: 0}
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"latency", lat.Validate(), []string{"--commits", "--python"}},
		{"dispatch", dis.Validate(), []string{"--runners", "--jobs", "--arrivals", "--controlplane", "loopback", "--cpuprofile"}},
		{"fleet", fl.Validate(), []string{"--runners", "--duration"}},
		{"idle", idle.Validate(), []string{"--duration", "binary"}},
		{"wasm", wasm.Validate(), []string{"--runs"}},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: Validate accepted a bad config", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(tt.err.Error(), w) {
				t.Errorf("%s: error %q does not mention %s", tt.name, tt.err, w)
			}
		}
	}
	good := DefaultDispatchConfig()
	good.Binary = "/bin/true"
	if err := good.Validate(); err != nil {
		t.Errorf("default dispatch config: %v", err)
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"python3", "/opt/py 3/bin/python", "it's", "$(rm -rf x)"} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != s {
			t.Errorf("sh saw %q, want %q", out, s)
		}
	}
}

func TestTapModuleRuns(t *testing.T) {
	t.Parallel()
	res, err := Wasm(t.Context(), WasmConfig{Runs: 3, TempDir: t.TempDir()}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, res.Line(), "warm_start_ms")
}

// TestDispatchInProcess runs the dispatch bench's code (under the race
// detector when it is on) against a control plane in the test process.
func TestDispatchInProcess(t *testing.T) {
	cfg := DefaultDispatchConfig()
	cfg.ControlPlane = serveControlPlane(t)
	cfg.Runners, cfg.Jobs, cfg.Conns = 3, 30, 2
	cfg.PhaseTimeout = time.Minute
	res, err := Dispatch(t.Context(), cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, res.Line(), "jobs_per_s", "p50_ms", "p99_ms")
}

// TestFleetAndIdleLibrary runs Fleet and Idle from the test process
// (their own code under the race detector when it is on), the daemons as
// processes of the real binary.
func TestFleetAndIdleLibrary(t *testing.T) {
	bin := e2e.Binary(t)
	fl := DefaultFleetConfig()
	fl.Binary, fl.Runners, fl.Duration, fl.Settle, fl.TempDir = bin, 4, 500*time.Millisecond, 100*time.Millisecond, t.TempDir()
	res, err := Fleet(t.Context(), fl, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, res.Line(), "runners", "cp_cpu_cores", "cp_rss_mb")

	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not found")
	}
	idle := DefaultIdleConfig()
	idle.Binary, idle.Duration, idle.Settle, idle.TempDir = bin, 300*time.Millisecond, 0, t.TempDir()
	res, err = Idle(t.Context(), idle, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, res.Line(), "total_cpu_cores")
}

// TestCanceledBenchCleansUp cancels the fleet bench during its window and
// checks that its control plane process and temp dir are gone.
func TestCanceledBenchCleansUp(t *testing.T) {
	bin := e2e.Binary(t)
	tmp := t.TempDir()
	fl := DefaultFleetConfig()
	fl.Binary, fl.Runners, fl.Duration, fl.Settle, fl.TempDir = bin, 2, time.Minute, 0, tmp
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	progress := &syncbuf.Buffer{}
	go func() {
		_, err := Fleet(ctx, fl, slog.New(slog.NewTextHandler(progress, nil)))
		errc <- err
	}()
	e2e.WaitFor(t, "the fleet bench's window", time.Minute, func() (bool, string) {
		out := progress.String()
		return strings.Contains(out, "fleet: measuring"), out
	})
	pids := childPids(t)
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("canceled fleet bench returned no error")
		}
	case <-time.After(time.Minute):
		t.Fatal("canceled fleet bench did not return within a minute")
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "pontus-bench-fleet-*")); len(left) > 0 {
		t.Errorf("temp dirs left behind: %v", left)
	}
	for _, pid := range pids {
		if _, err := os.Stat(filepath.Join("/proc", pid)); err == nil {
			stat, _ := os.ReadFile(filepath.Join("/proc", pid, "stat"))
			if !bytes.Contains(stat, []byte(") Z ")) {
				t.Errorf("child process %s still running: %s", pid, stat)
			}
		}
	}
}

// childPids lists this process's children from /proc.
func childPids(t *testing.T) []string {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var out []string
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Field 4 (ppid) follows the state after the command name.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) > 1 && string(f[1]) == self {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("the bench has no child process")
	}
	return out
}
