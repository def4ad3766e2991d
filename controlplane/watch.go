package controlplane

import (
	"google.golang.org/protobuf/proto"

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
