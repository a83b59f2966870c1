package httpapi_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab"
	"ratelab/httpapi"
	"ratelab/internal/testenv"
	"ratelab/limit"
	"ratelab/redis"
	"ratelab/wire"
)

// TestServerRedis runs the end-to-end suite with the Redis limiter. Each
// test gets its own key prefix, so runs and tests never share state.
func TestServerRedis(t *testing.T) {
	c, err := redis.NewClient(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	runRedisSuite(t, c)
}

// TestServerRedisCluster runs the same suite on the Redis Cluster of
// three masters that .ci/run starts.
func TestServerRedisCluster(t *testing.T) {
	c, err := redis.NewClient(testenv.RedisClusterURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	runRedisSuite(t, c)
}

func runRedisSuite(t *testing.T, client goredis.UniversalClient) {
	lf := func(t *testing.T) limit.Store {
		st, err := redis.New(redis.Config{
			Client: client,
			Prefix: "ratelab-httpapi-test:" + ratelab.NewID() + ":",
			// Generous: a slow round trip under -race must not look like an outage.
			Timeout: 5 * time.Second,
			// The suite's clock is fake: its instants stand still while real
			// time passes, and Redis expires keys on real time. A key must
			// outlive the slowest test on a loaded machine (with the default
			// second, PolicyReload's bucket vanished mid-test under load).
			FixedTimeGrace: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	for _, tc := range suite {
		if tc.name == "OptimisticConcurrency" {
			// A property of the database, run with generous limits: the
			// memory run covers it, and it is the slowest test.
			continue
		}
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, lf) })
	}
}

// TestLimiterOutage kills the Redis behind a server's limiter. The store
// owns the failure: failing open it decides locally, so limits stay
// enforced per process and /readyz answers 200 with degraded set; failing
// closed every rate-limited request is a 503 with Retry-After and nothing
// is admitted. Both go back to Redis when it returns.
func TestLimiterOutage(t *testing.T) {
	ps, err := httpapi.BuildPolicies("outage", []httpapi.PolicySpec{
		{Name: "org", Rate: "1000/s", Burst: 1000, Scope: "org", Classes: []string{httpapi.ClassAll}},
		{Name: "token", Rate: "100/s", Burst: 100, Scope: "client", Classes: []string{httpapi.ClassToken, httpapi.ClassUnauthenticated}},
		{Name: "per-script", Rate: "1/h", Burst: 2, Scope: "org+script", Classes: []string{httpapi.ClassScriptWrites}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, failClosed := range []bool{false, true} {
		name := "fail-open"
		if failClosed {
			name = "fail-closed"
		}
		t.Run(name, func(t *testing.T) {
			rs := testenv.StartRedis(t)
			client := goredis.NewClient(&goredis.Options{Addr: rs.Addr(), ContextTimeoutEnabled: true})
			t.Cleanup(func() { client.Close() })
			st, err := redis.New(redis.Config{Client: client, FailClosed: failClosed,
				// Generous: a slow round trip under -race must not look like
				// an outage; a dead Redis refuses connections at once.
				Timeout: 2 * time.Second, HealthInterval: 20 * time.Millisecond,
				Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			e := newEnv(t, nil, options{limiter: st, policies: ps})
			tok := e.token(e.client("acme"))
			put := func(id string) *resp {
				return e.do("PUT", "/api/v2/architect/scripts/"+id, tok, map[string]any{"name": "n"})
			}
			var h wire.Health
			e.do("GET", "/readyz", "", nil).want(200).decode(&h)
			if h.Status != "ok" || h.Degraded {
				t.Fatalf("readyz before the outage %+v", h)
			}

			rs.Kill()
			var statuses []int
			for range 4 {
				r := put("s1")
				statuses = append(statuses, r.status)
				switch r.status {
				case 503:
					if b := r.errBody(); b.Code != ratelab.EUNAVAILABLE {
						t.Errorf("503 body %+v", b)
					}
					if ra := r.header.Get("Retry-After"); ra != "1" {
						t.Errorf("503 Retry-After %q, want 1", ra)
					}
				case 429:
					r.hasLimitHeaders()
				}
			}
			readyz := e.do("GET", "/readyz", "", nil)
			readyz.decode(&h)
			if v := metricValue(t, e.reg, "ratelab_limiter_degraded", nil); v != 1 {
				t.Errorf("degraded gauge %v during the outage", v)
			}
			_, _, ferr := e.db.ScriptVersions(context.Background(), e.client("acme").orgID, "s1", ratelab.Page{})
			if failClosed {
				// Nothing admitted: every write is a 503 and none reached the
				// database.
				if want := []int{503, 503, 503, 503}; !slices.Equal(statuses, want) {
					t.Fatalf("PUTs during the outage %v, want %v", statuses, want)
				}
				if ratelab.ErrorCode(ferr) != ratelab.ENOTFOUND {
					t.Fatalf("a fail-closed server wrote the script: %v", ferr)
				}
				e.do("GET", "/api/v2/users", tok, nil).want(503)
				if readyz.status != 503 || h.Status != "unavailable" {
					t.Fatalf("readyz failing closed: %d %+v", readyz.status, h)
				}
			} else {
				// The local fallback enforces the per-script burst of 2.
				if want := []int{201, 200, 429, 429}; !slices.Equal(statuses, want) {
					t.Fatalf("PUTs during the outage %v, want %v", statuses, want)
				}
				if readyz.status != 200 || h.Status != "degraded" || !h.Degraded {
					t.Fatalf("readyz failing open: %d %+v", readyz.status, h)
				}
			}

			rs.Start()
			deadline := time.Now().Add(10 * time.Second)
			for st.Degraded() {
				if time.Now().After(deadline) {
					t.Fatal("not back on Redis within 10 s")
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The restarted Redis is empty: a fresh bucket admits the write.
			if r := put("s2"); r.status != 201 {
				t.Fatalf("PUT after Redis returned: %d %s", r.status, r.body)
			}
			h = wire.Health{}
			e.do("GET", "/readyz", "", nil).want(200).decode(&h)
			if h.Status != "ok" || h.Degraded {
				t.Fatalf("readyz after the outage %+v", h)
			}
		})
	}
}
