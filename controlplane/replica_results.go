package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pontus-ci/pontus/controlplane/leader"
	"github.com/pontus-ci/pontus/controlplane/store"
)

// replicaTables are the tables replicas keep beside the store's own:
// pontus_leader (one row: who leads, at which epoch; controlplane/leader)
// and replica_reports (which replica wrote the files of which build).
const replicaTables = leader.Schema + ";\n" + store.ReplicaReportsSchema

// resultSync writes, on one replica, the result files of every finished
// build that replica_reports does not record as written by it, oldest
// first, and records them. It polls the store (and is woken at once by
// this replica's own dispatcher while it leads), so a replica that was
// down catches up when it returns.
type resultSync struct {
	st      *store.Postgres
	name    string
	w       *resultWriter
	leading func() bool
	log     *slog.Logger
	wake    chan struct{}
	written atomic.Int64
	// low is an id at or below which every build is finished and written.
	low int64
	// cleaned is when marks of builds retention deleted were last removed.
	cleaned time.Time
}

// resultSyncClean is how often a replica removes its marks of builds that
// retention deleted.
const resultSyncClean = 10 * time.Minute

// resultSyncBatch is how many builds one pass reads.
const resultSyncBatch = 200

// resultSyncPoll is how often the store is asked when nothing wakes the
// writer.
var resultSyncPoll = 500 * time.Millisecond

func newResultSync(st *store.Postgres, name string, w *resultWriter, leading func() bool, logger *slog.Logger) *resultSync {
	return &resultSync{st: st, name: name, w: w, leading: leading, log: logger, wake: make(chan struct{}, 1)}
}

// poke wakes the writer (a build finished on this replica).
func (s *resultSync) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *resultSync) run(ctx context.Context) {
	delay := resultSyncPoll
	for {
		n, err := s.pass(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.w.failures.Add(1)
			if s.w.failing.Swap(1) == 0 {
				s.log.Error("write result files from the store; retrying", "err", err)
			}
			delay = min(2*delay, resultRetryMax)
		default:
			if s.w.failing.Swap(0) == 1 {
				s.log.Info("result files are written again", "dir", s.w.dir)
			}
			delay = resultSyncPoll
			if n == resultSyncBatch {
				continue
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// pass writes the files of up to resultSyncBatch builds and returns how
// many it read.
func (s *resultSync) pass(ctx context.Context) (int, error) {
	builds, floor, err := s.st.ReplicaUnreported(ctx, s.name, s.low, resultSyncBatch)
	if err != nil {
		return 0, err
	}
	var done []int64
	var werr error
	for _, b := range builds {
		if err := s.w.write(b); err != nil && !errors.Is(err, errNotRetryable) {
			werr = fmt.Errorf("build %d: %w", b.Id, err)
			break
		} else if err != nil {
			s.log.Error("write result files", "build", b.Id, "commit", b.Commit, "err", err)
		}
		done = append(done, b.Id)
	}
	if len(done) > 0 {
		if err := s.st.MarkReplicaReported(ctx, s.name, done); err != nil {
			return 0, err
		}
		s.written.Add(int64(len(done)))
		if s.leading() {
			// The store's own flag (retention keeps unreported builds)
			// follows the leader's files; a fenced write is harmless.
			muts := make([]store.Mutation, len(done))
			for i, id := range done {
				muts[i] = store.Mutation{Reported: id}
			}
			s.st.Enqueue(muts...)
		}
	}
	if werr != nil {
		return 0, werr
	}
	if len(builds) < resultSyncBatch {
		s.low = max(s.low, floor)
	}
	if time.Since(s.cleaned) > resultSyncClean {
		s.cleaned = time.Now()
		if err := s.st.ForgetDeletedReports(ctx, s.name); err != nil {
			s.log.Warn("remove marks of deleted builds", "err", err)
		}
	}
	return len(builds), nil
}
