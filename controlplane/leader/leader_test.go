package leader

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pontus-ci/pontus/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// candidate runs an Elector and records its terms.
type candidate struct {
	e      *Elector
	terms  chan int64 // epochs as elected
	cancel context.CancelFunc
	done   chan struct{}
}

func run(t *testing.T, url, name string) *candidate {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{
		e:      New(Config{URL: url, Name: name, Advertise: "http://" + name, Poll: 50 * time.Millisecond}, nil),
		terms:  make(chan int64, 16),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() {
		defer close(c.done)
		c.e.Run(ctx, func(ctx context.Context, epoch int64) {
			c.terms <- epoch
			<-ctx.Done()
		})
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *candidate) stop() { c.cancel(); <-c.done }

// elected waits for the next term of one of cs and returns its index.
func elected(t *testing.T, cs ...*candidate) (int, int64) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		for i, c := range cs {
			select {
			case epoch := <-c.terms:
				return i, epoch
			default:
			}
		}
		select {
		case <-deadline:
			t.Fatal("nobody was elected within 30s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// write runs a fenced write for e, as the store's writer would.
func write(t *testing.T, url string, e *Elector) error {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	return pgx.BeginFunc(t.Context(), conn, func(tx pgx.Tx) error { return e.Fence(t.Context(), tx) })
}

// writeStatement runs e's FenceStatement in a pipelined batch before a
// write, as the store's writer does; the write lands only if it passes.
func writeStatement(t *testing.T, url string, e *Elector) error {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `CREATE TABLE IF NOT EXISTS fenced_writes (n int)`); err != nil {
		t.Fatal(err)
	}
	var before, after int
	conn.QueryRow(t.Context(), `SELECT count(*) FROM fenced_writes`).Scan(&before)
	var b pgx.Batch
	q, args := e.FenceStatement()
	b.Queue(q, args...)
	b.Queue(`INSERT INTO fenced_writes VALUES (1)`)
	err = conn.SendBatch(t.Context(), &b).Close()
	conn.QueryRow(t.Context(), `SELECT count(*) FROM fenced_writes`).Scan(&after)
	if (err == nil) != (after == before+1) {
		t.Fatalf("batch error %v, but %d rows written", err, after-before)
	}
	return err
}

func TestOneLeaderAndTakeover(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a, b := run(t, url, "a"), run(t, url, "b")
	cs := []*candidate{a, b}
	i, epoch := elected(t, cs...)
	leader, standby := cs[i], cs[1-i]
	if epoch != 1 {
		t.Errorf("first epoch %d, want 1", epoch)
	}
	if err := write(t, url, leader.e); err != nil {
		t.Errorf("leader's fenced write: %v", err)
	}
	if err := write(t, url, standby.e); !errors.Is(err, ErrNotLeader) {
		t.Errorf("standby's fenced write: %v, want ErrNotLeader", err)
	}
	if err := writeStatement(t, url, leader.e); err != nil {
		t.Errorf("leader's write fenced by statement: %v", err)
	}
	if err := writeStatement(t, url, standby.e); err == nil || !strings.Contains(err.Error(), "not the leader") {
		t.Errorf("standby's write fenced by statement: %v, want it refused", err)
	}
	// The standby learns who leads.
	deadline := time.Now().Add(10 * time.Second)
	for standby.e.Leader().Name != leader.e.cfg.Name {
		if time.Now().After(deadline) {
			t.Fatalf("standby sees leader %+v", standby.e.Leader())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := standby.e.Leader(); got.URL != "http://"+leader.e.cfg.Name || got.Epoch != 1 {
		t.Errorf("standby sees %+v", got)
	}

	leader.stop()
	if j, epoch := elected(t, standby); j != 0 || epoch != 2 {
		t.Fatalf("after the leader stopped: candidate %d elected with epoch %d, want the standby with 2", j, epoch)
	}
	if err := write(t, url, standby.e); err != nil {
		t.Errorf("new leader's fenced write: %v", err)
	}
}

// A leader whose session PostgreSQL ends (as when the server restarts or
// the network is cut) steps down; the other replica takes over, and a
// write of the old epoch is refused even if it still believed it led.
func TestDeposedLeaderStepsDown(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a := run(t, url, "a")
	if _, epoch := elected(t, a); epoch != 1 {
		t.Fatalf("epoch %d", epoch)
	}
	b := run(t, url, "b")
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// End a's election session from outside.
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1::bigint & x'ffffffff'::bigint AND granted`, int64(lockKey)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminate the leader's session: %d, %v", n, err)
	}
	i, epoch := elected(t, a, b)
	if epoch != 2 {
		t.Fatalf("re-elected with epoch %d, want 2", epoch)
	}
	winner, loser := []*candidate{a, b}[i], []*candidate{a, b}[1-i]
	// The loser notices at its next check of its session (every 0.5 s).
	for deadline := time.Now().Add(10 * time.Second); loser.e.Epoch() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("loser still thinks it leads with epoch %d", loser.e.Epoch())
		}
	}
	// A stale leader that has not noticed yet is fenced by the epoch.
	stale := New(Config{URL: url, Name: "stale"}, nil)
	stale.epoch.Store(1)
	if err := write(t, url, stale); !errors.Is(err, ErrNotLeader) {
		t.Errorf("write with epoch 1 after epoch 2: %v, want ErrNotLeader", err)
	}
	if err := writeStatement(t, url, stale); err == nil || !strings.Contains(err.Error(), "epoch 2 leads, not 1") {
		t.Errorf("write fenced by statement with epoch 1 after epoch 2: %v, want it refused", err)
	}
	if err := write(t, url, winner.e); err != nil {
		t.Errorf("winner's write: %v", err)
	}
}

// A replica whose term ends at once (it cannot load the state, say) waits a
// poll before campaigning again, so it neither spins bumping the epoch nor
// takes the lock back before a healthy standby's next try.
func TestEndedTermWaitsBeforeCampaigningAgain(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	const poll = 200 * time.Millisecond
	e := New(Config{URL: url, Name: "a", Advertise: "http://a", Poll: poll}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	starts := make(chan time.Time, 3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx, func(context.Context, int64) {
			select {
			case starts <- time.Now():
			default:
				cancel()
			}
		})
	}()
	defer func() { cancel(); <-done }()
	var prev time.Time
	for range 3 {
		var at time.Time
		select {
		case at = <-starts:
		case <-time.After(30 * time.Second):
			t.Fatal("no term within 30s")
		}
		if !prev.IsZero() && at.Sub(prev) < poll {
			t.Fatalf("campaigned again %v after a term ended at once, want at least the poll %v", at.Sub(prev), poll)
		}
		prev = at
	}
}
