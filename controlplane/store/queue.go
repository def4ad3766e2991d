package store

import (
	"errors"
	"reflect"
	"sync"
)

// queue is the group committer both stores share: Enqueue appends
// prepared writes in call order, and one writer goroutine applies them in
// batches, one transaction per batch, then acknowledges every commit of
// the batch.
type queue struct {
	maxBatch int
	health   func(err error)
	apply    func(batch []pendingWrite) error
	// fence, if set, is called as each write is enqueued; the writer
	// applies a batch under its writes' fence (PostgreSQL's
	// FenceStatement), never mixing writes enqueued under different ones.
	fence func() *fenceStamp

	mu      sync.Mutex
	pending []pendingWrite
	wake    chan struct{}
	closed  bool
	stopped chan struct{}
	failing bool // the last group commit failed (writer goroutine only)
}

type pendingWrite struct {
	op     op
	log    *logChunk // instead of op: a log_chunks row (PostgreSQL only)
	commit *Commit
	fence  *fenceStamp // as it stood when the write was enqueued
}

// fenceStamp is a fence statement with its arguments.
type fenceStamp struct {
	sql  string
	args []any
}

func sameFence(a, b *fenceStamp) bool {
	return a == b || (a != nil && b != nil && a.sql == b.sql && reflect.DeepEqual(a.args, b.args))
}

// logChunk is a piece of an attempt's log at its byte offset.
type logChunk struct {
	build   int64
	attempt int32
	off     int64
	data    []byte
}

// start runs the writer; apply is called from it only.
func (q *queue) start(maxBatch int, health func(error), apply func([]pendingWrite) error) {
	if maxBatch <= 0 {
		maxBatch = 512
	}
	q.maxBatch, q.health, q.apply = maxBatch, health, apply
	q.wake = make(chan struct{}, 1)
	q.stopped = make(chan struct{})
	go q.writer()
}

// Enqueue implements Store.
func (q *queue) Enqueue(muts ...Mutation) *Commit {
	c := &Commit{done: make(chan struct{})}
	ops := make([]op, 0, len(muts))
	for _, m := range muts {
		o, err := prepare(m)
		if err != nil {
			c.err = err
			close(c.done)
			return c
		}
		ops = append(ops, o)
	}
	pws := make([]pendingWrite, len(ops))
	for i, o := range ops {
		pws[i].op = o
	}
	return q.push(c, pws...)
}

// push queues writes whose last one completes c (an empty list: c alone).
func (q *queue) push(c *Commit, pws ...pendingWrite) *Commit {
	if len(pws) == 0 {
		pws = []pendingWrite{{}}
	}
	pws[len(pws)-1].commit = c
	if q.fence != nil {
		f := q.fence()
		for i := range pws {
			pws[i].fence = f
		}
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		c.err = errors.New("store closed")
		close(c.done)
		return c
	}
	q.pending = append(q.pending, pws...)
	q.mu.Unlock()
	q.poke()
	return c
}

func (q *queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// writer group-commits pending writes until the store is closed.
func (q *queue) writer() {
	defer close(q.stopped)
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			if q.closed {
				q.mu.Unlock()
				return
			}
			q.mu.Unlock()
			<-q.wake
			continue
		}
		n := min(len(q.pending), q.maxBatch)
		// Never split one Enqueue's mutations across transactions: extend
		// the batch to the next commit marker.
		for n < len(q.pending) && q.pending[n-1].commit == nil {
			n++
		}
		// Nor mix fences (they change only between Enqueues).
		for i := 1; i < n; i++ {
			if !sameFence(q.pending[i].fence, q.pending[0].fence) {
				n = i
				break
			}
		}
		batch := make([]pendingWrite, n)
		copy(batch, q.pending[:n])
		q.pending = q.pending[n:]
		if len(q.pending) == 0 {
			q.pending = nil
		}
		q.mu.Unlock()

		err := q.apply(batch)
		if failing := err != nil; failing != q.failing {
			q.failing = failing
			if q.health != nil {
				q.health(err)
			}
		}
		for _, pw := range batch {
			if pw.commit != nil {
				pw.commit.err = err
				close(pw.commit.done)
			}
		}
	}
}

// close stops accepting writes and waits until the pending ones are
// applied. It reports false if the queue was already closed.
func (q *queue) close() bool {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	q.closed = true
	q.mu.Unlock()
	q.poke()
	<-q.stopped
	return true
}
