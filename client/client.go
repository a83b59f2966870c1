package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"ratelab"
	"ratelab/limit"
	"ratelab/wire"
)

// Client defaults.
const (
	// DefaultMaxRetries bounds the retries of one request after a 429
	// (or, for idempotent requests, a network error or 502/503/504).
	DefaultMaxRetries = 5
	// DefaultTokenRefreshBefore is how long before its expiry a token is
	// replaced.
	DefaultTokenRefreshBefore = time.Minute
	// DefaultPaceMargin is how much of each bucket's tolerance the client
	// leaves unused, to absorb the varying delay between its own decision
	// and the server's.
	DefaultPaceMargin = 25 * time.Millisecond
	// DefaultMaxInFlight bounds the write requests (PUTs and bulks)
	// the client has outstanding at once.
	DefaultMaxInFlight = 4
)

// Config configures a Client. BaseURL, ClientID and ClientSecret are
// required; every other field has a default.
type Config struct {
	// BaseURL is the API's root, e.g. "http://127.0.0.1:8080".
	BaseURL      string
	ClientID     string
	ClientSecret string
	// HTTPClient sends every request, token requests included. Default: an
	// http.Client with a 30 s timeout.
	HTTPClient *http.Client
	// Logger receives retries and policy changes at debug level and
	// failures at warn level. Default: discard.
	Logger *slog.Logger
	// MaxRetries bounds retries per request. 0 means
	// DefaultMaxRetries; a negative value disables retries.
	MaxRetries int
	// TokenRefreshBefore is how long before expiry a token is replaced.
	// Default: DefaultTokenRefreshBefore.
	TokenRefreshBefore time.Duration
	// PaceMargin is the part of each bucket's tolerance left unused.
	// Default: DefaultPaceMargin; a negative value means none.
	PaceMargin time.Duration
	// MaxBatch bounds the updates of one bulk request, at most
	// wire.MaxBulkItems (the default). 1 disables batching.
	MaxBatch int
	// MaxInFlight bounds concurrent write requests. Default:
	// DefaultMaxInFlight.
	MaxInFlight int
	// Now is the client's clock: pacing, retry delays and the age of its
	// token are reckoned on it. Waits are real timers, so a clock that
	// stands still makes a paced request wait until its context ends.
	// Default: time.Now.
	Now func() time.Time
}

// Client is a Go client of the scripts API that never fights its rate
// limiter. It implements ratelab.ScriptService over HTTP (the orgID
// arguments are ignored: the credentials decide the org), and adds:
//
//   - client-credentials authentication, the token replaced
//     TokenRefreshBefore its expiry (by Config.Now), and once more when
//     the server says it is invalid;
//   - pacing from the server's own headers, per policy and scope key in
//     the policy's terms (the exact values and algorithm come from GET
//     /api/v2/ratelimits): a local GCRA for a token bucket; for a window
//     (and a limit only X-RateLimit-*, GitHub's or inin's headers
//     describe), a wait for the reset when the last responses say it is
//     spent; for a concurrency limit, no more of its own requests in
//     flight than it allows (see pacer);
//   - on a 429, a wait of exactly the server's retry delay (the body's
//     retryAfterMs, else Retry-After) plus a little jitter, and a retry,
//     up to MaxRetries;
//   - coalescing and batching of script updates (Submit, UpdateScript,
//     PutScript, UpdateScripts; see Submit for the semantics);
//   - optimistic-concurrency helpers (ScriptUpdate.IfVersion, Modify).
//
// Retries, one policy for every request (see retryOf): GET and PUT are
// idempotent and are retried after a 429, a network error or a
// 502/503/504. A POST (create, bulk) is retried only after a 429, which
// says the server refused it before acting on it (ratelab's limiter
// rejects before any handler runs and consumes nothing); after a network
// error or a 5xx a POST is never retried, since it may have been applied.
// A 401 that says invalid_token (expired or revoked) is sent once more
// with a new token, which does not count as a retry; credentials the
// token endpoint refuses are final.
//
// Create a Client with New and Close it when done. It is safe for
// concurrent use.
type Client struct {
	base       *url.URL
	hc         *http.Client
	log        *slog.Logger
	maxRetries int
	maxBatch   int
	pace       *pacer
	now        func() time.Time

	tok tokenCache

	refreshMu   sync.Mutex
	refreshed   bool
	lastRefresh time.Time

	w writer

	stats clientStats
}

var _ ratelab.ScriptService = (*Client)(nil)

// New returns a client for cfg. It sends nothing until used.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("client: Config.BaseURL, ClientID and ClientSecret are required")
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("client: base url %q: want http(s)://host[:port]", cfg.BaseURL)
	}
	c := &Client{base: base, hc: cfg.HTTPClient, log: cfg.Logger, maxRetries: cfg.MaxRetries, maxBatch: cfg.MaxBatch, now: cfg.Now}
	if c.now == nil {
		c.now = time.Now
	}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: 30 * time.Second}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.maxBatch <= 0 || c.maxBatch > wire.MaxBulkItems {
		c.maxBatch = wire.MaxBulkItems
	}
	margin := cfg.PaceMargin
	switch {
	case margin == 0:
		margin = DefaultPaceMargin
	case margin < 0:
		margin = 0
	}
	c.pace = newPacer(margin)
	early := cfg.TokenRefreshBefore
	if early <= 0 {
		early = DefaultTokenRefreshBefore
	}
	c.tok = tokenCache{early: early, cc: &clientcredentials.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		TokenURL:     c.base.String() + "/oauth/token",
		AuthStyle:    oauth2.AuthStyleInHeader,
	}}
	inflight := cfg.MaxInFlight
	if inflight <= 0 {
		inflight = DefaultMaxInFlight
	}
	c.w.init(c, inflight)
	return c, nil
}

// Close stops the client's write scheduler. Writes still pending fail
// with an error, and so do later calls; writes in flight are canceled,
// and Close returns when they have ended.
func (c *Client) Close() error {
	c.w.close()
	return nil
}

// Stats counts what a Client has done.
type Stats struct {
	// Requests counts API requests sent (token requests excluded).
	Requests int64
	// RateLimited counts 429 responses received.
	RateLimited int64
	// Retries counts requests sent again.
	Retries int64
	// Puts and Bulks count write requests; BulkItems the updates the bulks
	// carried; Coalesced the updates merged into another pending update.
	Puts, Bulks, BulkItems, Coalesced int64
}

type clientStats struct {
	requests, rateLimited, retries, puts, bulks, bulkItems, coalesced atomic.Int64
}

// Stats returns the client's counters so far.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		Requests: s.requests.Load(), RateLimited: s.rateLimited.Load(), Retries: s.retries.Load(),
		Puts: s.puts.Load(), Bulks: s.bulks.Load(), BulkItems: s.bulkItems.Load(), Coalesced: s.coalesced.Load(),
	}
}

// APIError is an error response of the API. It unwraps to a
// *ratelab.Error with the response's code and message, so
// ratelab.ErrorCode works on it.
type APIError struct {
	Status int
	Body   wire.ErrorBody
}

func (e *APIError) Error() string {
	return fmt.Sprintf("client: %d %s: %s", e.Status, e.Body.Code, e.Body.Message)
}

// Unwrap returns the application error.
func (e *APIError) Unwrap() error { return &ratelab.Error{Code: e.Body.Code, Message: e.Body.Message} }

// apiRequest is one API call.
type apiRequest struct {
	kind   string
	ids    []string // the scripts it writes, for the per-script buckets
	method string
	path   string
	query  url.Values
	body   any
	// idempotent requests are retried after network errors and
	// 502/503/504 too.
	idempotent bool
}

// apiResponse is a response read whole.
type apiResponse struct {
	status int
	header http.Header
	body   []byte
}

// do sends r, paced, retrying as retryOf says. It returns the final
// response, whatever its status, or an error when none arrived.
func (c *Client) do(ctx context.Context, r *apiRequest) (*apiResponse, error) {
	c.ensureLimits(ctx)
	var body []byte
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = b
	}
	var st retryState
	for {
		tk, err := c.admit(ctx, r.kind, r.ids)
		if err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, r, body)
		if err != nil {
			c.pace.abandon(r.kind, tk)
		}
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil {
			c.observe(r.kind, r.ids, tk, resp, c.now())
			c.maybeRefresh(ctx)
		}
		rt := retryOf(r, resp, err)
		if !c.retrying(&st, rt) {
			return resp, err
		}
		c.log.Debug("retrying", "method", r.method, "path", r.path, "why", rt.String(), "attempt", st.attempts, "err", err)
		if rt == retryBackoff {
			if err := sleep(ctx, backoff(st.attempts-1)); err != nil {
				return nil, err
			}
		}
	}
}

// retry is what follows one attempt of a request: the client's one retry
// policy, for every request (do) and every write (writer.send).
type retry int

const (
	// retryNone: the response (or error) is final.
	retryNone retry = iota
	// retryPaced: a 429; again when the pacer admits it, which it holds
	// back for the server's retry delay.
	retryPaced
	// retryToken: the server said the token is invalid (expired or
	// revoked); again at once with a new token.
	retryToken
	// retryBackoff: an idempotent request met a network error or a
	// 502/503/504; again after backoff.
	retryBackoff
)

func (rt retry) String() string {
	return [...]string{"final", "429", "invalid token", "backoff"}[rt]
}

// retryOf classifies an attempt of r that returned resp or err.
func retryOf(r *apiRequest, resp *apiResponse, err error) retry {
	if err != nil {
		var refused *oauth2.RetrieveError
		if errors.As(err, &refused) || errors.Is(err, errClosed) || errors.Is(err, context.Canceled) {
			return retryNone
		}
		if r.idempotent {
			return retryBackoff
		}
		return retryNone
	}
	switch {
	case resp.status == http.StatusTooManyRequests:
		return retryPaced
	case resp.status == http.StatusUnauthorized && strings.Contains(resp.header.Get("WWW-Authenticate"), "invalid_token"):
		return retryToken
	case r.idempotent && (resp.status == http.StatusBadGateway || resp.status == http.StatusServiceUnavailable || resp.status == http.StatusGatewayTimeout):
		return retryBackoff
	}
	return retryNone
}

// retryState is what one request (or one queued write) has used of its
// retries.
type retryState struct {
	attempts int  // retries so far, new tokens not counted
	reauthed bool // a new token was fetched after an invalid_token
}

// retrying applies the bounds to rt and records the retry: MaxRetries
// retries in all, and one new token. A token retry drops the token.
func (c *Client) retrying(st *retryState, rt retry) bool {
	switch {
	case rt == retryNone:
		return false
	case rt == retryToken:
		if st.reauthed {
			return false
		}
		st.reauthed = true
		c.resetToken()
	case st.attempts >= c.maxRetries:
		return false
	default:
		st.attempts++
	}
	c.stats.retries.Add(1)
	return true
}

// admit waits until the pacer lets a request of kind go, and returns its
// ticket (whether it goes as the kind's teacher, what it drew), which the
// response settles (observe) or abandon gives back.
func (c *Client) admit(ctx context.Context, kind string, ids []string) (ticket, error) {
	for {
		tk := c.pace.reserve(kind, ids, c.now())
		switch {
		case tk.learn != nil:
			select {
			case <-tk.learn:
			case <-ctx.Done():
				return ticket{}, ctx.Err()
			}
		case tk.wait > 0:
			if err := sleep(ctx, tk.wait); err != nil {
				return ticket{}, err
			}
		default:
			return tk, nil
		}
	}
}

// send sends one request with the current token and reads the response.
func (c *Client) send(ctx context.Context, r *apiRequest, body []byte) (*apiResponse, error) {
	tok, err := c.token(ctx)
	if err != nil {
		return nil, fmt.Errorf("get token: %w", err)
	}
	u := *c.base
	u.Path = c.base.Path + r.path
	u.RawQuery = r.query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	tok.SetAuthHeader(req)
	c.stats.requests.Add(1)
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", r.method, r.path, err)
	}
	if res.StatusCode == http.StatusTooManyRequests {
		c.stats.rateLimited.Add(1)
	}
	return &apiResponse{status: res.StatusCode, header: res.Header, body: b}, nil
}

// observe feeds a response to a request sent with tk to the pacer.
func (c *Client) observe(kind string, ids []string, tk ticket, resp *apiResponse, now time.Time) {
	var body []byte // a 429's body says the policy and the exact delay
	if resp.status == http.StatusTooManyRequests {
		body = resp.body[:min(len(resp.body), limit.MaxBodyRead)]
	}
	o := observed{status: resp.status, header: resp.header, adv: limit.ParseResponse(resp.header, body, now)}
	if resp.status == http.StatusTooManyRequests {
		o.jitter = jitter(o.adv.RetryAfter)
		c.log.Debug("429 received", "kind", kind, "retryAfter", o.adv.RetryAfter, "policy", o.adv.Policy)
	}
	c.pace.learn(kind, ids, tk, o, now)
}

// jitter returns a small random delay added to a retry: up to 5% of it,
// at most 50 ms, so that clients do not come back in lockstep yet none
// comes back early.
func jitter(retry time.Duration) time.Duration {
	span := min(max(retry, 0)/20, 50*time.Millisecond)
	if span <= 0 {
		return 0
	}
	return rand.N(span)
}

// backoff is the wait before retrying after a network error or a 5xx.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 5)
	return d + rand.N(d/2)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tokenCache holds the client's access token. Its expiry is reckoned on
// the client's clock from the token's expires_in, counted from when it was
// requested.
type tokenCache struct {
	cc    *clientcredentials.Config
	early time.Duration

	mu      sync.Mutex
	tok     *oauth2.Token
	expires time.Time // zero: the server gave no lifetime
}

// token returns the current token, or gets a new one when there is none
// or the current one expires within TokenRefreshBefore. The token request
// goes through the client's http.Client, so a caller's transport sees
// (and may count) it too.
func (c *Client) token(ctx context.Context) (*oauth2.Token, error) {
	t := &c.tok
	t.mu.Lock()
	defer t.mu.Unlock()
	now := c.now()
	if t.tok != nil && (t.expires.IsZero() || now.Add(t.early).Before(t.expires)) {
		return t.tok, nil
	}
	tok, err := t.cc.Token(context.WithValue(ctx, oauth2.HTTPClient, c.hc))
	if err != nil {
		return nil, err
	}
	t.tok, t.expires = tok, time.Time{}
	if life := tokenLife(tok); life > 0 {
		t.expires = now.Add(life)
	}
	return tok, nil
}

// tokenLife returns the lifetime a token response gave (expires_in), or 0.
// clientcredentials keeps it only among the response's raw fields.
func tokenLife(tok *oauth2.Token) time.Duration {
	secs := float64(tok.ExpiresIn)
	if v, ok := tok.Extra("expires_in").(float64); ok {
		secs = v
	}
	if secs <= 0 || secs > float64(math.MaxInt64/int64(time.Second)) {
		return 0
	}
	return time.Duration(secs * float64(time.Second))
}

func (c *Client) resetToken() {
	c.tok.mu.Lock()
	c.tok.tok = nil
	c.tok.mu.Unlock()
}

// ensureLimits fetches the exact policies once, before the first request.
func (c *Client) ensureLimits(ctx context.Context) {
	c.refreshMu.Lock()
	done := c.refreshed
	c.refreshMu.Unlock()
	if !done {
		c.refreshLimits(ctx)
	}
}

// maybeRefresh fetches the exact policies again when a response showed
// that they changed, at most once per 100 ms.
func (c *Client) maybeRefresh(ctx context.Context) {
	c.refreshMu.Lock()
	recent := c.now().Sub(c.lastRefresh) < 100*time.Millisecond
	c.refreshMu.Unlock()
	if recent || !c.pace.wantsRefresh() {
		return
	}
	c.refreshLimits(ctx)
}

// refreshLimits reads GET /api/v2/ratelimits, which costs no quota, and
// gives the pacer every policy's exact rate, burst and scope. A server
// without the endpoint is paced from headers alone.
func (c *Client) refreshLimits(ctx context.Context) {
	c.refreshMu.Lock()
	defer c.refreshMu.Unlock()
	if c.refreshed && c.now().Sub(c.lastRefresh) < 100*time.Millisecond {
		return
	}
	c.refreshed, c.lastRefresh = true, c.now()
	// The per-script policies are listed only for a named script; any id
	// will do to learn their scope.
	id := c.w.lastScript()
	if id == "" {
		id = "ratelab-client-probe"
	}
	rl, err := c.rateLimits(ctx, id)
	if err != nil {
		c.log.Debug("read rate limits", "err", err)
		return
	}
	c.pace.learnAll(rl.Policies, c.now())
	c.log.Debug("rate limits read", "policies", len(rl.Policies))
}

// RateLimits returns GET /api/v2/ratelimits: every policy that applies to
// the client's requests, exactly, with the state of its bucket; the
// per-script policies for scriptID when it is not empty. The request costs
// no quota, and is sent once, unpaced.
func (c *Client) RateLimits(ctx context.Context, scriptID string) (*wire.RateLimits, error) {
	rl, err := c.rateLimits(ctx, scriptID)
	if err != nil {
		return nil, fmt.Errorf("rate limits: %w", err)
	}
	return rl, nil
}

func (c *Client) rateLimits(ctx context.Context, scriptID string) (*wire.RateLimits, error) {
	r := &apiRequest{method: http.MethodGet, path: wire.RateLimitsPath}
	if scriptID != "" {
		r.query = url.Values{"scriptId": {scriptID}}
	}
	resp, err := c.send(ctx, r, nil)
	if err != nil {
		return nil, err
	}
	var rl wire.RateLimits
	if err := decode(resp, http.StatusOK, &rl); err != nil {
		return nil, err
	}
	return &rl, nil
}

// decode reads a success body into v, or turns an error response into an
// *APIError.
func decode(resp *apiResponse, want int, v any) error {
	if resp.status != want && !(want == http.StatusOK && resp.status == http.StatusCreated) {
		return responseError(resp)
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(resp.body, v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// responseError turns an error response into an *APIError.
func responseError(resp *apiResponse) error {
	e := &APIError{Status: resp.status}
	if json.Unmarshal(resp.body, &e.Body) != nil || e.Body.Code == "" {
		e.Body = wire.ErrorBody{Code: wire.CodeOf(resp.status), Message: http.StatusText(resp.status), Status: resp.status}
	}
	return e
}

// FindScript returns a script.
func (c *Client) FindScript(ctx context.Context, _, id string) (*ratelab.Script, error) {
	resp, err := c.do(ctx, &apiRequest{kind: kindGetScript, method: http.MethodGet, path: wire.ScriptURLPath(id), idempotent: true})
	if err != nil {
		return nil, fmt.Errorf("find script: %w", err)
	}
	var s ratelab.Script
	if err := decode(resp, http.StatusOK, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// FindScripts returns one page of scripts and the total count.
func (c *Client) FindScripts(ctx context.Context, _ string, page ratelab.Page) ([]*ratelab.Script, int, error) {
	resp, err := c.do(ctx, &apiRequest{kind: kindListScripts, method: http.MethodGet, path: wire.ScriptsPath, query: wire.PageQuery(page), idempotent: true})
	if err != nil {
		return nil, 0, fmt.Errorf("find scripts: %w", err)
	}
	var p wire.Page[*ratelab.Script]
	if err := decode(resp, http.StatusOK, &p); err != nil {
		return nil, 0, err
	}
	return p.Entities, p.Total, nil
}

// CreateScript creates a script with a server-chosen id. It is a POST:
// retried after a 429 only.
func (c *Client) CreateScript(ctx context.Context, _ string, name, text, _ string) (*ratelab.Script, error) {
	if err := ratelab.ValidateScript(name, text); err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, &apiRequest{kind: kindCreateScript, method: http.MethodPost, path: wire.ScriptsPath, body: wire.ScriptCreate{Name: name, Text: text}})
	if err != nil {
		return nil, fmt.Errorf("create script: %w", err)
	}
	var s ratelab.Script
	if err := decode(resp, http.StatusCreated, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// DeleteScript deletes a script. It does not wait for updates of the
// script that are still pending.
func (c *Client) DeleteScript(ctx context.Context, _, id string) error {
	resp, err := c.do(ctx, &apiRequest{kind: kindDeleteScript, ids: []string{id}, method: http.MethodDelete, path: wire.ScriptURLPath(id), idempotent: true})
	if err != nil {
		return fmt.Errorf("delete script: %w", err)
	}
	return decode(resp, http.StatusNoContent, nil)
}

// ScriptVersions returns one page of a script's versions, newest first,
// and the total count.
func (c *Client) ScriptVersions(ctx context.Context, _, id string, page ratelab.Page) ([]*ratelab.ScriptVersion, int, error) {
	resp, err := c.do(ctx, &apiRequest{kind: kindVersions, method: http.MethodGet, path: wire.VersionsURLPath(id), query: wire.PageQuery(page), idempotent: true})
	if err != nil {
		return nil, 0, fmt.Errorf("script versions: %w", err)
	}
	var p wire.Page[*ratelab.ScriptVersion]
	if err := decode(resp, http.StatusOK, &p); err != nil {
		return nil, 0, err
	}
	return p.Entities, p.Total, nil
}

// Users returns the org's users (GET /api/v2/users).
func (c *Client) Users(ctx context.Context) ([]*ratelab.User, error) {
	resp, err := c.do(ctx, &apiRequest{kind: kindUsers, method: http.MethodGet, path: wire.UsersPath, idempotent: true})
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	var ul wire.UserList
	if err := decode(resp, http.StatusOK, &ul); err != nil {
		return nil, err
	}
	return ul.Entities, nil
}
