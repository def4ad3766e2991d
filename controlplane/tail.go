package controlplane

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

const tailChunk = 256 << 10

// tail streams a build's stored log from offset; with follow it waits for
// more until the build ends. A new attempt is announced with reset.
func (d *dispatcher) tail(ctx context.Context, buildID, offset int64, follow bool, send func(*pontusv1.TailLogResponse) error) error {
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
