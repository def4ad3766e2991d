package observerd

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkDetectionLatency measures how long after a branch moves in a
// local repository (the ref update has returned) the control plane has the
// report: file-system event, debounce, for-each-ref, ReportCommits.
func BenchmarkDetectionLatency(b *testing.B) {
	cp := newFakeCP(b)
	reported := make(chan string, 16)
	cp.mu.Lock()
	cp.onReport = func(r report) { reported <- r.Commits[len(r.Commits)-1] }
	cp.mu.Unlock()
	dir := newRepo(b)
	parent := headOf(b, dir, "main")
	tree := gitT(b, dir, "rev-parse", parent+"^{tree}")
	startObserver(b, testConfig(b, cp, dir))
	if got := <-reported; got != parent {
		b.Fatalf("first report %s, want %s", got, parent)
	}

	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := gitT(b, dir, "commit-tree", "-p", parent, "-m", "bench", tree)
		b.StartTimer()
		gitT(b, dir, "update-ref", "refs/heads/main", c, parent)
		moved := time.Now()
		timeout := time.After(10 * time.Second)
	wait:
		for {
			select {
			case got := <-reported:
				if got == c {
					break wait
				}
			case <-timeout:
				b.Fatalf("commit %s not reported within 10s", c)
			}
		}
		total += time.Since(moved)
		parent = c
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/detect")
}

// BenchmarkIdleCPU measures the CPU an idle observer of a local repository
// uses (its own and its git children's), with a 1 s poll — fifteen times
// the default — so the safety-net poll's cost shows.
func BenchmarkIdleCPU(b *testing.B) {
	cp := newFakeCP(b)
	dir := newRepo(b)
	cfg := testConfig(b, cp, dir)
	cfg.PollInterval = time.Second
	startObserver(b, cfg)
	cp.waitCursor(b, realpath(b, dir), "main", headOf(b, dir, "main"))

	cpu := func() time.Duration {
		var self, children syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err != nil {
			b.Fatal(err)
		}
		var d time.Duration
		for _, ru := range []syscall.Rusage{self, children} {
			d += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		return d
	}
	b.ResetTimer()
	var used, wall time.Duration
	for i := 0; i < b.N; i++ {
		start, c0 := time.Now(), cpu()
		time.Sleep(5 * time.Second) // measuring idleness: nothing to wait for
		used += cpu() - c0
		wall += time.Since(start)
	}
	b.ReportMetric(100*used.Seconds()/wall.Seconds(), "%cpu")
}
