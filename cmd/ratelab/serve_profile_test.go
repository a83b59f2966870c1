package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeProfile runs `ratelab serve` on the contact-center profile with
// its recommended flags, --headers through RATELAB_HEADERS: a PUT over the
// per-script fixed window (2/s) is answered as that platform answers,
// inin-ratelimit-* and Retry-After only, and the terse body.
func TestServeProfile(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"RATELAB_HEADERS": "inin"}
	srv := startServe(t, vars, "--addr", "127.0.0.1:0", "--db", "sqlite:"+filepath.Join(dir, "r.db"),
		"--policies", filepath.Join("..", "..", "examples", "policies", "contact-center.yaml"),
		"--reject-body", "terse", "--bootstrap-client", "demo:s3cret")
	tok, code := srv.token("demo", "s3cret")
	if code != 200 {
		t.Fatalf("token: %d", code)
	}
	var res *http.Response
	var body string
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("PUT", srv.url+"/api/v2/architect/scripts/s1", strings.NewReader(`{"name":"n","text":"t"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode/100 != 2 && r.StatusCode != 429 {
			t.Fatalf("PUT %d: %d %s", i, r.StatusCode, b)
		}
		if r.Header.Get("Inin-Ratelimit-Allowed") == "" {
			t.Fatalf("PUT %d: no inin-ratelimit-allowed: %v", i, r.Header)
		}
		if r.StatusCode == 429 {
			res, body = r, string(b)
			break
		}
	}
	if res == nil {
		t.Fatal("10 PUTs of one script, none rejected by a 2/s window")
	}
	if body != `{"message":"Rate limit exceeded.","code":"too_many_requests"}`+"\n" {
		t.Errorf("body %q", body)
	}
	h := res.Header
	if h.Get("Inin-Ratelimit-Allowed") != "2" || h.Get("Inin-Ratelimit-Count") != "2" || h.Get("Retry-After") != "1" {
		t.Errorf("headers %v", h)
	}
	for _, k := range []string{"RateLimit", "RateLimit-Policy", "X-RateLimit-Limit", "X-RateLimit-Remaining"} {
		if h.Get(k) != "" {
			t.Errorf("%s sent: %q", k, h.Get(k))
		}
	}
}
