package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"ratelab"
	"ratelab/limit"
	"ratelab/wire"
)

// route is one operation of the API: its ServeMux pattern, its route
// class for policy matching, whether it needs a bearer token, and its
// handler. The openapi fields describe it in /openapi.json.
type route struct {
	method, pattern string
	// class is the primary route class; "" means not rate limited.
	class string
	auth  bool
	// peek makes the route's limiter decision cost 0: it reports state and
	// consumes nothing.
	peek bool
	// prepare runs before the limiter decision, after authentication, to
	// gather what the tiers need (the script ids of a write, the client id
	// of a token request). Its error is written after the decision, so
	// the response still carries the rate-limit headers.
	prepare func(s *Server, c *call) error
	handle  func(s *Server, c *call) error
	index   int

	summary  string
	request  string // schema name of the JSON body, or "form"
	response string // schema name of the success body
	status   int    // success status
	errors   []int  // documented error statuses besides the common ones
}

// inClass reports whether the route is in the route class c.
func (rt *route) inClass(c string) bool {
	switch {
	case rt.class == "":
		return false
	case c == rt.class:
		return true
	case !rt.auth:
		return false
	case c == ClassAll:
		return true
	case c == ClassReads:
		return rt.method == http.MethodGet
	case c == ClassWrites:
		return rt.method != http.MethodGet
	}
	return false
}

// apiRoutes returns the API's route table, in the order of the OpenAPI
// document.
func apiRoutes() []route {
	return []route{
		{method: "POST", pattern: wire.TokenPath, class: ClassToken, prepare: (*Server).prepareToken, handle: (*Server).handleToken,
			summary: "Issue an access token (OAuth 2.0 client-credentials grant)", request: "form", response: "Token", status: 200, errors: []int{400, 401, 413, 415}},
		{method: "GET", pattern: wire.ScriptsPath, class: ClassScriptReads, auth: true, handle: (*Server).handleListScripts,
			summary: "List the org's scripts, one page at a time", response: "ScriptPage", status: 200, errors: []int{400}},
		{method: "POST", pattern: wire.ScriptsPath, class: ClassScriptWrites, auth: true, handle: (*Server).handleCreateScript,
			summary: "Create a script at version 1", request: "ScriptCreate", response: "Script", status: 201, errors: []int{400, 413, 415, 422}},
		{method: "POST", pattern: wire.BulkPath, class: ClassScriptWrites, auth: true, prepare: (*Server).prepareBulk, handle: (*Server).handleBulk,
			summary: "Update up to 50 scripts in one request; each item has its own result", request: "BulkRequest", response: "BulkResponse", status: 200, errors: []int{400, 413, 415, 422}},
		{method: "GET", pattern: wire.ScriptPath, class: ClassScriptReads, auth: true, handle: (*Server).handleGetScript,
			summary: "Get a script", response: "Script", status: 200, errors: []int{404}},
		{method: "PUT", pattern: wire.ScriptPath, class: ClassScriptWrites, auth: true, prepare: (*Server).preparePathScript, handle: (*Server).handlePutScript,
			summary: "Replace a script's name and text (creates it when unknown); If-Match or version make it a compare-and-swap", request: "ScriptPut", response: "Script", status: 200, errors: []int{400, 409, 412, 413, 415, 422}},
		{method: "DELETE", pattern: wire.ScriptPath, class: ClassScriptWrites, auth: true, prepare: (*Server).preparePathScript, handle: (*Server).handleDeleteScript,
			summary: "Delete a script and its versions", status: 204, errors: []int{404}},
		{method: "GET", pattern: wire.VersionsPath, class: ClassScriptReads, auth: true, handle: (*Server).handleVersions,
			summary: "List a script's versions, newest first", response: "VersionPage", status: 200, errors: []int{400, 404}},
		{method: "GET", pattern: wire.UsersPath, class: ClassUsers, auth: true, handle: (*Server).handleUsers,
			summary: "List the org's users", response: "UserList", status: 200},
		{method: "GET", pattern: wire.RateLimitsPath, class: ClassRateLimits, auth: true, peek: true, handle: (*Server).handleRateLimits,
			summary: "The policies that apply to the caller and their current state; consumes no quota", response: "RateLimits", status: 200},
		{method: "GET", pattern: "/healthz", handle: (*Server).handleHealthz,
			summary: "The process is up", response: "Health", status: 200},
		{method: "GET", pattern: "/readyz", handle: (*Server).handleReadyz,
			summary: "The replica can serve: the database is reachable and the limiter decides (status degraded while it decides locally)", response: "Health", status: 200, errors: []int{503}},
		{method: "GET", pattern: "/metrics", handle: (*Server).handleMetrics,
			summary: "Prometheus metrics", response: "text", status: 200},
		{method: "GET", pattern: "/openapi.json", handle: (*Server).handleOpenAPI,
			summary: "This OpenAPI document", response: "object", status: 200},
	}
}

// call is one request in flight through a route.
type call struct {
	w  http.ResponseWriter
	r  *http.Request
	rt *route // nil for an unknown route
	// client is the authenticated caller; nil on unauthenticated routes.
	client *ratelab.Client
	// scriptIDs are the scripts the request writes: one tier each.
	scriptIDs []string
	// tokenClient is the client id a token request presents.
	tokenClient string
	bulk        *wire.BulkRequest
}

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

// serveHTTP is the server's outermost handler: panic recovery and request
// metrics around the route table.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
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
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		w.Write(rec.body.Bytes())
		return
	}
	c := &call{w: w, r: r}
	if r.Header.Get("Authorization") != "" {
		if cl, err := s.authenticate(r); err == nil {
			c.client = cl
		}
	}
	if !s.admit(c, nil) {
		return
	}
	if rec.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		writeError(w, ratelab.Errorf(wire.CodeMethodNotAllowed, "Method %s is not allowed on %s; allowed: %s.", r.Method, r.URL.Path, rec.header.Get("Allow")))
		return
	}
	writeError(w, ratelab.Errorf(ratelab.ENOTFOUND, "No route for %s %s.", r.Method, r.URL.Path))
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
	if rt.class != "" && !s.admit(c, authErr) {
		return
	}
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
// It reports whether the request may proceed. unauthErr marks a request
// to an authenticated route that failed authentication.
func (s *Server) admit(c *call, unauthErr error) bool {
	ps := s.policies.Load()
	lc := s.decPool.Get().(*limitCall)
	defer s.decPool.Put(lc)
	req := &lc.req
	*req = limit.Request{Tiers: req.Tiers[:0], Cost: 1}
	if c.rt != nil && c.rt.peek {
		req.Cost = 0
	}
	var matching []*Policy
	authed := c.client != nil && unauthErr == nil
	switch {
	case !authed && (c.rt == nil || c.rt.auth):
		matching = ps.unauth
	case c.rt == nil:
		matching = ps.other
	case c.rt.index < len(ps.byRoute):
		matching = ps.byRoute[c.rt.index]
	}
	if authed {
		req.Group = c.client.OrgID
	} else {
		req.Group = "token"
	}
	for _, p := range matching {
		req.Tiers = s.appendTiers(req.Tiers, p, c, authed)
	}
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
	limit.SetHeaders(c.w.Header(), d)
	if d.Allowed {
		return true
	}
	writeJSON(c.w, http.StatusTooManyRequests, rejection(d, c, ps))
	return false
}

// appendTiers appends p's tiers for the call: one, or one per script for
// the per-script scope, or none when the scope does not apply.
func (s *Server) appendTiers(tiers []limit.Tier, p *Policy, c *call, authed bool) []limit.Tier {
	switch p.Scope {
	case wire.ScopeClient:
		switch {
		case authed:
			return append(tiers, limit.Tier{Policy: &p.Policy, Key: c.client.ID})
		case c.tokenClient != "":
			return append(tiers, limit.Tier{Policy: &p.Policy, Key: "client:" + c.tokenClient})
		}
		return append(tiers, limit.Tier{Policy: &p.Policy, Key: "addr:" + remoteHost(c.r)})
	case wire.ScopeOrg:
		if authed {
			return append(tiers, limit.Tier{Policy: &p.Policy, Key: c.client.OrgID})
		}
	case wire.ScopeOrgRouteClass:
		if authed {
			class := "other"
			if c.rt != nil {
				class = c.rt.class
			}
			return append(tiers, limit.Tier{Policy: &p.Policy, Key: class})
		}
	case wire.ScopeOrgScript:
		if authed {
			for _, id := range c.scriptIDs {
				tiers = append(tiers, limit.Tier{Policy: &p.Policy, Key: id})
			}
		}
	}
	return tiers
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
	body := &wire.ErrorBody{
		Code:   ratelab.ERATELIMITED,
		Status: http.StatusTooManyRequests,
		Message: fmt.Sprintf("%s allows %s, burst %d, for %s; retry in %d ms",
			p.Name, p.Rate.Describe(), p.Burst, scopeText(p, lim.Key, c), retryMs),
		Limit: &wire.LimitState{
			Policy: p.Name, Scope: p.Scope, Key: lim.Key,
			Limit: p.Rate.Count, Window: p.Rate.Period.String(), Burst: p.Burst,
			Remaining: 0, ResetAfterMs: lim.ResetAfter.Milliseconds(), RetryAfterMs: int64(retryMs),
		},
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

// pageParams reads pageSize (1–100, default 25) and pageNumber (from 1).
func pageParams(r *http.Request) (ratelab.Page, error) {
	p := ratelab.Page{Size: 25, Number: 1}
	q := r.URL.Query()
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return p, ratelab.Errorf(ratelab.EINVALID, "pageSize must be a whole number from 1 to 100.")
		}
		p.Size = n
	}
	if v := q.Get("pageNumber"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			return p, ratelab.Errorf(ratelab.EINVALID, "pageNumber must be a whole number from 1.")
		}
		p.Number = n
	}
	return p, nil
}
