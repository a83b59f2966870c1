package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/sqlite"
)

// TestServeRedis starts serve with the Redis limiter (CI provides it).
func TestServeRedis(t *testing.T) {
	u := testenv.RedisURL(t)
	dbPath := filepath.Join(t.TempDir(), "r.db")
	srv := startServe(t, map[string]string{"RATELAB_REDIS": u}, "--addr", "127.0.0.1:0", "--db", "sqlite:"+dbPath, "--bootstrap-client", "c1:secret1")
	if !strings.Contains(srv.stderr.String(), "limiter=redis") {
		t.Fatalf("not on Redis:\n%s", srv.stderr)
	}
	tok, _ := srv.token("c1", "secret1")
	res, err := http.Get(srv.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("readyz %d", res.StatusCode)
	}
	// A fresh script id: its per-script bucket is new even in a shared Redis.
	id := "redis-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "-")
	for i := range 4 {
		if res := srv.put(tok, id); res.StatusCode/100 != 2 {
			t.Fatalf("PUT %d: %d", i, res.StatusCode)
		}
	}
	if res := srv.put(tok, id); res.StatusCode != 429 {
		t.Fatalf("fifth PUT %d, want 429", res.StatusCode)
	}
}

// TestServePostgres starts serve on PostgreSQL (CI provides it).
func TestServePostgres(t *testing.T) {
	u := testenv.PostgresDatabase(t)
	id := "pg-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "-")
	srv := startServe(t, map[string]string{"RATELAB_DB": u}, "--addr", "127.0.0.1:0", "--bootstrap-client", id+":secret1")
	if !strings.Contains(srv.stderr.String(), "db=postgres") || strings.Contains(srv.stderr.String(), u) {
		t.Fatalf("log should name postgres without the URL:\n%s", srv.stderr)
	}
	tok, code := srv.token(id, "secret1")
	if code != 200 {
		t.Fatalf("token %d", code)
	}
	if res := srv.put(tok, id); res.StatusCode != 201 {
		t.Fatalf("PUT %d", res.StatusCode)
	}
	code, out, errOut := runCmd(t, "clients", "create", "--org", "pg-other", "--db", u)
	if code != 0 || !strings.Contains(out, `"org":"pg-other"`) {
		t.Fatalf("clients create on postgres: %d %q %q", code, out, errOut)
	}
}

// get sends an authenticated GET and returns the response, its body read.
func (r *running) get(tok, path string) (*http.Response, []byte) {
	r.t.Helper()
	req, _ := http.NewRequest("GET", r.url+path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, body
}

// readyz returns /readyz's status and its degraded field.
func (r *running) readyz() (int, string, bool) {
	r.t.Helper()
	res, body := r.get("", "/readyz")
	var h struct {
		Status   string `json:"status"`
		Degraded bool   `json:"degraded"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		r.t.Fatalf("readyz body %q: %v", body, err)
	}
	return res.StatusCode, h.Status, h.Degraded
}

// TestServeRedisOutage kills the Redis of a running `ratelab serve`. With
// --redis-failure closed every request is a 503 with Retry-After and
// nothing is admitted, not even a write the limits would allow; by
// default the replica keeps enforcing the policies on its own.
func TestServeRedisOutage(t *testing.T) {
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			rs := testenv.StartRedis(t)
			dbPath := filepath.Join(t.TempDir(), "r.db")
			srv := startServe(t, nil, "--addr", "127.0.0.1:0", "--db", "sqlite:"+dbPath, "--redis", rs.URL(),
				"--redis-failure", mode, "--bootstrap-client", "c1:secret1")
			if !strings.Contains(srv.stderr.String(), "redis_failure="+mode) {
				t.Fatalf("mode not logged:\n%s", srv.stderr)
			}
			tok, code := srv.token("c1", "secret1")
			if code != 200 {
				t.Fatalf("token %d", code)
			}
			rs.Kill()
			var got []int
			for range 6 {
				res := srv.put(tok, "s1")
				got = append(got, res.StatusCode)
				if res.StatusCode == 503 && res.Header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
			}
			status, _, degraded := srv.readyz()
			if mode == "closed" {
				if !slices.Equal(got, []int{503, 503, 503, 503, 503, 503}) {
					t.Fatalf("PUTs with Redis down, failing closed: %v", got)
				}
				if status != 503 {
					t.Fatalf("readyz failing closed: %d", status)
				}
			} else {
				// The default per-script limit (burst 4) holds on the local
				// fallback.
				if !slices.Equal(got, []int{201, 200, 200, 200, 429, 429}) {
					t.Fatalf("PUTs with Redis down, failing open: %v", got)
				}
				if status != 200 || !degraded {
					t.Fatalf("readyz failing open: %d degraded=%v", status, degraded)
				}
			}
			if code := srv.stop(); code != 0 {
				t.Fatalf("serve exited %d", code)
			}
			if mode == "closed" {
				db, err := sqlite.Open(context.Background(), dbPath)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				org, err := db.EnsureOrg(context.Background(), "default")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := db.FindScript(context.Background(), org.ID, "s1"); err == nil {
					t.Fatal("a fail-closed server admitted a write while Redis was down")
				}
			}
		})
	}
}

// TestServeRedisDownAtStart starts serve while its Redis is down: it
// serves, failing open (readyz 200, degraded), and moves to Redis when
// Redis appears.
func TestServeRedisDownAtStart(t *testing.T) {
	rs := testenv.StartRedis(t)
	rs.Kill()
	dbPath := filepath.Join(t.TempDir(), "r.db")
	srv := startServe(t, nil, "--addr", "127.0.0.1:0", "--db", "sqlite:"+dbPath, "--redis", rs.URL(), "--bootstrap-client", "c1:secret1")
	if status, st, degraded := srv.readyz(); status != 200 || st != "degraded" || !degraded {
		t.Fatalf("readyz with Redis down at start: %d %s degraded=%v", status, st, degraded)
	}
	tok, code := srv.token("c1", "secret1")
	if code != 200 {
		t.Fatalf("token with Redis down: %d", code)
	}
	if res := srv.put(tok, "s1"); res.StatusCode != 201 {
		t.Fatalf("PUT with Redis down: %d", res.StatusCode)
	}
	rs.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, st, degraded := srv.readyz()
		if status == 200 && st == "ok" && !degraded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still degraded 10 s after Redis appeared: %d %s", status, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, srv.stderr, "reachable again; deciding on redis")
	// Decisions now land on Redis: the per-script key exists there.
	if res := srv.put(tok, "s2"); res.StatusCode != 201 {
		t.Fatalf("PUT on Redis: %d", res.StatusCode)
	}
	c := goredis.NewClient(&goredis.Options{Addr: rs.Addr()})
	defer c.Close()
	keys, err := c.Keys(context.Background(), "*s2").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("per-script key of s2 on Redis: %v %v", keys, err)
	}
}

// TestServeMetricsAddr: with --metrics-addr, /metrics is served on its own
// listener and answers 404 (the error shape) beside the API.
func TestServeMetricsAddr(t *testing.T) {
	srv := startServe(t, nil, "--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--db", "sqlite:"+filepath.Join(t.TempDir(), "r.db"), "--bootstrap-client", "c1:secret1")
	m := regexp.MustCompile(`metrics on (http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(srv.stderr.String())
	if m == nil {
		t.Fatalf("no metrics address logged:\n%s", srv.stderr)
	}
	if _, code := srv.token("c1", "secret1"); code != 200 {
		t.Fatalf("token %d", code)
	}
	res, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `ratelab_http_requests_total{method="POST",route="POST /oauth/token",status="200"} 1`) {
		t.Fatalf("metrics listener: %d\n%s", res.StatusCode, body)
	}
	res, body = srv.get("", "/metrics")
	if res.StatusCode != 404 || res.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Fatalf("/metrics beside the API: %d %s", res.StatusCode, body)
	}
}
