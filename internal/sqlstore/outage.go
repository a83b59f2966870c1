package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"ratelab"
)

// Outage turns a store's failures to reach its database into
// ratelab.Unavailable errors, and logs an outage twice, not once per
// failed request: one ERROR line when the first failure starts it, and
// one line when the database answers again, with the number of failures
// and how long it lasted (plus a WARN line with the count so far each
// minute while it lasts). While an outage lasts, Outage probes the
// database each second with Probe to learn when it is over.
//
// Create one with NewOutage; it is safe for concurrent use. Failures
// cost a mutex; successful operations never touch it.
type Outage struct {
	db          string // "sqlite" or "postgres", for the log and errors
	log         *slog.Logger
	probe       func(context.Context) error
	unreachable func(error) bool
	every       time.Duration

	mu       sync.Mutex
	down     bool
	since    time.Time
	failures int64
	closed   bool
	stop     chan struct{}
	wg       sync.WaitGroup
}

// OutageConfig configures NewOutage.
type OutageConfig struct {
	DB     string       // the store's name: "sqlite" or "postgres"
	Logger *slog.Logger // where the outage is logged
	// Unreachable reports whether an error means that the database cannot
	// be reached for now (see Err).
	Unreachable func(error) bool
	// Probe checks the database; it is called each Interval while an
	// outage lasts.
	Probe    func(context.Context) error
	Interval time.Duration
}

// NewOutage returns an Outage for one store.
func NewOutage(cfg OutageConfig) *Outage {
	return &Outage{db: cfg.DB, log: cfg.Logger, probe: cfg.Probe, unreachable: cfg.Unreachable, every: cfg.Interval, stop: make(chan struct{})}
}

// Err is how a store returns an error of the operation op: an
// application error (*ratelab.Error) as it is; one that Unreachable
// recognizes counted as a failure (Fail) and returned as EUNAVAILABLE;
// any other with the store's name and op added, as an internal error.
func (o *Outage) Err(op string, err error) error {
	var e *ratelab.Error
	switch {
	case errors.As(err, &e):
		return err
	case o.unreachable(err):
		return fmt.Errorf("%s: %s: %w", o.db, op, o.Fail(err))
	}
	return fmt.Errorf("%s: %s: %w", o.db, op, err)
}

// Fail records a failure to reach the database and returns it as an
// EUNAVAILABLE error (ratelab.Unavailable) that keeps cause in its chain.
func (o *Outage) Fail(cause error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures++
	if !o.down && !o.closed {
		o.down, o.since, o.failures = true, time.Now(), 1
		o.log.Error("database unavailable: answering 503 until it is back", "db", o.db, "err", cause)
		o.wg.Add(1)
		go o.watch()
	}
	return ratelab.Unavailable(cause)
}

// Failures returns the number of failures of the current or, when none
// lasts, the last outage.
func (o *Outage) Failures() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failures
}

// watch probes the database until it answers, then logs the end of the
// outage.
func (o *Outage) watch() {
	defer o.wg.Done()
	tick := time.NewTicker(o.every)
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case <-o.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(o.every, time.Second))
		err := o.probe(ctx)
		cancel()
		o.mu.Lock()
		if err == nil {
			o.down = false
			o.log.Info("database available again", "db", o.db, "failures", o.failures,
				"duration", time.Since(o.since).Round(time.Millisecond).String())
			o.mu.Unlock()
			return
		}
		if time.Since(lastReport) >= time.Minute {
			lastReport = time.Now()
			o.log.Warn("database still unavailable", "db", o.db, "failures", o.failures,
				"duration", time.Since(o.since).Round(time.Second).String(), "err", err)
		}
		o.mu.Unlock()
	}
}

// Close stops probing; a store calls it before closing its database.
func (o *Outage) Close() {
	o.mu.Lock()
	if !o.closed {
		o.closed = true
		close(o.stop)
	}
	o.mu.Unlock()
	o.wg.Wait()
}
