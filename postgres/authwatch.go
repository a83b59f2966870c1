package postgres

// Token cache across replicas. Each DB caches verified tokens under the
// revocation generation (sqlstore.TokenCache), a counter in table
// auth_generation that every transaction taking tokens' validity away
// increments, with a NOTIFY on channel ratelab_auth. Reading the counter
// on every request would cost a round trip, so each replica keeps it in
// memory instead and a listener keeps it current:
//
//   - The listener (one connection of its own, started by the first
//     ValidateToken) LISTENs, then every heartbeat renews a lease in table
//     auth_listeners, reads the counter, applies it, and acknowledges the
//     generation applied in its lease row. A notification triggers the
//     same read, apply and acknowledgement at once.
//   - The cache answers only while the replica's lease is surely valid:
//     for useWindow after the renewal was sent, by the replica's own
//     monotonic clock, which is shorter than the lease PostgreSQL counts
//     from a later instant. Without a listener (PostgreSQL away, the
//     connection lost) every token is checked with a query.
//   - A revoking transaction, once committed, applies its generation to
//     its own replica and then waits until no unexpired lease has
//     acknowledged less (at most about leaseTime, when a replica has
//     stopped answering).
//
// So when RevokeToken, DeleteClient or RotateSecret returns, no replica
// sharing the database accepts the tokens it took away: each has either
// applied the new generation or lost its lease, and a replica without a
// lease checks every token against the database. A replica that starts
// its lease while a revocation commits reads the counter after its lease
// is written, so the revoker either waits for it or it reads the new
// generation. The assumption is that a replica's clock does not run more
// than a quarter slower than PostgreSQL's over two seconds.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"ratelab"
)

const (
	authChannel = "ratelab_auth"
	// leaseTime is how long PostgreSQL counts a listener's lease from
	// its renewal.
	leaseTime = 2 * time.Second
	// useWindow is how long after sending a renewal the replica answers
	// from its cache: less than leaseTime, by a margin for clock rates.
	useWindow = 1500 * time.Millisecond
	// heartbeatEvery is how often the lease is renewed and the counter
	// read even without a notification.
	heartbeatEvery = 250 * time.Millisecond
	// ackWait bounds how long a revocation waits for acknowledgements.
	ackWait = 2 * leaseTime
)

// authWatch is a DB's view of the revocation generation.
type authWatch struct {
	db   *DB
	id   string    // the lease's id in auth_listeners
	base time.Time // origin of the monotonic clock
	gen  atomic.Int64
	// liveUntil is when (nanoseconds since base) the lease may have
	// lapsed; the cache answers only before.
	liveUntil atomic.Int64

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func newAuthWatch(db *DB) *authWatch {
	return &authWatch{db: db, id: ratelab.NewID(), base: time.Now(), done: make(chan struct{})}
}

func (w *authWatch) mono() int64 { return int64(time.Since(w.base)) }

// current returns the generation under which the cache may answer, and
// false when it must not (no lease): the caller then queries.
func (w *authWatch) current() (int64, bool) {
	if w.mono() < w.liveUntil.Load() {
		return w.gen.Load(), true
	}
	w.start()
	return 0, false
}

// apply records a generation seen in the database.
func (w *authWatch) apply(g int64) {
	for {
		old := w.gen.Load()
		if g <= old || w.gen.CompareAndSwap(old, g) {
			return
		}
	}
}

func (w *authWatch) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.closed {
		return
	}
	w.started = true
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.loop(ctx)
}

// close stops the listener and gives its lease up.
func (w *authWatch) close() {
	w.mu.Lock()
	w.closed = true
	started := w.started
	w.mu.Unlock()
	if !started {
		return
	}
	w.cancel()
	<-w.done
}

func (w *authWatch) loop(ctx context.Context) {
	defer close(w.done)
	lost := false
	for ctx.Err() == nil {
		err := w.session(ctx)
		w.liveUntil.Store(0)
		if ctx.Err() != nil {
			break
		}
		if !lost {
			lost = true
			w.db.log.Warn("token cache: revocation listener lost; every token is checked against the database until it is back", "db", "postgres", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(heartbeatEvery):
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	w.db.pool.Exec(dctx, `DELETE FROM auth_listeners WHERE id = $1`, w.id)
}

// session listens on one connection until it fails or ctx ends.
func (w *authWatch) session(ctx context.Context) error {
	cfg := w.db.pool.Config().ConnConfig.Copy()
	// A wait that times out only sets the socket's deadline, keeping the
	// connection (the default would send a cancel request each time).
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN `+authChannel); err != nil {
		return err
	}
	for n := 0; ; n++ {
		if err := w.renew(ctx, conn, n%200 == 0); err != nil {
			return err
		}
		next := time.Now().Add(heartbeatEvery)
		for time.Now().Before(next) {
			wctx, cancel := context.WithDeadline(ctx, next)
			_, err := conn.WaitForNotification(wctx)
			cancel()
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err != nil && pgconn.Timeout(err):
			case err != nil:
				return err
			default:
				if err := w.acknowledge(ctx, conn); err != nil {
					return err
				}
			}
		}
	}
}

// renew renews the lease, then reads, applies and acknowledges the
// generation, in that order (see the comment at the top of the file).
func (w *authWatch) renew(ctx context.Context, conn *pgx.Conn, sweep bool) error {
	sent := w.mono()
	if _, err := conn.Exec(ctx, `INSERT INTO auth_listeners (id, gen, expires_at)
		VALUES ($1, $2, now() + $3 * interval '1 millisecond')
		ON CONFLICT (id) DO UPDATE SET gen = EXCLUDED.gen, expires_at = EXCLUDED.expires_at`,
		w.id, w.gen.Load(), leaseTime.Milliseconds()); err != nil {
		return err
	}
	if err := w.acknowledge(ctx, conn); err != nil {
		return err
	}
	w.liveUntil.Store(sent + int64(useWindow))
	if sweep {
		// Leases of replicas that ended without giving theirs up.
		if _, err := conn.Exec(ctx, `DELETE FROM auth_listeners WHERE expires_at < now() - interval '1 minute'`); err != nil {
			return err
		}
	}
	return nil
}

// acknowledge reads the generation, applies it, then records it in the
// lease row.
func (w *authWatch) acknowledge(ctx context.Context, conn *pgx.Conn) error {
	var g int64
	if err := conn.QueryRow(ctx, `SELECT gen FROM auth_generation`).Scan(&g); err != nil {
		return err
	}
	w.apply(g)
	_, err := conn.Exec(ctx, `UPDATE auth_listeners SET gen = $2 WHERE id = $1 AND gen < $2`, w.id, w.gen.Load())
	return err
}

// bumpGeneration moves the revocation generation on inside a revoking
// transaction and notifies the listeners (delivered at commit); it
// returns the new generation, for revoked.
func bumpGeneration(ctx context.Context, tx pgx.Tx) (int64, error) {
	var g int64
	if err := tx.QueryRow(ctx, `UPDATE auth_generation SET gen = gen + 1 RETURNING gen`).Scan(&g); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, authChannel); err != nil {
		return 0, err
	}
	return g, nil
}

// revoked runs after a revoking transaction committed generation g: it
// applies g to this replica, then waits until every unexpired lease has
// acknowledged it (see the top of the file).
func (db *DB) revoked(ctx context.Context, g int64) error {
	db.watch.apply(g)
	deadline := time.Now().Add(ackWait)
	for pause := 200 * time.Microsecond; ; pause = min(2*pause, 20*time.Millisecond) {
		var behind int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM auth_listeners WHERE gen < $1 AND expires_at > now()`, g).Scan(&behind); err != nil {
			return err
		}
		if behind == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("replicas did not acknowledge the revocation in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}
