package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ratelab/limit"
	"ratelab/load"
)

// Reasons a probe stops early. They are wrapped with details; test them
// with errors.Is.
var (
	// ErrBudget: the request budget is spent.
	ErrBudget = errors.New("request budget spent")
	// ErrServerErrors: a run of consecutive 5xx responses or network errors.
	ErrServerErrors = errors.New("too many consecutive server or network errors")
	// ErrInterrupted: the context was cancelled (Ctrl-C).
	ErrInterrupted = errors.New("interrupted")
	// ErrStepTime: a measuring step reached its time bound (Config.MaxStep)
	// before its limit was identified.
	ErrStepTime = errors.New("step time bound reached")
)

// newRateGuard returns the bucket that enforces the maximum rate on the
// client's clock: in any window W at most MaxRate·W + k requests go out,
// where k is what the maximum rate sends in a millisecond, and at least 1.
// With k = 1 (maximum rates up to 1000/s) consecutive sends are never
// closer than 1/MaxRate; above, sends may bunch within a millisecond,
// which lets the probe keep its average rate although timers wake it a
// fraction of a millisecond late.
func newRateGuard(r limit.Rate) *limit.Bucket {
	t := r.Interval()
	k := max(1, time.Millisecond/t)
	return &limit.Bucket{Interval: t, Tolerance: k * t}
}

// obs is one request of a step: when it was sent and what came back.
type obs struct {
	seq    int
	at     time.Duration // send time since the step's first send
	status int           // 0 for a network error
	err    string
	client int // 0 or 1
	policy string
	// retryAfter and reset are what the response advertised; -1 absent.
	retryAfter time.Duration
	reset      time.Duration
	// exactRetry: retryAfter is a 429 body's milliseconds, not a header's
	// whole seconds.
	exactRetry bool
	// remaining is the quota the response advertised as left (RateLimit r,
	// X-RateLimit-Remaining, …) for the policy it names; -1 absent.
	remaining int64
	done      bool
	// end is when the response was read, since the step's first send.
	end time.Duration
}

// admitted reports whether the limiter let the request through: any
// response other than 429 and 5xx.
func (o *obs) admitted() bool { return o.done && o.status > 0 && o.status != 429 && o.status < 500 }

func (o *obs) rejected() bool { return o.done && o.status == http.StatusTooManyRequests }

// sender is the one gate every request of a probe passes: it enforces the
// budget and the maximum rate, caps requests in flight, and watches for a
// run of errors. Only the step loop calls send; results land concurrently.
type sender struct {
	cfg     *Config
	target  *load.Target
	cols    load.Columns
	clients []*http.Client
	minGap  time.Duration
	sem     chan struct{}
	wg      sync.WaitGroup

	guard   *limit.Bucket // touched by the gate only
	used    atomic.Int64
	errRun  atomic.Int64
	failed  atomic.Bool
	lastErr atomic.Value // string: the last error seen, for the report

	mu      sync.Mutex
	headers []string // rate-limit header lines seen, first of each kind
	seenHdr map[string]bool
	// The first response, for the advertised limits.
	firstSet    bool
	firstAdv    limit.Advertised
	firstHdr    []string
	firstStatus int
}

func newSender(cfg *Config) (*sender, error) {
	cols := load.Columns{}
	for i, v := range cfg.Vary {
		cols[v.Name] = i
	}
	// CompileTarget takes its columns from a data set: a one-row CSV whose
	// header names the variables gives it exactly those.
	var ds *load.DataSet
	if len(cfg.Vary) > 0 {
		names := make([]string, len(cfg.Vary))
		for i, v := range cfg.Vary {
			names[i] = v.Name
		}
		var err error
		ds, err = load.ReadData(strings.NewReader(strings.Join(names, ",")+"\n"+strings.Repeat(",", len(names)-1)+"x\n"), load.DataShared)
		if err != nil {
			return nil, fmt.Errorf("vary: %w", err)
		}
		cols = ds.Columns()
	}
	t, err := load.CompileTarget(cfg.Request, cfg.Headers, ds)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	s := &sender{cfg: cfg, target: t, cols: cols, clients: []*http.Client{cfg.Client},
		minGap: cfg.MaxRate.Interval(), guard: newRateGuard(cfg.MaxRate), sem: make(chan struct{}, cfg.inFlight()), seenHdr: map[string]bool{}}
	if cfg.Client2 != nil {
		s.clients = append(s.clients, cfg.Client2)
	}
	return s, nil
}

// spent returns ErrBudget, wrapped, once the budget is used up.
func (s *sender) spent() error {
	if s.used.Load() >= int64(s.cfg.Budget) {
		return fmt.Errorf("%w: all %d requests sent", ErrBudget, s.cfg.Budget)
	}
	return nil
}

// pass is the gate itself: it takes a slot among the requests in flight,
// checks the budget, waits until the maximum rate allows the next send and
// counts the request. It returns the send instant; the caller sends at
// once and releases the slot (<-s.sem) when the response is read. Only one
// goroutine at a time calls pass (the step loop, or the advertised step
// between steps). sleep waits until an instant and reports false when ctx
// ended first.
func (s *sender) pass(ctx context.Context, sleep func(time.Time) bool) (time.Time, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return time.Time{}, ErrInterrupted
	}
	if err := s.spent(); err != nil {
		<-s.sem
		return time.Time{}, err
	}
	// The maximum rate is a hard bound in the client's clock, whatever
	// the step asked for and however late the semaphore made us.
	at, _ := s.guard.Earliest(1)
	if !sleep(at) {
		<-s.sem
		return time.Time{}, ErrInterrupted
	}
	now := time.Now()
	s.guard.Take(now, 1)
	s.used.Add(1)
	return now, nil
}

// get sends one GET to url through the gate, with the first client, and
// returns the response's status and body (at most 1 MiB).
func (s *sender) get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("limits url: %w", err)
	}
	if _, err := s.pass(ctx, sleepCtx(ctx)); err != nil {
		return 0, nil, err
	}
	defer func() { <-s.sem }()
	resp, err := s.clients[0].Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ErrInterrupted
		}
		return 0, nil, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("read %s: %w", url, err)
	}
	return resp.StatusCode, data, nil
}

// sleepCtx returns a sleep for pass that waits on a timer of its own.
func sleepCtx(ctx context.Context) func(time.Time) bool {
	return func(until time.Time) bool {
		d := time.Until(until)
		if d <= 0 {
			return ctx.Err() == nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// stepState is what a step's controller sees before each send.
type stepState struct {
	obs   []*obs // in send order
	start time.Time
	// replies counts the responses read so far.
	replies int
	// gaps records the largest sending interval used since the first
	// rejection (the rate estimate's quantization).
	maxGap      time.Duration
	firstReject int // seq of the first 429 in send order; -1 before
	// maxRequests is the step's request cap (0: none); the planner may
	// raise it once it knows what it measures.
	maxRequests int
}

// step is one measuring step: a controller decides the interval to the
// next send and when the step is done.
type step struct {
	name    string
	vary    bool
	clients int // 1, or 2 to alternate the two credentials
	// maxRequests and maxDur bound the step (0: no bound of its own).
	maxRequests int
	maxDur      time.Duration
	// control returns the interval before the next send, or done. It runs
	// with the step's lock held.
	control func(st *stepState) (gap time.Duration, done bool)
	// plan, when set, replaces control: it returns the instant of the next
	// send (since the step's first one; the gate may make it later), or
	// await to be asked again once another response has arrived (or 50 ms
	// later), or done. It is asked again whenever a response arrives before
	// the instant. It runs with the step's lock held.
	plan func(st *stepState) (at time.Duration, await, done bool)
}

// stepResult is what one step observed.
type stepResult struct {
	name     string
	vary     bool
	clients  int
	obs      []*obs // completed requests only, in send order
	duration time.Duration
	maxGap   time.Duration
	capped   bool // stopped by its request or time cap
	timedOut bool // the cap was the time bound, not the request count
	// start is the wall-clock instant of the step's first send.
	start time.Time
}

// run executes st. The error, when not nil, is why the whole probe must
// stop (budget, errors, interruption); the result holds what ran anyway.
func (s *sender) run(ctx context.Context, st *step) (*stepResult, error) {
	var mu sync.Mutex
	state := &stepState{start: time.Now(), firstReject: -1, maxRequests: st.maxRequests}
	res := &stepResult{name: st.name, vary: st.vary, clients: max(st.clients, 1)}
	var stop error
	var next time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	sleep := func(until time.Time) bool {
		d := time.Until(until)
		if d <= 0 {
			return ctx.Err() == nil
		}
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	arrived := make(chan struct{}, 1)
	// waitOrArrival sleeps for d, or until a response arrives or ctx ends.
	waitOrArrival := func(d time.Duration) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-arrived:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	for seq := 0; ; {
		if ctx.Err() != nil {
			stop = ErrInterrupted
			break
		}
		if s.failed.Load() {
			stop = fmt.Errorf("%w: %v", ErrServerErrors, s.lastErr.Load())
			break
		}
		var gap time.Duration
		if st.plan != nil {
			// Decide at the instant the gate would let the request go, with
			// every response read by then.
			if gate, _ := s.guard.Earliest(1); time.Until(gate) > 200*time.Microsecond {
				waitOrArrival(time.Until(gate))
				continue
			}
			mu.Lock()
			at, await, done := st.plan(state)
			pending := seq > state.replies
			mu.Unlock()
			if done {
				break
			}
			wait := time.Duration(-1)
			if await {
				wait = 50 * time.Millisecond
			} else if seq > 0 {
				if st.maxDur > 0 && at >= st.maxDur && !pending {
					// The next probe would go after the step's bound,
					// and no answer is on its way to change that: end
					// the step now rather than wait to send nothing (the
					// aligned 30 per 10 s without headers waited 7 s
					// past its 45 s for a probe the bound then refused).
					res.capped, res.timedOut = true, true
					break
				}
				if d := time.Until(state.start.Add(at)); d > time.Millisecond {
					wait = d
				}
			}
			if wait >= 0 {
				// Sleep until the planned instant, but plan again as soon
				// as a response arrives: it may change the plan.
				waitOrArrival(wait)
				continue
			}
		} else {
			mu.Lock()
			g, done := st.control(state)
			if state.firstReject >= 0 && g > state.maxGap {
				state.maxGap = g
			}
			mu.Unlock()
			if done {
				break
			}
			gap = g
		}
		if (state.maxRequests > 0 && seq >= state.maxRequests) || (st.maxDur > 0 && time.Since(state.start) >= st.maxDur) {
			res.capped = true
			res.timedOut = !(state.maxRequests > 0 && seq >= state.maxRequests)
			break
		}
		if err := s.spent(); err != nil {
			stop = err
			break
		}
		if st.plan == nil && seq > 0 && !sleep(next) {
			stop = ErrInterrupted
			break
		}
		now, err := s.pass(ctx, sleep)
		if err != nil {
			stop = err
			break
		}
		if seq == 0 {
			state.start = now
		}
		if next.IsZero() || now.Sub(next) > gap {
			next = now // behind schedule: no catching up
		}
		next = next.Add(gap)
		o := &obs{seq: seq, at: now.Sub(state.start), client: seq % res.clients, retryAfter: -1, reset: -1, remaining: -1}
		seq++
		mu.Lock()
		state.obs = append(state.obs, o)
		mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.sem }()
			r := s.do(ctx, st.vary, o.client, o.seq, now)
			mu.Lock()
			defer mu.Unlock()
			if r.interrupted {
				return
			}
			o.status, o.err, o.policy, o.retryAfter, o.reset, o.remaining = r.status, r.err, r.policy, r.retryAfter, r.reset, r.remaining
			o.exactRetry = r.exactRetry
			o.done = true
			o.end = time.Since(state.start)
			state.replies++
			select {
			case arrived <- struct{}{}:
			default:
			}
			if o.status == http.StatusTooManyRequests && (state.firstReject < 0 || o.seq < state.firstReject) {
				state.firstReject = o.seq
			}
		}()
	}
	s.wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	res.duration = time.Since(state.start)
	res.maxGap = state.maxGap
	res.start = state.start
	for _, o := range state.obs {
		if o.done {
			res.obs = append(res.obs, o)
		}
	}
	if stop == nil && ctx.Err() != nil {
		stop = ErrInterrupted
	}
	return res, stop
}

// reply is one response, reduced to what the probe uses.
type reply struct {
	status      int
	err         string
	policy      string
	retryAfter  time.Duration
	reset       time.Duration
	remaining   int64
	exactRetry  bool
	interrupted bool
}

// do sends one request and records its rate-limit information.
func (s *sender) do(ctx context.Context, vary bool, client, seq int, now time.Time) reply {
	row := make([]string, len(s.cfg.Vary))
	for i := range s.cfg.Vary {
		v := &s.cfg.Vary[i]
		if vary {
			row[s.cols[v.Name]] = v.Next()
		} else {
			row[s.cols[v.Name]] = v.Fixed
		}
	}
	u, h, body, err := s.target.Build(&load.Vars{Thread: client + 1, Seq: uint64(seq), Row: row, Now: now}, nil)
	if err != nil {
		return s.fail(reply{err: err.Error()})
	}
	req, err := http.NewRequestWithContext(ctx, s.target.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return s.fail(reply{err: err.Error()})
	}
	if len(body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := s.clients[client].Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return reply{interrupted: true}
		}
		return s.fail(reply{err: err.Error()})
	}
	defer resp.Body.Close()
	r := reply{status: resp.StatusCode}
	var rbody []byte
	if resp.StatusCode == http.StatusTooManyRequests {
		rbody, _ = io.ReadAll(io.LimitReader(resp.Body, limit.MaxBodyRead))
	}
	adv := limit.ParseResponse(resp.Header, rbody, time.Now())
	r.policy, r.retryAfter, r.reset, r.remaining = adv.Policy, adv.RetryAfter, adv.Reset, adv.Remaining
	r.exactRetry = adv.Stated != nil && adv.Stated.RetryAfter > 0
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)); err != nil && ctx.Err() != nil {
		return reply{interrupted: true}
	}
	s.keepHeaders(resp, adv)
	if resp.StatusCode >= 500 {
		return s.fail(reply{status: resp.StatusCode, err: resp.Status})
	}
	s.errRun.Store(0)
	return r
}

// fail counts an error towards the run that stops the probe.
func (s *sender) fail(r reply) reply {
	s.lastErr.Store(r.err)
	if s.errRun.Add(1) >= int64(s.cfg.maxErrors()) {
		s.failed.Store(true)
	}
	return r
}

// keepHeaders records the first line of each rate-limit header and each
// status seen, as evidence.
func (s *sender) keepHeaders(resp *http.Response, adv limit.Advertised) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := !s.firstSet
	if first {
		s.firstSet, s.firstAdv, s.firstStatus = true, adv, resp.StatusCode
	}
	names := make([]string, 0, len(resp.Header))
	for name := range resp.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		vs := resp.Header[name]
		l := strings.ToLower(name)
		if !strings.Contains(l, "ratelimit") && l != "retry-after" {
			continue
		}
		if first {
			s.firstHdr = append(s.firstHdr, name+": "+strings.Join(vs, ", "))
		}
		key := fmt.Sprintf("%d %s", resp.StatusCode, l)
		if s.seenHdr[key] || len(s.headers) >= 40 {
			continue
		}
		s.seenHdr[key] = true
		s.headers = append(s.headers, fmt.Sprintf("%d %s: %s", resp.StatusCode, name, strings.Join(vs, ", ")))
	}
}

func (s *sender) headerLines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.headers...)
}

// firstReject returns the index in obs (send order) of the first 429, or
// -1.
func firstReject(obs []*obs) int {
	for i, o := range obs {
		if o.rejected() {
			return i
		}
	}
	return -1
}
