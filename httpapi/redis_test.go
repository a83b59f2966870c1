package httpapi_test

import (
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab"
	"ratelab/internal/testenv"
	"ratelab/limit"
	"ratelab/redis"
)

// TestServerRedis runs the end-to-end suite with the Redis limiter. Each
// test gets its own key prefix, so runs and tests never share state.
func TestServerRedis(t *testing.T) {
	u := testenv.RedisURL(t)
	opts, err := goredis.ParseURL(u)
	if err != nil {
		t.Fatalf("parse %s: %v", u, err)
	}
	client := goredis.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	lf := func(t *testing.T) limit.Store {
		st, err := redis.New(redis.Config{
			Client: client,
			Prefix: "ratelab-httpapi-test:" + ratelab.NewID() + ":",
			// Generous: a slow round trip under -race must not look like an outage.
			Timeout: 5 * time.Second,
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
