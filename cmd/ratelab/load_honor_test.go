package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ratelab/client"
	"ratelab/load"
)

// honorWindow is the fixed window of the --retry-after honor tests: 20
// requests per 5 s, aligned to the epoch, per client, on GET
// /api/v2/users.
const (
	honorQuota  = 20
	honorWindow = 5 * time.Second
)

// startWindowServe starts `ratelab serve` with honorWindow as its only
// limit, advertised in the headers dialect.
func startWindowServe(t *testing.T, headers string) *running {
	t.Helper()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies.yaml")
	if err := os.WriteFile(pol, []byte(`policies:
  - name: user-window
    algorithm: fixed-window
    rate: 20/5s
    scope: client
    classes: [users]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServe(t, nil, "--addr", "127.0.0.1:0", "--db", "sqlite:"+filepath.Join(dir, "r.db"),
		"--policies", pol, "--headers", headers, "--bootstrap-client", "demo:s3cret")
}

// wholeAfter bounds how late into a window a sender that honours it may
// begin to send: a reset in whole seconds (ietf, inin) comes up to 1 s
// late; GitHub's epoch reset comes on time, plus the tracker's bound on
// the server's clock lag (less than 1 s once responses have come; see
// limit.ResetTracker) plus 1 s more from ratelab serve, whose github
// x-ratelimit-reset is rounded up from a clock read after the decision
// (httpapi's setHeaders: a window ending at :35 is advertised as :36).
const wholeAfter = 2500 * time.Millisecond

// windowRun is what one `ratelab load` of GET /api/v2/users did.
type windowRun struct {
	results []load.Result
	summary string
}

// loadUsers runs `ratelab load` of GET /api/v2/users against srv with the
// workload flags and returns every result.
func loadUsers(t *testing.T, srv *running, flags ...string) windowRun {
	t.Helper()
	out := filepath.Join(t.TempDir(), "results")
	args := append([]string{"load", "--url", srv.url + "/api/v2/users",
		"--token-url", srv.url + "/oauth/token", "--client-id", "demo", "--client-secret", "s3cret",
		"--progress", "0", "--results", out}, flags...)
	code, stdout, errOut := runCmd(t, args...)
	if code != 0 {
		t.Fatalf("load exited %d: %s", code, errOut)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, err := load.NewDecoder(f)
	if err != nil {
		t.Fatal(err)
	}
	run := windowRun{summary: stdout}
	for {
		var r load.Result
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		run.results = append(run.results, r)
	}
	return run
}

// windows counts the results by the aligned window they were sent in, and
// their 429s; first and last are the windows of the first and last
// request.
func (run windowRun) windows() (sent map[int64]int, rejected int, first, last int64) {
	sent = map[int64]int{}
	first, last = -1, -1
	for _, r := range run.results {
		if r.Status == 0 {
			continue
		}
		w := r.Start.UnixNano() / int64(honorWindow)
		sent[w]++
		if first < 0 || w < first {
			first = w
		}
		last = max(last, w)
		if r.Status == 429 {
			rejected++
		}
	}
	return sent, rejected, first, last
}

// TestLoadHonorsSpentWindows runs `ratelab load --retry-after honor`
// against `ratelab serve` with a fixed window of 20 per 5 s in the github
// (epoch reset), ietf (draft-11, reset in seconds) and inin dialects: a
// sender that sees the window spent waits for its reset, so no request
// gets a 429 over two windows and more, and every window is used whole.
// The naive run (--retry-after ignore) gets the 429s the window arithmetic
// predicts. Each subtest takes 6 to 12 s; they run in parallel.
func TestLoadHonorsSpentWindows(t *testing.T) {
	for _, headers := range []string{"github", "ietf", "inin"} {
		t.Run(headers+"/closed", func(t *testing.T) {
			t.Parallel()
			// Four threads as fast as the window lets them, for 12 s: two
			// resets at least.
			srv := startWindowServe(t, headers)
			start := time.Now()
			run := loadUsers(t, srv, "--threads", "4", "--duration", "12s", "--retry-after", "honor")
			end := time.Now()
			sent, rejected, first, last := run.windows()
			if rejected != 0 {
				t.Errorf("%d of %d requests got a 429 with the windows honoured", rejected, len(run.results))
				for _, r := range run.results {
					t.Logf("seq %d thread %d start %s status %d remaining %d waited %v", r.Seq, r.Thread, r.Start.Format("05.000"), r.Status, r.Remaining, r.Waited)
				}
			}
			// Every window that began in the run and lasted wholeAfter of it
			// was used whole; no window got more than its quota.
			if last-first < 2 {
				t.Errorf("the run spanned windows %v: want two resets at least (run %s to %s)", sent, start.Format("05.000"), end.Format("05.000"))
				for _, r := range run.results {
					t.Logf("seq %d thread %d start %s status %d remaining %d waited %v", r.Seq, r.Thread, r.Start.Format("05.000"), r.Status, r.Remaining, r.Waited)
				}
			}
			for w := first; w <= last; w++ {
				ws := time.Unix(0, w*int64(honorWindow))
				whole := !ws.Before(start) && !ws.Add(wholeAfter).After(end)
				if sent[w] > honorQuota || (whole && sent[w] != honorQuota) {
					t.Errorf("window at %v: %d requests sent, want %d (the whole quota, and no more)", ws.Format("15:04:05"), sent[w], honorQuota)
				}
			}
			var held int
			for _, r := range run.results {
				if r.Waited > 0 {
					held++
				}
			}
			if held == 0 || !strings.Contains(run.summary, "held: ") {
				t.Errorf("%d requests record a wait; the summary says:\n%s", held, run.summary)
			}
			t.Logf("%s: %d requests over windows %v, %d held", headers, len(run.results), sent, held)
		})
		t.Run(headers+"/open", func(t *testing.T) {
			t.Parallel()
			// 50 arrivals at 20/s: more than two windows' quota, so they
			// span three windows and the schedule pauses once at least
			// (twice unless the first window ends within 1 s of the start).
			// None is lost: all 50 are sent, each pause recorded as the
			// held arrivals' wait.
			srv := startWindowServe(t, headers)
			run := loadUsers(t, srv, "--rate", "20/s", "--loops", "50", "--retry-after", "honor")
			sent, rejected, first, last := run.windows()
			if rejected != 0 || len(run.results) != 50 {
				t.Errorf("%d of %d requests got a 429, want 0 of 50", rejected, len(run.results))
			}
			if last-first < 2 {
				t.Errorf("50 arrivals spanned windows %v, want 3 or more", sent)
			}
			for w, n := range sent {
				if n > honorQuota {
					t.Errorf("window %d: %d sent, more than the quota", w, n)
				}
			}
			// The pauses are the arrivals' waits, not their latency.
			var held int
			for _, r := range run.results {
				if r.Waited > 0 {
					held++
				}
				if lat := r.Start.Sub(r.Intended); lat > time.Second {
					t.Errorf("seq %d: sent %v after its intended instant: the pause counted as latency", r.Seq, lat)
				}
			}
			if held < 1 || !strings.Contains(run.summary, "held: ") {
				t.Errorf("%d arrivals record a wait, want 1 or more; the summary says:\n%s", held, run.summary)
			}
		})
		t.Run(headers+"/naive", func(t *testing.T) {
			t.Parallel()
			// 20/s for 6 s without honouring: every request beyond the 20
			// of its window gets a 429.
			srv := startWindowServe(t, headers)
			run := loadUsers(t, srv, "--rate", "20/s", "--duration", "6s")
			sent, rejected, _, _ := run.windows()
			want := 0
			partial := 0
			for _, n := range sent {
				want += max(0, n-honorQuota)
				if n <= honorQuota+1 {
					partial++
				}
			}
			// A request sent within a few ms of a window's end may be
			// decided in the next one: that moves one request between two
			// windows, which changes the count only when one of them has
			// no more than the quota (the run's first or last).
			if d := rejected - want; d < -partial || d > partial {
				t.Errorf("%d 429s, want %d ± %d (windows %v)", rejected, want, partial, sent)
			}
			if rejected < 60 {
				t.Errorf("%d 429s of %d: the naive run should meet the limit most of the time", rejected, len(run.results))
			}
			t.Logf("%s naive: %d requests, %d 429s, predicted %d, windows %v", headers, len(run.results), rejected, want, sent)
		})
	}
}

// stamps is an http.RoundTripper that records when each response to GET
// /api/v2/users was sent, and its status: the server's view of what a
// client did.
type stamps struct {
	mu   sync.Mutex
	sent []load.Result
}

func (s *stamps) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	res, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && r.URL.Path == "/api/v2/users" {
		s.mu.Lock()
		s.sent = append(s.sent, load.Result{Start: start, Status: res.StatusCode})
		s.mu.Unlock()
	}
	return res, err
}

// TestClientHonorsSpentWindows: the Go client (client.Client) against
// `ratelab serve` with the fixed window of 20 per 5 s, in the github, ietf
// and inin dialects: four goroutines list users as fast as the client lets
// them for 12 s; the client waits for each spent window's reset, so the
// server answers no 429 (the client retries 429s itself: its Stats count
// them), and every window that began in the run is used whole.
func TestClientHonorsSpentWindows(t *testing.T) {
	for _, headers := range []string{"github", "ietf", "inin"} {
		t.Run(headers, func(t *testing.T) {
			t.Parallel()
			srv := startWindowServe(t, headers)
			st := &stamps{}
			c, err := client.New(client.Config{BaseURL: srv.url, ClientID: "demo", ClientSecret: "s3cret",
				HTTPClient: &http.Client{Transport: st, Timeout: 10 * time.Second}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
			defer cancel()
			start := time.Now()
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for ctx.Err() == nil {
						if _, err := c.Users(ctx); err != nil && ctx.Err() == nil {
							t.Errorf("users: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			end := time.Now()
			run := windowRun{results: st.sent}
			sent, rejected, first, last := run.windows()
			if s := c.Stats(); rejected != 0 || s.RateLimited != 0 {
				t.Errorf("%d 429s (the client counted %d) of %d requests", rejected, s.RateLimited, len(st.sent))
			}
			if last-first < 2 {
				t.Errorf("the run spanned windows %v: want two resets at least", sent)
			}
			for w := first; w <= last; w++ {
				ws := time.Unix(0, w*int64(honorWindow))
				whole := !ws.Before(start) && !ws.Add(wholeAfter).After(end)
				if sent[w] > honorQuota || (whole && sent[w] != honorQuota) {
					t.Errorf("window at %v: %d requests sent, want %d (the whole quota, and no more)", ws.Format("15:04:05"), sent[w], honorQuota)
				}
			}
			t.Logf("%s: %d requests over windows %v", headers, len(st.sent), sent)
		})
	}
}
