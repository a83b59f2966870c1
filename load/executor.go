package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

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
	// SendLag is how late paced requests went out: Start − Intended of
	// every request whose send time a schedule or timer set.
	SendLag LagStats
}

// LagStats summarizes send lags (actual minus intended send time) at
// microsecond resolution. The zero LagStats means no paced request.
type LagStats struct {
	Count              int64
	P50, P90, P99, Max time.Duration
}

// lagHist records send lags; it is safe for concurrent use. A nil
// *lagHist records nothing (an unpaced run).
type lagHist struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// maxLag is the largest lag recorded as itself; longer ones count as it.
const maxLag = 10 * time.Minute

func newLagHist() *lagHist {
	return &lagHist{h: hdrhistogram.New(1, int64(maxLag/time.Microsecond), 3)}
}

func (l *lagHist) record(d time.Duration) {
	if l == nil {
		return
	}
	us := min(max(int64(d/time.Microsecond), 0), int64(maxLag/time.Microsecond))
	l.mu.Lock()
	_ = l.h.RecordValue(us) // clamped into range: cannot fail
	l.mu.Unlock()
}

func (l *lagHist) stats() LagStats {
	if l == nil {
		return LagStats{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	q := func(p float64) time.Duration { return time.Duration(l.h.ValueAtQuantile(p)) * time.Microsecond }
	if l.h.TotalCount() == 0 {
		return LagStats{}
	}
	return LagStats{Count: l.h.TotalCount(), P50: q(50), P90: q(90), P99: q(99),
		Max: time.Duration(l.h.Max()) * time.Microsecond}
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
	if tr, ok := cfg.Client.Transport.(*transport); ok {
		r.fast = tr
	}
	if w := cfg.Workload; w.Throughput.Count > 0 {
		r.timer = NewThroughputTimer(w.Throughput, w.ThroughputMode)
	}
	if r.timer != nil || cfg.Workload.Open() {
		r.lag = newLagHist()
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
		Workers: int(r.workers.Load()), Interrupted: ctx.Err() != nil, SendLag: r.lag.stats()}
	log.Info("run finished", "sent", st.Sent, "dropped", st.Dropped, "interrupted", st.Interrupted)
	return st, nil
}

type runner struct {
	cfg   Config
	log   *slog.Logger
	start time.Time
	timer *ThroughputTimer
	// fast, when the client is NewClient's, sends http:// requests over
	// worker-driven connections (http1_perf.go).
	fast *transport
	lag  *lagHist // nil when nothing paces requests

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
	if pacer.precise = newPreciseClock(); pacer.precise != nil {
		defer pacer.precise.close()
	}
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
type sleeper struct {
	t *time.Timer
	// precise, when set, ends each wait on a precise clock instead of the
	// timer: the open model's pacer, a single goroutine, sleeps this way.
	precise *preciseClock
}

func newSleeper() *sleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &sleeper{t: t}
}

// preciseSpan is the last stretch of a precise wait that is slept on the
// precise clock rather than on a Go timer (which may be a millisecond late).
const preciseSpan = 1500 * time.Microsecond

// until sleeps until t and reports false if ctx ended first.
func (s *sleeper) until(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	if s.precise != nil {
		if d > preciseSpan {
			if !s.sleep(ctx, d-preciseSpan) {
				return false
			}
		}
		s.precise.sleep(time.Until(t))
		return ctx.Err() == nil
	}
	return s.sleep(ctx, d)
}

// sleep waits d on the timer, or until ctx ends.
func (s *sleeper) sleep(ctx context.Context, d time.Duration) bool {
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
// Its buffers, its Result and its request are reused from request to
// request.
type worker struct {
	r      *runner
	ctx    context.Context
	thread int
	sleep  *sleeper
	vars   Vars
	res    Result
	tt     ThroughputThread
	// pendingWait is the Retry-After the last response asked for.
	pendingWait time.Duration
	bodyBuf     []byte // 429 bodies

	// The net/http path: a trace made on first use, and what it saw.
	traceCtx  context.Context
	connStart atomic.Int64
	gotConn   atomic.Int64
	reused    atomic.Bool
	firstByte atomic.Int64

	// The worker-driven path (http1_perf.go).
	req       http.Request
	buildBuf  []byte // templated bodies
	wireBuf   []byte // requests of templated targets
	poolAddr  string
	pool      *hostPool
	inflight  atomic.Pointer[conn]
	stopAbort func() bool
}

func (r *runner) newWorker(ctx context.Context, thread int) *worker {
	w := &worker{r: r, ctx: ctx, thread: thread, sleep: newSleeper()}
	w.vars.Thread = thread
	if r.fast != nil {
		// Ctrl-C abandons the request in flight, as cancelling a
		// net/http request would: its connection's deadline passes now.
		w.stopAbort = context.AfterFunc(ctx, func() {
			if c := w.inflight.Load(); c != nil {
				c.nc.SetDeadline(time.Unix(1, 0))
			}
		})
	}
	return w
}

// trace returns the context that traces the worker's net/http requests.
func (w *worker) trace() context.Context {
	if w.traceCtx == nil {
		trace := &httptrace.ClientTrace{
			ConnectStart: func(string, string) { w.connStart.CompareAndSwap(0, time.Now().UnixNano()) },
			GotConn: func(info httptrace.GotConnInfo) {
				w.reused.Store(info.Reused)
				w.gotConn.Store(time.Now().UnixNano())
			},
			GotFirstResponseByte: func() { w.firstByte.Store(time.Now().UnixNano()) },
		}
		w.traceCtx = httptrace.WithClientTrace(w.ctx, trace)
	}
	return w.traceCtx
}

func (w *worker) close() {
	w.sleep.t.Stop()
	if w.stopAbort != nil {
		w.stopAbort()
	}
}

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
	// A static URL says now whether the request can take the
	// worker-driven path; a templated one says once it is built.
	fast := r.fast != nil && (t.staticURL == nil || t.staticURL.Scheme == "http")
	var now time.Time
	if t.wire == nil || !fast {
		// Templates may use {{now}}; a static target needs no clock here.
		now = time.Now()
		w.vars.Now = now
	}
	var buf []byte
	if fast {
		// The worker-driven path writes the body before send returns, so
		// the buffer is free again for the next request; net/http may still
		// be reading a body after the response arrived.
		buf = w.buildBuf
	}
	u, h, body, err := t.Build(&w.vars, buf)
	if err != nil {
		res.Start, res.Intended, res.Error = now, now, err.Error()
		w.deliver(res)
		return
	}
	if fast && t.staticBody == nil && cap(body) <= maxRateLimitBody {
		w.buildBuf = body[:0]
	}
	res.URL = t.URLString(u)
	res.BytesOut = int64(len(body))

	var resp *http.Response
	var c *conn
	var start time.Time
	if fast && u.Scheme == "http" {
		resp, c, start, err = w.doFast(ctx, t, u, h, body, res, intended)
	} else {
		if buf != nil && t.staticBody == nil {
			body = bytes.Clone(body) // the buffer is reused by the next request
		}
		resp, start, err = w.doStd(t, u, h, body, res, intended)
	}
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
		res.BytesIn, res.Policy, res.RetryAfter, err = w.readRateLimitBody(resp.Body)
	} else {
		res.BytesIn, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	end := time.Now()
	res.Elapsed = end.Sub(start)
	if c != nil {
		w.inflight.Store(nil)
		c.pool.put(c, err == nil && !resp.Close && ctx.Err() == nil, end)
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		res.Error = "read body: " + err.Error()
	}
	if c == nil {
		w.traced(res, start)
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

// started sets the result's send times: Start is now, Intended the
// schedule's instant (Start when nothing paced the request), and the lag
// between the two is recorded.
func (w *worker) started(res *Result, intended time.Time) time.Time {
	start := time.Now()
	res.Start = start
	res.Intended = start
	if !intended.IsZero() {
		if intended.Before(start) {
			res.Intended = intended
		}
		w.r.lag.record(start.Sub(res.Intended))
	}
	return start
}

// doStd sends the request through the run's http.Client.
func (w *worker) doStd(t *Target, u *url.URL, h http.Header, body []byte, res *Result, intended time.Time) (*http.Response, time.Time, error) {
	req := &http.Request{Method: t.Method, URL: u, Host: u.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	req = req.WithContext(w.trace())
	w.connStart.Store(0)
	w.firstByte.Store(0)
	w.reused.Store(true)
	start := w.started(res, intended)
	resp, err := w.r.cfg.Client.Do(req)
	return resp, start, err
}

// traced sets TTFB and Connect from what the trace of a net/http request
// saw.
func (w *worker) traced(res *Result, start time.Time) {
	if fb := w.firstByte.Load(); fb > 0 {
		res.TTFB = time.Duration(fb - start.UnixNano())
	}
	if !w.reused.Load() {
		if cs, gc := w.connStart.Load(), w.gotConn.Load(); cs > 0 && gc >= cs {
			res.Connect = time.Duration(gc - cs)
		}
	}
}

// doFast sends the request over a worker-driven connection and returns
// the response with its body unread, and the connection, which the
// caller returns to its pool once the body is read.
func (w *worker) doFast(ctx context.Context, t *Target, u *url.URL, h http.Header, body []byte, res *Result, intended time.Time) (*http.Response, *conn, time.Time, error) {
	r := w.r
	req := &w.req
	*req = http.Request{Method: t.Method, URL: u, Host: u.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Close: !r.fast.keepAlive}
	wire := t.wire
	if wire == nil || req.Close {
		wire = t.appendWire(w.wireBuf[:0], u, h, body, req.Close)
		if wire == nil {
			// net/http cannot write it either: let it say why.
			resp, start, err := w.doStd(t, u, h, body, res, intended)
			return resp, nil, start, err
		}
		if cap(wire) <= maxRateLimitBody {
			w.wireBuf = wire[:0]
		}
	}
	pool := w.poolFor(u)
	start := w.started(res, intended)
	for {
		c, dial, err := pool.get(ctx, start)
		if err != nil {
			return nil, nil, start, urlError(req, res.URL, r.fast.timeout, err)
		}
		w.inflight.Store(c)
		if ctx.Err() != nil {
			w.inflight.Store(nil)
			c.close()
			return nil, nil, start, ctx.Err()
		}
		resp, ttfb, err := c.roundTrip(req, wire, start)
		if err == nil {
			res.Connect, res.TTFB = dial, ttfb
			return resp, c, start, nil
		}
		w.inflight.Store(nil)
		c.close()
		if err != errNoResponse {
			return nil, nil, start, urlError(req, res.URL, r.fast.timeout, err)
		}
		// The server had closed the reused connection: send again.
	}
}

// poolFor returns the connection pool of u's host, cached for the
// worker's last host.
func (w *worker) poolFor(u *url.URL) *hostPool {
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	if w.pool == nil || addr != w.poolAddr {
		w.pool, w.poolAddr = w.r.fast.pool(addr), addr
	}
	return w.pool
}

// urlError words a failure of the worker-driven path as net/http's
// Client would: the method, the URL and the cause.
func urlError(req *http.Request, urlStr string, timeout time.Duration, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("timeout after %v (%w)", timeout, err)
	}
	op := req.Method[:1] + strings.ToLower(req.Method[1:])
	return &url.Error{Op: op, URL: urlStr, Err: err}
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
func (w *worker) readRateLimitBody(body io.Reader) (n int64, policy string, retry time.Duration, err error) {
	if w.bodyBuf == nil {
		w.bodyBuf = make([]byte, 0, 4096)
	}
	buf := bytes.NewBuffer(w.bodyBuf[:0])
	n, err = buf.ReadFrom(io.LimitReader(body, maxRateLimitBody))
	rest, err2 := io.Copy(io.Discard, body)
	if err == nil {
		err = err2
	}
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
	return n + rest, policy, retry, err
}
