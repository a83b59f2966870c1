package httpapi

// The server's middleware, all of it, in the order a request meets it:
//
//	ServeHTTP       panic recovery, request metrics; unmatched paths go to
//	                serveUnmatched (404/405 in the error shape, after the limiter)
//	serveCall       authentication → preparation (what the tiers need: the
//	                script ids of a write, the client id of a token request)
//	                → admit → the route's handler
//	admit           ONE limiter decision over the tiers that tiersFor
//	                computes (all-or-nothing), the rate-limit headers, the 429
//	fail            the error shape; internal errors logged and counted
//
// The tiers of a request are a value, computed by the pure function
// tiersFor (tiers.go), which GET /api/v2/ratelimits calls as well.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"ratelab"
	"ratelab/limit"
	"ratelab/wire"
)

// statusWriter records the status for metrics and whether anything was
// written, for panic recovery.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP serves the API. It is the outermost stage: panic recovery and
// request metrics around the route table.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	label := "unmatched"
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if sw.status == 0 {
				writeError(sw, ratelab.Errorf(ratelab.EINTERNAL, "Internal error."))
			}
		}
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		s.metrics.observe(label, r.Method, status, time.Since(start))
	}()
	if err := checkRequest(r); err != nil {
		writeError(sw, err)
		return
	}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		s.serveUnmatched(sw, r, h)
		return
	}
	label = pattern
	s.mux.ServeHTTP(sw, r)
}

func (s *Server) routeHandler(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveCall(&call{w: w, r: r, rt: rt})
	})
}

// serveUnmatched answers a request no route matches: the mux decides
// between 404, 405 (with Allow) and a redirect to the clean path; the
// first two are written in the API's error shape, after the limiter
// (callers with a valid token count against their org and client tiers,
// others against the unauthenticated ones).
func (s *Server) serveUnmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status != http.StatusNotFound && rec.status != http.StatusMethodNotAllowed {
		// A redirect to the clean path: its Location, without the mux's
		// HTML body.
		for k, v := range rec.header {
			if k != "Content-Type" && k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.status)
		return
	}
	c := &call{w: w, r: r}
	if r.Header.Get("Authorization") != "" {
		if cl, err := s.authenticate(r); err == nil {
			c.client = cl
		}
	}
	var lease limit.Lease
	if !s.admit(c, nil, &lease) {
		return
	}
	defer s.release(&lease)
	if rec.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		writeError(w, ratelab.Errorf(wire.CodeMethodNotAllowed, "Method %s is not allowed on %s; allowed: %s.", r.Method, r.URL.Path, rec.header.Get("Allow")))
		return
	}
	writeError(w, ratelab.Errorf(ratelab.ENOTFOUND, "No route for %s %s.", r.Method, r.URL.Path))
}

// checkRequest refuses, in the error shape, what net/http lets through to
// the handler but the API does not take: a request target over
// MaxURIBytes (414), a request line and headers over MaxHeaderBytes (431),
// a query string with malformed escapes (400; url.Query would drop the
// pair silently). What net/http refuses itself is in doc.go.
func checkRequest(r *http.Request) error {
	if len(r.RequestURI) > MaxURIBytes {
		return ratelab.Errorf(wire.CodeURITooLong, "The request target is %d bytes; at most %d allowed.", len(r.RequestURI), MaxURIBytes)
	}
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len("Host: \r\n") + len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	if n > MaxHeaderBytes {
		return ratelab.Errorf(wire.CodeHeaderTooLarge, "The request line and headers are %d bytes; at most %d allowed.", n, MaxHeaderBytes)
	}
	if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
		return ratelab.Errorf(ratelab.EINVALID, "Malformed query string: %s.", err)
	}
	return nil
}

// recorder captures what the mux's own 404, 405 or redirect handler writes.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// serveCall runs one routed request: authentication, preparation, the
// limiter decision, then the handler.
func (s *Server) serveCall(c *call) {
	rt := c.rt
	var authErr, prepErr error
	if rt.auth {
		c.client, authErr = s.authenticate(c.r)
		if authErr != nil && ratelab.ErrorCode(authErr) != ratelab.EUNAUTHORIZED {
			s.fail(c, authErr)
			return
		}
	}
	if authErr == nil && rt.prepare != nil {
		prepErr = rt.prepare(s, c)
	}
	var lease limit.Lease
	if rt.class != "" && !rt.selfAdmit && !s.admit(c, authErr, &lease) {
		return
	}
	// The slots of concurrency tiers are held while the handler runs, and
	// freed when it has written its response, returned early because the
	// client went away (the stores' calls end with the request's context),
	// or panicked (ServeHTTP then writes the 500).
	defer s.release(&lease)
	if authErr != nil {
		writeError(c.w, authErr)
		return
	}
	if prepErr != nil {
		s.fail(c, prepErr)
		return
	}
	if err := rt.handle(s, c); err != nil {
		s.fail(c, err)
	}
}

// fail writes err in the error shape; an internal error is logged with
// the request and counted, and shown only as "Internal error.".
func (s *Server) fail(c *call, err error) {
	if ratelab.ErrorCode(err) == ratelab.EINTERNAL {
		s.metrics.storeErrors.Inc()
		s.log.Error("request failed", "method", c.r.Method, "path", c.r.URL.Path, "err", err)
	}
	writeError(c.w, err)
}

// limitCall is the pooled scratch space of one limiter decision.
type limitCall struct {
	req limit.Request
	d   limit.Decision
}

// admit takes the request's one limiter decision over every matching
// tier, writes the rate-limit headers, and on rejection writes the 429.
// It reports whether the request may proceed; the slots it acquired on
// concurrency tiers are in lease, which the caller releases (release)
// when the response is complete. unauthErr marks a request to an
// authenticated route that failed authentication.
func (s *Server) admit(c *call, unauthErr error, lease *limit.Lease) bool {
	ps := s.policies.Load()
	lc := s.decPool.Get().(*limitCall)
	defer s.decPool.Put(lc)
	req := &lc.req
	*req = limit.Request{Tiers: req.Tiers[:0], Cost: 1}
	if c.rt != nil && c.rt.peek {
		req.Cost = 0
	}
	who := caller{tokenClient: c.tokenClient, addr: remoteHost(c.r)}
	if unauthErr == nil {
		who.client = c.client
	}
	req.Group, req.Tiers = tiersFor(req.Tiers, ps, c.rt, who, c.scriptIDs)
	if len(req.Tiers) == 0 {
		return true
	}
	if s.fixedNow {
		req.Now = s.now()
	}
	d := &lc.d
	if err := s.decide(c.r.Context(), req, d); err != nil {
		s.fail(c, err)
		return false
	}
	s.metrics.countDecision(d)
	s.setHeaders(c.w.Header(), d)
	if d.Allowed {
		// The pooled Decision is reused; the lease's Tiers never are.
		*lease = d.Lease
		return true
	}
	s.writeRejection(c.w, rejection(d, c, ps))
	return false
}

// releaseTimeout bounds the release of a lease: a store that cannot
// answer in time leaves the slots to expire after their lease.
const releaseTimeout = 5 * time.Second

// release frees the slots of a request's concurrency tiers. It does not
// use the request's context, which ends when the client goes away: the
// slot must be freed then too. A store that fails to release (Redis
// unreachable) leaves the slots to expire after the policy's lease; that
// is logged and counted, never shown to the client, whose response is
// already written.
func (s *Server) release(l *limit.Lease) {
	if !l.Held() {
		return
	}
	rel, ok := s.limiter.(limit.Releaser)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := rel.Release(ctx, l); err != nil {
		s.metrics.limiterErrors.Inc()
		s.log.Warn("release concurrency slots: they free when their lease expires", "lease", l.ID, "err", err)
	}
}

// decide takes the limiter's decision. The limiter store owns its
// failures (see Config.Limiter): the server adds no fallback of its own,
// which would undo a store's choice to fail closed and hide real errors.
// An unavailable store becomes EUNAVAILABLE (503 with Retry-After); any
// other error stays internal.
func (s *Server) decide(ctx context.Context, req *limit.Request, d *limit.Decision) error {
	err := s.limiter.Decide(ctx, req, d)
	if err == nil {
		return nil
	}
	s.metrics.limiterErrors.Inc()
	if errors.Is(err, limit.ErrUnavailable) {
		// Not logged per request: the store logs the outage once.
		return fmt.Errorf("limiter: %w: %w", ratelab.Errorf(ratelab.EUNAVAILABLE, "The rate limiter is unavailable, so no request is admitted; retry later."), err)
	}
	return fmt.Errorf("limiter: %w", err)
}

// rejection builds the 429 body for a rejected decision.
func rejection(d *limit.Decision, c *call, ps *Policies) *wire.ErrorBody {
	lim := d.Limit()
	p := ps.byName[lim.Policy.Name]
	retryMs := (d.RetryAfter + time.Millisecond - 1) / time.Millisecond
	st := limitState(p, lim)
	st.RetryAfterMs = int64(retryMs)
	body := &wire.ErrorBody{
		Code:    ratelab.ERATELIMITED,
		Status:  http.StatusTooManyRequests,
		Message: fmt.Sprintf("%s allows %s, for %s; retry in %d ms", p.Name, describe(&p.Policy), scopeText(p, lim.Key, c), retryMs),
		Limit:   &st,
	}
	for i := range d.Tiers {
		ts := &d.Tiers[i]
		if !ts.Allowed && !ts.Policy.Shadow {
			if n := len(body.ViolatedPolicies); n == 0 || body.ViolatedPolicies[n-1] != ts.Policy.Name {
				body.ViolatedPolicies = append(body.ViolatedPolicies, ts.Policy.Name)
			}
		}
	}
	return body
}

// describe says what a policy allows, in its algorithm's terms: "2 per
// second, burst 4", "300 per minute in fixed windows", "300 per minute in
// a sliding window", "4 requests in flight".
func describe(p *limit.Policy) string {
	switch p.Algorithm {
	case limit.FixedWindow:
		s := p.Rate.Describe() + " in fixed windows"
		if p.AlignFirst {
			s += " from the first request"
		}
		return s
	case limit.SlidingWindow:
		return p.Rate.Describe() + " in a sliding window"
	case limit.Concurrency:
		return fmt.Sprintf("%d requests in flight", p.Concurrency)
	}
	return fmt.Sprintf("%s, burst %d", p.Rate.Describe(), p.Burst)
}

// limitState describes tier ts of policy p in its algorithm's terms
// (see wire.LimitState), for 429 bodies and GET /api/v2/ratelimits.
func limitState(p *Policy, ts *limit.TierState) wire.LimitState {
	st := wire.LimitState{
		Policy: p.Name, Scope: p.Scope, Key: ts.Key, Shadow: p.Shadow, CountRejected: p.CountRejected,
		Remaining: ts.Remaining, ResetAfterMs: ts.ResetAfter.Milliseconds(),
	}
	switch p.Algorithm {
	case limit.GCRA:
		st.Limit, st.Window, st.Burst = p.Rate.Count, p.Rate.Period.String(), p.Burst
	case limit.FixedWindow, limit.SlidingWindow:
		st.Algorithm, st.Limit, st.Window = p.Algorithm.String(), p.Rate.Count, p.Rate.Period.String()
		if p.AlignFirst {
			st.Align = "first"
		}
	case limit.Concurrency:
		st.Algorithm, st.Limit, st.Lease = p.Algorithm.String(), p.Concurrency, p.Lease.String()
	}
	return st
}

func scopeText(p *Policy, key string, c *call) string {
	switch p.Scope {
	case wire.ScopeOrg:
		return "org " + key
	case wire.ScopeOrgRouteClass:
		return "route class " + key + " of org " + c.client.OrgID
	case wire.ScopeOrgScript:
		return "script " + key
	}
	if after, ok := strings.CutPrefix(key, "addr:"); ok {
		return "address " + after
	}
	if after, ok := strings.CutPrefix(key, "client:"); ok {
		return "client " + after
	}
	return "client " + key
}

// remoteHost returns the IP of the peer. Forwarding headers are not
// trusted: the server is meant to be reached directly.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
