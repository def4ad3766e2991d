package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
	"github.com/pontus-ci/pontus/schema/gen/pontus/v1/pontusv1connect"
)

// A slow test prints lines over several seconds; TailLog delivers them
// while it runs, each line once.
func TestLiveLogWhileTestRuns(t *testing.T) {
	t.Parallel()
	repo := NewRepo(t, map[string]string{"tests/test_slow.py": pyTest("test_slow",
		"import sys, time\n        for i in range(6):\n            sys.stderr.write('tick %d\\n' % i); sys.stderr.flush(); time.sleep(0.5)")})
	d := startDev(t, repo)
	commit := repo.Head(t)
	hc, err := dial.HTTPClient(dial.Config{URL: d.url})
	if err != nil {
		t.Fatal(err)
	}
	client := pontusv1connect.NewBuildServiceClient(hc, d.url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	WaitFor(t, "the build to exist", 30*time.Second, func() (bool, string) {
		_, err := client.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: commit})
		return err == nil, errString(err)
	})
	stream, err := client.TailLog(ctx, &pontusv1.TailLogRequest{Commit: commit, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var log strings.Builder
	sawWhileRunning := false
	next := int64(0)
	for stream.Receive() {
		m := stream.Msg()
		if m.Reset_ {
			log.Reset()
			next = 0
		}
		if len(m.Data) > 0 && m.Offset != next {
			t.Fatalf("chunk at offset %d, want %d: a gap or a repeat", m.Offset, next)
		}
		next = m.Offset + int64(len(m.Data))
		log.Write(m.Data)
		if strings.Contains(log.String(), "tick 1\n") && !sawWhileRunning {
			res, err := client.GetBuild(ctx, &pontusv1.GetBuildRequest{Commit: commit})
			if err == nil && res.Build.Status == pontusv1.BuildStatus_BUILD_STATUS_RUNNING {
				sawWhileRunning = true
			}
		}
		if m.Eof {
			break
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if !sawWhileRunning {
		t.Error("log lines arrived only after the build ended")
	}
	for i := range 6 {
		line := "tick " + string(rune('0'+i)) + "\n"
		if n := strings.Count(log.String(), line); n != 1 {
			t.Errorf("%q appears %d times in the streamed log", line, n)
		}
	}
	b := WaitResult(t, d.results, commit, 10*time.Second)
	if b.Status != passed {
		t.Fatalf("status %s", b.Status)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
