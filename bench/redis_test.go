package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/limit"
	ratelabredis "ratelab/redis"
)

// redisParallelism is RunParallel's goroutines per GOMAXPROCS for the
// Redis contenders: a decision is a network round trip, so more requests
// in flight than cores is how a server would use Redis.
const redisParallelism = 8

// BenchmarkRedis compares ratelab's Redis store deciding four tiers in one
// round trip with go-redis/redis_rate deciding one, on the same Redis, the
// same client options, the same keys and the same parallelism. Both take
// the time from Redis (TIME) inside their script: ratelab leaves
// Request.Now zero, which is its production mode, so that replicas with
// skewed clocks agree.
//
// It needs RATELAB_REDIS_URL; without it, it is skipped, except under
// CI=true or RATELAB_REQUIRE_SERVICES=1, where it fails.
func BenchmarkRedis(b *testing.B) {
	opt, err := goredis.ParseURL(testenv.RedisURL(b))
	if err != nil {
		b.Fatalf("parse RATELAB_REDIS_URL: %v", err)
	}
	// As `ratelab serve` builds its client: go-redis honours the
	// limiter's per-call deadline itself.
	opt.ContextTimeoutEnabled = true
	client := goredis.NewClient(opt)
	defer client.Close()
	ctx := context.Background()
	if err := client.Ping(ctx).Err(); err != nil {
		b.Fatalf("ping redis: %v", err)
	}
	w := newWorkload()
	// A prefix of its own per run keeps this run's keys apart from any
	// other user of the same Redis; every key expires on its own within
	// the policies' 100ms window.
	prefix := fmt.Sprintf("ratelab-bench:%x:", rand.Uint64())
	for _, c := range []contender{
		ratelabRedis(client, prefix),
		redisRate(client, prefix),
	} {
		runRedisContender(b, w, c)
	}
}

// runRedisContender is runContender with more goroutines in flight and no
// B/key (the state lives in Redis).
func runRedisContender(b *testing.B, w *workload, c contender) {
	b.Run(c.name, func(b *testing.B) {
		newWorker, _, release := c.open(b, w)
		defer release()
		b.Run("serial", func(b *testing.B) {
			b.ReportAllocs()
			work, pos := newWorker(), w.start()
			var admitted int64
			b.ResetTimer()
			for range b.N {
				if work(pos) {
					admitted++
				}
				pos += c.width
			}
			b.StopTimer()
			var cnt counter
			cnt.add(int64(b.N), admitted)
			cnt.report(b)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
		b.Run("parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(redisParallelism)
			var cnt counter
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				work, pos := newWorker(), w.start()
				var ops, admitted int64
				for pb.Next() {
					if work(pos) {
						admitted++
					}
					pos += c.width
					ops++
				}
				cnt.add(ops, admitted)
			})
			b.StopTimer()
			cnt.report(b)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	})
}

// ratelabRedis is ratelab/redis deciding the four tiers of DESIGN.md in
// one EVALSHA. It fails closed with a generous timeout, so that a slow
// round trip on a busy machine fails the benchmark instead of silently
// measuring the in-memory fallback.
func ratelabRedis(client *goredis.Client, prefix string) contender {
	return contender{name: "ratelab-4tiers", width: 4, open: func(b *testing.B, w *workload) (func() worker, float64, func()) {
		s, err := ratelabredis.New(ratelabredis.Config{
			Client:     client,
			Prefix:     prefix,
			FailClosed: true,
			Timeout:    5 * time.Second,
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			b.Fatal(err)
		}
		policies := benchPolicies(4)
		ctx := context.Background()
		newWorker := func() worker {
			req := &limit.Request{Group: "bench", Tiers: make([]limit.Tier, len(policies)), Cost: 1}
			for i, p := range policies {
				req.Tiers[i].Policy = p
			}
			d := &limit.Decision{}
			return func(pos uint64) bool {
				for i := range req.Tiers {
					req.Tiers[i].Key = w.key(pos + uint64(i))
				}
				if err := s.Decide(ctx, req, d); err != nil {
					b.Fatal(err)
				}
				return d.Allowed
			}
		}
		return newWorker, 0, func() { s.Close() }
	}}
}

// redisRate is github.com/go-redis/redis_rate/v10 deciding one tier with
// Allow (one EVALSHA; the script reads Redis TIME).
func redisRate(client *goredis.Client, prefix string) contender {
	return contender{name: "redisrate-1tier", width: 1, open: func(b *testing.B, w *workload) (func() worker, float64, func()) {
		l := redis_rate.NewLimiter(client)
		lim := redis_rate.Limit{Rate: benchRate, Burst: benchBurst, Period: time.Second}
		ctx := context.Background()
		newWorker := func() worker {
			return func(pos uint64) bool {
				res, err := l.Allow(ctx, prefix+w.key(pos), lim)
				if err != nil {
					b.Fatal(err)
				}
				return res.Allowed > 0
			}
		}
		return newWorker, 0, func() {}
	}}
}
