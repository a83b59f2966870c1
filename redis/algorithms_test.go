package redis

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/limit"
	"ratelab/limit/limittest"
)

// TestClusterConformance runs the whole conformance suite, every algorithm
// and their mixes, on the Redis Cluster of three masters that .ci/run
// starts: each decision must touch one slot, and the groups of the suite
// spread over all three masters.
func TestClusterConformance(t *testing.T) {
	// Once on a client that keeps no deadline (every decision a round
	// trip of its own) and once on one that honours deadlines, as `ratelab
	// serve` builds it, where concurrent decisions share pipelines that
	// go-redis splits per node.
	for _, ctxDeadlines := range []bool{false, true} {
		t.Run(fmt.Sprintf("ctxdeadlines=%v", ctxDeadlines), func(t *testing.T) { testClusterConformance(t, ctxDeadlines) })
	}
}

func testClusterConformance(t *testing.T, ctxDeadlines bool) {
	opt, err := goredis.ParseClusterURL(testenv.RedisClusterURL(t))
	if err != nil {
		t.Fatalf("parse RATELAB_REDIS_CLUSTER_URL: %v", err)
	}
	opt.ContextTimeoutEnabled = ctxDeadlines
	cc := goredis.NewClusterClient(opt)
	t.Cleanup(func() { cc.Close() })
	ctx := context.Background()
	var masters atomic.Int32
	if err := cc.ForEachMaster(ctx, func(context.Context, *goredis.Client) error { masters.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if n := masters.Load(); n < 3 {
		t.Fatalf("cluster has %d masters, want 3", n)
	}
	prefix := testPrefix()
	s := newStore(t, Config{Client: cc, Prefix: prefix})
	limittest.Run(t, func(*testing.T) limit.Store { return s })
	if s.Degraded() {
		t.Fatal("cluster store degraded: decisions were not all taken on Redis")
	}
	st := s.Stats()
	t.Logf("%+v", st)
	if st.LocalRejections == 0 {
		t.Fatal("no local rejection in the whole suite")
	}
	if ctxDeadlines && st.Pipelines == 0 {
		t.Fatal("no pipeline in the whole suite, concurrent parts included")
	}
	// Every master holds some of the suite's keys: the decisions really
	// were spread over the cluster.
	var mu sync.Mutex
	holding := 0
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		keys, _, err := c.Scan(ctx, 0, prefix+"*", 1000).Result()
		if len(keys) > 0 {
			mu.Lock()
			holding++
			mu.Unlock()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if holding < 2 {
		t.Fatalf("the suite's keys are on %d master(s), want them spread over several", holding)
	}
}

// TestStateKeyLayout checks that every algorithm's key keeps the group's
// hash tag, and that algorithms never share a key.
func TestStateKeyLayout(t *testing.T) {
	seen := map[string]limit.Algorithm{}
	for _, alg := range []limit.Algorithm{limit.GCRA, limit.FixedWindow, limit.SlidingWindow, limit.Concurrency} {
		for _, g := range []string{"org-1", "", "a}b"} {
			k := string(appendStateKey(nil, "rl:", alg, g, "p", "k"))
			if want := hashTag(string(appendKey(nil, "rl:", g, "p", "k"))); hashTag(k) != want {
				t.Errorf("%s key %q: tag %q, want %q", alg, k, hashTag(k), want)
			}
			if prev, ok := seen[k]; ok {
				t.Errorf("%s and %s share key %q", prev, alg, k)
			}
			seen[k] = alg
		}
	}
	if got := string(appendStateKey(nil, "rl:", limit.GCRA, "o", "p", "k")); got != string(appendKey(nil, "rl:", "o", "p", "k")) {
		t.Errorf("GCRA state key %q is not the fast script's key", got)
	}
}

// TestStateKeysExpire checks that window and concurrency keys expire when
// they stop carrying information, and that a released lease leaves no key.
func TestStateKeysExpire(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	s := newStore(t, Config{Client: c, Prefix: prefix, FixedTimeGrace: -1})
	ctx := context.Background()
	w := 400 * time.Millisecond
	fixed := &limit.Policy{Name: "fixed", Algorithm: limit.FixedWindow, Rate: limit.Per(5, w), AlignFirst: true}
	sliding := &limit.Policy{Name: "sliding", Algorithm: limit.SlidingWindow, Rate: limit.Per(5, w)}
	conc := &limit.Policy{Name: "conc", Algorithm: limit.Concurrency, Concurrency: 2, Lease: 300 * time.Millisecond}
	key := func(p *limit.Policy) string {
		return string(appendStateKey(nil, prefix, p.Algorithm, "g", p.Name, "k"))
	}
	// On Redis time, so that Redis's expiry clock is the decisions' clock.
	d := decide(t, s, &limit.Request{Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: fixed, Key: "k"}, {Policy: sliding, Key: "k"}, {Policy: conc, Key: "k"}}})
	if !d.Allowed || !d.Lease.Held() {
		t.Fatalf("decision %+v", d)
	}
	for _, tc := range []struct {
		p        *limit.Policy
		min, max time.Duration
	}{
		// Lower bounds leave room for a slow moment of a busy machine
		// between the decision and PTTL; the upper bounds are the point.
		{fixed, w - 200*time.Millisecond, w},                   // the window opened now
		{sliding, w - 200*time.Millisecond, 2 * w},             // the end of the window after the current one
		{conc, 100 * time.Millisecond, 301 * time.Millisecond}, // the lease
	} {
		if pttl := c.PTTL(ctx, key(tc.p)).Val(); pttl < tc.min || pttl > tc.max {
			t.Errorf("%s: PTTL %v, want in [%v, %v]", tc.p.Name, pttl, tc.min, tc.max)
		}
	}
	if typ := c.Type(ctx, key(conc)).Val(); typ != "zset" {
		t.Fatalf("concurrency key is a %s, want a zset of leases", typ)
	}
	if err := s.Release(ctx, &d.Lease); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, key(conc)).Val(); n != 0 {
		t.Error("the concurrency key outlived its last lease's release")
	}
	time.Sleep(2*w + 50*time.Millisecond)
	for _, p := range []*limit.Policy{fixed, sliding} {
		if n := c.Exists(ctx, key(p)).Val(); n != 0 {
			t.Errorf("%s key still exists after it stopped carrying information", p.Name)
		}
	}
}

// TestConcurrencyAcrossStores checks that two stores (two processes) on
// Redis time share concurrency slots: one acquires, the other is refused,
// and a release by either frees the slot.
func TestConcurrencyAcrossStores(t *testing.T) {
	prefix := testPrefix()
	a := newStore(t, Config{Client: sharedClient(t), Prefix: prefix})
	b := newStore(t, Config{Client: sharedClient(t), Prefix: prefix})
	p := &limit.Policy{Name: "uploads", Algorithm: limit.Concurrency, Concurrency: 1, Lease: time.Minute}
	req := func() *limit.Request {
		return &limit.Request{Group: "org", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "c"}}}
	}
	d := decide(t, a, req())
	if !d.Allowed {
		t.Fatal("first acquire rejected")
	}
	lease := d.Lease
	if d := decide(t, b, req()); d.Allowed {
		t.Fatal("second store admitted a second request in flight")
	} else if d.RetryAfter <= 59*time.Second || d.RetryAfter > time.Minute {
		t.Fatalf("retry-after %v, want just under the 1m lease", d.RetryAfter)
	}
	if err := b.Release(context.Background(), &lease); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, b, req()); !d.Allowed {
		t.Fatal("slot not free after the release")
	}
}

// TestFallbackLeases checks the fail-open path with a concurrency tier:
// while Redis is away the fallback decides, and its leases are released
// on the fallback.
func TestFallbackLeases(t *testing.T) {
	srv := startRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()
	fb := limit.NewMemoryStore(limit.MemoryConfig{})
	s := newStore(t, Config{Client: c, Timeout: 200 * time.Millisecond, Fallback: fb, Logger: slogTo(io.Discard)})
	p := &limit.Policy{Name: "uploads", Algorithm: limit.Concurrency, Concurrency: 1, Lease: time.Minute}
	req := &limit.Request{Group: "org", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "c"}}}
	srv.Kill()
	d := decide(t, s, req)
	if !s.Degraded() || !d.Allowed || !d.Lease.Held() {
		t.Fatalf("degraded=%v allowed=%v lease=%q; want a lease from the fallback", s.Degraded(), d.Allowed, d.Lease.ID)
	}
	lease := d.Lease
	if d := decide(t, s, req); d.Allowed {
		t.Fatal("fallback admitted a second request in flight")
	}
	if err := s.Release(context.Background(), &lease); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s, req); !d.Allowed {
		t.Fatal("fallback slot not freed by the release")
	}
}
