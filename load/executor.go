package load

// The executor's scheduling stage: Run, the closed model's thread group
// and the open model's pacer. A worker's request path is in worker.go, the
// worker-driven HTTP/1.1 send path in http1_perf.go.

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Sink receives every result of a run. It is called from many goroutines
// at once, synchronously after each request, so it must be safe for
// concurrent use, quick, and must not keep r after it returns (the engine
// reuses it): copy what it needs.
type Sink func(r *Result)

// Config is one run: what to send (Plan), how much (Workload), with which
// client, and where results go; or a Flow, which says what and how much
// itself. Sink and a Plan or a Flow are required.
type Config struct {
	Plan     *Plan
	Workload Workload
	// Flow, instead of Plan and Workload, runs virtual users through a
	// tree of steps, each thread group with its own workload.
	Flow *Flow
	// Client, when set, sends every request through net/http with it.
	// When nil, Run builds its own client from HTTP and sends requests to
	// http:// targets over connections its workers drive themselves
	// (http1_perf.go), the cheaper path; https and OAuth go through
	// net/http.
	Client *http.Client
	// HTTP configures the client Run builds when Client is nil.
	HTTP       ClientConfig
	RetryAfter RetryAfterMode
	Sink       Sink
	// Logger receives the run's few events (start, stop); nil discards.
	Logger *slog.Logger
	// Started, when set, is called once with the run's start instant
	// before the first request.
	Started func(start time.Time)
	// Segment, when not the whole run, runs only the segment's share of
	// the workload's arrivals or threads (see Segment). Not for a Flow,
	// nor is StartAt.
	Segment Segment
	// StartAt, when set, is the run's start instant: Run waits for it
	// (the client and its first token are ready before), and the schedule
	// and ramp-up count from it, so that processes running segments of
	// one run start together. An instant already past starts at once,
	// with the schedule counted from StartAt all the same.
	StartAt time.Time
}

// Stats is what a run did as a whole: per-request figures, send lag
// included (Start − Intended), are in the results.
type Stats struct {
	Start, End time.Time
	// Sent is the number of requests sent (results delivered).
	Sent uint64
	// Dropped counts open-model arrivals that found no free worker at
	// MaxWorkers and were not sent.
	Dropped uint64
	// Workers is the largest number of workers the open model used.
	Workers int
	// Interrupted is true when the context was cancelled before the run
	// finished (Ctrl-C).
	Interrupted bool
	// Held counts the requests sent after a wait that Retry-After or a
	// spent window asked for (RetryHonor), and HeldFor is their waits
	// added up: each such Result has its wait in Waited.
	Held    uint64
	HeldFor time.Duration
}

// DefaultMaxWorkers bounds the open model's worker pool when
// Workload.MaxWorkers is 0.
const DefaultMaxWorkers = 1000

// Run executes the workload and streams every result to cfg.Sink. It
// returns when the workload is done, or when ctx is cancelled (Ctrl-C):
// then requests in flight are abandoned, their results not delivered, and
// Stats.Interrupted is set; the error is nil in both cases, so the caller
// still reports what ran. Errors are for a run that cannot start.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	if cfg.Sink == nil {
		return Stats{}, errors.New("run: no result sink")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Flow != nil {
		if !cfg.Segment.Whole() || !cfg.StartAt.IsZero() {
			return Stats{}, errors.New("run: a flow cannot be run in segments (or from StartAt) yet: segment a scenario (requests and a workload)")
		}
		if cfg.Plan != nil {
			return Stats{}, errors.New("run: give a plan or a flow, not both")
		}
		return runFlow(ctx, cfg, log)
	}
	if cfg.Plan == nil || len(cfg.Plan.Targets) == 0 {
		return Stats{}, errors.New("run: no requests")
	}
	if err := cfg.Workload.Validate(); err != nil {
		return Stats{}, err
	}
	if err := validateSegment(cfg.Segment, &cfg.Workload); err != nil {
		return Stats{}, err
	}
	r := &runner{cfg: cfg, log: log, counts: &counts{}}
	if cfg.RetryAfter == RetryHonor {
		r.holds = newWindowHolds()
	}
	if cfg.Client == nil {
		c, fast, err := newClient(ctx, cfg.HTTP, true)
		if err != nil {
			return Stats{}, err
		}
		r.cfg.Client, r.fast = c, fast
		// The client is the run's own: its connections end with it.
		defer c.CloseIdleConnections()
		if fast != nil {
			defer fast.CloseIdleConnections()
		}
	}
	if w := cfg.Workload; w.Throughput.Count > 0 {
		r.timer = NewThroughputTimer(w.Throughput, w.ThroughputMode)
	}
	r.start = time.Now()
	if !cfg.StartAt.IsZero() {
		if !newSleeper().until(ctx, cfg.StartAt) {
			return Stats{Start: cfg.StartAt, End: time.Now(), Interrupted: true}, nil
		}
		r.start = cfg.StartAt
	}
	if cfg.Started != nil {
		cfg.Started(r.start)
	}
	if cfg.Workload.Open() {
		r.runOpen(ctx, ctx)
	} else {
		r.runClosed(ctx, ctx)
	}
	st := Stats{Start: r.start, End: time.Now(), Sent: r.sent.Load(), Dropped: r.dropped.Load(),
		Workers: int(r.workers.Load()), Interrupted: ctx.Err() != nil,
		Held: r.held.Load(), HeldFor: time.Duration(r.heldFor.Load())}
	log.Info("run finished", "sent", st.Sent, "dropped", st.Dropped, "interrupted", st.Interrupted)
	return st, nil
}

type runner struct {
	cfg   Config
	log   *slog.Logger
	start time.Time
	timer *ThroughputTimer
	// fast, when Run built the client, sends http:// requests over
	// worker-driven connections (http1_perf.go).
	fast *transport
	// pause is the open model's schedule when Retry-After is honoured:
	// workers pause it, the pacer reads it.
	pause *retryPause
	// holds, when Retry-After is honoured, holds requests of spent
	// windows until they reset (holds.go); shared by a flow's groups.
	holds *windowHolds

	// flow, when set, is the thread group of a flow this runner runs:
	// its users' iterations replace the Plan's.
	flow *flowGroup
	*counts
	active atomic.Int64 // threads running (closed) or busy workers (open)
}

// counts are a run's totals, shared by the runners of a flow's groups.
type counts struct {
	seq     atomic.Uint64
	sent    atomic.Uint64
	dropped atomic.Uint64
	workers atomic.Int64
	held    atomic.Uint64
	heldFor atomic.Int64 // ns
}

// deadline returns the run's end for a duration-bounded run.
func (r *runner) deadline() (time.Time, bool) {
	if r.cfg.Workload.Duration > 0 {
		return r.start.Add(r.cfg.Workload.Duration), true
	}
	return time.Time{}, false
}

// runClosed is JMeter's thread group: thread i (0-based) starts at
// i·RampUp/Threads and runs Loops iterations or until the deadline. When
// stop ends, no request starts (a flow's stop_test); when ctx ends,
// requests in flight are abandoned too.
func (r *runner) runClosed(ctx, stop context.Context) {
	w := r.cfg.Workload
	n := max(w.Threads, 1)
	stopCtx := stop
	if end, ok := r.deadline(); ok {
		var cancel context.CancelFunc
		stopCtx, cancel = context.WithDeadline(stop, end)
		defer cancel()
	}
	var wg sync.WaitGroup
	for i := range n {
		if !r.cfg.Segment.Has(uint64(i)) {
			continue // another segment's thread
		}
		wg.Go(func() {
			wk := r.newWorker(ctx, i+1)
			defer wk.close()
			offset := time.Duration(int64(w.RampUp) * int64(i) / int64(n))
			if !wk.sleepUntil(stopCtx, r.start.Add(offset)) {
				return
			}
			r.active.Add(1)
			defer r.active.Add(-1)
			for iter := 0; w.Loops == 0 || iter < w.Loops; iter++ {
				if !r.iteration(wk, ctx, stopCtx, iter, time.Time{}, 0) {
					return
				}
			}
		})
	}
	wg.Wait()
}

// arrival is one open-model iteration handed to a worker.
type arrival struct {
	index    uint64
	intended time.Time
	waited   time.Duration
}

// runOpen schedules arrivals from the Schedule, each one an iteration of
// the plan, on a pool of workers that grows up to MaxWorkers. stop and ctx
// are as for runClosed.
func (r *runner) runOpen(ctx, stop context.Context) {
	w := r.cfg.Workload
	var base Schedule = ConstantRate{Rate: w.Rate}
	if len(w.Stages) > 0 {
		base = w.Stages
	}
	var sched Schedule = base
	if r.cfg.RetryAfter == RetryHonor {
		r.pause = &retryPause{Schedule: base}
		sched = r.pause
	}
	maxWorkers := w.MaxWorkers
	if maxWorkers <= 0 {
		maxWorkers = DefaultMaxWorkers
	}
	arrivals := make(chan arrival)
	var wg sync.WaitGroup
	spawn := func() {
		id := int(r.workers.Add(1))
		wg.Go(func() {
			wk := r.newWorker(ctx, id)
			defer wk.close()
			for a := range arrivals {
				r.active.Add(1)
				r.iteration(wk, ctx, stop, int(a.index), a.intended, a.waited)
				r.active.Add(-1)
			}
		})
	}
	for range min(maxWorkers, 8) {
		spawn()
	}
	pacer := newSleeper()
	if pacer.precise = newPreciseClock(); pacer.precise != nil {
		defer pacer.precise.close()
	}
	for i := uint64(0); w.Loops == 0 || i < uint64(w.Loops); i++ {
		off, ok := sched.At(i)
		// The duration bounds the schedule's own offsets: a pause
		// lengthens the run rather than cut arrivals from its end.
		if !ok || (w.Duration > 0 && off-r.pause.shifted() >= w.Duration) {
			break
		}
		if !r.cfg.Segment.Has(i) {
			continue // another segment's arrival
		}
		var waited time.Duration
		stopped := false
		for {
			// A Retry-After seen while waiting for this arrival pauses the
			// schedule: this and every later arrival shift by the pause.
			if d := r.pause.hold(off); d > 0 {
				waited += d
				off += d
			}
			if !pacer.until(stop, r.start.Add(off)) {
				stopped = true
				break
			}
			// A spent window pauses the schedule until it resets, as a
			// Retry-After does (only when Retry-After is honoured: the
			// clock is not read for every arrival otherwise).
			if r.holds != nil {
				if until, ok := r.holds.until(time.Now()); ok {
					r.pause.pause(until.Sub(r.start))
				}
			}
			if !r.pause.covers(off) {
				break
			}
		}
		if stopped {
			break
		}
		a := arrival{index: i, intended: r.start.Add(off), waited: waited}
		select {
		case arrivals <- a:
			continue
		default:
		}
		if int(r.workers.Load()) < maxWorkers {
			spawn()
			select {
			case arrivals <- a:
			case <-stop.Done():
			}
			continue
		}
		r.dropped.Add(1)
	}
	close(arrivals)
	wg.Wait()
}

// iteration runs one iteration of the plan, or of the flow group's
// steps, on wk; it reports false when the run is over for wk.
func (r *runner) iteration(wk *worker, ctx, stopCtx context.Context, iter int, intended time.Time, waited time.Duration) bool {
	if wk.user != nil {
		return wk.user.iteration(ctx, stopCtx, iter, intended, waited)
	}
	return wk.iteration(ctx, stopCtx, iter, intended, waited)
}
