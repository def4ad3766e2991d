package controlplane

import (
	"fmt"

	"connectrpc.com/connect"
	"slices"
	"strings"
	"time"

	pontusv1 "github.com/pontus-ci/pontus/schema/gen/pontus/v1"
)

// The queue is kept per label set: one labelQueue for every distinct set of
// labels queued builds require. Each holds its builds' ids in order and
// counts the runners that carry its labels, by state. The counts change as
// runners change (register, poll, take or release a lease, go quiet), so a
// hand-out looks at the head of each label set a runner can serve, and a
// pending reason is a few counts and a binary search, never a scan of the
// queue or of the runners.

// labelQueue is the queue of builds that need one set of labels.
type labelQueue struct {
	labels []string // sorted, distinct
	ids    []int64  // QUEUED builds needing exactly these labels, ascending
	// low holds the QUEUED bisection builds (Build.bisect_of), ascending:
	// they are handed out only when no other build is waiting, so finding
	// a culprit never delays testing new commits.
	low []int64
	// Runners carrying every label of the set, by the state counted for
	// them (runnerState.counted).
	idle, busy, offline int
	// emptyTicks counts lease-check ticks the queue has been empty; it is
	// dropped after emptyQueueTicks so label sets that come and go do not
	// pile up, while a busy one keeps its counts.
	emptyTicks int
}

// emptyQueueTicks is how many lease-check ticks (at most a second each) an
// empty label queue is kept.
const emptyQueueTicks = 60

// maxLabelSets bounds the distinct label sets queued at once, so the
// per-set work of a hand-out or a runner's change of state stays small
// whatever observers report.
const maxLabelSets = 1024

// labelRoomLocked refuses builds needing a label set not yet queued when
// maxLabelSets sets are.
func (d *dispatcher) labelRoomLocked(labels []string) error {
	if len(d.queues) < maxLabelSets || d.queues[labelKey(labels)] != nil {
		return nil
	}
	for key, q := range d.queues {
		if q.empty() {
			delete(d.queues, key)
		}
	}
	if len(d.queues) < maxLabelSets {
		return nil
	}
	return connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("labels: builds needing %d different label sets are queued, the most the control plane keeps; retry when some have run", len(d.queues)))
}

// labelKey names a set of labels independently of order and repeats.
func labelKey(labels []string) string {
	if len(labels) == 0 {
		return ""
	}
	s := slices.Clone(labels)
	slices.Sort(s)
	s = slices.Compact(s)
	return strings.Join(s, "\x00")
}

func (q *labelQueue) empty() bool { return len(q.ids) == 0 && len(q.low) == 0 }

// listFor returns the list a build belongs in.
func (q *labelQueue) listFor(b *pontusv1.Build) *[]int64 {
	if b.BisectOf != 0 {
		return &q.low
	}
	return &q.ids
}

func (q *labelQueue) add(st pontusv1.RunnerState, n int) {
	switch st {
	case pontusv1.RunnerState_RUNNER_STATE_IDLE:
		q.idle += n
	case pontusv1.RunnerState_RUNNER_STATE_BUSY:
		q.busy += n
	case pontusv1.RunnerState_RUNNER_STATE_OFFLINE:
		q.offline += n
	}
}

// queueForLocked returns the label queue for labels, creating it (and
// counting the runners that match it, once) if needed.
func (d *dispatcher) queueForLocked(labels []string) *labelQueue {
	key := labelKey(labels)
	if q := d.queues[key]; q != nil {
		return q
	}
	q := &labelQueue{}
	if key != "" {
		q.labels = strings.Split(key, "\x00")
	}
	for _, r := range d.runners {
		if hasLabels(r.r.Labels, q.labels) {
			q.add(r.counted, 1)
		}
	}
	d.queues[key] = q
	return q
}

func (d *dispatcher) insertQueueLocked(lb *liveBuild) {
	q := d.queueForLocked(lb.b.Labels)
	ids := q.listFor(lb.b)
	i, ok := slices.BinarySearch(*ids, lb.b.Id)
	if !ok {
		*ids = slices.Insert(*ids, i, lb.b.Id)
		d.queued++
	}
	q.emptyTicks = 0
	delete(d.active, lb.b.Id)
}

func (d *dispatcher) removeFromQueueLocked(lb *liveBuild) {
	q := d.queues[labelKey(lb.b.Labels)]
	if q == nil {
		return
	}
	ids := q.listFor(lb.b)
	if i, ok := slices.BinarySearch(*ids, lb.b.Id); ok {
		*ids = slices.Delete(*ids, i, i+1)
		d.queued--
	}
}

// nextForLocked finds the oldest queued job runner r may take: the
// smallest head among the label queues whose labels r carries, and only
// when there is none, the smallest head of their bisection builds' jobs.
func (d *dispatcher) nextForLocked(r *runnerState) *liveBuild {
	if len(r.leases) >= int(max(r.r.Capacity, 1)) || d.queued == 0 {
		return nil
	}
	best := int64(0)
	for _, q := range d.queues {
		if len(q.ids) > 0 && (best == 0 || q.ids[0] < best) && hasLabels(r.r.Labels, q.labels) {
			best = q.ids[0]
		}
	}
	if best == 0 {
		for _, q := range d.queues {
			if len(q.low) > 0 && (best == 0 || q.low[0] < best) && hasLabels(r.r.Labels, q.labels) {
				best = q.low[0]
			}
		}
	}
	if best == 0 {
		return nil
	}
	return d.jobs[best]
}

// recountLocked brings the counts up to date with runner r's state. Every
// change to a runner's polling, leases or last contact ends with it; the
// lease-check ticker calls it for every runner so that runners that went
// quiet are counted offline within a tick.
func (d *dispatcher) recountLocked(r *runnerState, now time.Time) {
	st := d.runnerStateLocked(r, now)
	if st == r.counted {
		return
	}
	d.countRunnerLocked(r, -1)
	r.counted = st
	d.countRunnerLocked(r, 1)
}

// countRunnerLocked adds (n = 1) or removes (n = -1) runner r, in its
// counted state, to or from the counts.
func (d *dispatcher) countRunnerLocked(r *runnerState, n int) {
	if r.counted == pontusv1.RunnerState_RUNNER_STATE_UNSPECIFIED {
		return
	}
	if r.counted != pontusv1.RunnerState_RUNNER_STATE_OFFLINE {
		d.onlineRunners += n
	}
	for _, q := range d.queues {
		if hasLabels(r.r.Labels, q.labels) {
			q.add(r.counted, n)
		}
	}
}

// forgetRunnerLocked removes a runner from the live state and the counts.
func (d *dispatcher) forgetRunnerLocked(r *runnerState) {
	d.countRunnerLocked(r, -1)
	r.counted = pontusv1.RunnerState_RUNNER_STATE_UNSPECIFIED
	delete(d.runners, r.r.Id)
}

// tickQueuesLocked recounts runners that went quiet and drops label queues
// that stayed empty.
func (d *dispatcher) tickQueuesLocked(now time.Time) {
	for _, r := range d.runners {
		d.recountLocked(r, now)
	}
	for key, q := range d.queues {
		if !q.empty() {
			q.emptyTicks = 0
			continue
		}
		q.emptyTicks++
		if q.emptyTicks > emptyQueueTicks {
			delete(d.queues, key)
		}
	}
}

// pendingReasonLocked says why a queued build is still waiting, from the
// counts: a handful of additions and one binary search per label set.
func (d *dispatcher) pendingReasonLocked(b *pontusv1.Build) string {
	q := d.queues[labelKey(b.Labels)]
	if q == nil {
		// Not queued (a view of a build being re-queued): count afresh.
		q = d.queueForLocked(b.Labels)
	}
	matching, free, matchingOffline := q.idle+q.busy, q.idle, q.offline
	labels := ""
	if len(b.Labels) > 0 {
		labels = " with labels [" + strings.Join(b.Labels, " ") + "]"
	}
	switch {
	case len(d.runners) == 0:
		return "no runners registered"
	case matching == 0 && len(b.Labels) > 0 && matchingOffline > 0:
		return fmt.Sprintf("no online runner has labels [%s] (%d such runners offline)", strings.Join(b.Labels, " "), matchingOffline)
	case matching == 0 && len(b.Labels) > 0:
		return fmt.Sprintf("no runner has labels [%s]", strings.Join(b.Labels, " "))
	case d.onlineRunners == 0:
		return fmt.Sprintf("no runner online (%d registered, all offline)", len(d.runners))
	case free == 0:
		return fmt.Sprintf("all %d runners%s busy", matching, labels)
	}
	// Builds ahead: queued earlier and needing at least these labels, so a
	// runner able to take them could take this one; for a bisection
	// build, every other build too.
	ahead := 0
	for _, o := range d.queues {
		if !hasLabels(o.labels, q.labels) {
			continue
		}
		if b.BisectOf != 0 {
			ahead += len(o.ids)
			i, _ := slices.BinarySearch(o.low, b.Id)
			ahead += i
		} else if len(o.ids) > 0 && o.ids[0] < b.Id {
			i, _ := slices.BinarySearch(o.ids, b.Id)
			ahead += i
		}
	}
	if ahead > 0 && b.BisectOf != 0 {
		return fmt.Sprintf("bisection build, waiting behind %d queued builds", ahead)
	}
	if ahead > 0 {
		return fmt.Sprintf("waiting behind %d queued builds", ahead)
	}
	return "waiting for a runner to pick it up"
}
