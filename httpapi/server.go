package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"ratelab"
	"ratelab/limit"
)

// Server limits of the underlying http.Server.
const (
	// MaxBodyBytes caps a request body; a larger one is a 413.
	MaxBodyBytes = 512000
	// MaxHeaderBytes caps the request line and headers together: a larger
	// request is a 431 in the error shape.
	MaxHeaderBytes = 64 << 10
	// MaxURIBytes caps the request target: a longer one is a 414 in the
	// error shape.
	MaxURIBytes = 16 << 10
	// stdlibHeaderBytes is net/http's own cap (http.Server.MaxHeaderBytes),
	// far above MaxHeaderBytes so that the server, not net/http, answers
	// most oversized requests; beyond it net/http answers a plain-text 431.
	stdlibHeaderBytes = 1 << 20
	// ShutdownTimeout bounds how long Close waits for in-flight requests.
	ShutdownTimeout = 10 * time.Second
	// DefaultTokenTTL is how long an access token is valid by default.
	DefaultTokenTTL = 24 * time.Hour
)

// Config configures a Server. Scripts and Auth are required; every other
// field has a usable zero value.
type Config struct {
	Scripts ratelab.ScriptService
	Auth    ratelab.AuthService
	// Limiter takes the rate-limit decisions. Default: a limit.MemoryStore.
	// The store owns its failures: one that fails open (the Redis store by
	// default) decides locally while its backend is down and returns no
	// error; one that fails closed returns an error wrapping
	// limit.ErrUnavailable, which the server answers with 503 and
	// Retry-After. Any other error is internal (500, logged).
	Limiter limit.Store
	// Policies are the rate-limit policies. Default: those of PolicyFile
	// when set, else DefaultPolicies().
	Policies *Policies
	// PolicyFile, when set, is where Reload reads policies from; without
	// it Reload restores the initial policies.
	PolicyFile string
	// Logger receives request failures and reloads. Default: discard.
	Logger *slog.Logger
	// Registry receives the server's metrics and is served on /metrics.
	// Default: a new registry.
	Registry *prometheus.Registry
	// MetricsElsewhere takes /metrics off the API's listener (it answers
	// 404 there): the caller serves MetricsHandler on an address of its own,
	// one that does not face the internet.
	MetricsElsewhere bool
	// TokenTTL is the lifetime of issued access tokens. Default: 24 h.
	TokenTTL time.Duration
	// TokenFailures limit failed attempts at POST /oauth/token apart from
	// successful grants (see token.go). Default: DefaultTokenFailures().
	TokenFailures *TokenFailures
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout are those of the
	// http.Server (defaults 5 s, 30 s, 120 s): a request line and headers
	// slower than the first get the connection closed without an answer; a
	// body slower than the second is a 408; an idle keep-alive connection
	// is closed after the third.
	ReadHeaderTimeout, ReadTimeout, IdleTimeout time.Duration
	// Now is the clock for token expiry and limiter decisions. Default:
	// time.Now for tokens, and the limiter store's own clock for limits (so
	// that replicas sharing Redis agree).
	Now func() time.Time
	// Headers is the rate-limit header dialect: HeadersIETF (the
	// default), HeadersXRateLimit, HeadersGitHub, HeadersInin or
	// HeadersNone. RejectBody is the 429 body: RejectDetailed (the
	// default) or RejectTerse. See headers.go.
	Headers    string
	RejectBody string
}

// degrader is a limiter store whose backend can be unreachable (the Redis
// store): Degraded reports an outage, during which the store decides on a
// local fallback or, when FailsClosed, refuses to decide.
type degrader interface {
	Degraded() bool
	FailsClosed() bool
}

// Server is the ratelab HTTP API. The zero Server is not usable: create
// it with NewServer, then either Open it on an address or use it as an
// http.Handler. It is safe for
// concurrent use; SetPolicies and Reload swap the policies atomically
// without dropping requests.
type Server struct {
	scripts          ratelab.ScriptService
	auth             ratelab.AuthService
	limiter          limit.Store
	log              *slog.Logger
	reg              *prometheus.Registry
	metrics          *metrics
	ttl              time.Duration
	tokenFailures    TokenFailures
	timeouts         [3]time.Duration // read header, read, idle
	addrLocks        keyedLocks       // token checks, one at a time per address
	metricsElsewhere bool
	now              func() time.Time
	fixedNow         bool
	headers          string
	rejectBody       string

	initial    *Policies
	policyFile string
	policies   atomic.Pointer[Policies]
	reloadMu   sync.Mutex

	routes  []route
	mux     *http.ServeMux
	decPool sync.Pool

	ln   net.Listener
	http *http.Server
	done chan error
}

// NewServer returns a server for cfg. It does not listen; call Open.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Scripts == nil || cfg.Auth == nil {
		return nil, errors.New("httpapi: Config.Scripts and Config.Auth are required")
	}
	s := &Server{
		scripts:          cfg.Scripts,
		auth:             cfg.Auth,
		limiter:          cfg.Limiter,
		log:              cfg.Logger,
		reg:              cfg.Registry,
		ttl:              cfg.TokenTTL,
		now:              cfg.Now,
		fixedNow:         cfg.Now != nil,
		initial:          cfg.Policies,
		policyFile:       cfg.PolicyFile,
		metricsElsewhere: cfg.MetricsElsewhere,
	}
	var err error
	if s.headers, s.rejectBody, err = checkDialects(cfg.Headers, cfg.RejectBody); err != nil {
		return nil, err
	}
	if s.limiter == nil {
		s.limiter = limit.NewMemoryStore(limit.MemoryConfig{})
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	if s.ttl <= 0 {
		s.ttl = DefaultTokenTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.timeouts = [3]time.Duration{cfg.ReadHeaderTimeout, cfg.ReadTimeout, cfg.IdleTimeout}
	for i, d := range []time.Duration{5 * time.Second, 30 * time.Second, 120 * time.Second} {
		if s.timeouts[i] <= 0 {
			s.timeouts[i] = d
		}
	}
	s.tokenFailures = DefaultTokenFailures()
	if cfg.TokenFailures != nil {
		s.tokenFailures = *cfg.TokenFailures
	}
	if err := s.tokenFailures.validate(); err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	if s.initial == nil && s.policyFile != "" {
		p, err := LoadPolicies(s.policyFile)
		if err != nil {
			return nil, err
		}
		s.initial = p
	}
	if s.initial == nil {
		s.initial = DefaultPolicies()
	}
	s.policies.Store(s.initial)
	var degraded func() bool
	if d, ok := s.limiter.(degrader); ok {
		degraded = d.Degraded
	}
	m, err := newMetrics(s.reg, degraded)
	if err != nil {
		return nil, fmt.Errorf("httpapi: metrics: %w", err)
	}
	s.metrics = m
	s.decPool.New = func() any { return new(limitCall) }
	s.routes = apiRoutes()
	s.mux = http.NewServeMux()
	for i := range s.routes {
		rt := &s.routes[i]
		s.mux.Handle(rt.id, s.routeHandler(rt))
	}
	return s, nil
}

// Routes returns the API's routes as registered on the ServeMux, e.g.
// "PUT /api/v2/architect/scripts/{scriptId}".
func (s *Server) Routes() []string {
	out := make([]string, len(s.routes))
	for i := range s.routes {
		out[i] = s.routes[i].id
	}
	return out
}

// Policies returns the policies in effect.
func (s *Server) Policies() *Policies { return s.policies.Load() }

// SetPolicies replaces the policies atomically: requests already past the
// limiter finish under the old set, later ones see the new set. Buckets of
// policies that keep their name keep their state.
func (s *Server) SetPolicies(p *Policies) {
	s.policies.Store(p)
	s.log.Info("policies loaded", "source", p.Source, "policies", len(p.list))
}

// Reload reads Config.PolicyFile again (or restores Config.Policies when
// there is no file) and swaps the policies in. A bad file is logged and
// returned, and the policies in effect stay.
func (s *Server) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.policyFile == "" {
		s.SetPolicies(s.initial)
		return nil
	}
	p, err := LoadPolicies(s.policyFile)
	if err != nil {
		s.log.Error("reload policies: keeping the policies in effect", "source", s.Policies().Source, "err", err)
		return err
	}
	s.SetPolicies(p)
	return nil
}

// Open listens on addr (e.g. "127.0.0.1:0") and serves in the background.
func (s *Server) Open(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.ln = ln
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.timeouts[0],
		ReadTimeout:       s.timeouts[1],
		WriteTimeout:      s.timeouts[1] + 30*time.Second,
		IdleTimeout:       s.timeouts[2],
		MaxHeaderBytes:    stdlibHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.done = make(chan error, 1)
	go func() {
		err := s.http.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return nil
}

// Addr returns the address the server listens on, or "" before Open.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL returns the server's base URL, e.g. "http://127.0.0.1:34567".
func (s *Server) URL() string { return "http://" + s.Addr() }

// Shutdown stops accepting connections and waits for in-flight requests
// until ctx ends. It does not close the stores: their owner does.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.http == nil {
		return nil
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	if serr := <-s.done; err == nil {
		err = serr
	}
	s.http = nil
	return err
}

// Close drains in-flight requests for up to ShutdownTimeout and stops the
// server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	return s.Shutdown(ctx)
}
