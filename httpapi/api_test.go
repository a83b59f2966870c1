package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"ratelab"
	"ratelab/httpapi"
	"ratelab/limit"
	"ratelab/wire"
)

// suite lists the end-to-end tests; TestServer runs them on the memory
// limiter, TestServerRedis on the Redis one.
var suite = []struct {
	name string
	fn   func(t *testing.T, lf limiterFactory)
}{
	{"Token", testToken},
	{"Revoke", testRevoke},
	{"OAuth2Library", testOAuth2Library},
	{"ScriptsCRUD", testScriptsCRUD},
	{"BadInput", testBadInput},
	{"FailuresStayInternal", testFailuresStayInternal},
	{"RateLimitedResponse", testRateLimitedResponse},
	{"ReferenceScenario", testReferenceScenario},
	{"Bulk", testBulk},
	{"RateLimitsEndpoint", testRateLimitsEndpoint},
	{"OptimisticConcurrency", testOptimisticConcurrency},
	{"CrossOrgIsolation", testCrossOrgIsolation},
	{"HealthMetricsOpenAPI", testHealthMetricsOpenAPI},
	{"OpenAPIMatchesRoutes", testOpenAPIMatchesRoutes},
	{"PolicyReload", testPolicyReload},
	{"ShadowPolicy", testShadowPolicy},
	{"TokenLimit", testTokenLimit},
}

func TestServer(t *testing.T) {
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, nil) })
	}
}

func testToken(t *testing.T, lf limiterFactory) {
	clk := newClock()
	e := newEnv(t, lf, options{clock: clk})
	c := e.client("acme")

	// HTTP Basic.
	r := e.do("POST", "/oauth/token", "", "grant_type=client_credentials", "Content-Type", "application/x-www-form-urlencoded", "basic", c.id+":"+c.secret).want(200).hasLimitHeaders()
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	r.decode(&tok)
	if tok.AccessToken == "" || tok.TokenType != "bearer" || tok.ExpiresIn != 86400 {
		t.Fatalf("token response %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
	}
	e.do("GET", "/api/v2/users", tok.AccessToken, nil).want(200).hasLimitHeaders()

	// Form fields.
	form := "grant_type=client_credentials&client_id=" + c.id + "&client_secret=" + c.secret
	e.do("POST", "/oauth/token", "", form, "Content-Type", "application/x-www-form-urlencoded").want(200)

	// Failures, each in the error shape, each with the limit headers.
	for name, tc := range map[string]struct {
		body, ctype, basic string
		status             int
		oauth              string
	}{
		"wrong secret":   {"grant_type=client_credentials", "application/x-www-form-urlencoded", c.id + ":nope", 401, "invalid_client"},
		"unknown client": {"grant_type=client_credentials", "application/x-www-form-urlencoded", "ghost:nope", 401, "invalid_client"},
		"no credentials": {"grant_type=client_credentials", "application/x-www-form-urlencoded", "", 401, "invalid_client"},
		"wrong grant":    {"grant_type=password", "application/x-www-form-urlencoded", c.id + ":" + c.secret, 400, "unsupported_grant_type"},
		"json body":      {`{"grant_type":"client_credentials"}`, "application/json", c.id + ":" + c.secret, 415, ""},
	} {
		t.Run(name, func(t *testing.T) {
			hdr := []string{"Content-Type", tc.ctype}
			if tc.basic != "" {
				hdr = append(hdr, "basic", tc.basic)
			}
			r := e.do("POST", "/oauth/token", "", tc.body, hdr...).want(tc.status).hasLimitHeaders()
			b := r.errBody()
			if b.Error != tc.oauth {
				t.Errorf("oauth error %q, want %q", b.Error, tc.oauth)
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}

	// Bearer failures on an API route.
	r = e.do("GET", "/api/v2/users", "", nil).want(401).hasLimitHeaders()
	if r.errBody().Code != ratelab.EUNAUTHORIZED || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("missing token: %s %v", r.body, r.header)
	}
	r = e.do("GET", "/api/v2/users", "not-a-token", nil).want(401).hasLimitHeaders()
	if !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	e.do("GET", "/api/v2/users", "", nil, "Authorization", "Basic abc").want(401)

	// Expiry: valid until the TTL, rejected after.
	clk.Advance(24*time.Hour - time.Second)
	e.do("GET", "/api/v2/users", tok.AccessToken, nil).want(200)
	clk.Advance(2 * time.Second)
	e.do("GET", "/api/v2/users", tok.AccessToken, nil).want(401).errBody()
}

// TestOAuth2Library drives the server with golang.org/x/oauth2's client
// credentials flow, unchanged.
func testOAuth2Library(t *testing.T, lf limiterFactory) {
	e := newEnv(t, lf, options{})
	c := e.client("acme")
	ctx := context.Background()
	for _, style := range []struct {
		name  string
		style int
	}{{"auto", 0}, {"header", 2}, {"params", 1}} {
		t.Run(style.name, func(t *testing.T) {
			cfg := clientcredentials.Config{ClientID: c.id, ClientSecret: c.secret, TokenURL: e.url + "/oauth/token"}
			cfg.AuthStyle = oauth2.AuthStyle(style.style)
			tok, err := cfg.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.TokenType != "bearer" || time.Until(tok.Expiry) < 23*time.Hour {
				t.Fatalf("token %+v", tok)
			}
			res, err := cfg.Client(ctx).Get(e.url + "/api/v2/users")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var users wire.UserList
			if err := json.NewDecoder(res.Body).Decode(&users); err != nil || res.StatusCode != 200 {
				t.Fatalf("users: %d %v", res.StatusCode, err)
			}
			if users.Total == 0 || len(users.Entities) != users.Total {
				t.Fatalf("users %+v", users)
			}
		})
	}
	bad := clientcredentials.Config{ClientID: c.id, ClientSecret: "wrong", TokenURL: e.url + "/oauth/token"}
	_, err := bad.Token(ctx)
	if err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("wrong secret: %v", err)
	}
}

func testScriptsCRUD(t *testing.T, lf limiterFactory) {
	e := newEnv(t, lf, options{policies: generous(t)})
	tok := e.token(e.client("acme"))

	r := e.do("POST", "/api/v2/architect/scripts", tok, map[string]string{"name": "greeting", "text": "hello"}).want(201).hasLimitHeaders()
	sc := e.script(r)
	if sc.ID == "" || sc.Name != "greeting" || sc.Text != "hello" || sc.Version != 1 || sc.DateCreated.IsZero() {
		t.Fatalf("created %s", r.body)
	}
	if r.header.Get("ETag") != `"1"` || r.header.Get("Location") != "/api/v2/architect/scripts/"+sc.ID {
		t.Fatalf("ETag %q Location %q", r.header.Get("ETag"), r.header.Get("Location"))
	}
	path := "/api/v2/architect/scripts/" + sc.ID

	r = e.do("GET", path, tok, nil).want(200).hasLimitHeaders()
	if got := e.script(r); got.ID != sc.ID || got.Version != 1 || r.header.Get("ETag") != `"1"` {
		t.Fatalf("get %s", r.body)
	}

	// PUT replaces name and text; the version grows by one.
	r = e.do("PUT", path, tok, map[string]any{"name": "greeting2", "text": "hi"}).want(200).hasLimitHeaders()
	if got := e.script(r); got.Version != 2 || got.Name != "greeting2" || r.header.Get("ETag") != `"2"` {
		t.Fatalf("put %s", r.body)
	}
	// If-Match: match → 3; mismatch → 412.
	e.do("PUT", path, tok, map[string]any{"name": "g", "text": "3"}, "If-Match", `"2"`).want(200)
	r = e.do("PUT", path, tok, map[string]any{"name": "g", "text": "x"}, "If-Match", `"2"`).want(412).hasLimitHeaders()
	b := r.errBody()
	if b.Code != ratelab.EPRECONDITION || !strings.Contains(b.Message, "current version 3") || r.header.Get("ETag") != `"3"` {
		t.Fatalf("412 body %+v", b)
	}
	e.do("PUT", path, tok, map[string]any{"name": "g", "text": "x"}, "If-Match", `W/"3", "9"`).want(200) // → 4
	// A list matches when any of its tags does (RFC 9110), not only the
	// first; a list none of whose tags matches is a 412.
	e.do("PUT", path, tok, map[string]any{"name": "g", "text": "x"}, "If-Match", `"1", "9"`).want(412)
	e.do("PUT", path, tok, map[string]any{"name": "g", "text": "x"}, "If-Match", `"9", W/"4"`).want(200) // → 5
	e.do("PUT", path, tok, map[string]any{"name": "g", "text": "x"}, "If-Match", "*").want(200)          // → 6
	e.do("PUT", path, tok, map[string]any{"name": "g", "text": "x", "version": 6}).want(200)             // → 7; "*" did write
	e.do("PUT", path, tok, map[string]any{"name": "g", "text": "x"}, "If-Match", `"1", "5"`).want(412)
	e.do("PUT", "/api/v2/architect/scripts/nope", tok, map[string]any{"name": "g"}, "If-Match", "*").want(412)
	// Body version: match → 8; mismatch → 409.
	e.do("PUT", path, tok, map[string]any{"name": "g", "text": "6", "version": 7}).want(200)
	b = e.do("PUT", path, tok, map[string]any{"name": "g", "text": "x", "version": 7}).want(409).errBody()
	if b.Code != ratelab.ECONFLICT || !strings.Contains(b.Message, "current version 8") {
		t.Fatalf("409 body %+v", b)
	}
	// Both: If-Match right, body wrong → 409; If-Match wrong → 412.
	e.do("PUT", path, tok, map[string]any{"name": "g", "version": 2}, "If-Match", `"8"`).want(409)
	e.do("PUT", path, tok, map[string]any{"name": "g", "version": 6}, "If-Match", `"2"`).want(412)

	// PUT on an unknown id creates it.
	r = e.do("PUT", "/api/v2/architect/scripts/my-script.v1", tok, map[string]any{"name": "mine", "text": ""}).want(201)
	if got := e.script(r); got.ID != "my-script.v1" || got.Version != 1 || r.header.Get("Location") == "" {
		t.Fatalf("put-create %s", r.body)
	}
	// An id that fails the id rule names no script that can exist: 404 in
	// a path, for every method.
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		e.do(m, "/api/v2/architect/scripts/bad%20id", tok, map[string]any{"name": "x"}).want(404).errBody()
	}
	e.do("GET", "/api/v2/architect/scripts/bad%20id/versions", tok, nil).want(404).errBody()

	// Versions, newest first.
	r = e.do("GET", path+"/versions?pageSize=2", tok, nil).want(200).hasLimitHeaders()
	var vp wire.Page[ratelab.ScriptVersion]
	r.decode(&vp)
	if vp.Total != 8 || len(vp.Entities) != 2 || vp.Entities[0].Version != 8 || vp.Entities[1].Version != 7 || vp.PageCount != 4 {
		t.Fatalf("versions %s", r.body)
	}

	// Listing with pages.
	for i := range 3 {
		e.do("POST", "/api/v2/architect/scripts", tok, map[string]string{"name": fmt.Sprint("s", i)}).want(201)
	}
	var sp wire.Page[ratelab.Script]
	e.do("GET", "/api/v2/architect/scripts?pageSize=2&pageNumber=3", tok, nil).want(200).decode(&sp)
	if sp.Total != 5 || sp.PageCount != 3 || len(sp.Entities) != 1 || sp.PageNumber != 3 || sp.PageSize != 2 {
		t.Fatalf("page 3: %+v", sp)
	}
	e.do("GET", "/api/v2/architect/scripts", tok, nil).want(200).decode(&sp)
	if sp.Total != 5 || len(sp.Entities) != 5 || sp.Entities[0].ID != sc.ID || sp.PageSize != 25 {
		t.Fatalf("default page: %+v", sp)
	}
	for _, q := range []string{"pageSize=0", "pageSize=101", "pageSize=x", "pageNumber=0", "pageNumber=-1"} {
		e.do("GET", "/api/v2/architect/scripts?"+q, tok, nil).want(400).hasLimitHeaders().errBody()
	}

	// Delete.
	e.do("DELETE", path, tok, nil).want(204).hasLimitHeaders()
	e.do("GET", path, tok, nil).want(404).hasLimitHeaders().errBody()
	e.do("DELETE", path, tok, nil).want(404).errBody()
	e.do("GET", path+"/versions", tok, nil).want(404).errBody()
}

func testBadInput(t *testing.T, lf limiterFactory) {
	e := newEnv(t, lf, options{policies: generous(t)})
	tok := e.token(e.client("acme"))
	const p = "/api/v2/architect/scripts"
	for name, tc := range map[string]struct {
		method, path string
		body         any
		hdr          []string
		status       int
		msg          string
	}{
		"malformed":       {"POST", p, `{"name": "x"`, []string{"Content-Type", "application/json"}, 400, "Malformed JSON"},
		"syntax":          {"POST", p, `{"name": x}`, []string{"Content-Type", "application/json"}, 400, "Malformed JSON at byte"},
		"empty body":      {"POST", p, ``, []string{"Content-Type", "application/json"}, 400, "empty"},
		"trailing":        {"POST", p, `{"name":"a"} {}`, []string{"Content-Type", "application/json"}, 400, "data after the value"},
		"unknown field":   {"POST", p, map[string]any{"name": "a", "colour": "red"}, nil, 400, `Unknown field "colour"`},
		"wrong type":      {"POST", p, map[string]any{"name": 7}, nil, 400, `Field "name": want a string`},
		"too large":       {"POST", p, map[string]any{"name": "a", "text": strings.Repeat("x", 512001)}, nil, 413, "larger than 512000"},
		"content type":    {"POST", p, `name=a`, []string{"Content-Type", "text/plain"}, 415, `"text/plain" is not supported`},
		"no content type": {"POST", p, `{"name":"a"}`, nil, 415, "missing"},
		"empty name":      {"POST", p, map[string]any{"name": ""}, nil, 422, "name must not be empty"},
		"long name":       {"POST", p, map[string]any{"name": strings.Repeat("n", 201)}, nil, 422, "name is 201 bytes"},
		"oversized text":  {"PUT", p + "/s1", map[string]any{"name": "a", "text": strings.Repeat("x", ratelab.MaxScriptTextLen+1)}, nil, 422, "text is"},
		"zero version":    {"PUT", p + "/s1", map[string]any{"name": "a", "version": 0}, nil, 422, "version must be at least 1"},
		"id mismatch":     {"PUT", p + "/s1", map[string]any{"id": "s2", "name": "a"}, nil, 422, "differs"},
		"unknown route":   {"GET", "/api/v2/nothing", nil, nil, 404, "No route for GET /api/v2/nothing"},
		"root":            {"GET", "/", nil, nil, 404, "No route"},
		"wrong method":    {"PATCH", p + "/s1", `{}`, []string{"Content-Type", "application/json"}, 405, "allowed: DELETE, GET, HEAD, PUT"},
		"wrong method 2":  {"DELETE", "/api/v2/users", nil, nil, 405, "Method DELETE is not allowed"},
		// Issue 11 items 2 and 3: what is stored is what was sent, and an id
		// that fails the id rule names nothing, before any query.
		"invalid UTF-8 POST":   {"POST", p, "{\"name\":\"a\",\"text\":\"a\xffb\"}", []string{"Content-Type", "application/json"}, 400, "invalid UTF-8 at byte 21"},
		"invalid UTF-8 PUT":    {"PUT", p + "/s1", "{\"name\":\"\xc3\"}", []string{"Content-Type", "application/json"}, 400, "invalid UTF-8 at byte 9"},
		"invalid UTF-8 bulk":   {"POST", p + "/bulk", "{\"scripts\":[{\"id\":\"a\",\"name\":\"\xed\xa0\x80\"}]}", []string{"Content-Type", "application/json"}, 400, "invalid UTF-8"},
		"NUL in text":          {"PUT", p + "/s1", map[string]any{"name": "a", "text": "a\x00b"}, nil, 422, "text"},
		"dot-dot id PUT":       {"PUT", p + "/%2e%2e", map[string]any{"name": "a"}, nil, 404, "not found"},
		"dot id GET":           {"GET", p + "/%2e", nil, nil, 404, "not found"},
		"NUL id versions":      {"GET", p + "/a%00b/versions", nil, nil, 404, "not found"},
		"invalid UTF-8 id GET": {"GET", p + "/%ff", nil, nil, 404, "not found"},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tok, tc.body, tc.hdr...).want(tc.status).hasLimitHeaders()
			if b := r.errBody(); !strings.Contains(b.Message, tc.msg) {
				t.Fatalf("message %q, want it to contain %q", b.Message, tc.msg)
			}
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
	// Without a token, unknown routes are still 404 in the error shape,
	// limited by address.
	e.do("GET", "/nowhere", "", nil).want(404).hasLimitHeaders().errBody()
}

// faulty wraps the real store to inject a panic and an internal error.
type faulty struct{ ratelab.ScriptService }

func (f faulty) FindScript(ctx context.Context, orgID, id string) (*ratelab.Script, error) {
	switch id {
	case "panic":
		panic("boom: secret detail")
	case "fail":
		return nil, errors.New("disk on fire: secret detail")
	}
	return f.ScriptService.FindScript(ctx, orgID, id)
}

func testFailuresStayInternal(t *testing.T, lf limiterFactory) {
	e := newEnv(t, lf, options{policies: generous(t), scripts: func(s ratelab.ScriptService) ratelab.ScriptService { return faulty{s} }})
	tok := e.token(e.client("acme"))
	for _, id := range []string{"panic", "fail"} {
		r := e.do("GET", "/api/v2/architect/scripts/"+id, tok, nil).want(500)
		b := r.errBody()
		if b.Code != ratelab.EINTERNAL || b.Message != "Internal error." || strings.Contains(string(r.body), "secret") {
			t.Fatalf("%s: body %s", id, r.body)
		}
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "boom: secret detail") || !strings.Contains(logs, "disk on fire") {
		t.Fatalf("internal errors not logged:\n%s", logs)
	}
	if n := metricValue(t, e.reg, "ratelab_store_errors_total", nil); n != 1 {
		t.Errorf("store errors %v, want 1", n)
	}
	// The server still serves.
	e.do("GET", "/api/v2/architect/scripts/ok", tok, nil).want(404)
}

// TestRateLimitedResponse checks the 429 exactly, on a fixed clock: the
// per-script policy (2/s, burst 4) admits four PUTs at one instant and
// rejects the fifth, retry in exactly 500 ms.
func testRateLimitedResponse(t *testing.T, lf limiterFactory) {
	clk := newClock()
	e := newEnv(t, lf, options{clock: clk})
	c := e.client("acme")
	tok := e.token(c)
	put := func(id string) *resp {
		return e.do("PUT", "/api/v2/architect/scripts/"+id, tok, map[string]any{"name": "n", "text": "t"})
	}
	for i := range 4 {
		r := put("s1").hasLimitHeaders()
		if r.status/100 != 2 {
			t.Fatalf("PUT %d: %d %s", i, r.status, r.body)
		}
		if want := fmt.Sprintf(`"script-writes-per-script";r=%d;t=%d`, 3-i, (i+2)/2); r.header.Get("RateLimit") != want {
			t.Errorf("PUT %d: RateLimit %q, want %q", i, r.header.Get("RateLimit"), want)
		}
	}
	r := put("s1").want(429).hasLimitHeaders()
	b := r.errBody()
	wantMsg := "script-writes-per-script allows 2 per second, burst 4, for script s1; retry in 500 ms"
	if b.Message != wantMsg || b.Code != ratelab.ERATELIMITED {
		t.Fatalf("message %q, want %q", b.Message, wantMsg)
	}
	want := wire.LimitState{Policy: "script-writes-per-script", Scope: wire.ScopeOrgScript, Key: "s1", Limit: 2, Window: "1s",
		Burst: 4, Remaining: 0, ResetAfterMs: 2000, RetryAfterMs: 500}
	if b.Limit == nil || *b.Limit != want {
		t.Fatalf("limit %+v, want %+v", b.Limit, want)
	}
	if fmt.Sprint(b.ViolatedPolicies) != "[script-writes-per-script]" {
		t.Fatalf("violated %v", b.ViolatedPolicies)
	}
	if r.header.Get("Retry-After") != "1" || r.header.Get("X-RateLimit-Remaining") != "0" || r.header.Get("X-RateLimit-Limit") != "4" {
		t.Fatalf("headers %v", r.header)
	}
	wantPolicy := `"org-requests";q=1000;w=1, "client-requests";q=200;w=2, "script-writes";q=40;w=2, "script-writes-per-script";q=4;w=2`
	if got := r.header.Get("RateLimit-Policy"); got != wantPolicy {
		t.Fatalf("RateLimit-Policy %q, want %q", got, wantPolicy)
	}
	// Another script of the same org is not affected; nor is a read.
	put("s2").want(201)
	e.do("GET", "/api/v2/architect/scripts/s1", tok, nil).want(200)
	// The rejected PUT consumed nothing: 499 ms later still rejected, 500 ms admitted.
	clk.Advance(499 * time.Millisecond)
	put("s1").want(429)
	clk.Advance(time.Millisecond)
	put("s1").want(200)
	if n := metricValue(t, e.reg, "ratelab_limiter_decisions_total", map[string]string{"policy": "script-writes-per-script", "outcome": "rejected"}); n != 2 {
		t.Errorf("rejected decisions metric %v, want 2", n)
	}
	// The version count proves nothing rejected was written.
	var vp wire.Page[ratelab.ScriptVersion]
	e.do("GET", "/api/v2/architect/scripts/s1/versions", tok, nil).want(200).decode(&vp)
	if vp.Total != 5 {
		t.Fatalf("versions %d, want 5 (4 + 1 after the wait)", vp.Total)
	}
}

// TestReferenceScenario is the reporting user's test: 20 threads, ramp-up
// 0, all PUTting one script at 10 requests/s in total, throttle at once
// on script-writes-per-script; GET /api/v2/users at the same rate never
// throttles.
func testReferenceScenario(t *testing.T, lf limiterFactory) {
	clk := newClock()
	e := newEnv(t, lf, options{clock: clk})
	tok := e.token(e.client("acme"))
	e.do("PUT", "/api/v2/architect/scripts/shared", tok, map[string]any{"name": "n"}).want(201)
	clk.Advance(10 * time.Second) // a full bucket again

	run := func(method, path string, body any) (ok, limited int, violated map[string]int) {
		violated = map[string]int{}
		var mu sync.Mutex
		// Ramp-up 0: all 20 threads fire their first request at once…
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				r := e.do(method, path, tok, body)
				mu.Lock()
				defer mu.Unlock()
				switch r.status {
				case 200:
					ok++
				case 429:
					limited++
					for _, p := range r.errBody().ViolatedPolicies {
						violated[p]++
					}
				default:
					t.Errorf("status %d: %s", r.status, r.body)
				}
			})
		}
		wg.Wait()
		// …then 10 requests per second for 3 seconds.
		for range 30 {
			clk.Advance(100 * time.Millisecond)
			r := e.do(method, path, tok, body)
			switch r.status {
			case 200:
				ok++
			case 429:
				limited++
				for _, p := range r.errBody().ViolatedPolicies {
					violated[p]++
				}
			default:
				t.Errorf("status %d: %s", r.status, r.body)
			}
		}
		return ok, limited, violated
	}
	ok, limited, violated := run("PUT", "/api/v2/architect/scripts/shared", map[string]any{"name": "n", "text": "t"})
	// Burst 4 at once, then 2/s: 4 + 6 over the next 3 s.
	if ok != 10 || limited != 40 || violated["script-writes-per-script"] != 40 || len(violated) != 1 {
		t.Fatalf("PUTs: %d ok, %d limited, violated %v; want 10, 40, all script-writes-per-script", ok, limited, violated)
	}
	ok, limited, _ = run("GET", "/api/v2/users", nil)
	if ok != 50 || limited != 0 {
		t.Fatalf("GET users: %d ok, %d limited; want 50, 0", ok, limited)
	}
}

func testBulk(t *testing.T, lf limiterFactory) {
	clk := newClock()
	e := newEnv(t, lf, options{clock: clk})
	tok := e.token(e.client("acme"))
	e.do("PUT", "/api/v2/architect/scripts/a", tok, map[string]any{"name": "a"}).want(201)
	e.do("PUT", "/api/v2/architect/scripts/e", tok, map[string]any{"name": "e"}).want(201)
	e.do("PUT", "/api/v2/architect/scripts/e", tok, map[string]any{"name": "e"}).want(200)

	items := []map[string]any{
		{"id": "a", "name": "a2", "text": "x"},              // update → 200, v2
		{"id": "b", "name": "b1"},                           // create → 201
		{"id": "c", "name": ""},                             // 422
		{"id": "e", "name": "e3", "version": 1},             // version mismatch (e is at 2) → 409
		{"id": "bad id", "name": "x"},                       // 422
		{"id": "d", "name": "d", "text": "t", "version": 3}, // unknown with version → 409
	}
	r := e.do("POST", "/api/v2/architect/scripts/bulk", tok, map[string]any{"scripts": items}).want(200).hasLimitHeaders()
	var br wire.BulkResponse
	r.decode(&br)
	var got []string
	for _, it := range br.Results {
		s := fmt.Sprintf("%s:%d", it.ID, it.Status)
		if it.Error != nil {
			s += ":" + it.Error.Code
			if it.Error.Status != it.Status {
				t.Errorf("item %s: error status %d", it.ID, it.Error.Status)
			}
		} else {
			s += fmt.Sprintf(":v%d", it.Version)
		}
		got = append(got, s)
	}
	want := "a:200:v2 b:201:v1 c:422:unprocessable e:409:conflict bad id:422:unprocessable d:409:conflict"
	if strings.Join(got, " ") != want || br.Succeeded != 2 || br.Failed != 4 {
		t.Fatalf("results %q (succeeded %d, failed %d), want %q", strings.Join(got, " "), br.Succeeded, br.Failed, want)
	}

	// Duplicate ids would write one script many times for one unit of its
	// per-script tier: the bulk is a 422 naming them, and nothing is written.
	var dups []map[string]any
	for i := range 50 {
		dups = append(dups, map[string]any{"id": "dup", "name": fmt.Sprint("v", i)})
	}
	dups = append(dups[:48], map[string]any{"id": "x", "name": "x"}, map[string]any{"id": "x", "name": "x"})
	b := e.do("POST", "/api/v2/architect/scripts/bulk", tok, map[string]any{"scripts": dups}).want(422).hasLimitHeaders().errBody()
	if !strings.Contains(b.Message, `repeated: "dup", "x"`) {
		t.Fatalf("duplicate bulk: %+v", b)
	}
	e.do("GET", "/api/v2/architect/scripts/dup", tok, nil).want(404)

	// A bulk counts once against the request tiers and once per distinct
	// script against the per-script tier: 50 scripts in one request.
	before := rateLimits(e, tok, "")
	var many []map[string]any
	for i := range 50 {
		many = append(many, map[string]any{"id": fmt.Sprint("m", i), "name": "m"})
	}
	e.do("POST", "/api/v2/architect/scripts/bulk", tok, map[string]any{"scripts": many}).want(200)
	after := rateLimits(e, tok, "m7")
	for _, name := range []string{"org-requests", "client-requests", "script-writes"} {
		if before[name].Remaining-after[name].Remaining != 1 {
			t.Errorf("%s: remaining %d → %d, want one used", name, before[name].Remaining, after[name].Remaining)
		}
	}
	if after["script-writes-per-script"].Remaining != 3 {
		t.Errorf("per-script remaining for m7 %d, want 3", after["script-writes-per-script"].Remaining)
	}

	// All or nothing: when one item's script is out of quota the whole
	// bulk is rejected and nothing is written.
	for range 3 {
		e.do("PUT", "/api/v2/architect/scripts/m7", tok, map[string]any{"name": "m"}).want(200)
	}
	r = e.do("POST", "/api/v2/architect/scripts/bulk", tok, map[string]any{"scripts": []map[string]any{{"id": "m8", "name": "z"}, {"id": "m7", "name": "z"}}}).want(429)
	if b := r.errBody(); !strings.Contains(b.Message, "for script m7") || b.Limit.Key != "m7" {
		t.Fatalf("bulk 429 %s", r.body)
	}
	var sc ratelab.Script
	e.do("GET", "/api/v2/architect/scripts/m8", tok, nil).want(200).decode(&sc)
	if sc.Version != 1 || sc.Name != "m" {
		t.Fatalf("m8 was written by a rejected bulk: %+v", sc)
	}

	// Shape errors.
	e.do("POST", "/api/v2/architect/scripts/bulk", tok, map[string]any{"scripts": []any{}}).want(422).hasLimitHeaders().errBody()
	e.do("POST", "/api/v2/architect/scripts/bulk", tok, map[string]any{"scripts": append(many, many[0])}).want(422).errBody()
	e.do("POST", "/api/v2/architect/scripts/bulk", tok, map[string]any{"items": many}).want(400).hasLimitHeaders().errBody()
}

// rateLimits returns GET /api/v2/ratelimits by policy name.
func rateLimits(e *env, tok, scriptID string) map[string]wire.LimitState {
	e.t.Helper()
	path := "/api/v2/ratelimits"
	if scriptID != "" {
		path += "?scriptId=" + scriptID
	}
	var rl wire.RateLimits
	e.do("GET", path, tok, nil).want(200).hasLimitHeaders().decode(&rl)
	out := map[string]wire.LimitState{}
	for _, p := range rl.Policies {
		out[p.Policy] = p
	}
	return out
}

func testRateLimitsEndpoint(t *testing.T, lf limiterFactory) {
	clk := newClock()
	e := newEnv(t, lf, options{clock: clk})
	c := e.client("acme")
	tok := e.token(c)
	e.do("PUT", "/api/v2/architect/scripts/s1", tok, map[string]any{"name": "n"}).want(201)
	first := rateLimits(e, tok, "s1")
	second := rateLimits(e, tok, "s1")
	if fmt.Sprint(first) != fmt.Sprint(second) {
		t.Fatalf("ratelimits consumed quota:\n%v\n%v", first, second)
	}
	// The PUT used one of each write tier; the GET ratelimits requests none.
	want := map[string]struct {
		key       string
		remaining int64
	}{
		"org-requests":             {c.orgID, 999},
		"client-requests":          {c.id, 199},
		"script-writes":            {c.orgID, 39},
		"script-writes-per-script": {"s1", 3},
		"token-requests":           {"client:" + c.id, 19},
	}
	if len(first) != len(want) {
		t.Fatalf("policies %v", first)
	}
	for name, w := range want {
		got := first[name]
		if got.Key != w.key || got.Remaining != w.remaining {
			t.Errorf("%s: key %q remaining %d, want %q %d", name, got.Key, got.Remaining, w.key, w.remaining)
		}
	}
	if p := first["script-writes-per-script"]; p.Limit != 2 || p.Window != "1s" || p.Burst != 4 || p.Scope != wire.ScopeOrgScript {
		t.Errorf("per-script state %+v", p)
	}
	if _, ok := rateLimits(e, tok, "")["script-writes-per-script"]; ok {
		t.Error("per-script tier reported without scriptId")
	}
}

// TestOptimisticConcurrency: 20 goroutines × 50 PUTs with If-Match on one
// script. Every attempt is either a write or a 412, and the version count
// equals the writes: no acknowledged write is lost.
func testOptimisticConcurrency(t *testing.T, lf limiterFactory) {
	e := newEnv(t, lf, options{policies: generous(t)})
	tok := e.token(e.client("acme"))
	const path = "/api/v2/architect/scripts/hot"
	e.do("PUT", path, tok, map[string]any{"name": "hot"}).want(201)
	const workers, attempts = 20, 50
	var mu sync.Mutex
	ok, failed := 0, 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			etag := `"1"`
			for i := range attempts {
				r := e.do("PUT", path, tok, map[string]any{"name": "hot", "text": fmt.Sprint(w, "-", i)}, "If-Match", etag)
				mu.Lock()
				switch r.status {
				case 200:
					ok++
					etag = r.header.Get("ETag")
				case 412:
					// The 412 carries the current ETag: retry from it.
					failed++
					etag = r.header.Get("ETag")
					if etag == "" {
						t.Errorf("412 without the current ETag")
					}
				default:
					t.Errorf("status %d: %s", r.status, r.body)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok+failed != workers*attempts {
		t.Fatalf("%d writes + %d 412s != %d attempts", ok, failed, workers*attempts)
	}
	var vp wire.Page[ratelab.ScriptVersion]
	e.do("GET", path+"/versions?pageSize=1", tok, nil).want(200).decode(&vp)
	if vp.Total != ok+1 || vp.Entities[0].Version != int64(ok+1) {
		t.Fatalf("%d versions (latest %d), want %d: 1 create + %d writes", vp.Total, vp.Entities[0].Version, ok+1, ok)
	}
	t.Logf("%d attempts: %d writes, %d 412s; %d versions", workers*attempts, ok, failed, vp.Total)
}

func testCrossOrgIsolation(t *testing.T, lf limiterFactory) {
	clk := newClock()
	e := newEnv(t, lf, options{clock: clk})
	a, b := e.token(e.client("org-a")), e.token(e.client("org-b"))
	r := e.do("POST", "/api/v2/architect/scripts", a, map[string]any{"name": "secret"}).want(201)
	id := e.script(r).ID
	path := "/api/v2/architect/scripts/" + id
	e.do("GET", path, b, nil).want(404).errBody()
	e.do("GET", path+"/versions", b, nil).want(404)
	e.do("DELETE", path, b, nil).want(404)
	e.do("PUT", path, b, map[string]any{"name": "x"}, "If-Match", `"1"`).want(412)
	var sp wire.Page[ratelab.Script]
	e.do("GET", "/api/v2/architect/scripts", b, nil).want(200).decode(&sp)
	if sp.Total != 0 {
		t.Fatalf("org b sees %d scripts", sp.Total)
	}
	// org b's PUT to the same id creates its own script; a's is untouched.
	e.do("PUT", path, b, map[string]any{"name": "b's"}).want(201)
	var sc ratelab.Script
	e.do("GET", path, a, nil).want(200).decode(&sc)
	if sc.Name != "secret" || sc.Version != 1 {
		t.Fatalf("org a's script changed: %+v", sc)
	}
	// Limits are per org: exhaust a's per-script tier; b's is untouched.
	for range 4 {
		e.do("PUT", "/api/v2/architect/scripts/same", a, map[string]any{"name": "x"})
	}
	e.do("PUT", "/api/v2/architect/scripts/same", a, map[string]any{"name": "x"}).want(429)
	e.do("PUT", "/api/v2/architect/scripts/same", b, map[string]any{"name": "x"}).want(201)
	// Users are per org.
	var ua, ub wire.UserList
	e.do("GET", "/api/v2/users", a, nil).want(200).decode(&ua)
	e.do("GET", "/api/v2/users", b, nil).want(200).decode(&ub)
	if ua.Total == 0 || ub.Total == 0 || ua.Entities[0].ID == ub.Entities[0].ID {
		t.Fatalf("users a %+v b %+v", ua, ub)
	}
}

func testHealthMetricsOpenAPI(t *testing.T, lf limiterFactory) {
	e := newEnv(t, lf, options{})
	tok := e.token(e.client("acme"))
	var h wire.Health
	e.do("GET", "/healthz", "", nil).want(200).decode(&h)
	if h.Status != "ok" {
		t.Fatalf("healthz %+v", h)
	}
	e.do("GET", "/readyz", "", nil).want(200).decode(&h)
	if h.Status != "ok" || h.Checks["database"] != "ok" {
		t.Fatalf("readyz %+v", h)
	}
	e.do("GET", "/api/v2/users", tok, nil).want(200)
	e.do("GET", "/api/v2/architect/scripts/x", tok, nil).want(404)
	r := e.do("GET", "/metrics", "", nil).want(200)
	for _, want := range []string{
		`ratelab_http_requests_total{method="GET",route="GET /api/v2/users",status="200"} 1`,
		`ratelab_http_requests_total{method="GET",route="GET /api/v2/architect/scripts/{scriptId}",status="404"} 1`,
		`ratelab_http_request_duration_seconds_bucket{method="GET",route="GET /api/v2/users"`,
		`ratelab_limiter_decisions_total{outcome="allowed",policy="org-requests"} 2`,
		`ratelab_limiter_degraded 0`,
		`ratelab_store_errors_total 0`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Not ready once the database is closed.
	e.db.Close()
	e.do("GET", "/readyz", "", nil).want(503).decode(&h)
	if h.Status != "unavailable" || h.Checks["database"] != "unreachable" {
		t.Fatalf("readyz after close %+v", h)
	}
}

func testOpenAPIMatchesRoutes(t *testing.T, lf limiterFactory) {
	e := newEnv(t, lf, options{})
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	e.do("GET", "/openapi.json", "", nil).want(200).decode(&doc)
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	// Every documented operation is served by its own route (not a 404 or
	// 405), probed on the real server; and every route is documented.
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			m := strings.ToUpper(method)
			documented[m+" "+path] = true
			var op struct {
				Responses map[string]any `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil || len(op.Responses) == 0 {
				t.Errorf("%s %s: no responses", m, path)
			}
			concrete := strings.ReplaceAll(path, "{scriptId}", "probe")
			req, _ := http.NewRequest(m, e.url+concrete, nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode == 404 && !strings.Contains(path, "{scriptId}") || res.StatusCode == 405 {
				t.Errorf("%s %s documented but answers %d", m, path, res.StatusCode)
			}
		}
	}
	for _, route := range e.srv.Routes() {
		if !documented[route] {
			t.Errorf("route %s is not in /openapi.json", route)
		}
	}
	if len(documented) != len(e.srv.Routes()) {
		t.Errorf("%d documented operations, %d routes", len(documented), len(e.srv.Routes()))
	}
}

// testPolicyReload swaps policies from a file while requests are in
// flight; a bad file keeps the policies in effect.
func testPolicyReload(t *testing.T, lf limiterFactory) {
	clk := newClock()
	file := filepath.Join(t.TempDir(), "policies.yaml")
	write := func(burst int) {
		doc := fmt.Sprintf("policies:\n  - name: per-script\n    rate: 1/s\n    burst: %d\n    scope: org+script\n    classes: [script-writes]\n  - name: org\n    rate: 1000/s\n    burst: 1000\n    scope: org\n    classes: [all]\n", burst)
		if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	e := newEnv(t, lf, options{clock: clk, file: file})
	tok := e.token(e.client("acme"))
	put := func() *resp { return e.do("PUT", "/api/v2/architect/scripts/s", tok, map[string]any{"name": "n"}) }
	put().want(201)
	r := put().want(429)
	if b := r.errBody(); b.Limit.Policy != "per-script" || b.Limit.Burst != 1 {
		t.Fatalf("429 from %+v", b.Limit)
	}

	// Readers keep going while the policies are swapped.
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 4 {
		wg.Go(func() {
			for range 20 {
				if r := e.do("GET", "/api/v2/users", tok, nil); r.status != 200 || r.header.Get("RateLimit") == "" {
					bad.Add(1)
				}
			}
		})
	}
	write(3)
	for range 20 {
		if err := e.srv.Reload(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d requests failed during reloads", bad.Load())
	}
	// The bucket keeps its state (one used) and now holds 3.
	put().want(200)
	put().want(200)
	if b := put().want(429).errBody(); b.Limit.Burst != 3 {
		t.Fatalf("after reload: %+v", b.Limit)
	}

	// A bad file is reported, logged, and the old policies stay.
	if err := os.WriteFile(file, []byte("policies:\n  - name: per-script\n    rate: 1/s\n    burst: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := e.srv.Reload()
	if err == nil || !strings.Contains(err.Error(), `policies.yaml: policy "per-script": burst: must be at least 1`) {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if e.srv.Policies().Source != "policies.yaml" || e.srv.Policies().List()[0].Burst != 3 {
		t.Fatalf("policies changed by a bad file: %v", e.srv.Policies().List()[0])
	}
	if !strings.Contains(e.logs.String(), "keeping the policies in effect") {
		t.Fatalf("bad reload not logged:\n%s", e.logs)
	}
	if b := put().want(429).errBody(); b.Limit.Burst != 3 {
		t.Fatalf("after bad reload: %+v", b.Limit)
	}
}

// broken is a limiter whose every decision fails with a real error (not
// an outage): a bug, a script Redis refuses.
type broken struct{}

func (broken) Decide(context.Context, *limit.Request, *limit.Decision) error {
	return errors.New("script decided allowed=true, evaluate false")
}

// TestLimiterErrorNotHidden: a limiter error that is not an outage is an
// internal error, logged and counted; the server no longer hides it by
// deciding on a fallback of its own.
func TestLimiterErrorNotHidden(t *testing.T) {
	e := newEnv(t, nil, options{limiter: broken{}})
	b := e.do("GET", "/api/v2/users", "", nil).want(500).errBody()
	if b.Code != ratelab.EINTERNAL || b.Message != "Internal error." {
		t.Fatalf("body %+v", b)
	}
	if v := metricValue(t, e.reg, "ratelab_limiter_errors_total", nil); v != 1 {
		t.Fatalf("limiter errors %v, want 1", v)
	}
	if !strings.Contains(e.logs.String(), "script decided allowed=true") {
		t.Fatalf("limiter error not logged:\n%s", e.logs)
	}
}

// gate holds FindScript of the script "slow" until released.
type gate struct {
	ratelab.ScriptService
	entered chan struct{}
	release chan struct{}
}

func (g *gate) FindScript(ctx context.Context, orgID, id string) (*ratelab.Script, error) {
	if id == "slow" {
		close(g.entered)
		<-g.release
	}
	return g.ScriptService.FindScript(ctx, orgID, id)
}

// TestCloseDrains: Close waits for a request in flight, which completes
// normally, and the server stops accepting new ones.
func TestCloseDrains(t *testing.T) {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, nil, options{scripts: func(s ratelab.ScriptService) ratelab.ScriptService { g.ScriptService = s; return g }})
	tok := e.token(e.client("acme"))
	got := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", e.url+"/api/v2/architect/scripts/slow", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- -1
			return
		}
		res.Body.Close()
		got <- res.StatusCode
	}()
	<-g.entered
	closed := make(chan error, 1)
	go func() { closed <- e.srv.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := http.Get(e.url + "/healthz"); err == nil {
		t.Error("a new connection was accepted while draining")
	}
	close(g.release)
	if status := <-got; status != 404 {
		t.Fatalf("in-flight request: %d, want its normal 404", status)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// testShadowPolicy: a shadow policy counts and reports but never rejects,
// and is left out of the headers a client paces itself by.
func testShadowPolicy(t *testing.T, lf limiterFactory) {
	ps, err := httpapi.ParsePolicies("shadow.yaml", []byte(`policies:
  - name: org
    rate: 100/s
    burst: 100
    scope: org
    classes: [all]
  - name: tight-shadow
    rate: 1/s
    burst: 1
    scope: org+script
    classes: [script-writes]
    shadow: true
`))
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	e := newEnv(t, lf, options{clock: clk, policies: ps})
	tok := e.token(e.client("acme"))
	for range 3 {
		r := e.do("PUT", "/api/v2/architect/scripts/s", tok, map[string]any{"name": "n"}).hasLimitHeaders()
		if r.status/100 != 2 {
			t.Fatalf("shadow policy rejected: %d %s", r.status, r.body)
		}
		if strings.Contains(r.header.Get("RateLimit-Policy"), "tight-shadow") {
			t.Fatalf("shadow policy advertised: %q", r.header.Get("RateLimit-Policy"))
		}
	}
	if n := metricValue(t, e.reg, "ratelab_limiter_decisions_total", map[string]string{"policy": "tight-shadow", "outcome": "shadow_rejected"}); n != 2 {
		t.Fatalf("shadow_rejected %v, want 2", n)
	}
	if p := rateLimits(e, tok, "s")["tight-shadow"]; !p.Shadow || p.Remaining != 0 {
		t.Fatalf("shadow state %+v", p)
	}
}

// TestHeaderLimit: request headers beyond MaxHeaderBytes are refused with
// a 431 in the error shape (the server's, not net/http's plain text).
func TestHeaderLimit(t *testing.T) {
	e := newEnv(t, nil, options{})
	r := e.do("GET", "/healthz", "", nil, "X-Big", strings.Repeat("x", httpapi.MaxHeaderBytes+8192)).want(http.StatusRequestHeaderFieldsTooLarge)
	if b := r.errBody(); b.Code != wire.CodeHeaderTooLarge {
		t.Fatalf("code %q", b.Code)
	}
	// Just under the limit is served.
	e.do("GET", "/healthz", "", nil, "X-Big", strings.Repeat("x", httpapi.MaxHeaderBytes-1024)).want(200)
}
