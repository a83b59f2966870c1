package httpapi

// POST /oauth/token: the client-credentials grant, and the limits that keep
// it from locking a client out or burning the CPU (issue 11 item 7).
//
// A token request meets two kinds of limits, taken apart:
//
//   - failures (TokenFailures): every answer but a grant counts one failed
//     attempt against the caller's address and against the client id it
//     presents, whether that id exists or not. Before the secret is hashed,
//     a request is refused (429) when its address is over its failure
//     limit, or when the client id is over its failure limit and the
//     address has failed recently itself. So a flood from one address costs
//     at most the address's failure rate in PBKDF2 hashes, and a flood of
//     wrong secrets for one id cannot lock out its owner: a request from an
//     address without failures is still checked.
//   - the look, the hash and the count of a failure are one step per
//     address in a process (keyedLocks), so that concurrent attempts from
//     one address cannot all pass the look before any of them counts: the
//     hashes of one address are at most its failure limit (plus one per
//     further replica sharing the limiter).
//   - grants (the token-requests policies, by client id): charged only for
//     a request whose credentials are right, so a failure never spends the
//     owner's quota.
//
// An unknown id and a wrong secret take the same path: the same tiers, one
// PBKDF2 computation each (sqlstore.Authenticator), the same 401 body.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"ratelab"
	"ratelab/limit"
	"ratelab/wire"
)

// TokenFailures limit failed attempts at POST /oauth/token, apart from the
// grants that the token-requests policies limit. Both are GCRA policies
// that count rejected requests; their state lives in the limiter store
// (shared by replicas on Redis).
type TokenFailures struct {
	// PerAddress is keyed by the peer's address. Over it, a request is a
	// 429 before its secret is hashed.
	PerAddress limit.Policy
	// PerClient is keyed by the presented client id. Over it, a request
	// from an address that has failed recently is a 429 before hashing; one
	// from an address without failures is checked, so the owner gets in.
	PerClient limit.Policy
}

// DefaultTokenFailures returns the default failure limits: 10 failed
// attempts per minute, burst 10, per address; 10 per minute, burst 20, per
// client id.
func DefaultTokenFailures() TokenFailures {
	return TokenFailures{
		PerAddress: limit.Policy{Name: "token-failures-per-address", Rate: limit.Per(10, time.Minute), Burst: 10, CountRejected: true},
		PerClient:  limit.Policy{Name: "token-failures-per-client", Rate: limit.Per(10, time.Minute), Burst: 20, CountRejected: true},
	}
}

func (tf *TokenFailures) validate() error {
	for _, p := range []*limit.Policy{&tf.PerAddress, &tf.PerClient} {
		if p.Algorithm != limit.GCRA {
			return fmt.Errorf("token failure policy %q: must be gcra", p.Name)
		}
		if err := p.Validate(); err != nil {
			return fmt.Errorf("token failure policy %q: %w", p.Name, err)
		}
	}
	if tf.PerAddress.Name == tf.PerClient.Name {
		return fmt.Errorf("token failure policies: both named %q", tf.PerAddress.Name)
	}
	return nil
}

// tokenRequest reads the grant's form and credentials. It sets
// c.tokenClient to the presented id when that id passes the id rule (no
// client has any other), so that the limits can key by it.
func (s *Server) tokenRequest(c *call) (id, secret string, err error) {
	if id, secret, err = clientForm(c); err != nil {
		return "", "", err
	}
	if gt := c.r.PostForm.Get("grant_type"); gt != "client_credentials" {
		return "", "", oauthErr("unsupported_grant_type", ratelab.EINVALID, "grant_type must be client_credentials.")
	}
	if id == "" || secret == "" {
		return "", "", oauthErr("invalid_client", ratelab.EUNAUTHORIZED, "Client credentials are missing: send HTTP Basic or client_id and client_secret.")
	}
	return id, secret, nil
}

// clientForm reads the form of a request that a client authenticates
// (the token and revocation endpoints) and the client's credentials:
// HTTP Basic, else client_id and client_secret in the form. It sets
// c.tokenClient to the presented id when that id passes the id rule (no
// client has any other), so that the limits can key by it.
func clientForm(c *call) (id, secret string, err error) {
	if err := checkContentType(c.r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"); err != nil {
		return "", "", err
	}
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, MaxBodyBytes)
	if err := c.r.ParseForm(); err != nil {
		var maxErr *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &maxErr):
			return "", "", ratelab.Errorf(ratelab.ETOOLARGE, "Request body is larger than %d bytes.", MaxBodyBytes)
		case errors.As(err, &ne):
			return "", "", bodyReadError(err)
		}
		return "", "", oauthErr("invalid_request", ratelab.EINVALID, "Malformed form body.")
	}
	id, secret, ok := c.r.BasicAuth()
	if ok {
		// RFC 6749 §2.3.1: the Basic credentials are form-urlencoded.
		if v, err := url.QueryUnescape(id); err == nil {
			id = v
		}
		if v, err := url.QueryUnescape(secret); err == nil {
			secret = v
		}
	} else {
		id, secret = c.r.PostForm.Get("client_id"), c.r.PostForm.Get("client_secret")
	}
	if ratelab.ValidID(id) {
		c.tokenClient = id
	}
	return id, secret, nil
}

func (s *Server) handleToken(c *call) error {
	c.w.Header().Set("Cache-Control", "no-store")
	id, secret, reqErr := s.tokenRequest(c)
	// One check at a time per address (in this process): the look at the
	// failure tiers, the hash and the count of a failure are one step, so
	// concurrent attempts cannot all pass the look before any counts.
	unlock, err := s.addrLocks.lock(c.r.Context(), remoteHost(c.r))
	if err != nil {
		return ratelab.Errorf(ratelab.EINVALID, "The request was cancelled.")
	}
	defer unlock()
	ft := s.failureTiers(c)
	if ok, err := s.underFailureLimits(c, ft); err != nil || !ok {
		return err
	}
	if reqErr != nil {
		return s.tokenFailed(c, ft, reqErr)
	}
	cl, err := s.auth.Authenticate(c.r.Context(), id, secret)
	if ratelab.ErrorCode(err) == ratelab.EUNAUTHORIZED {
		return s.tokenFailed(c, ft, oauthErr("invalid_client", ratelab.EUNAUTHORIZED, "Unknown client or wrong secret."))
	}
	if err != nil {
		return err
	}
	// The grant: the token-requests tiers of the client id, only now.
	var lease limit.Lease
	if !s.admit(c, nil, &lease) {
		return nil
	}
	defer s.release(&lease)
	tok, exp, err := s.auth.IssueToken(c.r.Context(), cl, s.ttl)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, wire.Token{AccessToken: tok, TokenType: "bearer", ExpiresIn: int64(exp.Sub(s.now()).Round(time.Second) / time.Second)})
	return nil
}

// failureTiers are the failure tiers of a token request: its address, and
// the client id it presents when that id passes the id rule.
func (s *Server) failureTiers(c *call) []limit.Tier {
	ts := []limit.Tier{{Policy: &s.tokenFailures.PerAddress, Key: "addr:" + remoteHost(c.r)}}
	if c.tokenClient != "" {
		ts = append(ts, limit.Tier{Policy: &s.tokenFailures.PerClient, Key: "client:" + c.tokenClient})
	}
	return ts
}

// failureGroup is the limiter group of the failure tiers: that of every
// caller without a token.
const failureGroup = "token"

// underFailureLimits looks at the failure tiers without consuming
// anything and reports whether the request may be checked; when not, it
// has written the 429 (no secret was hashed).
func (s *Server) underFailureLimits(c *call, ft []limit.Tier) (bool, error) {
	req := &limit.Request{Group: failureGroup, Tiers: ft, Cost: 0}
	if s.fixedNow {
		req.Now = s.now()
	}
	var d limit.Decision
	if err := s.decide(c.r.Context(), req, &d); err != nil {
		return false, err
	}
	addr := &d.Tiers[0]
	over := -1
	switch {
	case addr.Remaining == 0:
		over = 0
	case len(d.Tiers) > 1 && d.Tiers[1].Remaining == 0 && addr.Remaining < addr.Policy.Burst:
		// The id is under attack and this address took part.
		over = 1
	}
	if over < 0 {
		return true, nil
	}
	// A cost-0 look admits; the state says when a cost-1 attempt would:
	// a GCRA tier admits once its backlog (ResetAfter) is at most τ − T.
	ts := &d.Tiers[over]
	p := ts.Policy
	retry := ts.ResetAfter + p.Interval() - p.Tolerance()
	if retry <= 0 {
		retry = time.Millisecond
	}
	ts.Allowed, ts.RetryAfter = false, retry
	d.Allowed, d.Limiting, d.RetryAfter = false, over, retry
	s.metrics.countDecision(&d)
	s.setHeaders(c.w.Header(), &d)
	retryMs := (retry + time.Millisecond - 1) / time.Millisecond
	s.writeRejection(c.w, &wire.ErrorBody{
		Code:   ratelab.ERATELIMITED,
		Status: http.StatusTooManyRequests,
		Message: fmt.Sprintf("%s allows %s, burst %d, for %s; retry in %d ms",
			p.Name, p.Rate.Describe(), p.Burst, scopeText(&Policy{Scope: wire.ScopeClient}, ts.Key, c), retryMs),
		Limit: &wire.LimitState{
			Policy: p.Name, Scope: wire.ScopeClient, Key: ts.Key,
			Limit: p.Rate.Count, Window: p.Rate.Period.String(), Burst: p.Burst,
			CountRejected: p.CountRejected,
			Remaining:     0, ResetAfterMs: ts.ResetAfter.Milliseconds(), RetryAfterMs: int64(retryMs),
		},
		ViolatedPolicies: []string{p.Name},
	})
	return false, nil
}

// tokenFailed counts one failed attempt on the failure tiers, sets their
// rate-limit headers and returns err, the answer.
func (s *Server) tokenFailed(c *call, ft []limit.Tier, answer error) error {
	// Counted even when the client has gone: the attempt was made.
	ctx := context.WithoutCancel(c.r.Context())
	req := &limit.Request{Group: failureGroup, Tiers: ft, Cost: 1}
	if s.fixedNow {
		req.Now = s.now()
	}
	var d limit.Decision
	if err := s.decide(ctx, req, &d); err != nil {
		return err
	}
	s.metrics.countDecision(&d)
	// The answer is the failure itself, not a 429, even when this attempt
	// used the last of a tier: the next one is refused before hashing.
	d.Allowed, d.RetryAfter = true, 0
	s.setHeaders(c.w.Header(), &d)
	return answer
}

// keyedLocks are mutexes by key, created on first use and dropped when
// nobody holds or waits for them; a wait ends with its context.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{} // holds one token while locked
	refs int
}

func (k *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
