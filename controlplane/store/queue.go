package store

import (
	"errors"
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

	mu      sync.Mutex
	pending []pendingWrite
	wake    chan struct{}
	closed  bool
	stopped chan struct{}
	failing bool // the last group commit failed (writer goroutine only)
}

type pendingWrite struct {
	op     op
	commit *Commit
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
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		c.err = errors.New("store closed")
		close(c.done)
		return c
	}
	for i, o := range ops {
		pw := pendingWrite{op: o}
		if i == len(ops)-1 {
			pw.commit = c
		}
		q.pending = append(q.pending, pw)
	}
	if len(ops) == 0 {
		q.pending = append(q.pending, pendingWrite{commit: c})
	}
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
