package httpapi_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ratelab/httpapi"
	"ratelab/limit"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestHeaderDialects")

// TestHeaderDialects checks every header dialect and 429 body byte for
// byte against golden files (testdata/headers; go test -run
// TestHeaderDialects -update rewrites them): the raw response, as read
// from the connection, to the 4th PUT of one script under the default
// policies (admitted, the last of script-writes-per-script's burst; its
// headers only) and to the 5th (rejected; headers and body). The clock is
// fixed, so the only line that varies, Date, is left out.
func TestHeaderDialects(t *testing.T) {
	for _, tc := range []struct{ headers, body string }{
		{httpapi.HeadersIETF, httpapi.RejectDetailed},
		{httpapi.HeadersXRateLimit, httpapi.RejectDetailed},
		{httpapi.HeadersGitHub, httpapi.RejectDetailed},
		{httpapi.HeadersInin, httpapi.RejectDetailed},
		{httpapi.HeadersNone, httpapi.RejectDetailed},
		{httpapi.HeadersInin, httpapi.RejectTerse},
	} {
		name := tc.headers + "-" + tc.body
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			clk.ns.Store(time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC).UnixNano())
			e := newEnv(t, nil, options{clock: clk, headers: tc.headers, rejectBody: tc.body})
			tok := e.token(e.client("acme"))
			var got bytes.Buffer
			for i := range 5 {
				raw := rawPut(t, e, tok, "s1")
				if i == 3 {
					head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
					got.Write(head)
					got.WriteString("\r\n\r\n")
				}
				if i == 4 {
					got.Write(raw)
					checkParsed(t, tc.headers, raw, clk.Now())
				}
				clk.Advance(100 * time.Millisecond)
			}
			path := filepath.Join("testdata", "headers", name+".golden")
			if *update {
				if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("response differs from %s:\n%s\nwant:\n%s", path, got.Bytes(), want)
			}
		})
	}
}

// checkParsed reads the rejected response back with limit.ParseResponse,
// as ratelab's client, load tester and probe do: every dialect gives the
// quota (4) and the wait, except none, which gives only the wait.
func checkParsed(t *testing.T, dialect string, raw []byte, now time.Time) {
	t.Helper()
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	a := limit.ParseResponse(res.Header, body, now)
	wantLimit := int64(4)
	if dialect == httpapi.HeadersNone {
		wantLimit = -1
	}
	if a.Limit != wantLimit || a.RetryAfter <= 0 || a.RetryAfter > time.Second {
		t.Errorf("%s: parsed limit %d, retry-after %v; want %d and at most 1s", dialect, a.Limit, a.RetryAfter, wantLimit)
	}
	if dialect == httpapi.HeadersGitHub || dialect == httpapi.HeadersInin {
		if a.Used != 4 {
			t.Errorf("%s: parsed used %d, want 4", dialect, a.Used)
		}
	}
}

// The github dialect's reset instant, on every limiter the suite runs
// on (memory, Redis, Redis Cluster).
func init() {
	suite = append(suite, struct {
		name string
		fn   func(t *testing.T, lf limiterFactory)
	}{"GitHubResetIsWindowEnd", testGitHubResetIsWindowEnd})
}

// testGitHubResetIsWindowEnd: in the github dialect, x-ratelimit-reset of
// a fixed window aligned to the Unix epoch is the window's end in Unix
// seconds, exactly, on every response, admitted or rejected. The clock
// moves on by a millisecond at every reading, as a real one does between
// the decision and the headers: a reset computed from the clock when the
// headers are written, not from the decision's instant, reads a second
// late.
func testGitHubResetIsWindowEnd(t *testing.T, lf limiterFactory) {
	const w = 10 * time.Second
	clk := newClock()
	alignClock(clk, w, 2*time.Second)
	end := time.Unix(0, (clk.ns.Load()/int64(w)+1)*int64(w))
	e := newEnv(t, lf, options{clock: clk, headers: httpapi.HeadersGitHub, policies: algorithmPolicies(t, `
  - {name: client-window, algorithm: fixed-window, rate: 3/10s, scope: client, classes: [users]}
`)})
	tok := e.token(e.client("acme"))
	clk.step.Store(int64(time.Millisecond))
	want := strconv.FormatInt(end.Unix(), 10)
	for i := range 4 {
		status := 200
		if i == 3 {
			status = 429
		}
		r := e.do("GET", "/api/v2/users", tok, nil).want(status)
		if got := r.header.Get("x-ratelimit-reset"); got != want {
			t.Errorf("request %d: x-ratelimit-reset %s, want %s, the window's end (%s)", i+1, got, want, end.UTC().Format(time.TimeOnly))
		}
		if got, wantRem := r.header.Get("x-ratelimit-remaining"), strconv.Itoa(max(0, 2-i)); got != wantRem {
			t.Errorf("request %d: x-ratelimit-remaining %s, want %s", i+1, got, wantRem)
		}
	}
	if now := clk.Now(); !now.Before(end) {
		t.Fatalf("the clock left the window (%v past its end): the test needs fewer readings", now.Sub(end))
	}
}

// TestHeaderDialectInvalid: an unknown dialect or body is refused.
func TestHeaderDialectInvalid(t *testing.T) {
	for _, cfg := range []httpapi.Config{{Headers: "draft-7"}, {RejectBody: "short"}} {
		db := newEnv(t, nil, options{}).db
		cfg.Scripts, cfg.Auth = db, db
		if _, err := httpapi.NewServer(cfg); err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("%+v: err = %v", cfg, err)
		}
	}
}

// rawPut sends one PUT of script id over a new connection and returns
// the response as sent, without its Date line.
func rawPut(t *testing.T, e *env, tok, id string) []byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.url, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	body := `{"name":"n","text":"t"}`
	fmt.Fprintf(conn, "PUT /api/v2/architect/scripts/%s HTTP/1.1\r\nHost: ratelab\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", id, tok, len(body), body)
	raw, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for line := range bytes.Lines(raw) {
		if !bytes.HasPrefix(line, []byte("Date: ")) {
			out.Write(line)
		}
	}
	return out.Bytes()
}
