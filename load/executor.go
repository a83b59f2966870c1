package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"ratelab/limit"
)

// Sink receives every result of a run. It is called from many goroutines
// at once, synchronously after each request, so it must be safe for
// concurrent use, quick, and must not keep r after it returns (the engine
// reuses it): copy what it needs.
type Sink func(r *Result)

// Config is one run: what to send (Plan), how much (Workload), with which
// client, and where results go. Plan and Sink are required.
type Config struct {
	Plan     *Plan
	Workload Workload
	// Client sends the requests; nil means NewClient's defaults.
	Client     *http.Client
	RetryAfter RetryAfterMode
	Sink       Sink
	// Logger receives the run's few events (start, stop); nil discards.
	Logger *slog.Logger
	// Started, when set, is called once with the run's start instant
	// before the first request.
	Started func(start time.Time)
}

// Stats is what a run did as a whole: per-request figures are in the
// results.
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
}

// DefaultMaxWorkers bounds the open model's worker pool when
// Workload.MaxWorkers is 0.
const DefaultMaxWorkers = 1000

// maxRateLimitBody caps how much of a 429's body is read for its policy.
const maxRateLimitBody = 64 << 10

// Run executes the workload and streams every result to cfg.Sink. It
// returns when the workload is done, or when ctx is cancelled (Ctrl-C):
// then requests in flight are abandoned, their results not delivered, and
// Stats.Interrupted is set; the error is nil in both cases, so the caller
// still reports what ran. Errors are for a run that cannot start.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	if cfg.Plan == nil || len(cfg.Plan.Targets) == 0 {
		return Stats{}, errors.New("run: no requests")
	}
	if cfg.Sink == nil {
		return Stats{}, errors.New("run: no result sink")
	}
	if err := cfg.Workload.Validate(); err != nil {
		return Stats{}, err
	}
	if cfg.Client == nil {
		c, err := NewClient(ctx, ClientConfig{})
		if err != nil {
			return Stats{}, err
		}
		cfg.Client = c
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &runner{cfg: cfg, log: log}
	if w := cfg.Workload; w.Throughput.Count > 0 {
		r.timer = NewThroughputTimer(w.Throughput, w.ThroughputMode)
	}
	r.start = time.Now()
	if cfg.Started != nil {
		cfg.Started(r.start)
	}
	if cfg.Workload.Open() {
		r.runOpen(ctx)
	} else {
		r.runClosed(ctx)
	}
	st := Stats{Start: r.start, End: time.Now(), Sent: r.sent.Load(), Dropped: r.dropped.Load(),
		Workers: int(r.workers.Load()), Interrupted: ctx.Err() != nil}
	log.Info("run finished", "sent", st.Sent, "dropped", st.Dropped, "interrupted", st.Interrupted)
	return st, nil
}

type runner struct {
	cfg   Config
	log   *slog.Logger
	start time.Time
	timer *ThroughputTimer

	seq     atomic.Uint64
	sent    atomic.Uint64
	dropped atomic.Uint64
	active  atomic.Int64 // threads running (closed) or busy workers (open)
	workers atomic.Int64
	// pauseUntil is the open model's Retry-After pause (Unix ns): no
	// arrival is scheduled before it.
	pauseUntil atomic.Int64
}

// deadline returns the run's end for a duration-bounded run.
func (r *runner) deadline() (time.Time, bool) {
	if r.cfg.Workload.Duration > 0 {
		return r.start.Add(r.cfg.Workload.Duration), true
	}
	return time.Time{}, false
}

// runClosed is JMeter's thread group: thread i (0-based) starts at
// i·RampUp/Threads and runs Loops iterations or until the deadline.
func (r *runner) runClosed(ctx context.Context) {
	w := r.cfg.Workload
	n := max(w.Threads, 1)
	stopCtx := ctx
	if end, ok := r.deadline(); ok {
		var cancel context.CancelFunc
		stopCtx, cancel = context.WithDeadline(ctx, end)
		defer cancel()
	}
	var wg sync.WaitGroup
	for i := range n {
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
				if !wk.iteration(ctx, stopCtx, iter, time.Time{}, 0) {
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
// the plan, on a pool of workers that grows up to MaxWorkers.
func (r *runner) runOpen(ctx context.Context) {
	w := r.cfg.Workload
	var sched Schedule = ConstantRate{Rate: w.Rate}
	if len(w.Stages) > 0 {
		sched = w.Stages
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
				wk.iteration(ctx, ctx, int(a.index), a.intended, a.waited)
				r.active.Add(-1)
			}
		})
	}
	for range min(maxWorkers, 8) {
		spawn()
	}
	pacer := newSleeper()
	var shift time.Duration // accumulated Retry-After pauses
	for i := uint64(0); w.Loops == 0 || i < uint64(w.Loops); i++ {
		off, ok := sched.At(i)
		if !ok || (w.Duration > 0 && off >= w.Duration) {
			break
		}
		intended := r.start.Add(off + shift)
		var waited time.Duration
		stopped := false
		for {
			// A Retry-After seen while waiting for this arrival pauses the
			// schedule: this and every later arrival shift by the pause.
			if p := r.pauseUntil.Load(); p > intended.UnixNano() {
				d := time.Duration(p - intended.UnixNano())
				waited += d
				shift += d
				intended = intended.Add(d)
			}
			if !pacer.until(ctx, intended) {
				stopped = true
				break
			}
			if r.pauseUntil.Load() <= intended.UnixNano() {
				break
			}
		}
		if stopped {
			break
		}
		a := arrival{index: i, intended: intended, waited: waited}
		select {
		case arrivals <- a:
			continue
		default:
		}
		if int(r.workers.Load()) < maxWorkers {
			spawn()
			select {
			case arrivals <- a:
			case <-ctx.Done():
			}
			continue
		}
		r.dropped.Add(1)
	}
	close(arrivals)
	wg.Wait()
}

// sleeper sleeps until instants on a reused timer.
type sleeper struct{ t *time.Timer }

func newSleeper() *sleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &sleeper{t: t}
}

// until sleeps until t and reports false if ctx ended first.
func (s *sleeper) until(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	s.t.Reset(d)
	select {
	case <-s.t.C:
		return true
	case <-ctx.Done():
		s.t.Stop()
		return false
	}
}

// worker is one virtual user (closed model) or pool worker (open model).
// Its buffers and its Result are reused from request to request.
type worker struct {
	r      *runner
	thread int
	sleep  *sleeper
	vars   Vars
	res    Result
	tt     ThroughputThread
	// pendingWait is the Retry-After the last response asked for.
	pendingWait time.Duration

	traceCtx  context.Context
	bodyBuf   []byte
	connStart atomic.Int64
	gotConn   atomic.Int64
	reused    atomic.Bool
	firstByte atomic.Int64
}

func (r *runner) newWorker(ctx context.Context, thread int) *worker {
	w := &worker{r: r, thread: thread, sleep: newSleeper()}
	w.vars.Thread = thread
	trace := &httptrace.ClientTrace{
		ConnectStart: func(string, string) { w.connStart.CompareAndSwap(0, time.Now().UnixNano()) },
		GotConn: func(info httptrace.GotConnInfo) {
			w.reused.Store(info.Reused)
			w.gotConn.Store(time.Now().UnixNano())
		},
		GotFirstResponseByte: func() { w.firstByte.Store(time.Now().UnixNano()) },
	}
	w.traceCtx = httptrace.WithClientTrace(ctx, trace)
	return w
}

func (w *worker) close() { w.sleep.t.Stop() }

func (w *worker) sleepUntil(ctx context.Context, t time.Time) bool { return w.sleep.until(ctx, t) }

// iteration runs the plan's requests once. stopCtx ends at the run's
// deadline: no request starts after it, but one in flight completes.
// intended and waited come from the open model's schedule for the first
// request. It reports false when the run is over for this worker.
func (w *worker) iteration(ctx, stopCtx context.Context, iter int, intended time.Time, waited time.Duration) bool {
	r := w.r
	w.vars.Iteration = iter
	if r.cfg.Plan.Data != nil {
		w.vars.Row = r.cfg.Plan.Data.Next(w.thread)
	}
	for i, t := range r.cfg.Plan.Targets {
		if stopCtx.Err() != nil {
			return false
		}
		var wait time.Duration
		if i > 0 || intended.IsZero() {
			intended = time.Time{}
			if w.pendingWait > 0 {
				// Honor Retry-After: sleep before the next request.
				wait = w.pendingWait
				w.pendingWait = 0
				if !w.sleepUntil(stopCtx, time.Now().Add(wait)) {
					return false
				}
			}
			if r.timer != nil {
				now := time.Now()
				d := r.timer.Delay(&w.tt, now, int(r.active.Load()))
				if d > 0 {
					intended = now.Add(d)
					if !w.sleepUntil(stopCtx, intended) {
						return false
					}
				}
			}
		} else {
			wait = waited
		}
		w.send(ctx, t, intended, wait)
		if t.Think > 0 && !w.sleepUntil(stopCtx, time.Now().Add(t.Think)) {
			return false
		}
	}
	if th := r.cfg.Plan.Think; th > 0 && !w.sleepUntil(stopCtx, time.Now().Add(th)) {
		return false
	}
	return stopCtx.Err() == nil
}

// send sends one request and delivers its result.
func (w *worker) send(ctx context.Context, t *Target, intended time.Time, waited time.Duration) {
	r := w.r
	res := &w.res
	raw := res.RateLimitRaw[:0]
	*res = Result{Remaining: -1, Thread: w.thread, Iteration: w.vars.Iteration, Label: t.Name,
		Method: t.Method, Waited: waited, ActiveThreads: int(r.active.Load())}
	res.Seq = r.seq.Add(1) - 1
	w.vars.Seq = res.Seq
	now := time.Now()
	w.vars.Now = now
	u, h, body, err := t.Build(&w.vars, nil)
	if err != nil {
		res.Start, res.Intended, res.Error = now, now, err.Error()
		w.deliver(res)
		return
	}
	res.URL = t.URLString(u)
	req := &http.Request{Method: t.Method, URL: u, Host: u.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		res.BytesOut = int64(len(body))
	}
	req = req.WithContext(w.traceCtx)
	w.connStart.Store(0)
	w.firstByte.Store(0)
	w.reused.Store(true)
	start := time.Now()
	res.Start = start
	res.Intended = intended
	if intended.IsZero() || intended.After(start) {
		res.Intended = start
	}
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return // interrupted: not a result of the target
		}
		res.Elapsed = time.Since(start)
		res.Error = err.Error()
		w.deliver(res)
		return
	}
	res.Status = resp.StatusCode
	adv := limit.ParseHeaders(resp.Header, start)
	if resp.StatusCode == http.StatusTooManyRequests {
		res.BytesIn, res.Policy, res.RetryAfter = w.readRateLimitBody(resp.Body)
	} else {
		res.BytesIn, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	end := time.Now()
	res.Elapsed = end.Sub(start)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		res.Error = "read body: " + err.Error()
	}
	if fb := w.firstByte.Load(); fb > 0 {
		res.TTFB = time.Duration(fb - start.UnixNano())
	}
	if !w.reused.Load() {
		if cs, gc := w.connStart.Load(), w.gotConn.Load(); cs > 0 && gc >= cs {
			res.Connect = time.Duration(gc - cs)
		}
	}
	if res.Policy == "" {
		res.Policy = adv.Policy
	}
	if res.RetryAfter == 0 && adv.RetryAfter > 0 {
		res.RetryAfter = adv.RetryAfter
	}
	res.Remaining = adv.Remaining
	if len(adv.Raw) > 0 {
		res.RateLimitRaw = append(raw, adv.Raw...)
	}
	if res.RetryAfter > 0 && r.cfg.RetryAfter == RetryHonor {
		if r.cfg.Workload.Open() {
			until := end.Add(res.RetryAfter).UnixNano()
			for {
				p := r.pauseUntil.Load()
				if p >= until || r.pauseUntil.CompareAndSwap(p, until) {
					break
				}
			}
		} else {
			w.pendingWait = res.RetryAfter
		}
	}
	w.deliver(res)
}

func (w *worker) deliver(res *Result) {
	w.r.sent.Add(1)
	w.r.cfg.Sink(res)
}

// rateLimitBody is the part of a 429 body ratelab reads: ratelab's own
// server names the policy and the exact retry delay.
type rateLimitBody struct {
	Limit *struct {
		Policy       string   `json:"policy"`
		RetryAfterMs *float64 `json:"retryAfterMs"`
	} `json:"limit"`
}

// readRateLimitBody reads up to 64 KiB of a 429's body for the policy and
// retry delay, and discards the rest.
func (w *worker) readRateLimitBody(body io.Reader) (n int64, policy string, retry time.Duration) {
	if w.bodyBuf == nil {
		w.bodyBuf = make([]byte, 0, 4096)
	}
	buf := bytes.NewBuffer(w.bodyBuf[:0])
	n, _ = buf.ReadFrom(io.LimitReader(body, maxRateLimitBody))
	rest, _ := io.Copy(io.Discard, body)
	if buf.Cap() <= maxRateLimitBody {
		w.bodyBuf = buf.Bytes()[:0]
	}
	var b rateLimitBody
	if json.Unmarshal(buf.Bytes(), &b) == nil && b.Limit != nil {
		policy = b.Limit.Policy
		if ms := b.Limit.RetryAfterMs; ms != nil && *ms > 0 {
			retry = time.Duration(*ms * float64(time.Millisecond))
		}
	}
	return n + rest, policy, retry
}
