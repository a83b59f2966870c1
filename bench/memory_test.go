package bench

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sethvargo/go-limiter/memorystore"
	"golang.org/x/time/rate"

	"ratelab/limit"
)

// Every contender enforces the same limit on every key: 1000 requests per
// second with a burst of 100. In ratelab terms T = 1ms and τ = 100ms; for
// x/time/rate, rate.Limit(1000) and burst 100; for go-limiter, 100 tokens
// per 100ms interval (a bucket of 100 refilled at 1000/s).
const (
	benchRate  = 1000
	benchBurst = 100
)

// worker takes one decision on the key(s) at a sequence position and
// reports whether it was admitted. Each goroutine gets its own worker, so a
// worker may reuse buffers without locking. Every contender pays the same
// indirect call per decision.
type worker func(pos uint64) bool

// contender is one limiter under test.
type contender struct {
	name string
	// width is how many sequence positions one decision consumes: one per
	// tier, each tier keyed by its own choice.
	width uint64
	// open builds the contender with every key of w already tracked, and
	// returns a maker of per-goroutine workers, the heap bytes per tracked
	// key (measured while filling), and a function that releases it. Each
	// contender is filled with fresh copies of the key strings, as a
	// server's requests would bring them, so that the bytes per key count
	// the key strings a contender keeps, and only those.
	open func(b *testing.B, w *workload) (newWorker func() worker, bytesPerKey float64, release func())
}

// BenchmarkMemory compares in-process limiters on 100,000 keys chosen
// with a Zipf-like distribution, on one goroutine and with RunParallel.
// Every decision reads the clock once (time.Now), as the peers do inside.
func BenchmarkMemory(b *testing.B) {
	w := newWorkload()
	for _, c := range memoryContenders() {
		runContender(b, w, c, 1, func(b *testing.B, bytesPerKey float64) {
			b.ReportMetric(bytesPerKey, "B/key")
		})
	}
}

// BenchmarkMemoryMillion is BenchmarkMemory's one-tier contenders on
// 1,000,000 keys: bytes per key at the size the targets name, and the
// decision's time when most keys miss every cache.
func BenchmarkMemoryMillion(b *testing.B) {
	w := newWorkloadKeys(1_000_000)
	for _, c := range []contender{
		ratelabMemory("ratelab-1tier", 1, 0),
		ratelabMemory("ratelab-1tier-maxkeys", 1, 1<<21),
		xtimerateMap("xtimerate-map", 1),
		goLimiter(),
	} {
		runContender(b, w, c, 1, func(b *testing.B, bytesPerKey float64) {
			b.ReportMetric(bytesPerKey, "B/key")
		})
	}
}

// memoryContenders returns the in-process limiters under test.
func memoryContenders() []contender {
	return []contender{
		ratelabMemory("ratelab-1tier", 1, 0),
		ratelabMemory("ratelab-4tiers", 4, 0),
		// The window algorithms on the same keys: 100 per 100ms, the same
		// 1000/s with a quota of 100, beside GCRA's ratelab-1tier.
		ratelabMemoryAlg("ratelab-1tier-fixed-window", 1, 0, limit.FixedWindow),
		ratelabMemoryAlg("ratelab-1tier-sliding-window", 1, 0, limit.SlidingWindow),
		// With a key cap the store keeps an exact LRU list, updated on
		// every access; this is the configuration of the Redis store's
		// fallback.
		ratelabMemory("ratelab-1tier-maxkeys", 1, 1<<20),
		xtimerateMap("xtimerate-map", 1),
		xtimerateMap("xtimerate-map-4tiers", 4),
		goLimiter(),
	}
}

// runContender runs c's serial and parallel sub-benchmarks on one
// prefilled instance, parallel with parallelism × GOMAXPROCS goroutines,
// reporting allocations and admit%, and whatever metric adds.
func runContender(b *testing.B, w *workload, c contender, parallelism int, metric func(b *testing.B, bytesPerKey float64)) {
	b.Run(c.name, func(b *testing.B) {
		newWorker, bytesPerKey, release := c.open(b, w)
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
			metric(b, bytesPerKey)
		})
		b.Run("parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(parallelism)
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
			metric(b, bytesPerKey)
		})
	})
}

// tierNames are the policies of the four-tier decision, after the
// defaults that DESIGN.md models; all enforce the same rate so that the
// four-tier decision does four times the work of one tier, no more.
var tierNames = [...]string{"org", "client", "script-writes", "script"}

func benchPolicies(n int) []*limit.Policy { return benchPoliciesAlg(n, limit.GCRA) }

// benchPoliciesAlg is benchPolicies for an algorithm: a window policy
// admits benchBurst per benchBurst/benchRate seconds.
func benchPoliciesAlg(n int, alg limit.Algorithm) []*limit.Policy {
	ps := make([]*limit.Policy, n)
	for i := range ps {
		ps[i] = &limit.Policy{Name: tierNames[i], Rate: limit.Per(benchRate, time.Second), Burst: benchBurst}
		if alg != limit.GCRA {
			ps[i] = &limit.Policy{Name: tierNames[i], Algorithm: alg,
				Rate: limit.Per(benchBurst, time.Second*benchBurst/benchRate)}
		}
	}
	return ps
}

// ratelabMemory is limit.MemoryStore (with MaxKeys maxKeys, 0 for no cap)
// deciding tiers tiers at once, each keyed by its own choice from the
// sequence. A worker reuses one Request and one Decision, as a server's
// request path would from a pool.
func ratelabMemory(name string, tiers, maxKeys int) contender {
	return ratelabMemoryAlg(name, tiers, maxKeys, limit.GCRA)
}

// ratelabMemoryAlg is ratelabMemory with policies of algorithm alg.
func ratelabMemoryAlg(name string, tiers, maxKeys int, alg limit.Algorithm) contender {
	return contender{name: name, width: uint64(tiers), open: func(b *testing.B, w *workload) (func() worker, float64, func()) {
		s := limit.NewMemoryStore(limit.MemoryConfig{MaxKeys: maxKeys})
		policies := benchPoliciesAlg(tiers, alg)
		ctx := context.Background()
		newWorker := func() worker {
			req := &limit.Request{Group: "bench", Tiers: make([]limit.Tier, tiers), Cost: 1}
			for i, p := range policies {
				req.Tiers[i].Policy = p
			}
			d := &limit.Decision{}
			return func(pos uint64) bool {
				for i := range req.Tiers {
					req.Tiers[i].Key = w.key(pos + uint64(i))
				}
				req.Now = time.Now()
				if err := s.Decide(ctx, req, d); err != nil {
					b.Fatal(err)
				}
				return d.Allowed
			}
		}
		bytesPerKey := measureBytesPerKey(tiers*len(w.keys), func() {
			// One decision per tier on every key, tier by tier, so that
			// every (policy, key) entry exists before the timer starts.
			req := &limit.Request{Group: "bench", Tiers: make([]limit.Tier, 1), Cost: 1}
			var d limit.Decision
			for _, p := range policies {
				req.Tiers[0].Policy = p
				for _, k := range w.keys {
					req.Tiers[0].Key, req.Now = strings.Clone(k), time.Now()
					if err := s.Decide(ctx, req, &d); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		if got, want := s.Stats().Keys, tiers*len(w.keys); got != want {
			b.Fatalf("store tracks %d keys after filling, want %d", got, want)
		}
		return newWorker, bytesPerKey, func() { s.Close() }
	}}
}

// rateMap is how people key golang.org/x/time/rate: a mutex-guarded map
// of limiters, each created on first use.
type rateMap struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func (r *rateMap) get(key string) *rate.Limiter {
	r.mu.Lock()
	l := r.m[key]
	if l == nil {
		l = rate.NewLimiter(benchRate, benchBurst)
		r.m[key] = l
	}
	r.mu.Unlock()
	return l
}

// xtimerateMap is tiers rateMaps, one per policy; a decision calls Allow
// (which reads time.Now) on every tier's limiter. With several tiers this
// is not all-or-nothing: it is the cost of "four x/time/rate decisions".
func xtimerateMap(name string, tiers int) contender {
	return contender{name: name, width: uint64(tiers), open: func(b *testing.B, w *workload) (func() worker, float64, func()) {
		maps := make([]*rateMap, tiers)
		bytesPerKey := measureBytesPerKey(tiers*len(w.keys), func() {
			for i := range maps {
				maps[i] = &rateMap{m: make(map[string]*rate.Limiter)}
				for _, k := range w.keys {
					maps[i].get(strings.Clone(k)).Allow()
				}
			}
		})
		newWorker := func() worker {
			if tiers == 1 {
				m := maps[0]
				return func(pos uint64) bool { return m.get(w.key(pos)).Allow() }
			}
			return func(pos uint64) bool {
				ok := true
				for i, m := range maps {
					if !m.get(w.key(pos + uint64(i))).Allow() {
						ok = false
					}
				}
				return ok
			}
		}
		return newWorker, bytesPerKey, func() {}
	}}
}

// goLimiter is github.com/sethvargo/go-limiter's memorystore with Take,
// which reads the clock inside.
func goLimiter() contender {
	return contender{name: "golimiter", width: 1, open: func(b *testing.B, w *workload) (func() worker, float64, func()) {
		ctx := context.Background()
		var store interface {
			Take(context.Context, string) (uint64, uint64, uint64, bool, error)
			Close(context.Context) error
		}
		bytesPerKey := measureBytesPerKey(len(w.keys), func() {
			s, err := memorystore.New(&memorystore.Config{Tokens: benchBurst, Interval: benchBurst * time.Second / benchRate})
			if err != nil {
				b.Fatal(err)
			}
			store = s
			for _, k := range w.keys {
				if _, _, _, _, err := store.Take(ctx, strings.Clone(k)); err != nil {
					b.Fatal(err)
				}
			}
		})
		newWorker := func() worker {
			return func(pos uint64) bool {
				_, _, _, ok, err := store.Take(ctx, w.key(pos))
				if err != nil {
					b.Fatal(err)
				}
				return ok
			}
		}
		return newWorker, bytesPerKey, func() { store.Close(ctx) }
	}}
}
