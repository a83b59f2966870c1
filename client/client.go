package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"ratelab"
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
}

// Client is a Go client of the scripts API that never fights its rate
// limiter. It implements ratelab.ScriptService over HTTP (the orgID
// arguments are ignored: the credentials decide the org), and adds:
//
//   - client-credentials authentication, the token replaced before it
//     expires;
//   - pacing from the server's own headers: a local GCRA per policy and
//     scope key, learned from RateLimit-Policy and RateLimit (and the exact
//     values of GET /api/v2/ratelimits), so that a request is sent only
//     when the server will admit it (see pacer);
//   - on a 429, a wait of exactly the server's retry delay (the body's
//     retryAfterMs, else Retry-After) plus a little jitter, and a retry,
//     up to MaxRetries;
//   - coalescing and batching of script updates (Submit, UpdateScript,
//     PutScript, UpdateScripts; see Submit for the semantics);
//   - optimistic-concurrency helpers (ScriptUpdate.IfVersion, Modify).
//
// Retries: GET and PUT are idempotent and are retried after a 429, a
// network error or a 502/503/504. A POST (create, bulk) is retried only
// after a 429, which says the server refused it before acting on it
// (ratelab's limiter rejects before any handler runs and consumes
// nothing); after a network error or a 5xx a POST is never retried, since
// it may have been applied.
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

	tokenMu sync.Mutex
	tokens  oauth2.TokenSource
	newTS   func() oauth2.TokenSource

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
	c := &Client{base: base, hc: cfg.HTTPClient, log: cfg.Logger, maxRetries: cfg.MaxRetries, maxBatch: cfg.MaxBatch}
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
	cc := &clientcredentials.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		TokenURL:     c.base.String() + "/oauth/token",
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	// The token requests go through the same http.Client, so a caller's
	// transport sees (and may count) them too.
	tokenCtx := context.WithValue(context.Background(), oauth2.HTTPClient, c.hc)
	c.newTS = func() oauth2.TokenSource {
		return oauth2.ReuseTokenSourceWithExpiry(nil, cc.TokenSource(tokenCtx), early)
	}
	c.tokens = c.newTS()
	inflight := cfg.MaxInFlight
	if inflight <= 0 {
		inflight = DefaultMaxInFlight
	}
	c.w.init(c, inflight)
	return c, nil
}

// Close stops the client's write scheduler. Writes still pending fail
// with an error; later calls fail too. It waits for writes in flight.
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

// do sends r, paced, retrying as the type comment says. It returns the
// final response, whatever its status, or an error when none arrived.
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
	reauthed := false
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.stats.retries.Add(1)
		}
		teacher, err := c.admit(ctx, r.kind, r.ids)
		if err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, r, body)
		now := time.Now()
		if err != nil {
			if teacher {
				c.pace.abandon(r.kind)
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if r.idempotent && attempt < c.maxRetries {
				c.log.Debug("retrying after a network error", "method", r.method, "path", r.path, "err", err)
				if err := sleep(ctx, backoff(attempt)); err != nil {
					return nil, err
				}
				continue
			}
			return nil, err
		}
		c.observe(r.kind, r.ids, resp, now)
		c.maybeRefresh(ctx)
		switch {
		case resp.status == http.StatusUnauthorized && !reauthed && strings.Contains(resp.header.Get("WWW-Authenticate"), "invalid_token"):
			// The token expired or was revoked early: get a new one, once.
			reauthed = true
			c.resetToken()
			attempt--
			continue
		case resp.status == http.StatusTooManyRequests && attempt < c.maxRetries:
			// The pacer now holds the bucket until the retry delay has
			// passed; admit waits for it.
			c.log.Debug("rate limited; retrying after the server's delay", "method", r.method, "path", r.path, "attempt", attempt+1)
			continue
		case r.idempotent && attempt < c.maxRetries && (resp.status == http.StatusBadGateway || resp.status == http.StatusServiceUnavailable || resp.status == http.StatusGatewayTimeout):
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return nil, err
			}
			continue
		}
		return resp, nil
	}
}

// admit waits until the pacer lets a request of kind go, and reports
// whether it goes as the kind's teacher.
func (c *Client) admit(ctx context.Context, kind string, ids []string) (bool, error) {
	for {
		tk := c.pace.reserve(kind, ids, time.Now())
		switch {
		case tk.learn != nil:
			select {
			case <-tk.learn:
			case <-ctx.Done():
				return false, ctx.Err()
			}
		case tk.wait > 0:
			if err := sleep(ctx, tk.wait); err != nil {
				return false, err
			}
		default:
			return tk.teacher, nil
		}
	}
}

// send sends one request with the current token and reads the response.
func (c *Client) send(ctx context.Context, r *apiRequest, body []byte) (*apiResponse, error) {
	tok, err := c.token()
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

// observe feeds a response to the pacer.
func (c *Client) observe(kind string, ids []string, resp *apiResponse, now time.Time) {
	o := observed{status: resp.status, header: resp.header, retryAfter: -1}
	if resp.status == http.StatusTooManyRequests {
		var eb wire.ErrorBody
		if json.Unmarshal(resp.body, &eb) == nil && eb.Limit != nil {
			o.limit = eb.Limit
		}
		o.retryAfter = retryDelay(resp.header, o.limit, now)
		o.jitter = jitter(o.retryAfter)
		c.log.Debug("429 received", "kind", kind, "retryAfter", o.retryAfter, "policy", eb.Limit)
	}
	c.pace.learn(kind, ids, o, now)
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

func (c *Client) token() (*oauth2.Token, error) {
	c.tokenMu.Lock()
	ts := c.tokens
	c.tokenMu.Unlock()
	return ts.Token()
}

func (c *Client) resetToken() {
	c.tokenMu.Lock()
	c.tokens = c.newTS()
	c.tokenMu.Unlock()
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
	recent := time.Since(c.lastRefresh) < 100*time.Millisecond
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
	if c.refreshed && time.Since(c.lastRefresh) < 100*time.Millisecond {
		return
	}
	c.refreshed, c.lastRefresh = true, time.Now()
	// The per-script policies are listed only for a named script; any id
	// will do to learn their scope.
	c.w.mu.Lock()
	id := c.w.lastID
	c.w.mu.Unlock()
	if id == "" {
		id = "ratelab-client-probe"
	}
	resp, err := c.send(ctx, &apiRequest{method: http.MethodGet, path: "/api/v2/ratelimits", query: url.Values{"scriptId": {id}}}, nil)
	if err != nil {
		c.log.Debug("read rate limits", "err", err)
		return
	}
	if resp.status != http.StatusOK {
		c.log.Debug("read rate limits", "status", resp.status)
		return
	}
	var rl wire.RateLimits
	if err := json.Unmarshal(resp.body, &rl); err != nil {
		c.log.Debug("read rate limits", "err", err)
		return
	}
	c.pace.learnAll(rl.Policies, time.Now())
	c.log.Debug("rate limits read", "policies", len(rl.Policies))
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
	q := url.Values{}
	if page.Size > 0 {
		q.Set("pageSize", strconv.Itoa(page.Size))
	}
	if page.Number > 0 {
		q.Set("pageNumber", strconv.Itoa(page.Number))
	}
	resp, err := c.do(ctx, &apiRequest{kind: kindListScripts, method: http.MethodGet, path: wire.ScriptsPath, query: q, idempotent: true})
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
	q := url.Values{}
	if page.Size > 0 {
		q.Set("pageSize", strconv.Itoa(page.Size))
	}
	if page.Number > 0 {
		q.Set("pageNumber", strconv.Itoa(page.Number))
	}
	resp, err := c.do(ctx, &apiRequest{kind: kindVersions, method: http.MethodGet, path: wire.VersionsURLPath(id), query: q, idempotent: true})
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
	resp, err := c.do(ctx, &apiRequest{kind: kindUsers, method: http.MethodGet, path: "/api/v2/users", idempotent: true})
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	var ul wire.UserList
	if err := decode(resp, http.StatusOK, &ul); err != nil {
		return nil, err
	}
	return ul.Entities, nil
}
