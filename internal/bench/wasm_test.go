package bench

import (
	"strings"
	"testing"
)

func TestWasmConfigValidate(t *testing.T) {
	t.Parallel()
	def := DefaultWasmConfig()
	if err := def.Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
	if def.FibRuns < 11 || def.FibRuns > 30 {
		t.Errorf("default FibRuns %d: want at least 11 for a median, and few (each sandbox run is slow)", def.FibRuns)
	}
	warmOnly := WasmConfig{Runs: 1}
	if err := warmOnly.Validate(); err != nil {
		t.Errorf("FibRuns 0 (skip the Go test): %v", err)
	}
	bad := WasmConfig{Runs: 0, FibRuns: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate accepted Runs 0 and FibRuns -1")
	}
	for _, want := range []string{"--runs", "--fib-runs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestParseStatusKiB(t *testing.T) {
	t.Parallel()
	const status = "Name:\tpontus\nVmPeak:\t 2000 kB\nVmHWM:\t  150000 kB\nVmRSS:\t   90123 kB\nThreads:\t8\n"
	for key, want := range map[string]int64{"VmHWM": 150000, "VmRSS": 90123} {
		got, err := parseStatusKiB(status, key)
		if err != nil || got != want {
			t.Errorf("parseStatusKiB(%s) = %d, %v; want %d", key, got, err, want)
		}
	}
	if _, err := parseStatusKiB(status, "VmSwap"); err == nil || !strings.Contains(err.Error(), "VmSwap") {
		t.Errorf("missing key: err %v, want one naming VmSwap", err)
	}
	if _, err := parseStatusKiB("VmRSS:\t12 MB\n", "VmRSS"); err == nil {
		t.Error("a value not in kB was accepted")
	}
}

// TestWasmNeedsGo checks that without a go command the bench says so (and
// how to run without it) before doing anything.
func TestWasmNeedsGo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	cfg := DefaultWasmConfig()
	cfg.TempDir = t.TempDir()
	_, err := Wasm(t.Context(), cfg, quietLogger())
	if err == nil {
		t.Fatal("Wasm succeeded without a go command on PATH")
	}
	for _, want := range []string{"go command is not on PATH", "--fib-runs 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
