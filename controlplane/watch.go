package controlplane

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/pontus-ci/pontus/controlplane/store"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// subscriber receives build changes for WatchBuilds. A subscriber that
// falls behind loses changes and is told to resync.
type subscriber struct {
	repo, branch string
	ch           chan *pontusv1.Build
	resync       chan struct{} // buffered 1: set when changes were dropped
}

func (d *dispatcher) subscribe(repo, branch string) *subscriber {
	s := &subscriber{repo: repo, branch: branch, ch: make(chan *pontusv1.Build, 256), resync: make(chan struct{}, 1)}
	d.mu.Lock()
	d.subs[s] = struct{}{}
	d.mu.Unlock()
	return s
}

func (d *dispatcher) unsubscribe(s *subscriber) {
	d.mu.Lock()
	delete(d.subs, s)
	d.mu.Unlock()
}

func (d *dispatcher) publishLocked(b *pontusv1.Build) {
	if len(d.subs) == 0 {
		return
	}
	var v *pontusv1.Build
	for s := range d.subs {
		if (s.repo != "" && s.repo != b.Repo) || (s.branch != "" && s.branch != b.Branch) {
			continue
		}
		if v == nil {
			v = proto.Clone(b).(*pontusv1.Build)
			if v.Status == statusQueued {
				v.Reason = d.pendingReasonLocked(v)
			}
		}
		select {
		case s.ch <- v:
		default:
			select {
			case s.resync <- struct{}{}:
			default:
			}
		}
	}
}

// snapshot is what WatchBuilds sends first: the builds matching q as
// ListBuilds returns them. Its caller has subscribed already; a change
// published before that was enqueued to the store in the same critical
// section, so once an empty write enqueued now is durable, every such
// change is in the store (or the live state) the list reads, and none
// falls between the snapshot and the stream.
func (d *dispatcher) snapshot(ctx context.Context, q store.Query) ([]*pontusv1.Build, error) {
	if err := d.st.Enqueue().Wait(ctx); err != nil {
		return nil, storeErr(err)
	}
	return d.list(ctx, q)
}
