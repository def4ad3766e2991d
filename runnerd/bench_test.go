package runnerd

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkJobOverhead measures what the runner adds to a job: from the job
// being queued (AcquireJob is already waiting) through checkout, running
// `true`, streaming the log and CompleteJob. "cached" reuses a commit the
// cache clone holds; "new-commit" makes a commit per job, so each one
// costs a fetch (the commit itself is made outside the timer).
func BenchmarkJobOverhead(b *testing.B) {
	for _, fresh := range []bool{false, true} {
		name := "cached"
		if fresh {
			name = "new-commit"
		}
		b.Run(name, func(b *testing.B) {
			fake := newFakeCP(b)
			fake.start()
			repo := newRepo(b)
			commit := repo.commit(map[string]string{"tests/test_x.py": passingTest})
			cfg := testConfig(b, fake)
			cfg.TestCommand = "true"
			startRunner(b, cfg)
			// Warm up: the first job makes the cache clone.
			if req, log := fake.waitDone(fake.enqueue(repo.dir, commit)); req.GetStatus() != passed {
				b.Fatalf("warm-up job: %v\n%s", req.GetStatus(), log)
			}
			var total time.Duration
			n := 0
			for b.Loop() {
				if fresh {
					b.StopTimer()
					commit = repo.commit(map[string]string{"tests/test_x.py": passingTest + fmt.Sprintf("# %d\n", n)})
					b.StartTimer()
				}
				req, log := fake.waitDone(fake.enqueue(repo.dir, commit))
				if req.GetStatus() != passed {
					b.Fatalf("job: %v\n%s", req.GetStatus(), log)
				}
				total += req.GetDuration().AsDuration()
				n++
			}
			b.ReportMetric(float64(total.Microseconds())/float64(n)/1000, "runner-ms/job")
		})
	}
}
