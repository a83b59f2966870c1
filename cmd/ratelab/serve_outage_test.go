package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"ratelab/internal/testenv"
)

// TestServeDatabaseOutage cuts a running `ratelab serve` off its
// PostgreSQL: requests that need the database answer 503 with
// Retry-After and code "unavailable" (not 500), the outage is logged once
// instead of one ERROR line per request, and the server serves again when
// the database is back.
func TestServeDatabaseOutage(t *testing.T) {
	u, err := url.Parse(testenv.PostgresDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewCutProxy(t, u.Host)
	u.Host = proxy.Addr()
	id := "outage-" + uniqueSuffix()
	srv := startServe(t, nil, "--addr", "127.0.0.1:0", "--db", u.String(), "--bootstrap-client", id+":s3cret")
	tok, code := srv.token(id, "s3cret")
	if code != 200 {
		t.Fatalf("token %d", code)
	}
	if res := srv.put(tok, id); res.StatusCode != 201 {
		t.Fatalf("PUT %d", res.StatusCode)
	}

	proxy.Cut()
	const n = 20
	for i := range n {
		res := srv.put(tok, id)
		if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
			t.Fatalf("PUT %d with the database cut off: %d, Retry-After %q; want 503 with Retry-After", i, res.StatusCode, res.Header.Get("Retry-After"))
		}
	}
	req, _ := http.NewRequest("GET", srv.url+"/api/v2/architect/scripts/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Code, Message string }
	json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != 503 || body.Code != "unavailable" || strings.Contains(body.Message, "127.0.0.1") {
		t.Fatalf("GET with the database cut off: %d %+v; want 503, code unavailable, no internal detail", res.StatusCode, body)
	}
	logs := srv.stderr.String()
	if got := strings.Count(logs, "database unavailable"); got != 1 {
		t.Fatalf("%d requests logged %d outage lines, want 1:\n%s", n+1, got, logs)
	}
	if got := strings.Count(logs, "level=ERROR"); got != 1 {
		t.Fatalf("%d ERROR lines for %d failed requests, want 1:\n%s", got, n+1, logs)
	}

	proxy.Restore()
	waitForLog(t, srv.stderr, "database available again", 15*time.Second)
	if res := srv.put(tok, id); res.StatusCode != 200 {
		t.Fatalf("PUT after the database is back: %d", res.StatusCode)
	}
}

func waitForLog(t *testing.T, b *lockedBuffer, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q within %v:\n%s", s, within, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
