package load

// The executor's request path: a worker runs the plan's requests of one
// iteration, builds each request, sends it (through net/http here, or the
// worker-driven path of http1_perf.go) and delivers its Result.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"ratelab/limit"
)

// maxBuffer caps the buffers a worker keeps from request to request.
const maxBuffer = 64 << 10

// worker is one virtual user (closed model) or pool worker (open model).
// Its buffers, its Result and its request are reused from request to
// request. It is used by one goroutine.
type worker struct {
	r      *runner
	thread int
	sleep  *sleeper
	vars   Vars
	res    Result
	tt     ThroughputThread
	// pendingWait is the Retry-After the last response asked for.
	pendingWait time.Duration
	// hold is the next request's draw on a limit (holdWindow), for do.
	hold    hold
	bodyBuf []byte // 429 bodies
	keptBuf []byte // bodies kept for a flow
	resp    response
	// jar, for a flow with cookies, is the user's cookie jar;
	// customHeader says the request's header is not its target's static
	// one (a Cookie was added), so the wire bytes must be built.
	jar          http.CookieJar
	customHeader bool
	// user is the flow's virtual user this worker runs (nil for a Plan).
	user *user

	// The net/http path: a trace made on first use, and what it saw.
	trace     *httptrace.ClientTrace
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

// newWorker returns worker thread of the run; ctx is the run's: when it
// ends, the worker's request in flight is abandoned.
func (r *runner) newWorker(ctx context.Context, thread int) *worker {
	w := &worker{r: r, thread: thread, sleep: newSleeper()}
	w.vars.Thread = thread
	if r.flow != nil {
		r.flow.newUser(w)
	}
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

// traced returns ctx with the trace of the worker's net/http requests.
func (w *worker) traced(ctx context.Context) context.Context {
	if w.trace == nil {
		w.trace = &httptrace.ClientTrace{
			ConnectStart: func(string, string) { w.connStart.CompareAndSwap(0, time.Now().UnixNano()) },
			GotConn: func(info httptrace.GotConnInfo) {
				w.reused.Store(info.Reused)
				w.gotConn.Store(time.Now().UnixNano())
			},
			GotFirstResponseByte: func() { w.firstByte.Store(time.Now().UnixNano()) },
		}
	}
	return httptrace.WithClientTrace(ctx, w.trace)
}

func (w *worker) close() {
	if w.user != nil && w.user.started {
		w.user.g.run.allUsers.Add(-1)
	}
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
		held, ok := w.holdWindow(stopCtx, t)
		if !ok {
			return false
		}
		if held > 0 {
			// A hold is a wait, like a Retry-After's: recorded in Waited,
			// and the intended instant moves with it.
			wait += held
			if !intended.IsZero() {
				intended = intended.Add(held)
			}
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
	if res := w.do(ctx, t, intended, waited, false); res != nil {
		w.deliver(res)
	}
}

// response is what a flow's extractors and assertions read of the last
// response: kept only when do is asked to.
type response struct {
	header http.Header
	status string // "200 OK"
	body   []byte
	// url and reqHeader are the request's, for embedded resources.
	url       *url.URL
	reqHeader http.Header
}

// maxKeptBody bounds the body kept for extractors and assertions.
const maxKeptBody = 16 << 20

// do sends one request and returns its result, not yet delivered; nil
// when the run was interrupted. With keep the response's header, status
// line and body (up to maxKeptBody) are kept in w.resp.
func (w *worker) do(ctx context.Context, t *Target, intended time.Time, waited time.Duration, keep bool) *Result {
	r := w.r
	res := &w.res
	hd := w.hold // the request's draw on a limit (holdWindow)
	w.hold = hold{}
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
		if now.IsZero() {
			now = time.Now()
		}
		res.Start, res.Intended, res.Error = now, now, err.Error()
		r.holds.abandon(t, hd)
		return res
	}
	w.customHeader = false
	if w.jar != nil {
		if cs := w.jar.Cookies(u); len(cs) > 0 {
			h = h.Clone()
			var b strings.Builder
			for i, c := range cs {
				if i > 0 {
					b.WriteString("; ")
				}
				b.WriteString(c.Name + "=" + c.Value)
			}
			h.Set("Cookie", b.String())
			w.customHeader = true
		}
	}
	if fast && t.staticBody == nil && cap(body) <= maxBuffer {
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
		resp, start, err = w.doStd(ctx, t, u, h, body, res, intended)
	}
	if err != nil {
		r.holds.abandon(t, hd)
		if ctx.Err() != nil {
			return nil // interrupted: not a result of the target
		}
		res.Elapsed = time.Since(start)
		res.Error = err.Error()
		return res
	}
	res.Status = resp.StatusCode
	var rejection []byte // a 429's body, which may say the policy and the delay
	if keep {
		w.resp.header, w.resp.status = resp.Header, resp.Status
		w.resp.url, w.resp.reqHeader = u, h
		var buf *bytes.Buffer
		buf, res.BytesIn, err = w.keepBody(resp.Body)
		w.resp.body = buf.Bytes()
		if resp.StatusCode == http.StatusTooManyRequests {
			rejection = w.resp.body[:min(len(w.resp.body), limit.MaxBodyRead)]
		}
	} else if resp.StatusCode == http.StatusTooManyRequests {
		rejection, res.BytesIn, err = w.readRejection(resp.Body)
	} else {
		res.BytesIn, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	end := time.Now()
	// Delays are counted from the response's end: a reset the server
	// gave as a delay is then never early (see limit.ResetTracker).
	adv := limit.ParseHeaders(resp.Header, end)
	if r.holds != nil {
		// The headers alone say which limit this is: a 429 body may name
		// the policy that headers leave unnamed.
		r.holds.observe(t, hd, resp.StatusCode, resp.Header, &adv, end)
	}
	if rejection != nil {
		adv = limit.ParseResponse(resp.Header, rejection, end)
	}
	res.Elapsed = end.Sub(start)
	if c != nil {
		w.inflight.Store(nil)
		c.pool.put(c, err == nil && !resp.Close && ctx.Err() == nil, end)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		res.Error = "read body: " + err.Error()
	}
	if w.jar != nil {
		if cs := resp.Cookies(); len(cs) > 0 {
			w.jar.SetCookies(u, cs)
		}
	}
	if c == nil {
		w.fromTrace(res, start)
	}
	res.Policy = adv.Policy
	if adv.RetryAfter > 0 {
		res.RetryAfter = adv.RetryAfter
	}
	res.Remaining = adv.Remaining
	if len(adv.Raw) > 0 {
		res.RateLimitRaw = append(raw, adv.Raw...)
	}
	if res.RetryAfter > 0 && r.cfg.RetryAfter == RetryHonor {
		if r.pause != nil {
			r.pause.pause(end.Sub(r.start) + res.RetryAfter)
		} else {
			w.pendingWait = res.RetryAfter
		}
	}
	return res
}

// keepBody reads body into the worker's kept buffer, up to maxKeptBody,
// and discards the rest; n is the whole body's size.
func (w *worker) keepBody(body io.Reader) (buf *bytes.Buffer, n int64, err error) {
	buf = bytes.NewBuffer(w.keptBuf[:0])
	n, err = buf.ReadFrom(io.LimitReader(body, maxKeptBody))
	rest, err2 := io.Copy(io.Discard, body)
	if err == nil {
		err = err2
	}
	if buf.Cap() <= maxBuffer {
		w.keptBuf = buf.Bytes()[:0]
	}
	return buf, n + rest, err
}

// started sets the result's send times: Start is now, and Intended the
// schedule's instant (Start when nothing paced the request, or when the
// request went out early).
func (w *worker) started(res *Result, intended time.Time) time.Time {
	start := time.Now()
	res.Start = start
	res.Intended = start
	if !intended.IsZero() && intended.Before(start) {
		res.Intended = intended
	}
	return start
}

// doStd sends the request through the run's http.Client.
func (w *worker) doStd(ctx context.Context, t *Target, u *url.URL, h http.Header, body []byte, res *Result, intended time.Time) (*http.Response, time.Time, error) {
	req := &http.Request{Method: t.Method, URL: u, Host: u.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	req = req.WithContext(w.traced(ctx))
	w.connStart.Store(0)
	w.firstByte.Store(0)
	w.reused.Store(true)
	start := w.started(res, intended)
	resp, err := w.r.cfg.Client.Do(req)
	return resp, start, err
}

// fromTrace sets TTFB and Connect from what the trace of a net/http
// request saw.
func (w *worker) fromTrace(res *Result, start time.Time) {
	if fb := w.firstByte.Load(); fb > 0 {
		res.TTFB = time.Duration(fb - start.UnixNano())
	}
	if !w.reused.Load() {
		if cs, gc := w.connStart.Load(), w.gotConn.Load(); cs > 0 && gc >= cs {
			res.Connect = time.Duration(gc - cs)
		}
	}
}

func (w *worker) deliver(res *Result) {
	w.r.sent.Add(1)
	if res.Waited > 0 {
		w.r.held.Add(1)
		w.r.heldFor.Add(int64(res.Waited))
	}
	w.r.cfg.Sink(res)
}

// readRejection reads up to limit.MaxBodyRead bytes of a 429's body, for
// the policy and retry delay it may state, and discards the rest; n is the
// whole body's size.
func (w *worker) readRejection(body io.Reader) (head []byte, n int64, err error) {
	if w.bodyBuf == nil {
		w.bodyBuf = make([]byte, 0, 4096)
	}
	buf := bytes.NewBuffer(w.bodyBuf[:0])
	n, err = buf.ReadFrom(io.LimitReader(body, limit.MaxBodyRead))
	rest, err2 := io.Copy(io.Discard, body)
	if err == nil {
		err = err2
	}
	if buf.Cap() <= limit.MaxBodyRead {
		w.bodyBuf = buf.Bytes()[:0]
	}
	return buf.Bytes(), n + rest, err
}
