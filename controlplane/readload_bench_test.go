package controlplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// BenchmarkRunnersUnderReadLoad times what runners do — a heartbeat, and
// the hand-out of a queued job — on a control plane holding 100,000 queued
// builds no runner can take ("no runner has labels [gpu]"), while readers
// hammer ListBuilds (1,000 builds a call, every one with its pending
// reason), the public /badge.svg and the dashboard's front page.
// PONTUS_BENCH_QUEUED changes the count.
//
//	go test -run '^$' -bench RunnersUnderReadLoad -benchtime 2000x ./controlplane
func BenchmarkRunnersUnderReadLoad(b *testing.B) {
	queued := 100000
	if v, err := strconv.Atoi(os.Getenv("PONTUS_BENCH_QUEUED")); err == nil && v > 0 {
		queued = v
	}
	cfg := testConfig(b)
	cfg.MaxQueuedBuilds = queued + 10000
	cfg.HeartbeatInterval = 2 * time.Second
	cfg.LeaseDuration = time.Minute
	cp := startCP(b, cfg)
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < queued; i += maxCommitsPerReport {
		commits := make([]string, 0, maxCommitsPerReport)
		for j := i; j < min(i+maxCommitsPerReport, queued); j++ {
			commits = append(commits, fmt.Sprintf("%040x", j+1))
		}
		cp.report(b, "main", []string{"gpu"}, commits...)
	}
	b.Logf("queued %d unroutable builds in %s", queued, time.Since(start).Round(time.Millisecond))
	runner := cp.register(b, "bench")
	sample, err := cp.builds.ListBuilds(ctx, &pontusv1.ListBuildsRequest{Limit: 1})
	if err != nil || len(sample.Builds) != 1 || sample.Builds[0].Reason != "no runner has labels [gpu]" {
		b.Fatalf("newest build: %v, %v", sample.GetBuilds(), err)
	}

	// hammer runs n readers of each kind until stop, counting calls and
	// their total time.
	type readStats struct {
		lists, badges, pages, listNanos, badgeNanos, pageNanos atomic.Int64
	}
	hammer := func(n int) (stop func() *readStats) {
		st := &readStats{}
		rctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range n {
			wg.Add(3)
			go func() {
				defer wg.Done()
				for rctx.Err() == nil {
					t0 := time.Now()
					if _, err := cp.builds.ListBuilds(rctx, &pontusv1.ListBuildsRequest{Limit: 1000}); err == nil {
						st.lists.Add(1)
						st.listNanos.Add(int64(time.Since(t0)))
					}
				}
			}()
			get := func(path string, count, nanos *atomic.Int64) {
				defer wg.Done()
				for rctx.Err() == nil {
					t0 := time.Now()
					req, _ := http.NewRequestWithContext(rctx, http.MethodGet, cp.url+path, nil)
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					count.Add(1)
					nanos.Add(int64(time.Since(t0)))
				}
			}
			go get("/badge.svg?branch=main", &st.badges, &st.badgeNanos)
			go get("/", &st.pages, &st.pageNanos) // the dashboard: newest 50 builds
		}
		return func() *readStats { cancel(); wg.Wait(); return st }
	}
	report := func(b *testing.B, lat []time.Duration, st *readStats) {
		slices.Sort(lat)
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
		}
		if st != nil && st.lists.Load() > 0 {
			b.ReportMetric(float64(st.listNanos.Load()/st.lists.Load())/1e6, "list1000-ms")
		}
		if st != nil && st.badges.Load() > 0 {
			b.ReportMetric(float64(st.badgeNanos.Load()/st.badges.Load())/1e6, "badge-ms")
		}
		if st != nil && st.pages.Load() > 0 {
			b.ReportMetric(float64(st.pageNanos.Load()/st.pages.Load())/1e6, "dashboard-ms")
		}
	}
	heartbeats := func(b *testing.B, readers int) {
		var stop func() *readStats
		if readers > 0 {
			stop = hammer(readers)
		}
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			if _, err := cp.runners.Heartbeat(ctx, &pontusv1.HeartbeatRequest{RunnerId: runner}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		var st *readStats
		if stop != nil {
			st = stop()
		}
		report(b, lat, st)
	}
	b.Run("heartbeat/quiet", func(b *testing.B) { heartbeats(b, 0) })
	b.Run("heartbeat/hammered", func(b *testing.B) { heartbeats(b, 4) })
	// What a runner call waits for behind readers, without the CPU the
	// call itself needs: the time to take the dispatch lock.
	b.Run("lockwait/hammered", func(b *testing.B) {
		stop := hammer(4)
		d := cp.server.d
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			d.mu.Lock()
			lat = append(lat, time.Since(t0))
			d.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		report(b, lat, stop())
	})
	next := queued // commits of routable builds, distinct across runs
	b.Run("handout/hammered", func(b *testing.B) {
		stop := hammer(4)
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			next++
			cp.report(b, "work", nil, fmt.Sprintf("%040x", next))
			b.StartTimer()
			t0 := time.Now()
			res, err := cp.runners.AcquireJob(ctx, &pontusv1.AcquireJobRequest{RunnerId: runner, Wait: durationpb.New(10 * time.Second)})
			if err != nil || res.Job == nil {
				b.Fatalf("AcquireJob: %v, %v", res.GetJob(), err)
			}
			lat = append(lat, time.Since(t0))
			b.StopTimer()
			if _, err := cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{
				JobId: res.Job.JobId, Attempt: res.Job.Attempt, Status: pontusv1.BuildStatus_BUILD_STATUS_PASSED,
			}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.StopTimer()
		report(b, lat, stop())
	})
}
