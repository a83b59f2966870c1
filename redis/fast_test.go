package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/limit"
)

// fastPolicies are the tiers the local-rejection tests mix: GCRA tiers of
// several rates and bursts (one shadow), and fixed windows of both
// alignments, which the cache may hold, beside a sliding window, which it
// may not.
func fastPolicies() (gcra []*limit.Policy, fixed []*limit.Policy, sliding *limit.Policy) {
	gcra = []*limit.Policy{
		{Name: "org", Rate: limit.Per(50, time.Second), Burst: 20},
		{Name: "client", Rate: limit.Per(10, time.Second), Burst: 8},
		{Name: "script", Rate: limit.Per(2, time.Second), Burst: 4},
		{Name: "shadow", Rate: limit.Per(1, time.Second), Burst: 2, Shadow: true},
	}
	fixed = []*limit.Policy{
		{Name: "fixed", Algorithm: limit.FixedWindow, Rate: limit.Per(5, 2*time.Second)},
		{Name: "fixed-first", Algorithm: limit.FixedWindow, Rate: limit.Per(3, time.Second), AlignFirst: true},
	}
	sliding = &limit.Policy{Name: "sliding", Algorithm: limit.SlidingWindow, Rate: limit.Per(4, time.Second)}
	return gcra, fixed, sliding
}

// randomRequest builds a request of one to four tiers over keys keys, at
// now, of cost 1 to 3; plain GCRA only, or with fixed windows.
func randomRequest(r *rand.Rand, now time.Time, withWindows bool, keys int) *limit.Request {
	gcra, fixed, _ := fastPolicies()
	pool := gcra
	if withWindows {
		pool = append(append([]*limit.Policy{}, gcra...), fixed...)
	}
	req := &limit.Request{Now: now, Group: "g" + strconv.Itoa(r.IntN(2)), Cost: 1 + r.Int64N(3)}
	for _, i := range r.Perm(len(pool))[:1+r.IntN(4)] {
		req.Tiers = append(req.Tiers, limit.Tier{Policy: pool[i], Key: "k" + strconv.Itoa(r.IntN(keys))})
	}
	if !withWindows {
		// Keep the same policies on both stores: a fresh set per request
		// would be a policy change each time (equal parameters, so the
		// cache still applies).
		for i := range req.Tiers {
			req.Tiers[i].Policy = gcra[indexOf(gcra, req.Tiers[i].Policy.Name)]
		}
	}
	return req
}

func indexOf(ps []*limit.Policy, name string) int {
	for i, p := range ps {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// sameDecision fails unless a and b say the same in every field and in
// every header a response would carry.
func sameDecision(t *testing.T, what string, local, redis *limit.Decision) {
	t.Helper()
	if !reflect.DeepEqual(local, redis) {
		t.Fatalf("%s: local rejection\n%+v\nRedis\n%+v", what, local, redis)
	}
	hl, hr := http.Header{}, http.Header{}
	limit.SetHeaders(hl, local)
	limit.SetHeaders(hr, redis)
	if !reflect.DeepEqual(hl, hr) {
		t.Fatalf("%s: headers differ: local %v, Redis %v", what, hl, hr)
	}
}

// TestLocalRejectionMatchesRedis walks random requests at fixed instants
// through a Store with the rejection cache, and asks a Store without one,
// on the same keys at the same instant, every request the first rejected
// locally: the decisions must be the same in every field (and so the
// headers and 429 bodies built from them). With one Store writing, the
// cache knows every tier exactly; a cache too small for the keys (one
// entry per shard) evicts all the time and must stay exact.
func TestLocalRejectionMatchesRedis(t *testing.T) {
	for _, tc := range []struct {
		withWindows bool
		keys        int // Config.CacheKeys
		tierKeys    int // keys per tier
	}{{false, 0, 3}, {true, 0, 3}, {true, cacheShards, 40}} {
		withWindows := tc.withWindows
		t.Run(fmt.Sprintf("windows=%v/keys=%d", withWindows, tc.keys), func(t *testing.T) {
			c := sharedClient(t)
			prefix := testPrefix()
			cached := newStore(t, Config{Client: c, Prefix: prefix, CacheKeys: tc.keys})
			oracle := newStore(t, Config{Client: c, Prefix: prefix, CacheKeys: -1})
			r := rand.New(rand.NewPCG(15, 0))
			now := time.Unix(1_800_000_000, 123_456_789)
			local, rejected := 0, 0
			for i := range 3000 {
				now = now.Add(time.Duration(r.Int64N(int64(40 * time.Millisecond))))
				req := randomRequest(r, now, withWindows, tc.tierKeys)
				before := cached.Stats().LocalRejections
				d := decide(t, cached, req)
				if !d.Allowed {
					rejected++
				}
				if cached.Stats().LocalRejections == before {
					continue
				}
				local++
				sameDecision(t, fmt.Sprintf("request %d", i), d, decide(t, oracle, req))
			}
			t.Logf("%d rejected, %d of them locally", rejected, local)
			if tc.keys == 0 && local < rejected/2 || local == 0 {
				t.Fatalf("only %d of %d rejections were local", local, rejected)
			}
		})
	}
}

// TestLocalRejectionTwoWriters has two Stores with caches share the keys,
// as two replicas do, each seeing only part of the traffic: a local
// rejection must then still be one Redis makes, at least as long a wait
// as Redis says (what a Store has not seen only adds to the state).
func TestLocalRejectionTwoWriters(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	a := newStore(t, Config{Client: c, Prefix: prefix})
	b := newStore(t, Config{Client: c, Prefix: prefix})
	oracle := newStore(t, Config{Client: c, Prefix: prefix, CacheKeys: -1})
	r := rand.New(rand.NewPCG(16, 1))
	now := time.Unix(1_800_000_000, 0)
	local := 0
	for i := range 3000 {
		now = now.Add(time.Duration(r.Int64N(int64(30 * time.Millisecond))))
		req := randomRequest(r, now, true, 3)
		s := a
		if r.IntN(2) == 0 {
			s = b
		}
		before := s.Stats().LocalRejections
		d := decide(t, s, req)
		if s.Stats().LocalRejections == before {
			continue
		}
		local++
		o := decide(t, oracle, req)
		if o.Allowed {
			t.Fatalf("request %d: rejected locally, admitted by Redis", i)
		}
		if o.RetryAfter < d.RetryAfter {
			t.Fatalf("request %d: local retry-after %v, Redis %v", i, d.RetryAfter, o.RetryAfter)
		}
	}
	if local == 0 {
		t.Fatal("no local rejection")
	}
}

// TestNotCachedTiers checks that requests with a sliding window, a
// count-rejected tier or a concurrency tier are always decided on Redis,
// and that a policy change under the same name starts afresh.
func TestNotCachedTiers(t *testing.T) {
	c := sharedClient(t)
	s := newStore(t, Config{Client: c})
	gcra, _, sliding := fastPolicies()
	script := gcra[2]
	counted := &limit.Policy{Name: "counted", Rate: limit.Per(1, time.Hour), Burst: 1, CountRejected: true}
	conc := &limit.Policy{Name: "conc", Algorithm: limit.Concurrency, Concurrency: 1, Lease: time.Hour}
	now := time.Unix(1_800_000_000, 0)
	for _, p := range []*limit.Policy{sliding, counted, conc} {
		for i := range 20 {
			req := &limit.Request{Now: now.Add(time.Duration(i) * time.Millisecond), Group: "g", Cost: 1,
				Tiers: []limit.Tier{{Policy: p, Key: "k"}, {Policy: script, Key: "k-" + p.Name}}}
			decide(t, s, req)
		}
	}
	if n := s.Stats().LocalRejections; n != 0 {
		t.Fatalf("%d local rejections of requests the cache must not decide", n)
	}
	// Every rejected request was counted on the count-rejected tier: its
	// TAT is 20 intervals ahead, clamped at 2τ = 2h.
	d := decide(t, s, &limit.Request{Now: now.Add(time.Second), Group: "g", Cost: 0, Tiers: []limit.Tier{{Policy: counted, Key: "k"}}})
	if got := d.Tiers[0].ResetAfter; got < 2*time.Hour-2*time.Second {
		t.Fatalf("count-rejected tier reset after %v, want about 2h: rejections not counted", got)
	}

	// A policy change: "tight" rejects locally, then the same name with a
	// burst of 10 must be asked of Redis, which admits.
	tight := &limit.Policy{Name: "changing", Rate: limit.Per(1, time.Hour), Burst: 1}
	req := func(p *limit.Policy, at time.Duration) *limit.Request {
		return &limit.Request{Now: now.Add(at), Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}
	}
	decide(t, s, req(tight, 0))
	decide(t, s, req(tight, time.Millisecond))
	before := s.Stats().LocalRejections
	if d := decide(t, s, req(tight, 2*time.Millisecond)); d.Allowed || s.Stats().LocalRejections != before+1 {
		t.Fatalf("allowed=%v, local rejections %d → %d: want a local rejection", d.Allowed, before, s.Stats().LocalRejections)
	}
	loose := &limit.Policy{Name: "changing", Rate: limit.Per(1, time.Hour), Burst: 10}
	if d := decide(t, s, req(loose, 3*time.Millisecond)); !d.Allowed {
		t.Fatal("the changed policy was rejected from the old policy's cache")
	}
}

// TestRedisClockBounds checks the bounds the Store keeps on Redis's clock
// against Redis TIME read just before and just after.
func TestRedisClockBounds(t *testing.T) {
	c := sharedClient(t)
	s := newStore(t, Config{Client: c})
	ctx := context.Background()
	p := &limit.Policy{Name: "p", Rate: limit.Per(1000, time.Second), Burst: 1000}
	if _, _, ok := s.clock.now(); ok {
		t.Fatal("bounds before any reply")
	}
	for i := range 200 {
		decide(t, s, &limit.Request{Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
		before, err := c.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		lo, hi, ok := s.clock.now()
		after, err := c.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Fatalf("round %d: no bounds after a reply", i)
		}
		// Redis TIME has µs resolution: allow for its truncation.
		if hi < before.UnixNano() || lo > after.UnixNano()+int64(time.Microsecond) {
			t.Fatalf("round %d: Redis read %v then %v, bounds [%v, %v]", i, before, after, time.Unix(0, lo), time.Unix(0, hi))
		}
		if i%50 == 0 {
			t.Logf("bounds %v wide", time.Duration(hi-lo))
		}
	}
	time.Sleep(2*clockEpoch + 10*time.Millisecond)
	if _, _, ok := s.clock.now(); ok {
		t.Fatal("bounds from replies older than two epochs")
	}
}

// TestLocalRejectionRedisTime rejects locally on Redis time and checks
// the wait against Redis's own answer just after: never shorter, and
// longer only by what separates the two instants.
func TestLocalRejectionRedisTime(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	s := newStore(t, Config{Client: c, Prefix: prefix})
	oracle := newStore(t, Config{Client: c, Prefix: prefix, CacheKeys: -1})
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Second), Burst: 2}
	req := &limit.Request{Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}
	local := 0
	for range 50 {
		start := time.Now()
		lo, hi, _ := s.clock.now()
		width := time.Duration(hi - lo) // how early the local instant may be
		before := s.Stats().LocalRejections
		d := decide(t, s, req)
		if s.Stats().LocalRejections == before {
			continue
		}
		local++
		o := decide(t, oracle, req)
		took := time.Since(start)
		if o.Allowed {
			// Redis admitted it later; only possible once the wait ran out.
			if d.RetryAfter > took {
				t.Fatalf("rejected locally with %v to wait, admitted by Redis %v later", d.RetryAfter, took)
			}
			continue
		}
		if d.RetryAfter < o.RetryAfter || d.RetryAfter > o.RetryAfter+took+width {
			t.Fatalf("local retry-after %v, Redis %v (%v apart, clock bounds %v wide)", d.RetryAfter, o.RetryAfter, took, width)
		}
		if d.Limiting != o.Limiting || d.Tiers[0].Remaining != o.Tiers[0].Remaining {
			t.Fatalf("local %+v, Redis %+v", d, o)
		}
		time.Sleep(time.Millisecond)
	}
	if local == 0 {
		t.Fatal("no local rejection")
	}
}

// commandCalls returns the calls of each command Redis counted since
// CONFIG RESETSTAT, from INFO commandstats.
func commandCalls(t *testing.T, c *goredis.Client) map[string]int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		// cmdstat_evalsha:calls=12,usec=345,...
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("INFO commandstats line %q: %v", line, err)
		}
		calls[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return calls
}

// TestFloodRedisCalls floods the reference scenario's tiers (20 threads
// writing one script, on Redis time, through one Store as a server has
// it) and counts the scripts Redis ran, from its own INFO commandstats on
// a server of the test's own: when at least 95 % are rejected, at most
// 0.05 script calls per rejected decision. About 2 s.
func TestFloodRedisCalls(t *testing.T) {
	srv := startRedis(t)
	opt := &goredis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true}
	c := goredis.NewClient(opt)
	defer c.Close()
	s := newStore(t, Config{Client: c})
	tiers := []limit.Tier{
		{Policy: &limit.Policy{Name: "org-requests", Rate: limit.Per(1000, time.Second), Burst: 1000}, Key: "org"},
		{Policy: &limit.Policy{Name: "client-requests", Rate: limit.Per(100, time.Second), Burst: 200}, Key: "client"},
		{Policy: &limit.Policy{Name: "script-writes", Rate: limit.Per(20, time.Second), Burst: 40}, Key: "org"},
		{Policy: &limit.Policy{Name: "script-writes-per-script", Rate: limit.Per(2, time.Second), Burst: 4}, Key: "org/s1"},
	}
	ctx := context.Background()
	// Load the script first (NOSCRIPT, then EVAL), then count from zero.
	decide(t, s, &limit.Request{Group: "warm", Cost: 1, Tiers: tiers[:1]})
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	scripts0 := s.Stats().Scripts
	const threads, perThread = 20, 400
	var mu sync.Mutex
	decisions, rejected := 0, 0
	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			req := &limit.Request{Group: "org", Cost: 1, Tiers: tiers}
			var d limit.Decision
			n, rej := 0, 0
			for range perThread {
				if err := s.Decide(ctx, req, &d); err != nil {
					t.Error(err)
					return
				}
				n++
				if !d.Allowed {
					rej++
				}
				time.Sleep(5 * time.Millisecond) // 200/s per thread at most
			}
			mu.Lock()
			decisions += n
			rejected += rej
			mu.Unlock()
		})
	}
	wg.Wait()
	calls := commandCalls(t, c)
	scripts := calls["evalsha"] + calls["eval"]
	t.Logf("%d decisions, %d rejected (%.1f %%), %d local; Redis ran %d scripts (%.4f per rejected decision); %+v",
		decisions, rejected, 100*float64(rejected)/float64(decisions), s.Stats().LocalRejections,
		scripts, float64(scripts)/float64(rejected), s.Stats())
	if rejected < decisions*95/100 {
		t.Fatalf("only %d of %d rejected: the flood is not the scenario", rejected, decisions)
	}
	if float64(scripts) > 0.05*float64(rejected) {
		t.Fatalf("%d script calls for %d rejected decisions: more than 0.05 each", scripts, rejected)
	}
	if sent := s.Stats().Scripts - scripts0; uint64(scripts) != sent {
		t.Fatalf("Redis counted %d scripts, the Store sent %d", scripts, sent)
	}
}

// TestPipelining sends decisions from many goroutines through a Store on
// a client that honours deadlines: some must share pipelines, and every
// decision must still be exact (the admitted ones are counted on Redis).
// Decisions one after another go alone.
func TestPipelining(t *testing.T) {
	c := ctxClient(t)
	s := newStore(t, Config{Client: c, CacheKeys: -1})
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Hour), Burst: 50}
	for i := range 10 {
		decide(t, s, &limit.Request{Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "serial"}}})
		if st := s.Stats(); st.Pipelines != 0 || st.Scripts != uint64(i+1) {
			t.Fatalf("serial decisions: %+v, want each alone", st)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := map[string]int{}
	for g := range 32 {
		wg.Go(func() {
			var d limit.Decision
			for i := range 40 {
				key := "k" + strconv.Itoa((g+i)%8)
				req := &limit.Request{Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: key}}}
				if err := s.Decide(context.Background(), req, &d); err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					mu.Lock()
					admitted[key]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	t.Logf("%+v", st)
	if st.Pipelines == 0 {
		t.Fatal("no pipeline under 32 goroutines")
	}
	for key, n := range admitted {
		if n != 50 {
			t.Fatalf("key %s: admitted %d of 160, want the burst of 50", key, n)
		}
	}
	if s.Degraded() {
		t.Fatal("degraded")
	}
}

// ctxClient is a client on the shared Redis that honours context
// deadlines, as `ratelab serve` builds it.
func ctxClient(t testing.TB) *goredis.Client {
	t.Helper()
	opt, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true
	c := goredis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}
