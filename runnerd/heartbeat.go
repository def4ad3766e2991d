package runnerd

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/internal/dial"
	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// heartbeatJitter is the ± fraction applied to every heartbeat interval.
const heartbeatJitter = 0.2

// errRegisteredAgain means a heartbeat found the runner forgotten and the
// runner registered again: send the heartbeat again under the new id.
var errRegisteredAgain = errors.New("registered again")

// heartbeater sends heartbeats while the runner holds jobs. It is separate
// from Runner so that its timing can be tested on its own.
type heartbeater struct {
	// interval is the current heartbeat interval chosen by the server.
	interval func() time.Duration
	// held lists the job attempts the runner holds now.
	held func() []*pontusv1.JobRef
	// changed is poked when held changes.
	changed <-chan struct{}
	// beat sends one heartbeat and acts on the answer.
	beat   func(context.Context, []*pontusv1.JobRef) error
	logger *slog.Logger
}

func (r *Runner) heartbeater() *heartbeater {
	return &heartbeater{
		interval: func() time.Duration { return r.session().heartbeat },
		held:     r.heldRefs,
		changed:  r.changed,
		beat:     r.beat,
		logger:   r.logger,
	}
}

// run sends a heartbeat every interval ±20 % while held is not empty, the
// first one an interval after the runner went from idle to busy. A failed
// heartbeat is retried with backoff (never later than the next regular
// one). While nothing is held it sends nothing. It returns when ctx ends.
func (h *heartbeater) run(ctx context.Context) {
	bo := dial.NewBackoff(backoffMin, backoffMax)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var next time.Time
	failures := 0
	for {
		if len(h.held()) == 0 {
			next = time.Time{}
			select {
			case <-h.changed:
				continue
			case <-ctx.Done():
				return
			}
		}
		now := time.Now()
		if next.IsZero() {
			next = now.Add(dial.Jitter(h.interval(), heartbeatJitter))
		}
		if d := next.Sub(now); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-h.changed:
				timer.Stop()
			case <-ctx.Done():
				return
			}
			continue
		}
		refs := h.held()
		if len(refs) == 0 {
			continue
		}
		err := h.beat(ctx, refs)
		if ctx.Err() != nil {
			return
		}
		iv := dial.Jitter(h.interval(), heartbeatJitter)
		switch {
		case err == nil:
			if failures > 0 {
				h.logger.Info("heartbeats resumed", "after_failures", failures)
			}
			failures = 0
			bo.Reset()
			next = time.Now().Add(iv)
		case errors.Is(err, errRegisteredAgain):
			next = time.Now().Add(min(bo.Next(), iv))
		default:
			if failures++; failures == 1 {
				h.logger.Warn("heartbeat failed; retrying with backoff", "err", err)
			} else {
				h.logger.Debug("heartbeat failed", "err", err, "failures", failures)
			}
			next = time.Now().Add(min(bo.Next(), iv))
		}
	}
}

// beat sends one heartbeat for refs and stops the jobs the answer names.
func (r *Runner) beat(ctx context.Context, refs []*pontusv1.JobRef) error {
	sess := r.session()
	callCtx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	resp, err := r.client.Heartbeat(callCtx, &pontusv1.HeartbeatRequest{RunnerId: sess.id, Leases: refs})
	if err != nil {
		if connect.CodeOf(err) == connect.CodeNotFound {
			r.reregister(ctx, sess)
			return errRegisteredAgain
		}
		return err
	}
	for _, ref := range resp.GetCancel() {
		r.stopJob(ref, errCanceled)
	}
	for _, ref := range resp.GetLost() {
		r.stopJob(ref, errLost)
	}
	return nil
}
