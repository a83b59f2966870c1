package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"ratelab/internal/testenv"
	"ratelab/limit"
	"ratelab/limit/limittest"
)

// startRedis starts a redis-server of the test's own.
func startRedis(t testing.TB, extra ...string) *testenv.RedisServer {
	t.Helper()
	return testenv.StartRedis(t, extra...)
}

// syncBuffer is an io.Writer for a logger shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// countHook counts the commands a client sends, by name.
type countHook struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *countHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.mu.Lock()
		if h.n == nil {
			h.n = map[string]int{}
		}
		h.n[strings.ToLower(cmd.Name())]++
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

// count returns how many commands of this name were sent.
func (h *countHook) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[name]
}

// scripts returns how many EVALSHA and EVAL commands were sent.
func (h *countHook) scripts() (evalsha, eval int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n["evalsha"], h.n["eval"]
}

// stateLog records OnStateChange calls.
type stateLog struct {
	mu     sync.Mutex
	states []bool
}

func (l *stateLog) record(degraded bool) {
	l.mu.Lock()
	l.states = append(l.states, degraded)
	l.mu.Unlock()
}

func (l *stateLog) get() []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bool(nil), l.states...)
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// warmUp takes decisions until one is taken on Redis within the store's
// timeout: a cold connection on a busy machine may itself take over 50ms.
func warmUp(t *testing.T, s *Store) {
	t.Helper()
	for i := 0; ; i++ {
		err := s.Decide(context.Background(), hourlyReq("warm"), &limit.Decision{})
		if err == nil && !s.Degraded() {
			return
		}
		if i == 20 {
			t.Fatalf("no decision on Redis within %v in 20 tries: %v", s.timeout, err)
		}
		waitFor(t, "on redis", 5*time.Second, func() bool { return !s.Degraded() })
	}
}

var hourly = &limit.Policy{Name: "hourly", Rate: limit.Per(1, time.Hour), Burst: 3}

func hourlyReq(key string) *limit.Request {
	return &limit.Request{Group: "org", Cost: 1, Tiers: []limit.Tier{{Policy: hourly, Key: key}}}
}

// TestNoScript checks that the store recovers when Redis forgets the
// script (SCRIPT FLUSH, a restart) and keeps its state across.
func TestNoScript(t *testing.T) {
	srv := startRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	hook := &countHook{}
	c.AddHook(hook)
	s := newStore(t, Config{Client: c})
	ctx := context.Background()

	if d := decide(t, s, hourlyReq("k")); !d.Allowed || d.Tiers[0].Remaining != 2 {
		t.Fatalf("first: %+v", d.Tiers[0])
	}
	if ok := c.ScriptExists(ctx, goredis.NewScript(decideSource).Hash()).Val(); len(ok) != 1 || !ok[0] {
		t.Fatal("script not cached after the first decision")
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	_, evalBefore := hook.scripts()
	if d := decide(t, s, hourlyReq("k")); !d.Allowed || d.Tiers[0].Remaining != 1 {
		t.Fatalf("after SCRIPT FLUSH: %+v", d.Tiers[0])
	}
	if _, eval := hook.scripts(); eval != evalBefore+1 {
		t.Fatalf("EVAL sent %d times after NOSCRIPT, want once", eval-evalBefore)
	}
	if ok := c.ScriptExists(ctx, goredis.NewScript(decideSource).Hash()).Val(); len(ok) != 1 || !ok[0] {
		t.Fatal("script not cached again after NOSCRIPT")
	}
	// Cached again: the next decision is a single EVALSHA.
	evalsha, eval := hook.scripts()
	if d := decide(t, s, hourlyReq("k")); !d.Allowed || d.Tiers[0].Remaining != 0 {
		t.Fatalf("third: %+v", d.Tiers[0])
	}
	if es, e := hook.scripts(); es != evalsha+1 || e != eval {
		t.Fatalf("third decision sent %d EVALSHA and %d EVAL, want 1 and 0", es-evalsha, e-eval)
	}
	if s.Degraded() {
		t.Fatal("NOSCRIPT degraded the store")
	}
}

// TestOutage kills Redis under a fail-open store and brings it back.
func TestOutage(t *testing.T) {
	srv := startRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	hook := &countHook{}
	c.AddHook(hook)
	var logs syncBuffer
	var states stateLog
	s := newStore(t, Config{
		Client:         c,
		Timeout:        50 * time.Millisecond,
		HealthInterval: 20 * time.Millisecond,
		Logger:         slogTo(&logs),
		OnStateChange:  states.record,
	})
	ctx := context.Background()
	warmUp(t, s)
	// Count from here: a slow warm-up may have degraded the store already.
	warns0, states0 := strings.Count(logs.String(), "level=WARN"), len(states.get())

	srv.Kill()
	// Many decisions meet the outage at once: every one is still taken,
	// and the outage is logged once.
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				var d limit.Decision
				if err := s.Decide(ctx, hourlyReq(fmt.Sprintf("burst-%d-%d", w, i)), &d); err != nil || !d.Allowed {
					t.Errorf("decision in the outage: allowed=%v err=%v", d.Allowed, err)
				}
			}
		}()
	}
	wg.Wait()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("40 decisions in the outage took %v", took)
	}
	if !s.Degraded() {
		t.Fatal("not degraded after Redis died")
	}
	d := decide(t, s, hourlyReq("k"))
	// The fallback starts empty and enforces the same policy: 3 of the
	// burst, then rejections.
	if !d.Allowed || d.Tiers[0].Remaining != 2 {
		t.Fatalf("first on the fallback: %+v", d.Tiers[0])
	}
	evalsha, eval := hook.scripts()
	admitted := 1
	for range 20 {
		if decide(t, s, hourlyReq("k")).Allowed {
			admitted++
		}
	}
	if admitted != 3 {
		t.Errorf("fallback admitted %d, want the burst 3", admitted)
	}
	if es, e := hook.scripts(); es != evalsha || e != eval {
		t.Errorf("a degraded store sent %d scripts to a dead Redis", es-evalsha+e-eval)
	}
	if n := strings.Count(logs.String(), "level=WARN") - warns0; n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs.String())
	}

	srv.Start()
	waitFor(t, "back on redis", 5*time.Second, func() bool { return !s.Degraded() })
	if got := states.get()[states0:]; len(got) != 2 || !got[0] || got[1] {
		t.Fatalf("state changes %v, want [true false]", got)
	}
	if !strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
	// The restarted Redis starts empty: the decision lands there.
	if d := decide(t, s, hourlyReq("k2")); !d.Allowed {
		t.Fatalf("after recovery: %+v", d)
	}
	if n := c.Exists(ctx, string(appendKey(nil, s.prefix, "org", "hourly", "k2"))).Val(); n != 1 {
		t.Fatal("decision after recovery did not reach Redis")
	}
	if n := strings.Count(logs.String(), "level=WARN") - warns0; n != 1 {
		t.Errorf("WARN records %d, want 1", n)
	}
}

// TestOutageFailClosed checks that a fail-closed store errors while Redis
// is down, without asking Redis each time, and recovers.
func TestOutageFailClosed(t *testing.T) {
	srv := startRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	hook := &countHook{}
	c.AddHook(hook)
	var logs syncBuffer
	s := newStore(t, Config{Client: c, FailClosed: true, Timeout: 50 * time.Millisecond,
		HealthInterval: 20 * time.Millisecond, Logger: slogTo(&logs)})
	warmUp(t, s)
	warns0 := strings.Count(logs.String(), "level=WARN")
	srv.Kill()
	var before int
	for i := range 5 {
		err := s.Decide(context.Background(), hourlyReq("k"), &limit.Decision{})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("decision %d in the outage: err = %v, want ErrUnavailable", i, err)
		}
		if i == 0 {
			es, e := hook.scripts()
			before = es + e
		}
	}
	if es, e := hook.scripts(); es+e != before {
		t.Errorf("a degraded store sent %d scripts to a dead Redis", es+e-before)
	}
	if !s.Degraded() || strings.Count(logs.String(), "level=WARN")-warns0 != 1 {
		t.Fatalf("degraded=%v, log:\n%s", s.Degraded(), logs.String())
	}
	srv.Start()
	waitFor(t, "back on redis", 5*time.Second, func() bool { return !s.Degraded() })
	// The restarted Redis has a new connection and no script cached: the
	// first calls on a busy machine may take over the 50 ms timeout, as at
	// the start (warmUp decides on another key, so "k" stays new).
	warmUp(t, s)
	if d := decide(t, s, hourlyReq("k")); !d.Allowed {
		t.Fatal("rejected after recovery on an empty Redis")
	}
}

// TestUnresponsive freezes Redis (SIGSTOP): the store must notice within
// its timeout, fail open, and return when Redis resumes.
func TestUnresponsive(t *testing.T) {
	// The Store keeps the deadline itself for a client that ignores context
	// deadlines, and hands it to go-redis for one that honours them.
	t.Run("store-deadline", func(t *testing.T) { testUnresponsive(t, false) })
	t.Run("context-deadline", func(t *testing.T) { testUnresponsive(t, true) })
}

func testUnresponsive(t *testing.T, ctxDeadlines bool) {
	srv := startRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: ctxDeadlines})
	defer c.Close()
	var logs syncBuffer
	s := newStore(t, Config{Client: c, Timeout: 50 * time.Millisecond, HealthInterval: 20 * time.Millisecond, Logger: slogTo(&logs)})
	if s.ctxDeadlines != ctxDeadlines {
		t.Fatalf("store.ctxDeadlines = %v, want %v", s.ctxDeadlines, ctxDeadlines)
	}
	warmUp(t, s)
	srv.Signal(syscall.SIGSTOP)
	start := time.Now()
	d := decide(t, s, hourlyReq("k"))
	took := time.Since(start)
	if !s.Degraded() || !d.Allowed || d.Tiers[0].Remaining != 2 {
		t.Fatalf("degraded=%v decision %+v, want a fail-open decision", s.Degraded(), d.Tiers[0])
	}
	// 50ms of timeout, plus scheduling slack under -race on a busy machine.
	if took > 500*time.Millisecond {
		t.Errorf("outage noticed after %v, want about 50ms", took)
	}
	t.Logf("frozen Redis noticed after %v (timeout 50ms)", took)
	if d := decide(t, s, hourlyReq("k")); !d.Allowed || d.Tiers[0].Remaining != 1 {
		t.Fatalf("second on the fallback: %+v", d.Tiers[0])
	}
	srv.Signal(syscall.SIGCONT)
	waitFor(t, "back on redis", 5*time.Second, func() bool { return !s.Degraded() })
	// Back on Redis. The fallback's state is left behind, but the decision
	// that timed out had reached Redis's socket before the freeze, and Redis
	// ran it on resuming: a timeout cannot undo a request, so Redis counts
	// it too (the package documentation says so).
	if d := decide(t, s, hourlyReq("k")); !d.Allowed || d.Tiers[0].Remaining != 1 {
		t.Fatalf("after resume: %+v", d.Tiers[0])
	}
	if n := c.Exists(context.Background(), string(appendKey(nil, s.prefix, "org", "hourly", "k"))).Val(); n != 1 {
		t.Fatal("decision after resume did not reach Redis")
	}
}

// TestCluster runs multi-tier decisions through a ClusterClient on a
// one-node Redis Cluster: a key outside the decision's slot would fail
// with CROSSSLOT.
func TestCluster(t *testing.T) {
	dir := t.TempDir()
	// The cluster bus gets a free port of its own: the default, port +
	// 10000, is past 65535 for a port above 55535.
	bus, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busPort := fmt.Sprint(bus.Addr().(*net.TCPAddr).Port)
	bus.Close()
	srv := startRedis(t, "--cluster-enabled", "yes", "--cluster-port", busPort,
		"--cluster-config-file", filepath.Join(dir, "nodes.conf"))
	ctx := context.Background()
	admin := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	waitFor(t, "cluster_state:ok", 10*time.Second, func() bool {
		return strings.Contains(admin.ClusterInfo(ctx).Val(), "cluster_state:ok")
	})
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{srv.Addr()}})
	defer cc.Close()
	s := newStore(t, Config{Client: cc})

	org := &limit.Policy{Name: "org", Rate: limit.Per(1000, time.Second), Burst: 1000}
	client := &limit.Policy{Name: "client", Rate: limit.Per(100, time.Second), Burst: 100}
	writes := &limit.Policy{Name: "script-writes", Rate: limit.Per(10, time.Second), Burst: 10}
	script := &limit.Policy{Name: "script", Rate: limit.Per(1, time.Second), Burst: 2}
	now := time.Now()
	for _, g := range []string{"org-1", "", "a}b", "{x}", "%"} {
		req := &limit.Request{Now: now, Group: g, Cost: 1, Tiers: []limit.Tier{
			{Policy: org, Key: g}, {Policy: client, Key: "c1"}, {Policy: writes, Key: g}, {Policy: script, Key: g + "/s1"},
		}}
		for i := range 3 {
			var d limit.Decision
			if err := s.Decide(ctx, req, &d); err != nil {
				t.Fatalf("group %q: %v", g, err)
			}
			if want := i < 2; d.Allowed != want || (!want && d.Limiting != 3) {
				t.Fatalf("group %q request %d: allowed=%v limiting=%d", g, i, d.Allowed, d.Limiting)
			}
		}
	}
	limittest.Run(t, func(*testing.T) limit.Store { return s })
	if s.Degraded() {
		t.Fatal("cluster store degraded")
	}
}

// TestCloseStopsHealthCheck checks that Close ends the health check of a
// degraded store promptly: the store then stays on its fallback even when
// Redis comes back. Close waits for the health check to return, so once it
// has returned no goroutine is left that could turn the store back, and
// the test can check that directly instead of sleeping to see nothing
// happen.
func TestCloseStopsHealthCheck(t *testing.T) {
	srv := startRedis(t)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	hook := &countHook{}
	c.AddHook(hook)
	s := newStore(t, Config{Client: c, Timeout: 50 * time.Millisecond, HealthInterval: 20 * time.Millisecond,
		Logger: slogTo(io.Discard)})
	warmUp(t, s)
	srv.Kill()
	decide(t, s, hourlyReq("k"))
	if !s.Degraded() {
		t.Fatal("not degraded after Redis died")
	}
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v", took)
	}
	checking := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.checking
	}
	if checking() {
		t.Fatal("health check still running after Close returned")
	}
	srv.Start()
	pings := hook.count("ping")
	// Another outage report on a closed store starts no health check.
	s.markDown(errors.New("still down"))
	if checking() {
		t.Fatal("a closed store started a health check")
	}
	if d := decide(t, s, hourlyReq("k")); !d.Allowed {
		t.Fatal("closed store stopped deciding")
	}
	if !s.Degraded() {
		t.Fatal("a closed store went back to Redis")
	}
	if n := hook.count("ping"); n != pings {
		t.Fatalf("a closed store pinged Redis %d times", n-pings)
	}
}
