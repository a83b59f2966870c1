package e2e_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ratelab/internal/testenv"
)

// Flood phases of TestReplicas: short, so that the suite stays within a
// minute or two of CI time, long enough for rate·t to outweigh the burst.
const (
	orgFloodRate, orgFloodFor       = 1000.0, 3 * time.Second
	scriptFloodRate, scriptFloodFor = 200.0, 2 * time.Second
)

// TestReplicas starts three `ratelab serve` replicas at once on one
// PostgreSQL and one Redis (a redis-server of the test's own, since it is
// restarted), with one --bootstrap-client, behind a real nginx balancing
// round robin, and checks through the proxy that they enforce one exact
// limit, lose no write, and survive a replica's crash and a Redis restart.
func TestReplicas(t *testing.T) {
	rs := testenv.StartRedis(t)
	replicaSuite(t, rs.URL(), rs)
}

// replicaSuite runs the phases of TestReplicas on three replicas deciding
// on the Redis (or Redis Cluster) at redisURL; the Redis restart only when
// rs, the server behind redisURL, is the test's own. The phases share the
// replicas and run in order; each uses keys no earlier phase touched, or
// says why it may reuse them.
func replicaSuite(t *testing.T, redisURL string, rs *testenv.RedisServer) {
	dbURL := testenv.PostgresDatabase(t)
	policyFile := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policyFile, []byte(replicaPolicies), 0o644); err != nil {
		t.Fatal(err)
	}
	// The default --redis-timeout: what an operator gets.
	reps := startReplicas(t, 3, "--db", dbURL, "--redis", redisURL, "--policies", policyFile,
		"--bootstrap-client", "e2e:e2e-secret")
	px := startNginx(t, reps)
	proxy := px.url
	hc := loadClient()
	defer hc.CloseIdleConnections()

	// All three started on one new database with one bootstrap client:
	// each issues a token for it, and each accepts the others' tokens.
	tokens := make([]string, len(reps))
	for i, r := range reps {
		tokens[i] = fetchToken(t, hc, r.url)
	}
	for i, r := range reps {
		var limits map[string]any
		getJSON(t, hc, r.url+"/api/v2/ratelimits", tokens[(i+1)%len(reps)], &limits)
	}
	token := fetchToken(t, hc, proxy)
	// A replica that finds Redis too slow under load (its --redis-timeout)
	// decides locally for a while, and the limit is no longer one: the
	// floods below check that none did.
	outages := func() int {
		n := 0
		for _, r := range reps {
			n += strings.Count(r.proc.out.String(), "redis rate limiter unreachable")
		}
		return n
	}
	checkNoOutage := func(t *testing.T, before int) {
		t.Helper()
		if n := outages() - before; n > 0 {
			t.Errorf("%d replica(s) lost Redis during the flood (timeout under load?): they decided locally", n)
		}
	}

	t.Run("OrgFlood", func(t *testing.T) {
		outs := openLoop(hc, orgFloodRate, orgFloodFor, func(int) (*http.Request, error) {
			return authed(http.MethodGet, proxy+"/api/v2/users", "", token)
		})
		checkAdmitted(t, outs, orgRate, orgBurst, 0.99)
		checkNoOutage(t, 0)
	})

	t.Run("ScriptFlood", func(t *testing.T) {
		outs := openLoop(hc, scriptFloodRate, scriptFloodFor, func(i int) (*http.Request, error) {
			return putScript(proxy, "flood", i, token)
		})
		admitted := checkAdmitted(t, outs, scriptRate, scriptBurst, 0)
		checkAtLeast(t, outs, admitted)
		if v := version(t, hc, proxy, "flood", token); v != int64(admitted) {
			t.Errorf("script version %d after %d admitted writes: writes lost or doubled", v, admitted)
		}
		checkNoOutage(t, 0)
	})

	// A shared Redis (the Cluster) is not restarted: no RedisRestart.
	restart := func(t *testing.T) {
		// Redis goes away 0.5 s into a flood of the org policy and comes
		// back 1 s later. The replicas fail open (decide locally): every
		// answer is a 2xx or a 429, never a 5xx or a dropped connection.
		done := make(chan []outcome)
		go func() {
			done <- openLoop(hc, 500, 3*time.Second, func(int) (*http.Request, error) {
				return authed(http.MethodGet, proxy+"/api/v2/users", "", token)
			})
		}()
		time.Sleep(500 * time.Millisecond)
		rs.Kill()
		time.Sleep(time.Second)
		rs.Start()
		outs := <-done
		counts := statusCounts(t, outs)
		t.Logf("through a Redis restart: %v", counts)
		for st, n := range counts {
			if st != http.StatusOK && st != http.StatusTooManyRequests {
				t.Errorf("%d answers with status %d (0: no answer)", n, st)
			}
		}
		if outages() == 0 {
			t.Error("no replica noticed that Redis went away: the restart tested nothing")
		}
		// Once every replica is back on Redis, the limit is exact again:
		// a script none wrote before, flooded, admits burst + rate·t and
		// its version counts every admitted write.
		waitFor(t, 10*time.Second, "every replica back on Redis", func() bool {
			for _, r := range reps {
				if degraded(hc, r.url) {
					return false
				}
			}
			return true
		})
		before := outages()
		outs = openLoop(hc, scriptFloodRate, scriptFloodFor, func(i int) (*http.Request, error) {
			return putScript(proxy, "after-restart", i, token)
		})
		admitted := checkAdmitted(t, outs, scriptRate, scriptBurst, 0)
		checkAtLeast(t, outs, admitted)
		if v := version(t, hc, proxy, "after-restart", token); v != int64(admitted) {
			t.Errorf("script version %d after %d admitted writes", v, admitted)
		}
		checkNoOutage(t, before)
	}
	if rs != nil {
		t.Run("RedisRestart", restart)
	}

	t.Run("KillReplica", func(t *testing.T) {
		// Writes to ten scripts, each over its limit, through the proxy;
		// replica 3 is killed with SIGKILL one second in.
		const scripts = 10
		var killedAt time.Time
		done := make(chan []outcome)
		go func() {
			done <- openLoop(hc, 150, 3*time.Second, func(i int) (*http.Request, error) {
				return putScript(proxy, fmt.Sprintf("kill-%d", i%scripts), i, token)
			})
		}()
		time.Sleep(time.Second)
		killedAt = time.Now()
		reps[2].proc.kill()
		outs := <-done

		acked := make([]int64, scripts)   // 2xx: the write is acknowledged
		unknown := make([]int64, scripts) // no answer from the replica: may or may not have been written
		after := map[int]int{}            // statuses of requests sent 0.5 s after the kill
		for _, o := range outs {
			s := o.i % scripts
			switch {
			case o.err == nil && o.status >= 200 && o.status < 300:
				acked[s]++
			case o.err == nil && o.status == http.StatusTooManyRequests:
			default:
				unknown[s]++
				if o.err == nil && o.status != http.StatusBadGateway {
					t.Errorf("request %d: status %d, want 2xx, 429 or (from the killed replica) 502", o.i, o.status)
				}
				if o.sent.Sub(killedAt) > 500*time.Millisecond {
					t.Errorf("request %d sent %v after the kill: status %d, error %v: nginx did not carry on with the others",
						o.i, o.sent.Sub(killedAt).Round(time.Millisecond), o.status, o.err)
				}
			}
			if o.sent.Sub(killedAt) > 500*time.Millisecond {
				after[o.status]++
			}
		}
		t.Logf("after the kill (sent > 0.5 s later): %v", after)
		if after[http.StatusOK] == 0 {
			t.Errorf("no write admitted after the kill: %v", after)
		}
		var totalAcked, totalUnknown, totalRetried int64
		hi := upperBound(outs, scriptRate, scriptBurst)
		retried := px.retried(t)
		for s := range scripts {
			id := fmt.Sprintf("kill-%d", s)
			v := version(t, hc, proxy, id, token)
			// A write nginx retried elsewhere after the killed replica
			// committed it is applied twice: one more version, one answer.
			r := int64(retried["/api/v2/architect/scripts/"+id])
			totalAcked += acked[s]
			totalUnknown += unknown[s]
			totalRetried += r
			if v < acked[s] || v > acked[s]+unknown[s]+r {
				t.Errorf("script %s: version %d, acknowledged writes %d, unanswered %d, retried by nginx %d: want acknowledged ≤ version ≤ acknowledged + unanswered + retried",
					id, v, acked[s], unknown[s], r)
			}
			if float64(acked[s]) > hi {
				t.Errorf("script %s: %d writes admitted, more than burst + rate·t = %.1f", id, acked[s], hi)
			}
		}
		t.Logf("%d requests, %d writes acknowledged, %d unanswered (in flight at the killed replica), %d retried by nginx on another replica",
			len(outs), totalAcked, totalUnknown, totalRetried)
	})
}

// loadClient is an HTTP client for floods: enough idle connections that
// an open loop reuses them instead of opening one per request.
func loadClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = maxInFlight, maxInFlight
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

// authed builds a request with the bearer token and, when body is not
// empty, a JSON body.
func authed(method, u, body, token string) (*http.Request, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// putScript is write i of script id.
func putScript(base, id string, i int, token string) (*http.Request, error) {
	return authed(http.MethodPut, base+"/api/v2/architect/scripts/"+id,
		fmt.Sprintf(`{"name":"e2e","text":"write %d"}`, i), token)
}

// version returns the stored version of script id.
func version(t *testing.T, hc *http.Client, base, id, token string) int64 {
	t.Helper()
	var s struct {
		Version int64 `json:"version"`
	}
	getJSON(t, hc, base+"/api/v2/architect/scripts/"+id, token, &s)
	return s.Version
}

// checkAtLeast fails the test when a per-script flood admitted fewer than
// lowerBound.
func checkAtLeast(t *testing.T, outs []outcome, admitted int) {
	t.Helper()
	if lo, _ := lowerBound(outs, scriptRate, scriptBurst); float64(admitted) < lo {
		t.Errorf("admitted %d, want at least burst − 1 + rate·t = %.1f", admitted, lo)
	}
}

// statusCounts counts outs by status, 0 for no answer (logging the first
// such error).
func statusCounts(t *testing.T, outs []outcome) map[int]int {
	t.Helper()
	counts := map[int]int{}
	logged := false
	for _, o := range outs {
		counts[o.status]++
		if o.err != nil && !logged {
			t.Logf("request %d: %v", o.i, o.err)
			logged = true
		}
	}
	return counts
}
