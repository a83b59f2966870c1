package load

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ClientConfig configures the HTTP client a run sends with. The zero
// ClientConfig is keep-alive on, no connection cap, a 30 s timeout, no auth.
type ClientConfig struct {
	// Timeout bounds each request, body included; 0 means 30 s.
	Timeout time.Duration
	// Connections caps connections to each host (MaxConnsPerHost); 0 for
	// no cap.
	Connections int
	// DisableKeepAlive opens a new connection for every request.
	DisableKeepAlive bool
	// Auth, when TokenURL is set, adds a bearer token obtained with the
	// client-credentials grant and refreshed before it expires.
	Auth Auth
}

// NewClient returns the client for a run. With Auth it fetches the first
// token now, so that bad credentials fail before any load is sent.
//
// Without Auth, Run sends requests to http:// targets of this client over
// connections its workers drive themselves (see http1_perf.go), with the
// same timeout, connection cap and keep-alive setting; everything else,
// and any other use of the client, goes through a standard http.Transport.
func NewClient(ctx context.Context, cfg ClientConfig) (*http.Client, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	idle := cfg.Connections
	if idle <= 0 {
		idle = 10_000
	}
	dialer := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               nil, // a load test goes straight to its target
		DialContext:         dialer.DialContext,
		MaxConnsPerHost:     cfg.Connections,
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableKeepAlives:   cfg.DisableKeepAlive,
		DisableCompression:  true,
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: timeout,
	}
	client := &http.Client{Transport: tr, Timeout: timeout,
		// A redirect is a result of its own, not something to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if cfg.Auth.TokenURL == "" {
		client.Transport = &transport{base: tr, timeout: timeout, idle: tr.IdleConnTimeout,
			maxConns: cfg.Connections, keepAlive: !cfg.DisableKeepAlive, dialer: dialer}
		return client, nil
	}
	cc := &clientcredentials.Config{
		ClientID:     cfg.Auth.ClientID,
		ClientSecret: cfg.Auth.ClientSecret,
		TokenURL:     cfg.Auth.TokenURL,
		Scopes:       cfg.Auth.Scopes,
	}
	// The token source outlives ctx (it refreshes during the run), so it
	// gets a context that is not cancelled with the caller's.
	tokenCtx := context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient,
		&http.Client{Transport: tr, Timeout: timeout})
	src := cc.TokenSource(tokenCtx)
	if _, err := src.Token(); err != nil {
		return nil, fmt.Errorf("get token from %s: %w", cfg.Auth.TokenURL, err)
	}
	client.Transport = &oauth2.Transport{Source: src, Base: tr}
	return client, nil
}
