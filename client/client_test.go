package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"ratelab"
	"ratelab/client"
	"ratelab/httpapi"
	"ratelab/internal/storetest"
	"ratelab/sqlite"
)

// cliServer is a real server on 127.0.0.1:0 over SQLite and the in-memory
// limiter, for the client's end-to-end tests.
type cliServer struct {
	t   *testing.T
	srv *httpapi.Server
	db  *sqlite.DB
}

func startCliServer(t *testing.T, ps *httpapi.Policies, tokenTTL time.Duration) *cliServer {
	return startCliServerAt(t, ps, tokenTTL, nil)
}

// startCliServerAt is startCliServer with a clock for the server, its
// limiter and its database (nil: the real one).
func startCliServerAt(t *testing.T, ps *httpapi.Policies, tokenTTL time.Duration, now func() time.Time) *cliServer {
	t.Helper()
	ctx := context.Background()
	var opts []sqlite.Option
	if now != nil {
		opts = append(opts, sqlite.WithClock(now))
	}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "ratelab.db"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.NewServer(httpapi.Config{Scripts: db, Auth: db, Policies: ps, TokenTTL: tokenTTL, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		db.Close()
	})
	return &cliServer{t: t, srv: srv, db: db}
}

// cliCreds are an OAuth client's credentials and its org.
type cliCreds struct{ orgID, id, secret string }

func (s *cliServer) creds(org string) cliCreds {
	s.t.Helper()
	ctx := context.Background()
	o, err := s.db.EnsureOrg(ctx, org)
	if err != nil {
		s.t.Fatal(err)
	}
	cl, secret, err := s.db.CreateClient(ctx, o.ID, "", "")
	if err != nil {
		s.t.Fatal(err)
	}
	return cliCreds{orgID: o.ID, id: cl.ID, secret: secret}
}

// counter is an http.RoundTripper that counts responses by status and
// token requests: the server-side view of what a client sent.
type counter struct {
	next   http.RoundTripper
	mu     sync.Mutex
	status map[int]int
	tokens int
	writes int
}

func newCounter() *counter { return &counter{next: http.DefaultTransport, status: map[int]int{}} }

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := c.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.status[res.StatusCode]++
	if r.URL.Path == "/oauth/token" {
		c.tokens++
	} else if r.Method == http.MethodPut || r.Method == http.MethodPost {
		c.writes++
	}
	c.mu.Unlock()
	return res, nil
}

func (c *counter) count(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status[status]
}

func (c *counter) snapshot() (status map[int]int, tokens, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	status = map[int]int{}
	for k, v := range c.status {
		status[k] = v
	}
	return status, c.tokens, c.writes
}

func (s *cliServer) newClient(cr cliCreds, cnt *counter, mod func(*client.Config)) *client.Client {
	s.t.Helper()
	cfg := client.Config{
		BaseURL: s.srv.URL(), ClientID: cr.id, ClientSecret: cr.secret,
		HTTPClient: &http.Client{Transport: cnt, Timeout: 30 * time.Second},
		Logger:     slog.New(slog.NewTextHandler(&testWriter{t: s.t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// scaledPolicies returns the default policies with every rate multiplied
// by k and every burst too, so every window stays as it is.
func scaledPolicies(t *testing.T, k int64) *httpapi.Policies {
	t.Helper()
	specs := httpapi.DefaultPolicySpecs()
	for i := range specs {
		count, per, _ := strings.Cut(specs[i].Rate, "/")
		n, err := strconv.ParseInt(count, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		specs[i].Rate = strconv.FormatInt(n*k, 10) + "/" + per
		specs[i].Burst *= k
	}
	ps, err := httpapi.BuildPolicies("scaled", specs)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestClientScriptService(t *testing.T) {
	t.Parallel()
	s := startCliServer(t, nil, 0)
	cr := s.creds("acme")
	cnt := newCounter()
	c := s.newClient(cr, cnt, nil)
	ctx := context.Background()

	created, err := c.CreateScript(ctx, "", "greeting", "hello", "")
	if err != nil {
		t.Fatal(err)
	}
	if created.ID == "" || created.Version != 1 || created.Text != "hello" {
		t.Fatalf("created %+v", created)
	}
	got, err := c.FindScript(ctx, "", created.ID)
	if err != nil || got.Text != "hello" || got.Version != 1 {
		t.Fatalf("find: %+v, %v", got, err)
	}
	if _, err := c.FindScript(ctx, "", "nope"); ratelab.ErrorCode(err) != ratelab.ENOTFOUND {
		t.Fatalf("find unknown: %v", err)
	}
	var ae *client.APIError
	if _, err := c.FindScript(ctx, "", "nope"); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("find unknown: %#v", err)
	}

	// PutScript creates an unknown id, then replaces it.
	sc, isNew, err := c.PutScript(ctx, "", ratelab.ScriptUpdate{ID: "main", Name: "main", Text: "v1"})
	if err != nil || !isNew || sc.Version != 1 {
		t.Fatalf("put new: %+v %v %v", sc, isNew, err)
	}
	sc, isNew, err = c.PutScript(ctx, "", ratelab.ScriptUpdate{ID: "main", Name: "main", Text: "v2"})
	if err != nil || isNew || sc.Version != 2 || sc.Text != "v2" {
		t.Fatalf("put: %+v %v %v", sc, isNew, err)
	}
	// A compare-and-swap on a stale version fails alone.
	if _, err := c.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "main", Name: "main", Text: "stale", IfVersion: 1}); ratelab.ErrorCode(err) != ratelab.ECONFLICT {
		t.Fatalf("stale CAS: %v", err)
	}
	if sc, err = c.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "main", Name: "main", Text: "v3", IfVersion: 2}); err != nil || sc.Version != 3 {
		t.Fatalf("CAS: %+v %v", sc, err)
	}
	// Invalid updates fail before anything is sent.
	if _, err := c.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "main", Text: "no name"}); ratelab.ErrorCode(err) != ratelab.EUNPROCESSABLE {
		t.Fatalf("invalid: %v", err)
	}

	list, total, err := c.FindScripts(ctx, "", ratelab.Page{Size: 1, Number: 2})
	if err != nil || total != 2 || len(list) != 1 {
		t.Fatalf("list: %d %d %v", len(list), total, err)
	}
	vs, total, err := c.ScriptVersions(ctx, "", "main", ratelab.Page{Size: 10, Number: 1})
	if err != nil || total != 3 || len(vs) != 3 || vs[0].Text != "v3" || vs[2].Text != "v1" {
		t.Fatalf("versions: %v %d %v", vs, total, err)
	}
	users, err := c.Users(ctx)
	if err != nil || len(users) == 0 {
		t.Fatalf("users: %v %v", users, err)
	}

	// UpdateScripts: per-item results in input order, a bad id failing alone.
	res, err := c.UpdateScripts(ctx, "", []ratelab.ScriptUpdate{
		{ID: "b1", Name: "b1", Text: "x"},
		{ID: "bad id!", Name: "bad", Text: "x"},
		{ID: "b2", Name: "b2", Text: "y"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err != nil || res[0].Script.ID != "b1" || !res[0].Created || res[2].Err != nil || res[2].Script.Text != "y" {
		t.Fatalf("bulk results %+v", res)
	}
	if ratelab.ErrorCode(res[1].Err) != ratelab.EUNPROCESSABLE {
		t.Fatalf("bad item: %v", res[1].Err)
	}

	if err := c.DeleteScript(ctx, "", "b1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteScript(ctx, "", "b1"); ratelab.ErrorCode(err) != ratelab.ENOTFOUND {
		t.Fatalf("delete twice: %v", err)
	}
	if n := cnt.count(429); n != 0 {
		t.Errorf("%d responses of 429", n)
	}
}

func TestClientModifyRetriesConflicts(t *testing.T) {
	t.Parallel()
	s := startCliServer(t, nil, 0)
	cr := s.creds("acme")
	c := s.newClient(cr, newCounter(), nil)
	ctx := context.Background()
	if _, err := c.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "counter", Name: "counter", Text: "0"}); err != nil {
		t.Fatal(err)
	}
	// Each Modify races another writer that bumps the script between the
	// read and the write, on the first attempt only.
	calls := 0
	out, err := c.Modify(ctx, "counter", func(sc *ratelab.Script) error {
		calls++
		if calls == 1 {
			if _, _, err := s.db.PutScript(ctx, cr.orgID, ratelab.ScriptUpdate{ID: "counter", Name: "counter", Text: "10"}); err != nil {
				return err
			}
		}
		n, err := strconv.Atoi(sc.Text)
		if err != nil {
			return err
		}
		sc.Text = strconv.Itoa(n + 1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || out.Text != "11" || out.Version != 3 {
		t.Fatalf("after %d calls: %+v", calls, out)
	}
	stop := errors.New("stop")
	if _, err := c.Modify(ctx, "counter", func(*ratelab.Script) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn error: %v", err)
	}
}

// TestClientOneScriptCoalescing is the reference scenario done right: 20
// goroutines × 100 updates of one script under the default policies
// (2 writes/s per script, burst 4). Each goroutine keeps up to 10 of its
// updates outstanding. Coalescing turns the 2000 updates into as many
// writes as the per-script limit allows, with no 429, no lost final
// state, and every caller told a version holding its text or a newer one.
func TestClientOneScriptCoalescing(t *testing.T) {
	t.Parallel()
	const goroutines, updates, window = 20, 100, 10
	s := startCliServer(t, nil, 0)
	cr := s.creds("acme")
	cnt := newCounter()
	c := s.newClient(cr, cnt, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	// Submissions are numbered under a lock, so the number order is the
	// order the client received them in.
	var mu sync.Mutex
	seq := 0
	submit := func(g, i int) (int, *client.Pending) {
		mu.Lock()
		defer mu.Unlock()
		seq++
		return seq, c.Submit(ctx, ratelab.ScriptUpdate{ID: "hot", Name: "hot", Text: fmt.Sprintf("%06d g%02d u%03d", seq, g, i)})
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*updates)
	for g := range goroutines {
		wg.Go(func() {
			type sub struct {
				n int
				p *client.Pending
			}
			var subs []sub
			check := func(s sub) {
				sc, err := s.p.Wait(ctx)
				if err != nil {
					errs <- fmt.Errorf("update %d: %w", s.n, err)
					return
				}
				got, _ := strconv.Atoi(sc.Text[:6])
				if got < s.n {
					errs <- fmt.Errorf("update %d got version %d holding older update %d", s.n, sc.Version, got)
				}
			}
			for i := range updates {
				if i >= window {
					check(subs[i-window])
				}
				n, p := submit(g, i)
				subs = append(subs, sub{n, p})
			}
			for _, s := range subs[len(subs)-window:] {
				check(s)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	final, err := s.db.FindScript(context.Background(), cr.orgID, "hot")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%06d", seq); !strings.HasPrefix(final.Text, want) {
		t.Errorf("stored text %q, want the last update %s", final.Text, want)
	}
	writes := final.Version // every accepted write is one version
	budget := 4 + 2*elapsed.Seconds()
	st := c.Stats()
	status, tokens, sent := cnt.snapshot()
	t.Logf("%d updates in %v: %d writes (budget %.1f), %d write requests, responses %v, %d token requests, stats %+v",
		goroutines*updates, elapsed.Round(time.Millisecond), writes, budget, sent, status, tokens, st)
	if n := status[429]; n != 0 {
		t.Errorf("%d responses of 429, want 0", n)
	}
	if float64(writes) > budget+1 {
		t.Errorf("%d writes in %v exceed the per-script budget %.1f", writes, elapsed, budget)
	}
	if writes < 5 {
		t.Errorf("only %d writes: the client did not use the quota it had", writes)
	}
}

// naiveUpdates sends updates one PUT at a time, waiting out Retry-After on
// each 429 and sending the same PUT again: what a script without the
// client does. It returns the 429 count.
func naiveUpdates(ctx context.Context, t *testing.T, baseURL string, cr cliCreds, hc *http.Client, upds []ratelab.ScriptUpdate) int {
	t.Helper()
	cc := clientcredentials.Config{ClientID: cr.id, ClientSecret: cr.secret, TokenURL: baseURL + "/oauth/token", AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	if err != nil {
		t.Fatal(err)
	}
	n429 := 0
	for _, u := range upds {
		for attempt := 0; ; attempt++ {
			if attempt > 20 {
				t.Fatalf("update of %s: still 429 after 20 attempts", u.ID)
			}
			body := fmt.Sprintf(`{"name":%q,"text":%q}`, u.Name, u.Text)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, baseURL+"/api/v2/architect/scripts/"+u.ID, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			tok.SetAuthHeader(req)
			res, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode == http.StatusTooManyRequests {
				n429++
				secs, _ := strconv.Atoi(res.Header.Get("Retry-After"))
				select {
				case <-time.After(time.Duration(secs) * time.Second):
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				}
				continue
			}
			if res.StatusCode >= 300 {
				t.Fatalf("naive PUT %s: %d", u.ID, res.StatusCode)
			}
			break
		}
	}
	return n429
}

// runWaves sends upds through a new client of a new org in waves of one
// update per script, waiting for each wave.
func runWaves(ctx context.Context, t *testing.T, s *cliServer, upds []ratelab.ScriptUpdate, scripts int) (time.Duration, client.Stats) {
	t.Helper()
	cr := s.creds("waves-org")
	cnt := newCounter()
	c := s.newClient(cr, cnt, nil)
	start := time.Now()
	for w := 0; w < len(upds); w += scripts {
		res, err := c.UpdateScripts(ctx, "", upds[w:min(w+scripts, len(upds))])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	d := time.Since(start)
	checkFinal(t, s.db, cr.orgID, upds)
	if n := cnt.count(429); n != 0 {
		t.Errorf("client in waves got %d responses of 429, want 0", n)
	}
	return d, c.Stats()
}

// manyUpdates returns n updates spread round-robin over scripts.
func manyUpdates(n, scripts int) []ratelab.ScriptUpdate {
	upds := make([]ratelab.ScriptUpdate, n)
	for j := range upds {
		id := fmt.Sprintf("s%03d", j%scripts)
		upds[j] = ratelab.ScriptUpdate{ID: id, Name: id, Text: fmt.Sprintf("update %04d", j)}
	}
	return upds
}

// checkFinal reports scripts whose stored text is not their last update.
func checkFinal(t *testing.T, db *sqlite.DB, orgID string, upds []ratelab.ScriptUpdate) {
	t.Helper()
	last := map[string]string{}
	for _, u := range upds {
		last[u.ID] = u.Text
	}
	for id, text := range last {
		sc, err := db.FindScript(context.Background(), orgID, id)
		if err != nil {
			t.Fatalf("script %s: %v", id, err)
		}
		if sc.Text != text {
			t.Errorf("script %s holds %q, want %q", id, sc.Text, text)
		}
	}
}

// compareClientNaive runs 1000 updates across 200 scripts through the
// client and then, in a second org with fresh quota on the same server,
// one PUT at a time honouring Retry-After, and returns the speed-up.
//
// With waves set it also runs the updates in waves of one update per
// script, each wave waited for: batching without any merging.
func compareClientNaive(t *testing.T, ps *httpapi.Policies, waves bool) float64 {
	const n, scripts = 1000, 200
	s := startCliServer(t, ps, 0)
	upds := manyUpdates(n, scripts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	crC := s.creds("client-org")
	cnt := newCounter()
	c := s.newClient(crC, cnt, nil)
	start := time.Now()
	ps2 := make([]*client.Pending, n)
	for i, u := range upds {
		ps2[i] = c.Submit(ctx, u)
	}
	for i, p := range ps2 {
		if _, err := p.Wait(ctx); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	clientTime := time.Since(start)
	checkFinal(t, s.db, crC.orgID, upds)

	// Batching alone: the same updates in waves of one update per script,
	// each wave waited for, so nothing is merged.
	var wavesTime time.Duration
	var wavesStats client.Stats
	if waves {
		wavesTime, wavesStats = runWaves(ctx, t, s, upds, scripts)
	}

	crN := s.creds("naive-org")
	ncnt := newCounter()
	start = time.Now()
	naive429 := naiveUpdates(ctx, t, s.srv.URL(), crN, &http.Client{Transport: ncnt, Timeout: 30 * time.Second}, upds)
	naiveTime := time.Since(start)
	checkFinal(t, s.db, crN.orgID, upds)

	status, _, sent := cnt.snapshot()
	ratio := naiveTime.Seconds() / clientTime.Seconds()
	t.Logf("policies %s: %d updates over %d scripts: client %v (%d write requests, responses %v, stats %+v); naive %v (%d × 429); ratio %.1f×",
		ps.Source, n, scripts, clientTime.Round(time.Millisecond), sent, status, c.Stats(), naiveTime.Round(time.Millisecond), naive429, ratio)
	if waves {
		wr := naiveTime.Seconds() / wavesTime.Seconds()
		t.Logf("client in waves of %d (batching without merging): %v (stats %+v); ratio to naive %.1f×", scripts, wavesTime.Round(time.Millisecond), wavesStats, wr)
		if wr < 2 {
			t.Errorf("batching alone only %.1f× faster than naive", wr)
		}
	}
	if status[429] != 0 {
		t.Errorf("client got %d responses of 429, want 0", status[429])
	}
	if naive429 == 0 {
		// Under the race detector a PUT can take longer than the scaled
		// limits' interval; the naive run is then bound by its own
		// one-at-a-time latency rather than by the limits.
		t.Logf("the naive run met no 429")
	}
	return ratio
}

// TestClientManyScriptsVersusNaive measures 1000 updates across 200
// scripts through the client against the same updates sent one at a time
// with Retry-After honoured. Under the default policies the naive run
// needs about 50 s (script-writes allows 20 writes/s per org), too long
// for the unit tests; this test runs the defaults with every rate and
// burst ×5 (same windows, same shape: the naive run still meets 429s),
// and RATELAB_CLIENT_LONG=1 adds the run on the defaults themselves.
func TestClientManyScriptsVersusNaive(t *testing.T) {
	ratio := compareClientNaive(t, scaledPolicies(t, 5), false)
	if ratio < 3 {
		t.Errorf("client only %.1f× faster than naive; the target is 5×", ratio)
	}
	if os.Getenv("RATELAB_CLIENT_LONG") == "1" {
		ratio := compareClientNaive(t, httpapi.DefaultPolicies(), true)
		if ratio < 5 {
			t.Errorf("default policies: client only %.1f× faster than naive; the target is 5×", ratio)
		}
	}
}

// TestClientAdaptsToPolicyChange changes the per-script policy twice
// while one caller updates a script as fast as the client allows: first
// tighter (5/s → 2/s), then looser (→ 10/s), each with a 1 s window. The
// client must meet at most one 429 per change and run at the new rate
// within one window of it.
func TestClientAdaptsToPolicyChange(t *testing.T) {
	t.Parallel()
	policies := func(rate string, burst int64) *httpapi.Policies {
		specs := httpapi.DefaultPolicySpecs()
		for i := range specs {
			if specs[i].Name == "script-writes-per-script" {
				specs[i].Rate, specs[i].Burst = rate, burst
			}
		}
		ps, err := httpapi.BuildPolicies(rate, specs)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	s := startCliServer(t, policies("5/s", 5), 0)
	cr := s.creds("acme")
	cnt := newCounter()
	c := s.newClient(cr, cnt, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	var done []time.Time // completion time of each write
	i := 0
	run := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			i++
			if _, err := c.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "live", Name: "live", Text: strconv.Itoa(i)}); err != nil {
				t.Fatalf("update %d: %v", i, err)
			}
			done = append(done, time.Now())
		}
	}
	rate := func(from, to time.Time) float64 {
		n := 0
		for _, d := range done {
			if !d.Before(from) && d.Before(to) {
				n++
			}
		}
		return float64(n) / to.Sub(from).Seconds()
	}
	phase := func(name string, ps *httpapi.Policies, want float64, max429 int) {
		before := cnt.count(429)
		s.srv.SetPolicies(ps)
		changed := time.Now()
		run(3 * time.Second)
		got429 := cnt.count(429) - before
		// One window (1 s) after the change the client must be at the new
		// rate: measured over the next 2 s.
		r := rate(changed.Add(time.Second), changed.Add(3*time.Second))
		t.Logf("%s: %d × 429, %.2f writes/s after one window (policy %.0f/s)", name, got429, r, want)
		if got429 > max429 {
			t.Errorf("%s: %d responses of 429, want at most %d", name, got429, max429)
		}
		if r > want*1.05+0.5 || r < want*0.7 {
			t.Errorf("%s: %.2f writes/s one window after the change, want about %.0f", name, r, want)
		}
	}
	run(2 * time.Second)
	if n := cnt.count(429); n != 0 {
		t.Fatalf("%d responses of 429 before any change", n)
	}
	phase("tighter", policies("2/s", 2), 2, 1)
	phase("looser", policies("10/s", 10), 10, 1)
	sc, err := s.db.FindScript(context.Background(), cr.orgID, "live")
	if err != nil || sc.Text != strconv.Itoa(i) {
		t.Fatalf("final %+v %v, want text %d", sc, err, i)
	}
}

// TestClientRefreshesToken gives tokens a 2 s life and the client a 1.5 s
// early refresh, on one manual clock for the server, its database and the
// client: the token is kept for 0.5 s, replaced after, and replaced before
// use after a long pause, so that no request meets a 401.
func TestClientRefreshesToken(t *testing.T) {
	t.Parallel()
	clk := storetest.NewClock(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	s := startCliServerAt(t, nil, 2*time.Second, clk.Now)
	cr := s.creds("acme")
	cnt := newCounter()
	c := s.newClient(cr, cnt, func(cfg *client.Config) {
		cfg.TokenRefreshBefore = 1500 * time.Millisecond
		cfg.Now = clk.Now
	})
	users := func(wantTokens int, when string) {
		t.Helper()
		if _, err := c.Users(t.Context()); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if _, tokens, _ := cnt.snapshot(); tokens != wantTokens {
			t.Fatalf("%s: %d token requests, want %d", when, tokens, wantTokens)
		}
	}
	users(1, "first request")
	clk.Advance(400 * time.Millisecond)
	users(1, "0.4 s later, the token fresh")
	clk.Advance(200 * time.Millisecond)
	users(2, "0.6 s after issue, within 1.5 s of expiry")
	clk.Advance(time.Hour)
	users(3, "an hour later")
	if status, _, _ := cnt.snapshot(); status[401] != 0 {
		t.Errorf("%d responses of 401", status[401])
	}
}

// TestClientCredentialsRefused gives the client a new secret under a
// running client: its token is revoked. A request and a write each meet
// one 401 invalid_token, ask for a new token once, and fail with the token
// endpoint's refusal, which is final: the one retry policy of do and of
// the writer, which used to retry the refusal as a network error.
func TestClientCredentialsRefused(t *testing.T) {
	t.Parallel()
	s := startCliServer(t, nil, 0)
	cr := s.creds("acme")
	ctx := t.Context()
	// Two clients of the same credentials, each with a token that works.
	cnt, wcnt := newCounter(), newCounter()
	c, wc := s.newClient(cr, cnt, nil), s.newClient(cr, wcnt, nil)
	if _, err := c.Users(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := wc.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "r", Name: "r", Text: "before"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.RotateSecret(ctx, cr.id, ""); err != nil {
		t.Fatal(err)
	}
	for _, call := range []struct {
		what string
		cnt  *counter
		do   func() error
	}{
		{"GET users", cnt, func() error { _, err := c.Users(ctx); return err }},
		{"PUT script", wcnt, func() error {
			_, err := wc.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "r", Name: "r", Text: "after"})
			return err
		}},
	} {
		cnt := call.cnt
		before, tokensBefore, _ := cnt.snapshot()
		err := call.do()
		var refused *oauth2.RetrieveError
		if !errors.As(err, &refused) {
			t.Fatalf("%s after the secret changed: %v, want the token endpoint's refusal", call.what, err)
		}
		after, tokens, _ := cnt.snapshot()
		if tokens-tokensBefore != 1 || after[401]-before[401] != 2 {
			t.Errorf("%s: %d token requests and %d responses of 401, want 1 and 2 (the revoked token's, the refused token request's)",
				call.what, tokens-tokensBefore, after[401]-before[401])
		}
	}
}

// holdWrites is a transport that delivers PUTs only when their context
// ends, as a network that has stopped answering would: it says when one
// has started.
type holdWrites struct {
	next    http.RoundTripper
	started chan struct{}
}

func (h *holdWrites) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPut {
		return h.next.RoundTrip(r)
	}
	select {
	case h.started <- struct{}{}:
	default:
	}
	<-r.Context().Done()
	return nil, r.Context().Err()
}

// TestClientCloseCancelsWrites closes a client with a PUT in flight that
// no answer will end: Close cancels it and returns, and the write's caller
// learns that the client closed while it was in flight.
func TestClientCloseCancelsWrites(t *testing.T) {
	t.Parallel()
	s := startCliServer(t, nil, 0)
	cr := s.creds("acme")
	hold := &holdWrites{next: http.DefaultTransport, started: make(chan struct{}, 1)}
	c, err := client.New(client.Config{BaseURL: s.srv.URL(), ClientID: cr.id, ClientSecret: cr.secret, HTTPClient: &http.Client{Transport: hold}})
	if err != nil {
		t.Fatal(err)
	}
	p := c.Submit(t.Context(), ratelab.ScriptUpdate{ID: "held", Name: "held", Text: "x"})
	select {
	case <-hold.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the PUT was not sent within 10 s")
	}
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting after 5 s on a write in flight")
	}
	_, err = p.Wait(t.Context())
	if err == nil || !strings.Contains(err.Error(), "client closed while the write was in flight") {
		t.Fatalf("the held write: %v, want the client closed while it was in flight", err)
	}
}

// TestClientSubmitCanceled withdraws an update whose context ends before
// it is sent, and keeps one merged with a live caller's.
func TestClientSubmitCanceled(t *testing.T) {
	t.Parallel()
	s := startCliServer(t, nil, 0)
	cr := s.creds("acme")
	c := s.newClient(cr, newCounter(), nil)
	ctx := context.Background()
	// Spend the script's burst so the next updates wait for quota.
	for i := range 4 {
		if _, err := c.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "x", Name: "x", Text: "burst " + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	alone := c.Submit(cctx, ratelab.ScriptUpdate{ID: "x", Name: "x", Text: "canceled"})
	cancel()
	if _, err := alone.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled update: %v", err)
	}
	sc, err := c.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "x", Name: "x", Text: "kept"})
	if err != nil || sc.Text != "kept" || sc.Version != 5 {
		t.Fatalf("after a withdrawn update: %+v %v", sc, err)
	}
	c.Close()
	if _, err := c.UpdateScript(ctx, ratelab.ScriptUpdate{ID: "x", Name: "x", Text: "late"}); err == nil {
		t.Fatal("update after Close succeeded")
	}
}
