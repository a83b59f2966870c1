package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/limit"
	"ratelab/limit/limittest"
)

// sharedClient connects to the Redis that RATELAB_REDIS_URL names.
func sharedClient(t testing.TB) *goredis.Client {
	t.Helper()
	opt, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatalf("parse RATELAB_REDIS_URL: %v", err)
	}
	c := goredis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a key prefix unique to this run, so that tests never
// see each other's keys on a shared Redis.
func testPrefix() string { return fmt.Sprintf("ratelabtest:%x:", rand.Uint64()) }

func newStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = testPrefix()
	}
	if cfg.Timeout == 0 {
		// Tests of decisions must not fall back on a slow moment of a busy
		// machine (a cold pool under -race can take over 50ms); the outage
		// tests set their own short timeout.
		cfg.Timeout = 5 * time.Second
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func decide(t testing.TB, s limit.Store, req *limit.Request) *limit.Decision {
	t.Helper()
	var d limit.Decision
	if err := s.Decide(context.Background(), req, &d); err != nil {
		t.Fatalf("Decide: %v", err)
	}
	return &d
}

func TestConformance(t *testing.T) {
	s := newStore(t, Config{Client: sharedClient(t)})
	limittest.Run(t, func(*testing.T) limit.Store { return s })
	if s.Degraded() {
		t.Fatal("store degraded during the suite: decisions were not all taken on Redis")
	}
	if st := s.Stats(); st.LocalRejections == 0 {
		t.Fatalf("no local rejection in the whole suite: %+v", st)
	}
}

// TestConformanceContextDeadlines runs the suite on a client that honours
// context deadlines, as `ratelab serve` builds it: the Store then runs the
// script on the caller's goroutine instead of one of its own.
func TestConformanceContextDeadlines(t *testing.T) {
	opt, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatalf("parse RATELAB_REDIS_URL: %v", err)
	}
	opt.ContextTimeoutEnabled = true
	c := goredis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	s := newStore(t, Config{Client: c})
	if !s.ctxDeadlines {
		t.Fatal("store does not hand its deadline to the client")
	}
	limittest.Run(t, func(*testing.T) limit.Store { return s })
	if s.Degraded() {
		t.Fatal("store degraded during the suite: decisions were not all taken on Redis")
	}
	if st := s.Stats(); st.LocalRejections == 0 {
		t.Fatalf("no local rejection in the whole suite: %+v", st)
	}
	if st := s.Stats(); st.Pipelines == 0 {
		t.Fatalf("no pipeline in the whole suite, concurrent parts included: %+v", st)
	}
}

// TestShadowCostBeyondExactRange checks the clamp of cost·T: a shadow
// tier (which a cost over its burst does not make invalid) asked for a
// cost whose cost·T exceeds 2^53 ns must reject, as limit.Evaluate says,
// write nothing, and leave the other tiers to decide.
func TestShadowCostBeyondExactRange(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	s := newStore(t, Config{Client: c, Prefix: prefix})
	shadow := &limit.Policy{Name: "shadow", Rate: limit.Per(1, time.Second), Burst: 10, Shadow: true}
	wide := &limit.Policy{Name: "wide", Rate: limit.Per(1, time.Nanosecond), Burst: 1 << 40}
	const cost = 100_000_000 // cost·T = 10^17 ns on the shadow tier
	d := decide(t, s, &limit.Request{Group: "g", Cost: cost, Tiers: []limit.Tier{
		{Policy: shadow, Key: "k"}, {Policy: wide, Key: "k"},
	}})
	if !d.Allowed || d.Tiers[0].Allowed || d.Tiers[0].Consumed || !d.Tiers[1].Consumed {
		t.Fatalf("allowed=%v shadow %+v wide %+v; want allowed, shadow rejecting and untouched, wide consumed",
			d.Allowed, d.Tiers[0], d.Tiers[1])
	}
	ctx := context.Background()
	if n := c.Exists(ctx, string(appendKey(nil, prefix, "g", "shadow", "k"))).Val(); n != 0 {
		t.Fatal("the rejecting shadow tier was written")
	}
	if n := c.Exists(ctx, string(appendKey(nil, prefix, "g", "wide", "k"))).Val(); n != 1 {
		t.Fatal("the admitting tier was not written")
	}
}

// TestRedisTime checks decisions with Request.Now zero: the instant comes
// from Redis, so two stores (two processes) share one timeline. The
// stores take every decision on Redis (no rejection cache): a local
// rejection is decided at the earliest instant Redis's clock may read,
// which TestLocalRejectionRedisTime checks.
func TestRedisTime(t *testing.T) {
	prefix := testPrefix()
	a := newStore(t, Config{Client: sharedClient(t), Prefix: prefix, CacheKeys: -1})
	b := newStore(t, Config{Client: sharedClient(t), Prefix: prefix, CacheKeys: -1})
	p := &limit.Policy{Name: "hourly", Rate: limit.Per(1, time.Hour), Burst: 3}
	req := func() *limit.Request {
		return &limit.Request{Group: "org", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}
	}
	start := time.Now()
	for i, s := range []*Store{a, b, a} {
		d := decide(t, s, req())
		if !d.Allowed || d.Tiers[0].Remaining != int64(2-i) {
			t.Fatalf("request %d: allowed=%v remaining=%d, want true %d", i, d.Allowed, d.Tiers[0].Remaining, 2-i)
		}
	}
	elapsed := time.Since(start)
	for i, s := range []*Store{b, a} {
		d := decide(t, s, req())
		if d.Allowed {
			t.Fatalf("rejection %d: admitted over the burst", i)
		}
		// One hour of quota comes back per hour: the first request's
		// interval, less the time since it.
		if d.RetryAfter > time.Hour || d.RetryAfter < time.Hour-elapsed-time.Second {
			t.Fatalf("RetryAfter = %v, want just under 1h", d.RetryAfter)
		}
	}
	key := string(appendKey(nil, prefix, "org", "hourly", "k"))
	pttl, err := a.client.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pttl > 3*time.Hour || pttl < 3*time.Hour-elapsed-time.Second {
		t.Fatalf("PTTL = %v, want just under 3h (the TAT is 3 intervals ahead)", pttl)
	}
}

// TestFixedInstantKey checks the stored TAT, its expiry, and that the key
// disappears once it carries no information.
func TestFixedInstantKey(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	s := newStore(t, Config{Client: c, Prefix: prefix, FixedTimeGrace: -1})
	p := &limit.Policy{Name: "tight", Rate: limit.Per(1, 300*time.Millisecond), Burst: 2}
	// An instant with every nanosecond digit set, decades from the epoch:
	// the TAT must come back exact to the nanosecond.
	now := time.Date(2026, 3, 4, 5, 6, 7, 987654321, time.UTC)
	req := &limit.Request{Now: now, Group: "g}x", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "a\x00b"}}}
	d := decide(t, s, req)
	if !d.Allowed || d.Tiers[0].ResetAfter != 300*time.Millisecond {
		t.Fatalf("first: %+v", d.Tiers[0])
	}
	key := string(appendKey(nil, prefix, "g}x", "tight", "a\x00b"))
	ctx := context.Background()
	got, err := c.Get(ctx, key).Result()
	if err != nil {
		t.Fatalf("GET %q: %v", key, err)
	}
	if want := strconv.FormatInt(now.UnixNano()+int64(300*time.Millisecond), 10); got != want {
		t.Fatalf("stored TAT %s, want %s", got, want)
	}
	pttl := c.PTTL(ctx, key).Val()
	if pttl > 300*time.Millisecond || pttl < 200*time.Millisecond {
		t.Fatalf("PTTL %v, want about 300ms", pttl)
	}
	// A second request 1ns later pushes the TAT one interval further and
	// renews the expiry to match.
	req.Now = now.Add(time.Nanosecond)
	if d := decide(t, s, req); !d.Allowed || d.Tiers[0].ResetAfter != 600*time.Millisecond-time.Nanosecond {
		t.Fatalf("second: %+v", d.Tiers[0])
	}
	if pttl := c.PTTL(ctx, key).Val(); pttl > 600*time.Millisecond || pttl < 500*time.Millisecond {
		t.Fatalf("PTTL after second %v, want about 600ms", pttl)
	}
	// A rejection and a cost-0 peek write nothing: the expiry keeps running.
	if d := decide(t, s, req); d.Allowed {
		t.Fatal("third request admitted over the burst")
	}
	req.Cost = 0
	if d := decide(t, s, req); !d.Allowed || d.Tiers[0].Consumed {
		t.Fatalf("peek: %+v", d.Tiers[0])
	}
	time.Sleep(650 * time.Millisecond)
	if n := c.Exists(ctx, key).Val(); n != 0 {
		t.Fatalf("key still exists after its TAT passed (PTTL %v)", c.PTTL(ctx, key).Val())
	}
}

// TestFixedTimeGrace checks that keys written at a caller-given instant
// outlive their TAT by the grace, and keys written on Redis time do not.
func TestFixedTimeGrace(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	s := newStore(t, Config{Client: c, Prefix: prefix, FixedTimeGrace: 2 * time.Second})
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, 300*time.Millisecond), Burst: 2}
	ctx := context.Background()
	for _, tc := range []struct {
		key      string
		now      time.Time
		min, max time.Duration
	}{
		{"fixed", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), 2200 * time.Millisecond, 2300 * time.Millisecond},
		{"redis-time", time.Time{}, 200 * time.Millisecond, 300 * time.Millisecond},
	} {
		decide(t, s, &limit.Request{Now: tc.now, Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: tc.key}}})
		pttl := c.PTTL(ctx, string(appendKey(nil, prefix, "g", "p", tc.key))).Val()
		if pttl < tc.min || pttl > tc.max {
			t.Errorf("%s: PTTL %v, want in [%v, %v]", tc.key, pttl, tc.min, tc.max)
		}
	}
}

// TestPrecisionAtMaxWindow walks a policy whose window is limit.MaxWindow,
// where offsets reach 8.64e15 ns, close to 2^53: the decisions must still
// be exact to the nanosecond, at an instant with every digit in use.
func TestPrecisionAtMaxWindow(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	s := newStore(t, Config{Client: c, Prefix: prefix})
	p := &limit.Policy{Name: "slow", Rate: limit.Per(1, limit.MaxWindow/2), Burst: 2}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Del(context.Background(), string(appendKey(nil, prefix, "g", "slow", "k"))) })
	now := time.Date(2026, 7, 8, 9, 10, 11, 123456789, time.UTC)
	req := func(at time.Time) *limit.Request {
		return &limit.Request{Now: at, Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}
	}
	for i := range 2 {
		if d := decide(t, s, req(now)); !d.Allowed {
			t.Fatalf("request %d rejected", i)
		}
	}
	d := decide(t, s, req(now))
	if d.Allowed || d.RetryAfter != p.Interval() || d.Tiers[0].ResetAfter != limit.MaxWindow {
		t.Fatalf("full bucket: allowed=%v retry=%v reset=%v; want false %v %v",
			d.Allowed, d.RetryAfter, d.Tiers[0].ResetAfter, p.Interval(), limit.MaxWindow)
	}
	at := now.Add(p.Interval() - time.Nanosecond)
	if d := decide(t, s, req(at)); d.Allowed || d.RetryAfter != time.Nanosecond {
		t.Fatalf("1ns early: allowed=%v retry=%v", d.Allowed, d.RetryAfter)
	}
	if d := decide(t, s, req(at.Add(time.Nanosecond))); !d.Allowed || d.Tiers[0].ResetAfter != limit.MaxWindow {
		t.Fatalf("on time: allowed=%v reset=%v", d.Allowed, d.Tiers[0].ResetAfter)
	}
}

// TestRedisTimeConcurrent checks the admission bound across two stores on
// Redis time, from many goroutines.
func TestRedisTimeConcurrent(t *testing.T) {
	prefix := testPrefix()
	stores := []*Store{
		newStore(t, Config{Client: sharedClient(t), Prefix: prefix}),
		newStore(t, Config{Client: sharedClient(t), Prefix: prefix}),
	}
	p := &limit.Policy{Name: "p", Rate: limit.Per(20, time.Second), Burst: 5}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%2]
			var d limit.Decision
			for end := start.Add(300 * time.Millisecond); time.Now().Before(end); {
				if err := s.Decide(context.Background(), &limit.Request{Group: "g", Cost: 1,
					Tiers: []limit.Tier{{Policy: p, Key: "k"}}}, &d); err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// Redis's clock runs alongside ours: the decisions span at most the
	// time the test took.
	elapsed := time.Since(start)
	bound := p.Burst + int64(elapsed/p.Interval())
	if got := admitted.Load(); got > bound || got < p.Burst {
		t.Fatalf("admitted %d in %v, want between the burst %d and %d", got, elapsed, p.Burst, bound)
	}
}

// TestCostZeroWritesNothing checks that a peek at an unknown key creates no
// key.
func TestCostZeroWritesNothing(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	s := newStore(t, Config{Client: c, Prefix: prefix})
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Second), Burst: 1}
	d := decide(t, s, &limit.Request{Group: "g", Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
	if !d.Allowed || d.Tiers[0].Remaining != 1 {
		t.Fatalf("peek: %+v", d.Tiers[0])
	}
	if n := c.Exists(context.Background(), string(appendKey(nil, prefix, "g", "p", "k"))).Val(); n != 0 {
		t.Fatal("a cost-0 decision created a key")
	}
}

// TestFarFutureTAT checks the clamp: a TAT months ahead of now (time went
// backwards) rejects every request of every tier, and writes nothing.
func TestFarFutureTAT(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	s := newStore(t, Config{Client: c, Prefix: prefix})
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Second), Burst: 10}
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	key := string(appendKey(nil, prefix, "g", "p", "k"))
	tat := now.Add(200 * 24 * time.Hour).UnixNano()
	if err := c.Set(context.Background(), key, strconv.FormatInt(tat, 10), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	d := decide(t, s, &limit.Request{Now: now, Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
	if d.Allowed || d.RetryAfter < 100*24*time.Hour {
		t.Fatalf("allowed=%v retry=%v, want a rejection months long", d.Allowed, d.RetryAfter)
	}
	if got := c.Get(context.Background(), key).Val(); got != strconv.FormatInt(tat, 10) {
		t.Fatalf("TAT changed to %s", got)
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no client: no error")
	}
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	if _, err := New(Config{Client: c, Prefix: "rl{x"}); err == nil {
		t.Error("prefix with '{': no error")
	}
	s, err := New(Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Second), Burst: 1}
	err = s.Decide(context.Background(), &limit.Request{Now: time.Unix(-5, 0), Cost: 1,
		Tiers: []limit.Tier{{Policy: p, Key: "k"}}}, &limit.Decision{})
	if err == nil || !strings.Contains(err.Error(), "1970") {
		t.Errorf("instant before 1970: err = %v", err)
	}
	// A bad request is refused before any round trip, so it cannot be
	// mistaken for an outage.
	err = s.Decide(context.Background(), &limit.Request{Cost: 2, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}, &limit.Decision{})
	var ce *limit.CostError
	if !errors.As(err, &ce) || s.Degraded() {
		t.Errorf("cost over burst: err = %v, degraded = %v; want *limit.CostError, not degraded", err, s.Degraded())
	}
}

// TestReplyErrorIsNotOutage checks that an error Redis answers for one
// request (here a corrupt TAT that the script cannot read) is returned,
// and neither degrades the store nor falls back.
func TestReplyErrorIsNotOutage(t *testing.T) {
	c := sharedClient(t)
	prefix := testPrefix()
	s := newStore(t, Config{Client: c, Prefix: prefix})
	key := string(appendKey(nil, prefix, "g", "p", "k"))
	if err := c.Set(context.Background(), key, "not a number", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Second), Burst: 1}
	err := s.Decide(context.Background(), &limit.Request{Group: "g", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}, &limit.Decision{})
	var rerr goredis.Error
	if !errors.As(err, &rerr) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want the Redis reply error", err)
	}
	if s.Degraded() {
		t.Fatal("a reply error degraded the store")
	}
}

// TestCallerContext checks that a caller's cancelled context is an error of
// the caller, not an outage.
func TestCallerContext(t *testing.T) {
	s := newStore(t, Config{Client: sharedClient(t)})
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Second), Burst: 1}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Decide(ctx, &limit.Request{Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}, &limit.Decision{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if s.Degraded() {
		t.Fatal("a cancelled caller degraded the store")
	}
}
