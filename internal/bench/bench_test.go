package bench

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/controlplane"
)

// serveControlPlane serves a control plane in the test process on
// 127.0.0.1:0 (so `go test -cpuprofile` profiles it) and returns its URL.
// It is shut down, and must stop cleanly, at the end of the test.
func serveControlPlane(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	cfg := controlplane.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "controlplane")
	cfg.ResultsDir = filepath.Join(dir, "results")
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := controlplane.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		cancel()
		srv.Close()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				tb.Errorf("control plane: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Error("control plane did not stop within 30s")
		}
	})
	return "http://" + ln.Addr().String()
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// BenchmarkDispatch runs the dispatch bench against a control plane in the
// test process, b.N jobs per phase, for each runner count: jobs/s
// saturated and the hand-out latency at half that load. Profile it with
//
//	go test -run '^$' -bench Dispatch -benchtime 3000x -cpuprofile cpu.out ./internal/bench
func BenchmarkDispatch(b *testing.B) {
	for _, runners := range []int{1, 8, 32} {
		b.Run("runners="+strconv.Itoa(runners), func(b *testing.B) {
			url := serveControlPlane(b)
			cfg := DefaultDispatchConfig()
			cfg.ControlPlane = url
			cfg.Runners = runners
			cfg.Jobs = max(b.N, 1)
			b.ResetTimer()
			res, err := Dispatch(b.Context(), cfg, quietLogger())
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			for _, k := range []string{"jobs_per_s", "p50_ms", "p99_ms"} {
				v, _ := res.Figure(k)
				b.ReportMetric(v, k)
			}
			// One op is one job of the saturated phase.
			if jps, _ := res.Figure("jobs_per_s"); jps > 0 {
				b.ReportMetric(1e9/jps, "ns/op")
			}
		})
	}
}

// BenchmarkCommitToResult times commit→result through an in-process Pontus
// (the latency bench's setup), one commit per iteration.
func BenchmarkCommitToResult(b *testing.B) {
	if _, err := exec.LookPath("python3"); err != nil {
		b.Skip("python3 not found")
	}
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	tmp := b.TempDir()
	repoDir := filepath.Join(tmp, "repo")
	repo, first, err := newSuiteRepo(ctx, repoDir)
	if err != nil {
		b.Fatal(err)
	}
	results := filepath.Join(tmp, "results")
	stop, err := startInProcess(ctx, cancel, tmp, repoDir, results, "python3", quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		cancel()
		if err := stop(); err != nil {
			b.Error(err)
		}
	}()
	warm := &sample{commit: first, committed: time.Now()}
	waitSample(ctx, results, warm, time.Minute)
	if warm.err != nil {
		b.Fatal(warm.err)
	}
	for b.Loop() {
		if err := repo.change(); err != nil {
			b.Fatal(err)
		}
		if err := repo.commitOnly(ctx); err != nil {
			b.Fatal(err)
		}
		s := &sample{committed: time.Now()}
		if s.commit, err = repo.head(ctx); err != nil {
			b.Fatal(err)
		}
		waitSample(ctx, results, s, time.Minute)
		if s.err != nil {
			b.Fatal(s.err)
		}
	}
}

// BenchmarkWasmWarmStart is the wasm bench's warm run as a Go benchmark
// (without the Go test comparison).
func BenchmarkWasmWarmStart(b *testing.B) {
	cfg := DefaultWasmConfig()
	cfg.Runs = max(b.N, 1)
	cfg.FibRuns = 0
	res, err := Wasm(b.Context(), cfg, quietLogger())
	if err != nil {
		b.Fatal(err)
	}
	v, _ := res.Figure("warm_start_ms")
	b.ReportMetric(v, "warm_ms")
}

// BenchmarkReadProc is what one CPU/RSS sample of a process costs the
// fleet and idle benches.
func BenchmarkReadProc(b *testing.B) {
	pid := os.Getpid()
	for b.Loop() {
		if _, err := readProc(pid); err != nil {
			b.Fatal(err)
		}
	}
}
