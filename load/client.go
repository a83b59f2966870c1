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

// NewClient returns a net/http client configured as cfg says. With Auth
// it fetches the first token now, so that bad credentials fail before any
// load is sent.
//
// A run given this client (Config.Client) sends every request through it.
// A run that builds its own from Config.HTTP instead sends requests to
// http:// targets over connections its workers drive themselves (see
// http1_perf.go), which costs less CPU per request.
func NewClient(ctx context.Context, cfg ClientConfig) (*http.Client, error) {
	c, _, err := newClient(ctx, cfg, false)
	return c, err
}

// newClient returns the client for cfg and, when driven is set and cfg
// has no Auth, the pools of worker-driven HTTP/1.1 connections that share
// its settings.
func newClient(ctx context.Context, cfg ClientConfig, driven bool) (*http.Client, *transport, error) {
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
		if !driven {
			return client, nil, nil
		}
		return client, &transport{base: tr, timeout: timeout, idle: tr.IdleConnTimeout,
			maxConns: cfg.Connections, keepAlive: !cfg.DisableKeepAlive, dialer: dialer}, nil
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
		return nil, nil, fmt.Errorf("get token from %s: %w", cfg.Auth.TokenURL, err)
	}
	client.Transport = &oauth2.Transport{Source: src, Base: tr}
	return client, nil, nil
}
