package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// BenchmarkReusedVerdict measures a commit whose tree was tested already:
// from ReportCommits to its verdict durable in the store (the RPC's answer)
// and to its result files written. Target: ≤ 50 ms.
func BenchmarkReusedVerdict(b *testing.B) {
	cp := startCP(b, testConfig(b))
	r := cp.register(b, "r")
	tree := hexID(1 << 20)
	cp.reportHead(b, hexID(1), tree, "", nil, nil)
	cp.run(b, r, func(string) bool { return false })
	var durable, written time.Duration
	b.ResetTimer()
	for i := range b.N {
		commit := hexID(1000 + i)
		start := time.Now()
		res, err := cp.observer.ReportCommits(context.Background(), &pontusv1.ReportCommitsRequest{
			Repo: "/srv/repo", Branch: "main", Commits: []string{commit},
			Details: []*pontusv1.CommitInfo{{Id: commit, Tree: tree}},
		})
		if err != nil || res.Builds[0].ReusedBuild == 0 {
			b.Fatalf("report: %v %v", res, err)
		}
		durable += time.Since(start)
		for {
			if _, err := os.Stat(filepath.Join(cp.cfg.ResultsDir, commit+".json")); err == nil {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		written += time.Since(start)
	}
	b.ReportMetric(float64(durable.Microseconds())/1000/float64(b.N), "ms-durable/op")
	b.ReportMetric(float64(written.Microseconds())/1000/float64(b.N), "ms-files/op")
}
