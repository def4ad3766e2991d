package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/pontus-ci/pontus/controlplane/store"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// load keeps runners busy: each worker reports a new commit, takes a job,
// streams a log and completes it, until stop is closed.
func load(ctx context.Context, cp *testCP, workers int, finished *atomic.Int64, stop <-chan struct{}) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			reg, err := cp.runners.Register(ctx, &pontusv1.RegisterRequest{Name: fmt.Sprintf("load-%d", w)})
			if err != nil {
				errs <- err
				return
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				commit := fmt.Sprintf("%040x", 0xc0de0000+next.Add(1))
				if _, err := cp.observer.ReportCommits(ctx, &pontusv1.ReportCommitsRequest{Repo: "/srv/repo", Branch: "main", Commits: []string{commit}}); err != nil {
					errs <- err
					return
				}
				res, err := cp.runners.AcquireJob(ctx, &pontusv1.AcquireJobRequest{RunnerId: reg.RunnerId, Wait: durationpb.New(time.Second)})
				if err != nil {
					errs <- err
					return
				}
				job := res.Job
				if job == nil {
					continue
				}
				var size int64
				for i := range 3 {
					chunk := []byte(fmt.Sprintf("build %d line %d\n", job.JobId, i))
					if _, err := cp.runners.AppendLog(ctx, &pontusv1.AppendLogRequest{JobId: job.JobId, Attempt: job.Attempt, Offset: size, Data: chunk}); err != nil {
						errs <- err
						return
					}
					size += int64(len(chunk))
				}
				status := pontusv1.BuildStatus_BUILD_STATUS_PASSED
				if job.JobId%3 == 0 {
					status = pontusv1.BuildStatus_BUILD_STATUS_FAILED
				}
				if _, err := cp.runners.CompleteJob(ctx, &pontusv1.CompleteJobRequest{JobId: job.JobId, Attempt: job.Attempt, Status: status, LogSize: size}); err != nil {
					errs <- err
					return
				}
				finished.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// A backup taken while builds are created and completed is a state the
// control plane was in: served by a second control plane, every build of
// the copy is there, and every finished build has its whole log.
func TestBackupUnderLoadServesEveryBuild(t *testing.T) {
	cfg := testConfig(t)
	cfg.LeaseDuration = 5 * time.Second
	src := startCP(t, cfg)
	ctx := context.Background()
	var finished atomic.Int64
	stop := make(chan struct{})
	loadErr := make(chan error, 1)
	go func() { loadErr <- load(ctx, src, 3, &finished, stop) }()
	waitFor(t, "30 finished builds", 30*time.Second, func() (bool, string) {
		return finished.Load() >= 30, fmt.Sprintf("%d finished", finished.Load())
	})

	dest := filepath.Join(t.TempDir(), "backup")
	stats, err := Backup(ctx, cfg.DataDir, dest)
	if err != nil {
		t.Fatal(err)
	}
	atBackup := finished.Load()
	waitFor(t, "load to go on after the backup", 30*time.Second, func() (bool, string) {
		return finished.Load() >= atBackup+10, fmt.Sprintf("%d finished", finished.Load())
	})
	close(stop)
	if err := <-loadErr; err != nil {
		t.Fatalf("load: %v", err)
	}
	src.stop()
	if _, err := os.Stat(filepath.Join(dest, "lock")); err == nil {
		t.Error("the backup holds the lock file")
	}
	t.Logf("backup: %+v; %d builds finished by then, %d by the end", stats, atBackup, finished.Load())

	copyCfg := testConfig(t)
	copyCfg.DataDir = dest
	copyCP := startCP(t, copyCfg)
	res, err := copyCP.builds.ListBuilds(ctx, &pontusv1.ListBuildsRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Builds) != stats.Builds || stats.Builds < 30 {
		t.Fatalf("the copy serves %d builds, the backup copied %d", len(res.Builds), stats.Builds)
	}
	srcLogs := fileLogStore(filepath.Join(cfg.DataDir, "logs"), 0, false)
	finishedInCopy := 0
	for i, b := range res.Builds {
		if want := int64(len(res.Builds) - i); b.Id != want {
			t.Fatalf("the copy's builds skip from %d to %d", want, b.Id)
		}
		got := copyCP.build(t, b.Id)
		if !store.IsTerminal(got.Status) {
			continue
		}
		finishedInCopy++
		stream, err := copyCP.builds.TailLog(ctx, &pontusv1.TailLogRequest{BuildId: b.Id})
		if err != nil {
			t.Fatal(err)
		}
		var log []byte
		for stream.Receive() {
			log = append(log, stream.Msg().Data...)
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("TailLog %d: %v", b.Id, err)
		}
		want, _ := srcLogs.readAll(b.Id, got.Attempt)
		if len(want) == 0 || !bytes.Equal(log, want) {
			t.Errorf("build %d: the copy's log is %q, the original's %q", b.Id, log, want)
		}
	}
	if finishedInCopy < 30 {
		t.Errorf("only %d finished builds in the copy, want at least 30", finishedInCopy)
	}
}

func TestBackupRefusesAFullDestinationAndLeavesNothingOnFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	os.MkdirAll(full, 0o700)
	os.WriteFile(filepath.Join(full, "x"), nil, 0o600)
	if _, err := Backup(context.Background(), filepath.Join(dir, "data"), full); err == nil {
		t.Fatal("backup into a non-empty directory succeeded")
	}
	dest := filepath.Join(dir, "new")
	if _, err := Backup(context.Background(), filepath.Join(dir, "no-such-data"), dest); err == nil {
		t.Fatal("backup of a missing data_dir succeeded")
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("a failed backup left its destination")
	}
}
