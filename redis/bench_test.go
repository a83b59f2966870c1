package redis

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/limit"
)

// BenchmarkDecide measures decisions on Redis time from parallel
// goroutines over 1000 groups of 100 scripts each: four tiers and one tier
// (each one round trip), on a client that ignores context deadlines (the
// Store keeps its deadline in a goroutine of its own) and on one that
// honours them (ctxdeadline), next to a bare PING, the floor of any round
// trip on the same client.
func BenchmarkDecide(b *testing.B) {
	b.Run("ratelab-4tiers", func(b *testing.B) { benchDecide(b, 4, false) })
	b.Run("ratelab-4tiers-ctxdeadline", func(b *testing.B) { benchDecide(b, 4, true) })
	b.Run("ratelab-1tier", func(b *testing.B) { benchDecide(b, 1, false) })
	b.Run("ratelab-1tier-ctxdeadline", func(b *testing.B) { benchDecide(b, 1, true) })
	b.Run("ping", func(b *testing.B) {
		c := sharedClient(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := c.Ping(context.Background()).Err(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func benchDecide(b *testing.B, tiers int, ctxDeadlines bool) {
	opt, err := goredis.ParseURL(testenv.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	opt.ContextTimeoutEnabled = ctxDeadlines
	c := goredis.NewClient(opt)
	b.Cleanup(func() { c.Close() })
	s := newStore(b, Config{Client: c})
	org := &limit.Policy{Name: "org", Rate: limit.Per(1000, time.Second), Burst: 1000}
	client := &limit.Policy{Name: "client", Rate: limit.Per(500, time.Second), Burst: 500}
	writes := &limit.Policy{Name: "script-writes", Rate: limit.Per(100, time.Second), Burst: 100}
	script := &limit.Policy{Name: "script", Rate: limit.Per(10, time.Second), Burst: 10}
	const groups, scripts = 1000, 100
	names := make([]string, groups*scripts)
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	var seq, allowed atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var d limit.Decision
		all := make([]limit.Tier, 4)
		req := limit.Request{Cost: 1, Tiers: all}
		if tiers == 1 {
			// The script tier alone: the tightest, so that decisions are
			// not trivially allowed.
			req.Tiers = all[3:]
		}
		for pb.Next() {
			i := int(seq.Add(1)*7919) % len(names)
			g := names[i/scripts]
			req.Group = g
			all[0] = limit.Tier{Policy: org, Key: g}
			all[1] = limit.Tier{Policy: client, Key: "client-" + g}
			all[2] = limit.Tier{Policy: writes, Key: g}
			all[3] = limit.Tier{Policy: script, Key: names[i]}
			if err := s.Decide(context.Background(), &req, &d); err != nil {
				b.Error(err)
				return
			}
			if d.Allowed {
				allowed.Add(1)
			}
		}
	})
	b.StopTimer()
	if s.Degraded() {
		b.Fatal("store degraded during the benchmark")
	}
	if allowed.Load() == 0 {
		b.Fatal("nothing admitted")
	}
}
