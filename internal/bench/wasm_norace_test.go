//go:build !race

package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWasmGoTest runs the whole bench in the test process at the smallest
// size and checks the figures are there and sane; the numbers themselves
// depend on the machine. It is left out under the race detector, which
// makes wazero's compiler (three compilations of a 5 MiB module) take
// most of a minute while Wasm starts no goroutines of its own;
// TestSubcommands runs the same path through the binary either way.
func TestWasmGoTest(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	if testing.Short() {
		t.Skip("compiles a Go test binary for wasip1 and to machine code (seconds)")
	}
	res, err := Wasm(t.Context(), WasmConfig{Runs: 2, FibRuns: 1, TempDir: t.TempDir()}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	line := res.Line()
	checkKeys(t, line, "warm_start_ms", "go_warm_start_ms", "cold_compile_s", "spin_stop_ms", "sleep_stop_ms", "go_worker_rss_mb", "native_ms", "sandbox_ms", "slowdown_x",
		"host_rss_mb", "guest_memory_limit_mib", "host_peak_growth_mb", "hog_peak_growth_mb", "bare_wazero_ms")
	fig := func(k string) float64 { v, _ := res.Figure(k); return v }
	for _, k := range []string{"native_ms", "sandbox_ms", "slowdown_x", "host_rss_mb", "bare_wazero_ms"} {
		if fig(k) <= 0 {
			t.Errorf("%s = %v, want > 0 (%s)", k, fig(k), line)
		}
	}
	if got := fig("guest_memory_limit_mib"); got != 512 {
		t.Errorf("guest_memory_limit_mib = %v, want the host default 512", got)
	}
	if len(res.Summary) < 5 {
		t.Errorf("summary has %d lines, want the warm start, the Go test and memory:\n%s", len(res.Summary), strings.Join(res.Summary, "\n"))
	}
}
