// Package leader elects one leader among control-plane replicas sharing a
// PostgreSQL database, and fences the writes of a deposed one.
//
// Each replica's Elector keeps a dedicated connection and tries a session
// advisory lock on it every poll interval. The holder bumps the epoch in
// the one-row table pontus_leader (with its name and advertised URL) and
// leads until its connection fails, its ctx ends, or a write finds the
// epoch changed. PostgreSQL drops the lock with the session, so a killed
// leader (or one cut off from the database) frees it for a standby within
// a poll interval of PostgreSQL noticing; the new holder's bump waits for
// the old leader's write in progress (Fence locks the row FOR SHARE) and
// makes every later write of the old leader fail Fence.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// lockKey is the session advisory lock of leadership ("pontus" and 1; the
// store's migration lock is "pontus").
const lockKey = 0x706f6e74757301

// ErrNotLeader is what Fence returns when this replica does not lead.
var ErrNotLeader = errors.New("this control plane is not the leader")

// Config says who this replica is and where the database is.
type Config struct {
	// URL is the PostgreSQL store's URL.
	URL string
	// Name identifies this replica; Advertise is the URL other replicas
	// forward calls to while it leads.
	Name, Advertise string
	// Poll is how often a standby tries the lock and a leader checks its
	// connection (default 500ms).
	Poll time.Duration
}

// Info is who leads, as last seen.
type Info struct {
	Name, URL string
	Epoch     int64
	// Seen is when this was read; zero if never.
	Seen time.Time
}

// Elector campaigns for leadership.
type Elector struct {
	cfg   Config
	log   *slog.Logger
	epoch atomic.Int64 // own epoch while leading, else 0
	lost  chan struct{}

	mu     sync.Mutex
	leader Info
}

// New returns an Elector; nothing happens until Run.
func New(cfg Config, logger *slog.Logger) *Elector {
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, log: logger, lost: make(chan struct{}, 1)}
}

// Epoch returns this replica's epoch while it leads, else 0.
func (e *Elector) Epoch() int64 { return e.epoch.Load() }

// Leader returns the leader as last seen (this replica while it leads).
func (e *Elector) Leader() Info {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

func (e *Elector) setLeader(i Info) {
	i.Seen = time.Now()
	e.mu.Lock()
	e.leader = i
	e.mu.Unlock()
}

// Fence is the store's write fence (store.PostgresOptions.Fence): it fails
// unless this replica leads and the epoch in pontus_leader is still its
// own, and locks that row until the transaction ends so a new leader's
// bump waits for it. A mismatch deposes this replica at once.
func (e *Elector) Fence(ctx context.Context, tx pgx.Tx) error {
	want := e.epoch.Load()
	if want == 0 {
		return ErrNotLeader
	}
	var got int64
	if err := tx.QueryRow(ctx, `SELECT epoch FROM pontus_leader WHERE id = 1 FOR SHARE`).Scan(&got); err != nil {
		return fmt.Errorf("read leadership epoch: %w", err)
	}
	if got != want {
		e.depose()
		return fmt.Errorf("%w: epoch %d has replaced %d", ErrNotLeader, got, want)
	}
	return nil
}

// fenceSQL fails, by a cast that cannot succeed, unless the epoch in
// pontus_leader is $1, and locks that row until the batch commits.
const fenceSQL = `SELECT CASE WHEN epoch = $1 THEN 1
	ELSE ('this control plane is not the leader: epoch ' || epoch || ' leads, not ' || $1::bigint)::int END
	FROM pontus_leader WHERE id = 1 FOR SHARE`

// notLeaderSQL always fails.
const notLeaderSQL = `SELECT ('this control plane is not the leader')::int`

// FenceStatement is Fence as one statement, for the store's
// PostgresOptions.FenceStatement: sent first in each write batch's own
// pipeline, it fails the batch unless this replica leads at the epoch in
// pontus_leader, and locks that row until the batch commits, so a fenced
// group commit costs one round trip instead of four. A replica fenced this
// way steps down at Run's next check of the epoch (within Poll).
func (e *Elector) FenceStatement() (string, []any) {
	return FenceStatement(e)
}

// FenceStatement is e.FenceStatement, or an always failing statement when
// e is nil (no elector yet: nothing may be written).
func FenceStatement(e *Elector) (string, []any) {
	if e == nil {
		return notLeaderSQL, nil
	}
	want := e.epoch.Load()
	if want == 0 {
		return notLeaderSQL, nil
	}
	return fenceSQL, []any{want}
}

func (e *Elector) depose() {
	select {
	case e.lost <- struct{}{}:
	default:
	}
}

// Run campaigns until ctx ends. Each time this replica is elected it calls
// lead with the new epoch and a context that ends when leadership is lost;
// lead must return promptly then (stop everything that writes), and Run
// waits for it before campaigning again.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, epoch int64)) {
	failing := false
	for ctx.Err() == nil {
		conn, err := e.connect(ctx)
		if err != nil {
			if !failing && ctx.Err() == nil {
				e.log.Warn("cannot reach the store for leader election; retrying", "err", err)
			}
			failing = true
			sleep(ctx, e.cfg.Poll)
			continue
		}
		if failing {
			e.log.Info("store reachable again for leader election")
			failing = false
		}
		err = e.campaign(ctx, conn, lead)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(closeCtx)
		cancel()
		if ctx.Err() == nil {
			if err != nil {
				e.log.Warn("leader election connection lost", "err", err)
			}
			// Also after a term that ended (its work failed, or a newer
			// epoch replaced it): retaking the lock at once would spin,
			// bumping the epoch, ahead of a healthy standby's next try.
			sleep(ctx, e.cfg.Poll)
		}
	}
}

func (e *Elector) connect(ctx context.Context) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, e.cfg.URL)
	if err != nil {
		return nil, err
	}
	// Let PostgreSQL notice a leader that vanished without closing its
	// connection (a host gone, a cut network) within seconds, freeing
	// the lock; a killed process closes it at once.
	if _, err := conn.Exec(cctx, `SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; SET tcp_keepalives_count = 3`); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// campaign tries the lock every poll on conn, leads while it holds it, and
// returns when the connection fails, ctx ends or a term ends.
func (e *Elector) campaign(ctx context.Context, conn *pgx.Conn, lead func(context.Context, int64)) error {
	t := time.NewTicker(e.cfg.Poll)
	defer t.Stop()
	for {
		var ok bool
		if err := e.query(ctx, conn, `SELECT pg_try_advisory_lock($1)`, []any{int64(lockKey)}, &ok); err != nil {
			return err
		}
		if ok {
			return e.term(ctx, conn, t, lead)
		}
		var i Info
		err := e.query(ctx, conn, `SELECT name, url, epoch FROM pontus_leader WHERE id = 1`, nil, &i.Name, &i.URL, &i.Epoch)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) && !isUndefinedTable(err) {
			return err
		}
		if err == nil {
			e.setLeader(i)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// term bumps the epoch and leads until leadership is lost. It returns
// after lead has returned; the caller closes conn, releasing the lock.
func (e *Elector) term(ctx context.Context, conn *pgx.Conn, t *time.Ticker, lead func(context.Context, int64)) error {
	var epoch int64
	err := e.query(ctx, conn, `
INSERT INTO pontus_leader (id, epoch, name, url, since) VALUES (1, 1, $1, $2, now())
ON CONFLICT (id) DO UPDATE SET epoch = pontus_leader.epoch + 1, name = $1, url = $2, since = now()
RETURNING epoch`, []any{e.cfg.Name, e.cfg.Advertise}, &epoch)
	if isUndefinedTable(err) {
		if _, err = conn.Exec(ctx, Schema); err == nil {
			return e.term(ctx, conn, t, lead)
		}
	}
	if err != nil {
		return fmt.Errorf("bump leadership epoch: %w", err)
	}
	select { // a deposition of an earlier term is stale now
	case <-e.lost:
	default:
	}
	e.epoch.Store(epoch)
	e.setLeader(Info{Name: e.cfg.Name, URL: e.cfg.Advertise, Epoch: epoch})
	e.log.Info("elected leader", "epoch", epoch)
	termCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); lead(termCtx, epoch) }()
	end := func(why string, err error) error {
		e.epoch.Store(0)
		stop()
		<-done
		if ctx.Err() == nil {
			e.log.Warn("stepped down as leader", "epoch", epoch, "why", why, "err", err)
		}
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return end("shutting down", nil)
		case <-e.lost:
			return end("a write found a newer epoch", nil)
		case <-done:
			return end("the leader's work ended", nil)
		case <-t.C:
			var now int64
			if err := e.query(ctx, conn, `SELECT epoch FROM pontus_leader WHERE id = 1`, nil, &now); err != nil {
				return end("lost the store connection", err)
			}
			if now != epoch {
				return end(fmt.Sprintf("epoch %d replaced ours", now), nil)
			}
		}
	}
}

// Schema creates the leadership table if it is missing. The elector runs
// it itself when it first leads; replicas also run it at start.
const Schema = `CREATE TABLE IF NOT EXISTS pontus_leader (
	id    SMALLINT PRIMARY KEY CHECK (id = 1),
	epoch BIGINT NOT NULL,
	name  TEXT NOT NULL,
	url   TEXT NOT NULL,
	since TIMESTAMPTZ NOT NULL
)`

// query runs one row query on conn, bounded by a few poll intervals so a
// hung connection counts as lost.
func (e *Elector) query(ctx context.Context, conn *pgx.Conn, sql string, args []any, dest ...any) error {
	qctx, cancel := context.WithTimeout(ctx, max(4*e.cfg.Poll, 2*time.Second))
	defer cancel()
	return conn.QueryRow(qctx, sql, args...).Scan(dest...)
}

func isUndefinedTable(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe) && pe.SQLState() == "42P01"
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
