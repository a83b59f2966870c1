package main

// The processes of TestProfileTiers: `ratelab serve` and `ratelab load`
// built without the race detector and run as the commands they are, so
// that the tiers of 1000/s and 5,000/h are measured at their real numbers
// within a few seconds even when the test itself runs under -race (which
// slows a server and a load tester in the test's own process about ten
// times, to some 500 requests/s on two cores: below 1000/s).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ratelab/load"
)

// procEnv is the test's environment without RATELAB_ variables, so that
// the commands run on their flags alone.
func procEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RATELAB_") {
			env = append(env, kv)
		}
	}
	return env
}

// serveProc is a `ratelab serve` process.
type serveProc struct {
	t       *testing.T
	bin, db string
	url     string
	cmd     *exec.Cmd
	stderr  *lockedBuffer
	exited  chan struct{}
}

// startServeProc runs `ratelab serve` on the profile file of
// examples/policies with database db, the client demo:s3cret and the
// flags given, and waits until it listens; the process is stopped
// (SIGTERM) when the test ends.
func startServeProc(t *testing.T, bin, profile, db string, flags ...string) *serveProc {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--db", db,
		"--policies", filepath.Join("..", "..", "examples", "policies", profile),
		"--bootstrap-client", "demo:s3cret"}, flags...)
	s := &serveProc{t: t, bin: bin, db: db, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = procEnv()
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRE.FindStringSubmatch(s.stderr.String()); m != nil {
			s.url = m[1]
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("ratelab serve exited before listening:\n%s", s.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("ratelab serve did not listen within 20 s:\n%s", s.stderr)
	return nil
}

func (s *serveProc) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("ratelab serve did not stop within 15 s of SIGTERM")
	}
}

// token returns an access token of the client (a grant at the token
// endpoint, charged to the client's token-requests tier).
func (s *serveProc) token(id, secret string) string {
	s.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", s.url+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil || res.StatusCode != 200 || tok.AccessToken == "" {
		s.t.Fatalf("token for %s: status %d, %v", id, res.StatusCode, err)
	}
	return tok.AccessToken
}

// newClient creates another client in the org of demo (`ratelab clients
// create` on the server's database, while it runs) and returns a token
// of it.
func (s *serveProc) newClient() string {
	s.t.Helper()
	cmd := exec.Command(s.bin, "clients", "create", "--org", "default", "--db", s.db)
	cmd.Env = procEnv()
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("ratelab clients create: %v", err)
	}
	var c createdClient
	if err := json.Unmarshal(out, &c); err != nil {
		s.t.Fatalf("ratelab clients create: %v: %s", err, out)
	}
	return s.token(c.ClientID, c.ClientSecret)
}

// exchange is one request the test sent itself, with the instants that
// bound when the server decided it.
type exchange struct {
	res        *http.Response
	body       string
	sent, recv time.Time
}

// do sends one request with the bearer token tok ("" for none).
func (s *serveProc) do(method, path, tok, body string) exchange {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", contentType(body))
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	x := exchange{sent: time.Now()}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	x.recv = time.Now()
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	x.res, x.body = res, string(b)
	return x
}

// inFlight returns the requests the client of tok has in flight under
// the concurrency policy, as GET /api/v2/ratelimits reports it (a
// cost-0 decision: it takes no slot).
func (s *serveProc) inFlight(tok, policy string) int64 {
	s.t.Helper()
	x := s.do("GET", "/api/v2/ratelimits", tok, "")
	if x.res.StatusCode != 200 {
		s.t.Fatalf("GET /api/v2/ratelimits: %d %s", x.res.StatusCode, x.body)
	}
	var rl struct {
		Policies []struct {
			Policy           string
			Limit, Remaining int64
		}
	}
	if err := json.Unmarshal([]byte(x.body), &rl); err != nil {
		s.t.Fatal(err)
	}
	for _, p := range rl.Policies {
		if p.Policy == policy {
			return p.Limit - p.Remaining
		}
	}
	s.t.Fatalf("GET /api/v2/ratelimits does not report %s: %s", policy, x.body)
	return 0
}

// waitInFlight waits (at most 20 s) until the client of tok has n
// requests in flight under policy.
func (s *serveProc) waitInFlight(tok, policy string, n int64) time.Time {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := s.inFlight(tok, policy)
		if got == n {
			return time.Now()
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: %d requests in flight after 20 s, want %d", policy, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// loadRun is a finished `ratelab load` process: its results in the
// order of the results file.
type loadRun struct {
	results []load.Result
	stderr  string
}

// runLoadProc runs `ratelab load args…` with its results written to a
// file of t's, and returns them; a non-zero exit fails the test.
func runLoadProc(t *testing.T, bin string, args ...string) loadRun {
	t.Helper()
	run, err := loadProc(context.Background(), t.TempDir(), bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// loadProc runs `ratelab load` (safe to call from another goroutine).
func loadProc(ctx context.Context, dir, bin string, args ...string) (loadRun, error) {
	path := filepath.Join(dir, fmt.Sprintf("results-%d.jsonl", time.Now().UnixNano()))
	cmd := exec.CommandContext(ctx, bin, append(append([]string{"load"}, args...), "--progress", "0", "--results", path)...)
	cmd.Env = procEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return loadRun{}, fmt.Errorf("ratelab load %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	f, err := os.Open(path)
	if err != nil {
		return loadRun{}, err
	}
	defer f.Close()
	dec, err := load.NewDecoder(f)
	if err != nil {
		return loadRun{}, err
	}
	run := loadRun{stderr: stderr.String()}
	for {
		var r load.Result
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				return run, nil
			}
			return loadRun{}, err
		}
		run.results = append(run.results, r)
	}
}

// contentType is the type of a request body of the tests: JSON, or a
// form (the token endpoint's).
func contentType(body string) string {
	if strings.HasPrefix(body, "{") {
		return "application/json"
	}
	return "application/x-www-form-urlencoded"
}

// statuses counts the results by status.
func (l loadRun) statuses() map[int]int {
	m := map[int]int{}
	for _, r := range l.results {
		m[r.Status]++
	}
	return m
}

// rejected returns the 429s.
func (l loadRun) rejected() []load.Result {
	var out []load.Result
	for _, r := range l.results {
		if r.Status == http.StatusTooManyRequests {
			out = append(out, r)
		}
	}
	return out
}

// retryRange returns the shortest and longest retry-after of the 429s.
func (l loadRun) retryRange() string {
	var lo, hi time.Duration
	for i, r := range l.rejected() {
		if i == 0 || r.RetryAfter < lo {
			lo = r.RetryAfter
		}
		hi = max(hi, r.RetryAfter)
	}
	return fmt.Sprintf("%v–%v", lo, hi)
}

// span returns the earliest send and the latest first response byte of
// the run: every decision of the server lies between them.
func (l loadRun) span() (first, last time.Time) {
	for i, r := range l.results {
		end := decidedBy(r)
		if i == 0 || r.Start.Before(first) {
			first = r.Start
		}
		if i == 0 || end.After(last) {
			last = end
		}
	}
	return first, last
}

// decidedBy is the latest instant the server can have decided r: its
// first response byte.
func decidedBy(r load.Result) time.Time { return r.Start.Add(r.TTFB) }

// ceilSec is d in whole seconds, rounded up, as Retry-After states it.
func ceilSec(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }
