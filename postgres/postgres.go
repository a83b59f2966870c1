// Package postgres implements ratelab.ScriptService and ratelab.AuthService
// on PostgreSQL through github.com/jackc/pgx/v5 (pgxpool), so that several
// `ratelab serve` replicas can share one database.
//
// # Concurrency
//
// Transactions run at READ COMMITTED, and every read-modify-write of a
// script is a single conditional statement on its row, so PostgreSQL's row
// lock serializes writers of one script: a compare-and-swap is
// `UPDATE … WHERE version = $n` (a waiting writer re-checks the condition
// against the row the first writer committed), an unconditional write is
// `version = version + 1`, and a create is `INSERT … ON CONFLICT DO
// NOTHING` followed by the update when another writer created the row
// first. Version numbers are therefore dense, and no write is lost.
// A bulk holds the locks of all its rows until it commits, so it takes
// them in the order of the ids (internal/sqlstore), whatever the order of
// its items: two bulks of the same ids can then only queue behind each
// other, never deadlock. Should PostgreSQL still abort a transaction as a
// deadlock victim or for a serialization failure, it is run again a few
// times (inTx) before the error reaches the caller.
// Migrations take a transaction-scoped advisory lock so that replicas
// starting together apply them once.
//
// A method that returns without error has committed; with PostgreSQL's
// default synchronous_commit=on, the commit is durable.
//
// Verified tokens are cached; authwatch.go says how a revocation on any
// replica takes effect on all of them before it returns.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"ratelab"
	"ratelab/internal/migrate"
	"ratelab/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the pg_advisory_xact_lock key that serializes schema
// migrations between processes ("ratelab" in ASCII).
const migrationLock = 0x7261_7465_6c61_62

// Compile-time checks that DB implements the services.
var (
	_ ratelab.ScriptService = (*DB)(nil)
	_ ratelab.AuthService   = (*DB)(nil)
)

// DB is a ratelab database on PostgreSQL. It implements
// ratelab.ScriptService and ratelab.AuthService. A DB is created by Open
// (the zero value is not usable), is safe for concurrent use, and must be
// closed with Close.
type DB struct {
	pool   *pgxpool.Pool
	now    func() time.Time
	log    *slog.Logger
	outage *sqlstore.Outage
	auth   *sqlstore.Authenticator
	// tokens caches verified tokens under the revocation generation that
	// watch keeps current (authwatch.go).
	tokens sqlstore.TokenCache
	watch  *authWatch
}

// Option configures Open.
type Option func(*config)

type config struct {
	clock    func() time.Time
	logger   *slog.Logger
	maxConns int32
}

// WithClock sets the clock that stamps scripts, versions, clients and
// token expiries. The default is time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithLogger sets the logger for operational messages (migrations). The
// default discards them.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithMaxConns sets the pool's maximum number of connections; the default
// is pgxpool's (the larger of 4 and the number of CPUs), or pool_max_conns
// in the URL.
func WithMaxConns(n int32) Option { return func(c *config) { c.maxConns = n } }

// Open connects to the PostgreSQL database at url (a postgres:// URL or
// keyword/value string that pgx accepts), applies the embedded schema
// migrations that it lacks, and returns it.
func Open(ctx context.Context, url string, opts ...Option) (*DB, error) {
	cfg := config{clock: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, errors.New("postgres: invalid database URL")
	}
	if cfg.maxConns > 0 {
		pcfg.MaxConns = cfg.maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	db := &DB{pool: pool, now: cfg.clock, log: cfg.logger}
	db.watch = newAuthWatch(db)
	db.outage = sqlstore.NewOutage(sqlstore.OutageConfig{DB: "postgres", Logger: cfg.logger, Unreachable: unreachable, Probe: db.ping, Interval: time.Second})
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	if db.auth, err = sqlstore.NewAuthenticator(); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return db, nil
}

// Close closes the connection pool, waiting for connections in use to be
// returned. Calling it more than once is harmless.
func (db *DB) Close() error {
	db.watch.close()
	db.outage.Close()
	db.pool.Close()
	return nil
}

// Ping reports whether the database is reachable.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.ping(ctx); err != nil {
		return db.fail("ping", err)
	}
	return nil
}

func (db *DB) ping(ctx context.Context) error {
	var one int
	return db.pool.QueryRow(ctx, `SELECT 1`).Scan(&one)
}

// fail returns an error of the operation op (see sqlstore.Outage.Err).
func (db *DB) fail(op string, err error) error { return db.outage.Err(op, err) }

// unreachable reports whether err means that PostgreSQL cannot be reached
// for now: no connection (refused, reset, closed, timed out), or the
// server shutting down, starting up or out of connections.
func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || // connection exception
			pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || // shutdown, crash, starting up
			pe.Code == "53300" // too many connections
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// migrate applies the embedded migrations that the database lacks, in
// one transaction (see internal/migrate). A transaction-scoped advisory
// lock makes replicas that start together apply them once.
func (db *DB) migrate(ctx context.Context) error {
	return db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrationLock)); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		return migrate.Apply(ctx, migrator{tx, db.clock}, migrations, "migrations", "postgres", db.log)
	})
}

// migrator is migrate.Tx on a PostgreSQL transaction.
type migrator struct {
	tx  pgx.Tx
	now func() time.Time
}

func (m migrator) Version(ctx context.Context) (int, error) {
	if _, err := m.tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL)`); err != nil {
		return 0, err
	}
	var v int
	err := m.tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func (m migrator) Apply(ctx context.Context, version int, name, body string) error {
	// Without arguments pgx uses the simple protocol, which runs a file
	// of several statements.
	if _, err := m.tx.Exec(ctx, body); err != nil {
		return err
	}
	_, err := m.tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		version, name, m.now())
	return err
}

// clock returns the current time at the microsecond precision of
// timestamptz, so that returned values equal what a later read gets.
func (db *DB) clock() time.Time { return db.now().UTC().Truncate(time.Microsecond) }

// txAttempts bounds how often inTx runs a transaction that PostgreSQL
// aborted as a deadlock victim or for a serialization failure.
const txAttempts = 5

// inTx runs fn in a transaction and commits it. A transaction that
// PostgreSQL aborts with a deadlock or serialization failure (SQLSTATE
// 40P01, 40001) has written nothing, so it is run again, up to txAttempts
// times in all, after a short random pause that grows with each attempt;
// fn must therefore do nothing outside the transaction that cannot be
// done twice. Bulks take their row locks in one order (sqlstore.Bulk), so
// this is a safety net, not the common path.
func (db *DB) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := db.tryTx(ctx, fn)
		if err == nil || !retryable(err) || attempt == txAttempts {
			return err
		}
		db.log.Warn("transaction retried", "db", "postgres", "attempt", attempt, "err", err)
		pause := time.Duration(attempt) * time.Duration(1+rand.Int64N(int64(5*time.Millisecond)))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// tryTx runs fn in one transaction and commits it.
func (db *DB) tryTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx)
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// retryable reports whether err is PostgreSQL aborting a transaction that
// may succeed when run again: a deadlock victim or a serialization failure.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}
