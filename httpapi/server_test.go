package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"ratelab"
	"ratelab/httpapi"
	"ratelab/internal/testenv"
	"ratelab/limit"
	"ratelab/postgres"
	"ratelab/sqlite"
	"ratelab/wire"
)

// clock is a settable clock shared by the server and the database, so
// tests walk fixed instants through the limiter and token expiry. When
// step is set, every reading moves the clock on by step first, as a real
// clock moves between two readings.
type clock struct{ ns, step atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().Truncate(time.Second).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Add(c.step.Load())) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// options vary the test server.
type options struct {
	policies *httpapi.Policies
	file     string
	clock    *clock // nil: real time everywhere
	limiter  limit.Store
	scripts  func(ratelab.ScriptService) ratelab.ScriptService
	// backend is "sqlite" (the default) or "postgres" (a database of the
	// test's own).
	backend string
	// Server timeouts; zero: the server's defaults.
	readHeaderTimeout, readTimeout, idleTimeout time.Duration
	// tokenFailures replaces the default failure limits of POST /oauth/token.
	tokenFailures *httpapi.TokenFailures
	// headers and rejectBody are Config.Headers and Config.RejectBody.
	headers, rejectBody string
}

// store is what a test needs of a database.
type store interface {
	ratelab.ScriptService
	ratelab.AuthService
	Close() error
}

// env is a real server on 127.0.0.1:0 over a real SQLite database (or
// PostgreSQL, options.backend).
type env struct {
	t    testing.TB
	srv  *httpapi.Server
	db   store
	reg  *prometheus.Registry
	logs *syncBuffer
	url  string
	hc   *http.Client
}

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// limiterFactory makes the limiter of one test's server; a nil factory
// means the server's default memory store.
type limiterFactory func(t *testing.T) limit.Store

func newEnv(t testing.TB, lf limiterFactory, o options) *env {
	t.Helper()
	if o.limiter == nil && lf != nil {
		o.limiter = lf(t.(*testing.T))
	}
	ctx := context.Background()
	var now func() time.Time
	if o.clock != nil {
		now = o.clock.Now
	}
	var db store
	var err error
	switch o.backend {
	case "", "sqlite":
		var opts []sqlite.Option
		if now != nil {
			opts = append(opts, sqlite.WithClock(now))
		}
		db, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "ratelab.db"), opts...)
	case "postgres":
		var opts []postgres.Option
		if now != nil {
			opts = append(opts, postgres.WithClock(now))
		}
		db, err = postgres.Open(ctx, testenv.PostgresDatabase(t), opts...)
	default:
		t.Fatalf("backend %q", o.backend)
	}
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	var scripts ratelab.ScriptService = db
	if o.scripts != nil {
		scripts = o.scripts(db)
	}
	srv, err := httpapi.NewServer(httpapi.Config{
		Scripts:           scripts,
		Auth:              db,
		Limiter:           o.limiter,
		Policies:          o.policies,
		PolicyFile:        o.file,
		Logger:            slog.New(slog.NewTextHandler(logs, nil)),
		Registry:          reg,
		Now:               now,
		Headers:           o.headers,
		RejectBody:        o.rejectBody,
		TokenFailures:     o.tokenFailures,
		ReadHeaderTimeout: o.readHeaderTimeout,
		ReadTimeout:       o.readTimeout,
		IdleTimeout:       o.idleTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, db: db, reg: reg, logs: logs, url: srv.URL(), hc: &http.Client{Timeout: 30 * time.Second}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		db.Close()
	})
	return e
}

// creds are one OAuth client's credentials.
type creds struct{ org, orgID, id, secret string }

// client creates a client in org (creating the org).
func (e *env) client(org string) creds {
	e.t.Helper()
	ctx := context.Background()
	o, err := e.db.EnsureOrg(ctx, org)
	if err != nil {
		e.t.Fatal(err)
	}
	cl, secret, err := e.db.CreateClient(ctx, o.ID, "", "")
	if err != nil {
		e.t.Fatal(err)
	}
	return creds{org: org, orgID: o.ID, id: cl.ID, secret: secret}
}

// token gets an access token for c through POST /oauth/token.
func (e *env) token(c creds) string {
	e.t.Helper()
	r := e.do("POST", "/oauth/token", "", "grant_type=client_credentials", "Content-Type", "application/x-www-form-urlencoded", "basic", c.id+":"+c.secret)
	if r.status != 200 {
		e.t.Fatalf("token: %d %s", r.status, r.body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	r.decode(&tr)
	return tr.AccessToken
}

// resp is a response read whole.
type resp struct {
	t      testing.TB
	status int
	header http.Header
	body   []byte
}

func (r *resp) decode(v any) {
	r.t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		r.t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errBody decodes the one error shape and checks its status field.
func (r *resp) errBody() wire.ErrorBody {
	r.t.Helper()
	var b wire.ErrorBody
	r.decode(&b)
	if b.Status != r.status || b.Code == "" || b.Message == "" {
		r.t.Fatalf("error body %s does not match status %d", r.body, r.status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		r.t.Fatalf("error Content-Type %q", ct)
	}
	return b
}

// do sends a request; hdr holds header name/value pairs, where the name
// "basic" sets HTTP Basic credentials "id:secret". A JSON body gets
// Content-Type application/json unless hdr sets one.
func (e *env) do(method, path, token string, body any, hdr ...string) *resp {
	e.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "basic" {
			id, secret, _ := strings.Cut(hdr[i+1], ":")
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return &resp{t: e.t, status: res.StatusCode, header: res.Header, body: data}
}

// want fails unless the response has the status.
func (r *resp) want(status int) *resp {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	return r
}

// hasLimitHeaders fails unless every rate-limit header is present.
func (r *resp) hasLimitHeaders() *resp {
	r.t.Helper()
	for _, h := range []string{"RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if r.header.Get(h) == "" {
			r.t.Fatalf("status %d: header %s missing; headers %v", r.status, h, r.header)
		}
	}
	return r
}

func (e *env) script(s *resp) ratelab.Script {
	e.t.Helper()
	var sc ratelab.Script
	s.decode(&sc)
	return sc
}

// generous returns policies that never throttle the tests that are not
// about limits.
func generous(t testing.TB) *httpapi.Policies {
	t.Helper()
	specs := httpapi.DefaultPolicySpecs()
	for i := range specs {
		specs[i].Rate, specs[i].Burst = "100000/s", 100000
	}
	ps, err := httpapi.BuildPolicies("generous", specs)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}
