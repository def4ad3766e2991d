package bench

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/e2e"
	"github.com/pontus-ci/pontus/internal/pgtest"
)

// checkKeys fails unless line is key=value figures holding every key.
func checkKeys(t *testing.T, line string, keys ...string) {
	t.Helper()
	m, err := ParseLine(line)
	if err != nil {
		t.Fatalf("last line %q: %v", line, err)
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("last line %q has no %s", line, k)
		}
	}
}

// TestSubcommands runs every `pontus bench` subcommand of the real binary
// at a tiny size and checks only that its last line has the figures'
// keys: the numbers depend on the machine.
func TestSubcommands(t *testing.T) {
	bin := e2e.Binary(t)
	tests := []struct {
		args []string
		keys []string
	}{
		{[]string{"dispatch", "--runners", "2", "--jobs", "20"}, []string{"jobs_per_s", "p50_ms", "p99_ms"}},
		{[]string{"fleet", "--runners", "5", "--duration", "2s"}, []string{"runners", "cp_cpu_cores", "cp_rss_mb"}},
		{[]string{"idle", "--duration", "1s"}, []string{"total_cpu_cores"}},
		{[]string{"latency", "--commits", "2"}, []string{"p50_s", "p95_s", "max_s", "floor_s", "overhead_p50_s"}},
		{[]string{"failover", "--replicas", "2", "--kills", "1"}, []string{"failover_p50_s", "failover_max_s"}},
		{[]string{"shards", "--tests", "4", "--shards", "2", "--test-time", "100ms", "--runs", "1"}, []string{"p50_s", "max_s", "target_s", "concurrent_shards"}},
		{[]string{"wasm", "--runs", "5", "--fib-runs", "2"}, []string{"warm_start_ms", "cold_compile_s", "native_ms", "sandbox_ms", "slowdown_x", "host_rss_mb", "guest_memory_limit_mib"}},
	}
	for _, tt := range tests {
		t.Run(tt.args[0], func(t *testing.T) {
			if tt.args[0] == "latency" || tt.args[0] == "idle" || tt.args[0] == "shards" {
				if _, err := exec.LookPath("python3"); err != nil {
					t.Skip("python3 not found")
				}
			}
			if tt.args[0] == "failover" {
				if _, err := pgtest.Bin(); err != nil {
					t.Skip(err)
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, append([]string{"bench"}, tt.args...)...)
			cmd.Dir = t.TempDir()
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("pontus bench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(tt.args, " "), err, &stdout, &stderr)
			}
			lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
			checkKeys(t, lines[len(lines)-1], tt.keys...)
			if len(lines) < 2 {
				t.Errorf("no human summary before the figures:\n%s", &stdout)
			}
		})
	}
}

// TestBadFlags checks that bad flags fail with a message naming the flag,
// before anything starts.
func TestBadFlags(t *testing.T) {
	bin := e2e.Binary(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"dispatch", "--runners", "0"}, "--runners"},
		{[]string{"dispatch", "--controlplane", "http://192.0.2.1:8888"}, "loopback"},
		{[]string{"fleet", "--duration", "1ms"}, "--duration"},
		{[]string{"latency", "--commits", "-3"}, "--commits"},
		{[]string{"latency", "--python", "no-such-python-anywhere"}, "--python"},
		{[]string{"idle", "extra"}, "unexpected argument"},
		{[]string{"shards", "--shards", "0"}, "--shards"},
		{[]string{"wasm", "--runs", "0"}, "--runs"},
		{[]string{"wasm", "--fib-runs", "-1"}, "--fib-runs"},
		{[]string{"warp"}, "unknown benchmark"},
	}
	for _, tt := range tests {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		out, err := exec.CommandContext(ctx, bin, append([]string{"bench"}, tt.args...)...).CombinedOutput()
		cancel()
		if err == nil {
			t.Errorf("pontus bench %s: succeeded, want an error", strings.Join(tt.args, " "))
			continue
		}
		if !strings.Contains(string(out), tt.want) {
			t.Errorf("pontus bench %s: output %q does not mention %q", strings.Join(tt.args, " "), out, tt.want)
		}
	}
}
