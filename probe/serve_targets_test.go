package probe_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ratelab"
	"ratelab/internal/testenv"
	"ratelab/load"
	"ratelab/probe"
)

// The probe against `ratelab serve`, the real binary built by the test
// and started on a free loopback port with a policy file of testdata
// (serve-*.yaml): a token bucket under each header dialect of --headers
// (none with the terse 429 body: nothing but Retry-After, the reference
// scenario's complaint), a bucket that counts its 429s, a fixed window
// aligned to the epoch, and a concurrency limit. The checks are the peer cases' (runPeerCaseReport): family,
// numbers (±5 %, quotas ±1), scope, at most 800 requests, 60 s and 20 %
// of 429s. A failing case prints every request it sent and its answer
// (record).

// ratelabBin is the real ratelab, built on first use into a directory of
// TestMain's that it removes at the end.
var ratelabBin struct {
	dir  string
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ratelab-probe-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe tests:", err)
		os.Exit(1)
	}
	ratelabBin.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ratelabProgram returns the path of the real ratelab, building it once.
func ratelabProgram(t *testing.T) string {
	t.Helper()
	ratelabBin.once.Do(func() { ratelabBin.path, ratelabBin.err = testenv.BuildRatelabIn(ratelabBin.dir) })
	if ratelabBin.err != nil {
		t.Fatal(ratelabBin.err)
	}
	return ratelabBin.path
}

// startServe runs `ratelab serve` with testdata/policyFile and extra
// flags on a free loopback port, over a SQLite file of its own holding
// two clients of one org (made by `ratelab clients create`), until the
// test ends.
func startServe(t *testing.T, policyFile string, extra ...string) *ratelabServer {
	t.Helper()
	bin := ratelabProgram(t)
	db := "sqlite:" + filepath.Join(t.TempDir(), "ratelab.db")
	var creds [2]struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	for i := range creds {
		out, err := exec.Command(bin, "clients", "create", "--org", "probe", "--db", db).Output()
		if err != nil {
			t.Fatalf("ratelab clients create: %v %s", err, out)
		}
		if err := json.Unmarshal(out, &creds[i]); err != nil || creds[i].ID == "" {
			t.Fatalf("ratelab clients create printed %q: %v", out, err)
		}
	}
	port := freeLoopbackPort(t)
	args := append([]string{"serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--db", db,
		"--policies", filepath.Join("testdata", policyFile)}, extra...)
	runPeer(t, port, bin, args...)
	return &ratelabServer{url: fmt.Sprintf("http://127.0.0.1:%d", port),
		id1: creds[0].ID, secret1: creds[0].Secret, id2: creds[1].ID, secret2: creds[1].Secret}
}

// serveConfig is a probe of rs at up to 100/s within a budget of 800:
// of PUT /api/v2/architect/scripts/{{.id}} with id varied (writes), or of
// GET /api/v2/users (reads), with the second client when two.
func serveConfig(t *testing.T, rs *ratelabServer, writes, two bool) probe.Config {
	cfg := probe.Config{
		Request: load.RequestSpec{Method: "GET", URL: rs.url + "/api/v2/users"},
		Client:  rs.client(t, false),
		MaxRate: mustRate(t, "100/s"),
		Budget:  800,
	}
	if writes {
		cfg.Request = putScript(rs.url)
		cfg.Vary = []probe.Vary{mustVary(t, "id=uuid")}
	}
	if two {
		cfg.Client2 = rs.client(t, true)
	}
	record(t, &cfg)
	return cfg
}

// TestProbeServeGCRA probes one token bucket under the header dialects
// that advertise it (x-ratelimit is TestProbeServeCountRejected's, none
// TestProbeServeReference's): the numbers must come out the same whatever
// the server says.
func TestProbeServeGCRA(t *testing.T) {
	peerTest(t)
	for _, headers := range []string{"ietf", "github", "inin"} {
		t.Run(headers, func(t *testing.T) {
			rs := startServe(t, "serve-gcra.yaml", "--headers", headers)
			runPeerCase(t, "ratelab serve gcra 5/s burst 5 per script, --headers "+headers, serveConfig(t, rs, true, false),
				want{scope: "resource", algorithm: "token-bucket", rate: 5, quota: 5})
		})
	}
}

// TestProbeServeReference is the reference scenario's limit as its user
// met it: serve's default per-script bucket (2/s, burst 4) behind
// --headers none --reject-body terse, so that a 429 says nothing but
// Retry-After: 1.
func TestProbeServeReference(t *testing.T) {
	peerTest(t)
	rs := startServe(t, "serve-reference.yaml", "--headers", "none", "--reject-body", "terse")
	runPeerCase(t, "ratelab serve gcra 2/s burst 4 per script, --headers none --reject-body terse", serveConfig(t, rs, true, false),
		want{scope: "resource", algorithm: "token-bucket", rate: 2, quota: 4})
}

func TestProbeServeCountRejected(t *testing.T) {
	peerTest(t)
	rs := startServe(t, "serve-count-rejected.yaml", "--headers", "x-ratelimit")
	runPeerCase(t, "ratelab serve gcra 5/s burst 5 count_rejected per script, --headers x-ratelimit", serveConfig(t, rs, true, false),
		want{scope: "resource", algorithm: "token-bucket", rate: 5, quota: 5, countsRejected: ptr(true)})
}

// TestProbeServeFixedWindowEpoch probes a fixed window of 20 per 2 s per
// client aligned to the epoch, with GitHub's headers (a reset as an epoch
// instant), and a second client to tell per client from shared.
func TestProbeServeFixedWindowEpoch(t *testing.T) {
	peerTest(t)
	rs := startServe(t, "serve-fixed-epoch.yaml", "--headers", "github")
	rep := runPeerCaseReport(t, "ratelab serve fixed-window 20/2s epoch per client, --headers github", serveConfig(t, rs, false, true),
		want{scope: "endpoint, per client", algorithm: "fixed-window", quota: 20, windowS: 2, rate: 10})
	checkWindowStart(t, rep, "epoch")
}

// TestProbeServeConcurrency needs requests that stay in flight, and serve
// has no slow route: each PUT uploads the largest script serve takes
// (256 KiB of text) slowly instead, its last byte 200 ms after the rest
// (slowUpload). serve takes its limiter decision on the headers and holds
// the concurrency slot until it has answered, so an admitted write is in
// flight for those 200 ms, as a slow client's would be; a rejected one is
// answered at once (net/http does not wait for an unread body of 256 KiB
// or more before it answers; it closes the connection after).
func TestProbeServeConcurrency(t *testing.T) {
	peerTest(t)
	rs := startServe(t, "serve-concurrency.yaml", "--headers", "none", "--reject-body", "terse")
	cfg := serveConfig(t, rs, true, false)
	cfg.Request.Body = `{"name":"probe","text":"` + strings.Repeat("x", ratelab.MaxScriptTextLen) + `"}`
	cfg.Client = &http.Client{Timeout: cfg.Client.Timeout, Transport: slowUpload{base: cfg.Client.Transport, delay: 200 * time.Millisecond}}
	runPeerCase(t, "ratelab serve concurrency 4 per client (256 KiB uploads, last byte after 200 ms), --headers none --reject-body terse", cfg,
		want{scope: "endpoint", algorithm: "concurrency", quota: 4})
}

// slowUpload sends each request body's last byte delay after the rest
// (the headers go at once: net/http flushes them before a body it does
// not hold in memory).
type slowUpload struct {
	base  http.RoundTripper
	delay time.Duration
}

func (s slowUpload) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return s.base.RoundTrip(r)
	}
	r2 := r.Clone(r.Context())
	r2.Body = &slowBody{r: r.Body, ctx: r.Context(), delay: s.delay}
	return s.base.RoundTrip(r2)
}

// slowBody reads all but the last byte at once, and that byte after delay.
type slowBody struct {
	r     io.ReadCloser
	ctx   context.Context
	delay time.Duration
	buf   []byte
	read  bool
}

func (b *slowBody) Read(p []byte) (int, error) {
	if !b.read {
		all, err := io.ReadAll(b.r)
		if err != nil {
			return 0, err
		}
		b.buf, b.read = all, true
	}
	switch len(b.buf) {
	case 0:
		return 0, io.EOF
	case 1:
		select {
		case <-time.After(b.delay):
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
		n := copy(p, b.buf)
		b.buf = b.buf[n:]
		return n, nil
	}
	n := copy(p, b.buf[:len(b.buf)-1])
	b.buf = b.buf[n:]
	return n, nil
}

func (b *slowBody) Close() error { return b.r.Close() }

// requestLog records every request a probe sends: when it went, when its
// answer came, the status and the rate-limit headers. A failing case
// prints it, as the evidence of what the limiter did.
type requestLog struct {
	start time.Time
	mu    sync.Mutex
	lines []string
}

// record makes cfg's clients write to a log that the test prints if it
// fails.
func record(t *testing.T, cfg *probe.Config) {
	t.Helper()
	l := &requestLog{start: time.Now()}
	wrap := func(c *http.Client, who string) *http.Client {
		if c == nil {
			return nil
		}
		base := c.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		cc := *c
		cc.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent := time.Since(l.start)
			res, err := base.RoundTrip(r)
			took := time.Since(l.start) - sent
			line := fmt.Sprintf("%9.4f +%7.4f %s %s %s", sent.Seconds(), took.Seconds(), who, r.Method, r.URL.Path)
			if err != nil {
				line += " error " + err.Error()
			} else {
				line += fmt.Sprintf(" %d", res.StatusCode)
				for k, vs := range res.Header {
					if lk := strings.ToLower(k); strings.Contains(lk, "ratelimit") || lk == "retry-after" {
						line += fmt.Sprintf(" %s=%s", k, strings.Join(vs, ","))
					}
				}
			}
			l.mu.Lock()
			l.lines = append(l.lines, line)
			l.mu.Unlock()
			return res, err
		})
		return &cc
	}
	cfg.Client, cfg.Client2 = wrap(cfg.Client, "c1"), wrap(cfg.Client2, "c2")
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("RATELAB_PROBE_LOG") != "" {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Logf("request log (s since start, +s to the answer, client, request, status, headers):\n%s", strings.Join(l.lines, "\n"))
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func checkWindowStart(t *testing.T, rep *probe.Report, start string) {
	t.Helper()
	if len(rep.Limits) > 0 && rep.Limits[0].WindowStart != start {
		t.Errorf("window start %q, want %q", rep.Limits[0].WindowStart, start)
	}
}
