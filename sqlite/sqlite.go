// Package sqlite implements ratelab.ScriptService and ratelab.AuthService
// on an SQLite file through modernc.org/sqlite (pure Go, no cgo).
//
// # Concurrency and durability
//
// SQLite allows one writer at a time. A DB therefore keeps two pools on the
// same file: a write pool of exactly one connection, whose transactions
// start with BEGIN IMMEDIATE (they take the write lock at once, so a
// transaction never has to upgrade a read lock and fail with SQLITE_BUSY),
// and a pool of read connections, which in WAL mode never block the writer
// nor are blocked by it. Within one process, writers queue for the single
// connection in database/sql; across processes (`ratelab clients create`
// next to a running server) they wait on the file lock for up to the busy
// timeout.
//
// Every write runs with synchronous=FULL: when a method returns without
// error, its transaction has been fsynced to the WAL, so an acknowledged
// write survives a power loss. Because one transaction costs one fsync,
// UpdateScripts applies a whole batch in one transaction: that is why
// batching is the cheap path.
//
// Verified tokens are cached (sqlstore.TokenCache) under the revocation
// generation, a one-row table that every revoking transaction increments
// and ValidateToken reads, so a revocation by any process on the file
// (another replica, `ratelab clients`) takes effect at once.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"time"

	"ratelab"
	"ratelab/internal/migrate"
	"ratelab/internal/sqlstore"

	sqlitedriver "modernc.org/sqlite" // also registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// Compile-time checks that DB implements the services.
var (
	_ ratelab.ScriptService = (*DB)(nil)
	_ ratelab.AuthService   = (*DB)(nil)
)

// DB is a ratelab database in one SQLite file. It implements
// ratelab.ScriptService and ratelab.AuthService. A DB is created by Open
// (the zero value is not usable), is safe for concurrent use, and must be
// closed with Close.
type DB struct {
	write *sql.DB // exactly one connection; BEGIN IMMEDIATE
	read  *sql.DB // query_only connections
	now   func() time.Time
	log   *slog.Logger
	// outage logs the database's unavailability once, not per request.
	outage *sqlstore.Outage
	auth   *sqlstore.Authenticator
	// tokens caches verified tokens under the revocation generation
	// (sqlstore.TokenCache), which every ValidateToken reads: a one-row
	// read that, in WAL mode, sees every transaction committed before it,
	// from this process or another.
	tokens sqlstore.TokenCache
	// The statements of the hot read path, prepared once per connection
	// of the read pool instead of parsed per query.
	stmtGen, stmtToken, stmtScript *sql.Stmt
}

// Option configures Open.
type Option func(*config)

type config struct {
	clock       func() time.Time
	logger      *slog.Logger
	busyTimeout time.Duration
	readConns   int
}

// WithClock sets the clock that stamps scripts, versions, clients and
// token expiries. The default is time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithLogger sets the logger for operational messages (migrations). The
// default discards them.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithBusyTimeout sets how long a write waits for another process holding
// the write lock before failing. The default is 5 s.
func WithBusyTimeout(d time.Duration) Option { return func(c *config) { c.busyTimeout = d } }

// WithReadConns sets the size of the read pool. The default is the number
// of CPUs, at least 4.
func WithReadConns(n int) Option { return func(c *config) { c.readConns = n } }

// Open opens (creating if needed) the SQLite database at path, applies the
// embedded schema migrations that it lacks, and returns it. The path is a
// file name; in-memory databases are not supported, because the read and
// write pools must share one file.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	cfg := config{clock: time.Now, busyTimeout: 5 * time.Second, readConns: max(4, runtime.NumCPU())}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case path == "" || path == ":memory:" || strings.Contains(path, "mode=memory"):
		return nil, errors.New("sqlite: a database file path is required (in-memory databases are not supported)")
	case strings.ContainsRune(path, '?'):
		return nil, fmt.Errorf("sqlite: path %q must not contain '?'", path)
	}
	db := &DB{now: cfg.clock, log: cfg.logger}
	db.outage = sqlstore.NewOutage(sqlstore.OutageConfig{DB: "sqlite", Logger: cfg.logger, Unreachable: unreachable, Probe: db.probeWrite, Interval: time.Second})
	var err error
	if db.write, err = sql.Open("sqlite", writeDSN(path, cfg.busyTimeout)); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.write.SetMaxOpenConns(1)
	db.write.SetMaxIdleConns(1)
	db.write.SetConnMaxLifetime(0)
	db.write.SetConnMaxIdleTime(0)
	// Connecting the write pool first sets journal_mode=WAL before any
	// reader connects.
	if err := connectWriter(ctx, db.write, cfg.busyTimeout); err != nil {
		db.write.Close()
		return nil, fmt.Errorf("sqlite: open %s: connect: %w", path, err)
	}
	if err := db.migrate(ctx); err != nil {
		db.write.Close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}
	if db.read, err = sql.Open("sqlite", readDSN(path, cfg.busyTimeout)); err != nil {
		db.write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.read.SetMaxOpenConns(cfg.readConns)
	db.read.SetMaxIdleConns(cfg.readConns)
	if err := db.read.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: connect to read: %w", path, err)
	}
	if db.auth, err = sqlstore.NewAuthenticator(); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	for _, p := range []struct {
		stmt **sql.Stmt
		q    string
	}{
		{&db.stmtGen, `SELECT gen FROM auth_generation`},
		{&db.stmtToken, `SELECT c.id, c.org_id, c.created_at, t.expires_at
			FROM tokens t JOIN clients c ON c.id = t.client_id WHERE t.hash = ?`},
		{&db.stmtScript, `SELECT ` + scriptColumns + ` FROM scripts WHERE org_id = ? AND id = ?`},
	} {
		if *p.stmt, err = db.read.PrepareContext(ctx, p.q); err != nil {
			db.Close()
			return nil, fmt.Errorf("sqlite: open %s: prepare: %w", path, err)
		}
	}
	return db, nil
}

// connectWriter opens the write pool's connection. Switching a new file
// to WAL takes an exclusive lock, and SQLite answers SQLITE_BUSY at once,
// without waiting in its busy handler, while another process does the
// same: so servers started together on a new file would fail here. It
// tries again every few milliseconds until the busy timeout has passed.
func connectWriter(ctx context.Context, write *sql.DB, busyTimeout time.Duration) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := write.PingContext(ctx)
		var se *sqlitedriver.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != 5 || time.Now().After(deadline) { // 5: SQLITE_BUSY
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// writeDSN is the DSN of the write pool: transactions BEGIN IMMEDIATE,
// WAL, synchronous=FULL (a commit is fsynced before it returns), foreign
// keys enforced. The busy timeout comes first so that it already applies
// while the other pragmas run.
func writeDSN(path string, busy time.Duration) string {
	return path + "?_txlock=immediate&_pragma=busy_timeout(" + strconv.FormatInt(busy.Milliseconds(), 10) + ")" +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
}

// readDSN is the DSN of the read pool, whose connections refuse writes.
func readDSN(path string, busy time.Duration) string {
	return path + "?_txlock=deferred&_pragma=busy_timeout(" + strconv.FormatInt(busy.Milliseconds(), 10) + ")" +
		"&_pragma=foreign_keys(1)&_pragma=query_only(1)"
}

// Close closes both pools. Calling it more than once is harmless.
func (db *DB) Close() error {
	db.outage.Close()
	var errs []error
	for _, st := range []*sql.Stmt{db.stmtGen, db.stmtToken, db.stmtScript} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if db.read != nil {
		errs = append(errs, db.read.Close())
	}
	if db.write != nil {
		errs = append(errs, db.write.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// Ping reports whether the database can be read.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.read.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return db.fail("ping", err)
	}
	return nil
}

// probeWrite reports whether a write transaction can start: what an
// outage of SQLite usually is, another process holding the write lock
// beyond the busy timeout, does not stop reads.
func (db *DB) probeWrite(ctx context.Context) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	return tx.Rollback()
}

// fail returns an error of the operation op (see sqlstore.Outage.Err).
func (db *DB) fail(op string, err error) error { return db.outage.Err(op, err) }

// unreachable reports whether err means that the database cannot be used
// for now, though it may be soon: the file is locked by another process
// beyond the busy timeout (SQLITE_BUSY, SQLITE_LOCKED), cannot be opened,
// read or written (SQLITE_CANTOPEN, SQLITE_IOERR), or the disk is full
// (SQLITE_FULL).
func unreachable(err error) bool {
	var se *sqlitedriver.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff { // the primary result code
	case 5, 6, 10, 13, 14: // BUSY, LOCKED, IOERR, FULL, CANTOPEN
		return true
	}
	return false
}

// migrate applies the embedded migrations that the database lacks, in
// one write transaction (see internal/migrate).
func (db *DB) migrate(ctx context.Context) error {
	return db.inTx(ctx, func(tx *sql.Tx) error {
		return migrate.Apply(ctx, migrator{tx, db.now}, migrations, "migrations", "sqlite", db.log)
	})
}

// migrator is migrate.Tx on an SQLite transaction.
type migrator struct {
	tx  *sql.Tx
	now func() time.Time
}

func (m migrator) Version(ctx context.Context) (int, error) {
	if _, err := m.tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL)`); err != nil {
		return 0, err
	}
	var v int
	err := m.tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func (m migrator) Apply(ctx context.Context, version int, name, body string) error {
	if _, err := m.tx.ExecContext(ctx, body); err != nil {
		return err
	}
	_, err := m.tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		version, name, m.now().UnixMicro())
	return err
}

// inTx runs fn in a write transaction (BEGIN IMMEDIATE on the single
// write connection) and commits it; an error from fn rolls it back and is
// returned as it is.
func (db *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// clock returns the current time at the microsecond precision in which
// times are stored, so that returned values equal what a later read gets.
func (db *DB) clock() time.Time { return db.now().UTC().Truncate(time.Microsecond) }

// fromMicros converts a stored time (Unix microseconds) to a UTC time.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
