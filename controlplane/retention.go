package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pontus-ci/pontus/controlplane/store"
)

// pruneEvery is how often retention runs (it also runs at start).
const pruneEvery = time.Hour

// pruneBatch is how many builds one round deletes in one transaction.
const pruneBatch = 500

// prune applies keep_builds and keep_logs: it deletes the logs (and, with
// prune_results, the result files) of builds past keep_builds and then the
// builds, and the logs of builds past keep_logs. Files go first, so a
// crash in between leaves a build without its files, which the next round
// deletes, never files nobody refers to.
func (s *Server) prune(ctx context.Context) (builds, logs int, err error) {
	keepBuilds, _ := parseRetention(s.cfg.KeepBuilds) // validated in New
	keepLogs, _ := parseRetention(s.cfg.KeepLogs)
	now := time.Now()
	for _, pass := range []struct {
		keep  store.Retention
		logs  bool
		count *int
	}{{keepBuilds, false, &builds}, {keepLogs, true, &logs}} {
		if pass.keep == (store.Retention{}) {
			continue
		}
		for ctx.Err() == nil {
			expired, err := s.st.Expired(ctx, store.ExpiredQuery{Keep: pass.keep, Logs: pass.logs, Now: now, Limit: pruneBatch})
			if err != nil || len(expired) == 0 {
				if err != nil {
					return builds, logs, err
				}
				break
			}
			muts := make([]store.Mutation, 0, len(expired))
			for _, e := range expired {
				for job := e.ID; job <= max(e.ID, e.LastJob); job++ {
					if err := s.d.logs.remove(job); err != nil {
						return builds, logs, err
					}
				}
				if pass.logs {
					muts = append(muts, store.Mutation{LogsPruned: e.ID})
					continue
				}
				if s.cfg.PruneResults {
					if err := s.d.results.remove(e.Commit, e.ID); err != nil {
						return builds, logs, err
					}
				}
				muts = append(muts, store.Mutation{DeleteBuild: e.ID})
			}
			if err := s.st.Enqueue(muts...).Wait(ctx); err != nil {
				return builds, logs, fmt.Errorf("prune: %w", err)
			}
			*pass.count += len(expired)
			s.metrics.pruned.WithLabelValues(map[bool]string{false: "builds", true: "logs"}[pass.logs]).Add(float64(len(expired)))
		}
	}
	return builds, logs, ctx.Err()
}

// pruneLoop runs prune at start and every pruneEvery until ctx ends.
func (s *Server) pruneLoop(ctx context.Context) {
	if s.cfg.KeepBuilds == "" && s.cfg.KeepLogs == "" {
		return
	}
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		builds, logs, err := s.prune(ctx)
		switch {
		case errors.Is(err, context.Canceled):
			return
		case err != nil:
			s.log.Error("retention: prune old builds and logs", "err", err)
		case builds > 0 || logs > 0:
			s.log.Info("retention: pruned", "builds", builds, "logs", logs,
				"keep_builds", s.cfg.KeepBuilds, "keep_logs", s.cfg.KeepLogs)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// remove deletes a commit's result files if they are build id's.
func (w *resultWriter) remove(commit string, id int64) error {
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	if got, _ := w.written(commit); got != id {
		return nil
	}
	for _, name := range []string{commit + ".json", commit} {
		if err := os.Remove(filepath.Join(w.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove result file: %w", err)
		}
	}
	return nil
}
