package observerd

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pontus-ci/pontus/internal/dial"
)

// TestLoopBackoff checks the retry schedule in a synctest bubble: after
// failures the cycle is retried with capped exponential backoff and never
// given up; after a success it waits for the poll or a wake-up; a wake-up
// during a backoff does not cut it short.
func TestLoopBackoff(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const failures = 10
		const poll = time.Minute
		n := 0 // owned by the loop's goroutine
		called := make(chan time.Time, 100)
		cycle := func(context.Context) error {
			n++
			called <- time.Now()
			if n <= failures {
				return errors.New("control plane down")
			}
			return nil
		}
		var calls []time.Time // owned by the test
		wake := make(chan struct{}, 1)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			loop(ctx, cycle, wake, func() time.Duration { return poll }, dial.NewBackoff(backoffMin, backoffMax), slog.New(slog.DiscardHandler))
		}()

		// A wake-up during the first backoff does not cause an extra call.
		calls = append(calls, <-called)
		wake <- struct{}{}
		for range failures {
			calls = append(calls, <-called)
		}
		for i := 1; i < len(calls); i++ {
			gap := calls[i].Sub(calls[i-1])
			d := min(backoffMin<<(i-1), backoffMax)
			if gap < d/2 || gap > d {
				t.Errorf("retry %d after %v, want between %v and %v", i, gap, d/2, d)
			}
		}

		// After the success: nothing until the poll interval.
		synctest.Wait()
		if len(called) != 0 {
			t.Fatalf("extra call after success")
		}
		last := calls[len(calls)-1]
		calls = append(calls, <-called)
		if gap := calls[len(calls)-1].Sub(last); gap != poll {
			t.Errorf("next cycle after %v, want the poll interval %v", gap, poll)
		}

		// A wake-up runs a cycle at once.
		synctest.Wait()
		last = calls[len(calls)-1]
		wake <- struct{}{}
		calls = append(calls, <-called)
		if gap := calls[len(calls)-1].Sub(last); gap != 0 {
			t.Errorf("woken cycle after %v, want at once", gap)
		}

		cancel()
		<-done
	})
}
