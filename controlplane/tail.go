package controlplane

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/pontus-ci/pontus/controlplane/store"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const tailChunk = 256 << 10

// tail streams a build's stored log from offset; with follow it waits for
// more until the build ends. A new attempt is announced with reset.
func (d *dispatcher) tail(ctx context.Context, buildID, offset int64, follow bool, send func(*pontusv1.TailLogResponse) error) error {
	d.mu.Lock()
	lb := d.builds[buildID]
	sharded := lb != nil && len(lb.jobs) > 0
	d.mu.Unlock()
	if lb == nil {
		b, err := d.st.GetBuild(ctx, buildID)
		if err != nil {
			return connect.NewError(connect.CodeInternal, errors.New("store read failed"))
		}
		sharded = len(b.Shards) > 0
	}
	if sharded {
		return d.tailSharded(ctx, buildID, offset, follow, send)
	}
	attempt := int32(-1)
	var prev *liveBuild // the live build followed so far, if any
	for {
		var (
			cur     int32
			status  pontusv1.BuildStatus
			changed chan struct{}
		)
		d.mu.Lock()
		lb := d.builds[buildID]
		switch {
		case lb != nil:
			cur, status, changed = lb.b.Attempt, lb.b.Status, lb.changed
			prev = lb
		case prev != nil:
			// It has just finished: its last state is final, and fresher
			// than the store until the final write commits.
			cur, status = prev.b.Attempt, prev.b.Status
		}
		d.mu.Unlock()
		if lb == nil && prev == nil {
			b, err := d.st.GetBuild(ctx, buildID)
			if err != nil {
				return connect.NewError(connect.CodeInternal, errors.New("store read failed"))
			}
			cur, status = b.Attempt, b.Status
		}
		if attempt != -1 && cur != attempt {
			offset = 0
			if err := send(&pontusv1.TailLogResponse{Attempt: cur, Reset_: true, Status: status}); err != nil {
				return err
			}
		}
		attempt = cur
		for cur > 0 {
			data, err := d.logs.read(buildID, cur, offset, tailChunk)
			if err != nil {
				return connect.NewError(connect.CodeInternal, errors.New("log read failed"))
			}
			if len(data) == 0 {
				break
			}
			if err := send(&pontusv1.TailLogResponse{Offset: offset, Data: data, Attempt: cur, Status: status}); err != nil {
				return err
			}
			offset += int64(len(data))
		}
		if lb == nil {
			return send(&pontusv1.TailLogResponse{Offset: offset, Attempt: cur, Eof: true, Status: status})
		}
		if !follow {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		case <-d.shutdown:
			return errShuttingDown()
		}
	}
}

// A sharded build's log is its shards' logs one after another, each after a
// header line; offsets count in that sequence. A shard's part is final once
// the shard has finished, so a follower streams the parts in order, waiting
// on each until it is complete: bytes once sent never change, except when a
// lost shard is re-run, which resets the log.

// logPart is one shard's part of a sharded build's log.
type logPart struct {
	header  string
	job     int64
	attempt int32
	final   bool // the shard has finished: the part will not grow
}

// shardHeader is the line before shard s's log.
func shardHeader(s *pontusv1.Shard, n int) string {
	if s.Attempt == 0 {
		return fmt.Sprintf("[pontus: shard %d of %d (job %d): %s]\n", s.Index+1, n, s.JobId, s.Reason)
	}
	return fmt.Sprintf("[pontus: shard %d of %d (job %d, attempt %d, runner %s)]\n", s.Index+1, n, s.JobId, s.Attempt, s.RunnerName)
}

// logParts lists the parts of sharded build b's log, up to the first
// shard that has not started (its header is not known yet).
func logParts(b *pontusv1.Build) []logPart {
	var parts []logPart
	for _, s := range b.Shards {
		final := store.IsTerminal(s.Status)
		if s.Attempt == 0 && !final {
			break
		}
		parts = append(parts, logPart{header: shardHeader(s, len(b.Shards)), job: s.JobId, attempt: s.Attempt, final: final})
	}
	return parts
}

// buildLog is the whole stored log of a build: its attempt's, or a sharded
// build's parts one after another, exactly as TailLog sends them (a
// runner's log ends with a newline, so each header starts a line).
func buildLog(l *logStore, b *pontusv1.Build) ([]byte, error) {
	if len(b.Shards) == 0 {
		return l.readAll(b.Id, b.Attempt)
	}
	var out []byte
	for _, p := range logParts(b) {
		out = append(out, p.header...)
		if p.attempt > 0 {
			data, err := l.readAll(p.job, p.attempt)
			if err != nil {
				return nil, err
			}
			out = append(out, data...)
		}
	}
	return out, nil
}

// tailSharded is tail for a sharded build.
func (d *dispatcher) tailSharded(ctx context.Context, buildID, offset int64, follow bool, send func(*pontusv1.TailLogResponse) error) error {
	var attempts []int32 // each shard's attempt when last seen
	var prev *liveBuild
	for {
		var (
			b       *pontusv1.Build
			changed chan struct{}
		)
		d.mu.Lock()
		lb := d.builds[buildID]
		switch {
		case lb != nil:
			b, changed, prev = d.viewLocked(lb.b), lb.changed, lb
		case prev != nil:
			b = d.viewLocked(prev.b)
		}
		d.mu.Unlock()
		if b == nil {
			var err error
			if b, err = d.st.GetBuild(ctx, buildID); err != nil {
				return connect.NewError(connect.CodeInternal, errors.New("store read failed"))
			}
		}
		live := !store.IsTerminal(b.Status)
		reset := false
		for i, s := range b.Shards {
			if i < len(attempts) && attempts[i] > 0 && s.Attempt != attempts[i] {
				reset = true
			}
		}
		attempts = attempts[:0]
		for _, s := range b.Shards {
			attempts = append(attempts, s.Attempt)
		}
		if reset {
			offset = 0
			if err := send(&pontusv1.TailLogResponse{Attempt: b.Attempt, Reset_: true, Status: b.Status}); err != nil {
				return err
			}
		}
		// Walk the parts, sending what lies at or after offset.
		var base int64
		complete := true
		for _, p := range logParts(b) {
			if h := int64(len(p.header)); offset < base+h {
				if err := send(&pontusv1.TailLogResponse{Offset: offset, Data: []byte(p.header[offset-base:]), Attempt: b.Attempt, Status: b.Status}); err != nil {
					return err
				}
				offset = base + h
			}
			base += int64(len(p.header))
			for p.attempt > 0 {
				data, err := d.logs.read(p.job, p.attempt, max(offset-base, 0), tailChunk)
				if err != nil {
					return connect.NewError(connect.CodeInternal, errors.New("log read failed"))
				}
				if len(data) == 0 {
					break
				}
				if offset < base {
					break // cannot happen: offset is past the header
				}
				if err := send(&pontusv1.TailLogResponse{Offset: offset, Data: data, Attempt: b.Attempt, Status: b.Status}); err != nil {
					return err
				}
				offset += int64(len(data))
			}
			if !p.final {
				complete = false
				break
			}
			size, err := d.logs.size(p.job, p.attempt)
			if err != nil {
				return connect.NewError(connect.CodeInternal, errors.New("log read failed"))
			}
			base += size
		}
		if len(logParts(b)) < len(b.Shards) {
			complete = false
		}
		if !live && (complete || lb == nil) {
			return send(&pontusv1.TailLogResponse{Offset: offset, Attempt: b.Attempt, Eof: true, Status: b.Status})
		}
		if !follow {
			return nil
		}
		if changed == nil {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		case <-d.shutdown:
			return errShuttingDown()
		}
	}
}
