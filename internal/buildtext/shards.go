package buildtext

import (
	"fmt"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// ShardRows renders a sharded build's shards, the same way in `pontus
// show` and the report file: one (label, text) pair per shard of b, e.g.
// ("shard 2/4", "PASSED on runner-a, attempt 2, 3 tests, 4.1s; lost: attempt 1 on runner-b: runner lost: lease expired").
func ShardRows(b *pontusv1.Build) [][2]string {
	var rows [][2]string
	for _, s := range b.Shards {
		text := Status(s.Status)
		if s.RunnerName != "" {
			text += " on " + s.RunnerName
		}
		if s.Attempt > 0 {
			text += fmt.Sprintf(", attempt %d", s.Attempt)
		}
		if s.TestCount > 0 {
			text += ", " + Plural(int(s.TestCount), "test", "tests")
		}
		if s.Duration != nil {
			text += ", " + s.Duration.AsDuration().Round(time.Millisecond).String()
		}
		if s.Reason != "" {
			text += ": " + s.Reason
		}
		for _, a := range s.Attempts {
			if a.Number != s.Attempt {
				text += fmt.Sprintf("; lost attempt %d on %s: %s", a.Number, a.RunnerName, a.Reason)
			}
		}
		rows = append(rows, [2]string{fmt.Sprintf("shard %d/%d", s.Index+1, len(b.Shards)), text})
	}
	return rows
}
