package limit_test

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"ratelab/limit"
	"ratelab/limit/limittest"
)

func TestMemoryConformance(t *testing.T) {
	limittest.Run(t, func(t *testing.T) limit.Store {
		s := limit.NewMemoryStore(limit.MemoryConfig{})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestMemoryConformanceOneShard(t *testing.T) {
	// One shard forces every tier of a decision into the same lock.
	limittest.Run(t, func(t *testing.T) limit.Store {
		return limit.NewMemoryStore(limit.MemoryConfig{Shards: 1})
	})
}

func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	s := limit.NewMemoryStore(limit.MemoryConfig{Shards: 1, MaxKeys: 3})
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Minute), Burst: 1}
	at := time.Unix(1000, 0)
	var d limit.Decision
	decide := func(key string) bool {
		t.Helper()
		if err := s.Decide(t.Context(), &limit.Request{Now: at, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: key}}}, &d); err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	for _, k := range []string{"a", "b", "c"} {
		decide(k)
	}
	decide("a") // rejected, but a is now the most recently used
	if !decide("d") {
		t.Fatal("d rejected")
	}
	if st := s.Stats(); st.Keys != 3 || st.Evictions != 1 {
		t.Fatalf("stats %+v, want 3 keys and 1 eviction", st)
	}
	// b was least recently used and evicted: its state is gone, so it is
	// admitted again; a kept its state and is still rejected.
	if !decide("b") {
		t.Fatal("evicted key b still rejected")
	}
	if decide("a") {
		t.Fatal("recently used key a was evicted")
	}
}

func TestMemorySweep(t *testing.T) {
	s := limit.NewMemoryStore(limit.MemoryConfig{})
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Second), Burst: 2}
	at := time.Unix(1000, 0)
	var d limit.Decision
	for i := range 100 {
		req := limit.Request{Now: at, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: strconv.Itoa(i)}}}
		if err := s.Decide(t.Context(), &req, &d); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Sweep(at.Add(999 * time.Millisecond)); n != 0 {
		t.Fatalf("swept %d keys that still carry state", n)
	}
	if n := s.Sweep(at.Add(time.Second)); n != 100 {
		t.Fatalf("swept %d, want 100", n)
	}
	if st := s.Stats(); st.Keys != 0 || st.Evictions != 0 {
		t.Fatalf("stats after sweep %+v", st)
	}
}

func TestMemoryBackgroundSweeper(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := limit.NewMemoryStore(limit.MemoryConfig{SweepInterval: time.Millisecond, Now: clock})
	defer s.Close()
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Second), Burst: 1}
	var d limit.Decision
	if err := s.Decide(t.Context(), &limit.Request{Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}, &d); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Keys != 0 {
		if time.Now().After(deadline) {
			t.Fatal("background sweeper did not drop the expired key")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMemoryKnownKeyDoesNotAllocate(t *testing.T) {
	s := limit.NewMemoryStore(limit.MemoryConfig{})
	ps := []*limit.Policy{
		{Name: "org", Rate: limit.Per(1000, time.Second), Burst: 1000},
		{Name: "client", Rate: limit.Per(100, time.Second), Burst: 200},
		{Name: "writes", Rate: limit.Per(20, time.Second), Burst: 40},
		{Name: "script", Rate: limit.Per(2, time.Second), Burst: 5},
	}
	req := limit.Request{Group: "org-1", Cost: 1, Tiers: []limit.Tier{
		{Policy: ps[0], Key: "org-1"}, {Policy: ps[1], Key: "client-1"},
		{Policy: ps[2], Key: "org-1"}, {Policy: ps[3], Key: "script-1"}}}
	var d limit.Decision
	at := time.Unix(1000, 0)
	allocs := testing.AllocsPerRun(100, func() {
		at = at.Add(time.Second)
		req.Now = at
		if err := s.Decide(t.Context(), &req, &d); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per decision on known keys, want 0", allocs)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]limit.Rate{
		"10/s":    limit.Per(10, time.Second),
		"600/m":   limit.Per(600, time.Minute),
		"0.5/s":   limit.Per(1, 2*time.Second),
		"1/10s":   limit.Per(1, 10*time.Second),
		"2.5/s":   limit.Per(5, 2*time.Second),
		"100/1m":  limit.Per(100, time.Minute),
		" 3 / h ": limit.Per(3, time.Hour),
	} {
		got, err := limit.ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "10", "0/s", "-1/s", "x/s", "10/fortnight", "10/0s", "NaN/s", "1e12/ns"} {
		if _, err := limit.ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q): no error", bad)
		}
	}
	if got := limit.Per(1, 2*time.Second).Describe(); got != "1 per 2 seconds" {
		t.Errorf("Describe = %q", got)
	}
	if got := limit.Per(2, time.Second).Describe(); got != "2 per second" {
		t.Errorf("Describe = %q", got)
	}
}

func TestPolicyValidate(t *testing.T) {
	ok := limit.Policy{Name: "p", Rate: limit.Per(2, time.Second), Burst: 5}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]limit.Policy{
		"name":   {Rate: limit.Per(2, time.Second), Burst: 5},
		"rate":   {Name: "p", Burst: 5},
		"burst":  {Name: "p", Rate: limit.Per(2, time.Second)},
		"window": {Name: "p", Rate: limit.Per(1, time.Hour), Burst: 10_000},
	} {
		if err := p.Validate(); err == nil || !strings.HasPrefix(err.Error(), strings.Split(name, "-")[0]) && name != "window" {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestShadowCostOverflow checks that a cost far above a shadow tier's
// burst, whose cost·T overflows, is reported as a rejection by that tier
// and does not disturb the decision.
func TestShadowCostOverflow(t *testing.T) {
	s := limit.NewMemoryStore(limit.MemoryConfig{})
	shadow := &limit.Policy{Name: "shadow", Rate: limit.Per(1, time.Hour), Burst: 1, Shadow: true}
	req := limit.Request{Now: time.Unix(1000, 0), Cost: 1 << 40, Tiers: []limit.Tier{{Policy: shadow, Key: "k"}}}
	var d limit.Decision
	if err := s.Decide(t.Context(), &req, &d); err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || d.Tiers[0].Allowed || d.Tiers[0].Consumed || d.Tiers[0].RetryAfter <= 0 {
		t.Fatalf("decision %+v, tier %+v", d, d.Tiers[0])
	}
}

func TestWindowKnownKeyDoesNotAllocate(t *testing.T) {
	for _, alg := range []limit.Algorithm{limit.FixedWindow, limit.SlidingWindow} {
		s := limit.NewMemoryStore(limit.MemoryConfig{})
		p := &limit.Policy{Name: "w", Algorithm: alg, Rate: limit.Per(100, time.Second)}
		q := &limit.Policy{Name: "g", Rate: limit.Per(100, time.Second), Burst: 10}
		req := limit.Request{Group: "org-1", Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}, {Policy: q, Key: "k"}}}
		var d limit.Decision
		at := time.Unix(1000, 0)
		for _, n := range []int{1, 2} {
			req.Tiers = req.Tiers[:n]
			allocs := testing.AllocsPerRun(100, func() {
				at = at.Add(10 * time.Millisecond)
				req.Now = at
				if err := s.Decide(t.Context(), &req, &d); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%s, %d tiers: %v allocations per decision on known keys, want 0", alg, n, allocs)
			}
		}
	}
}

func TestPolicyValidateAlgorithms(t *testing.T) {
	for _, ok := range []limit.Policy{
		{Name: "f", Algorithm: limit.FixedWindow, Rate: limit.Per(300, time.Minute)},
		{Name: "f", Algorithm: limit.FixedWindow, Rate: limit.Per(30, 10*time.Second), AlignFirst: true, CountRejected: true},
		{Name: "s", Algorithm: limit.SlidingWindow, Rate: limit.Per(10, time.Second), CountRejected: true},
		{Name: "c", Algorithm: limit.Concurrency, Concurrency: 4, Lease: 30 * time.Second},
		{Name: "g", Rate: limit.Per(1, time.Second), Burst: 5, CountRejected: true},
	} {
		if err := ok.Validate(); err != nil {
			t.Errorf("%v: %v", &ok, err)
		}
	}
	for field, p := range map[string]limit.Policy{
		"rate: quota":             {Name: "f", Algorithm: limit.FixedWindow},
		"rate: window 1.5ms":      {Name: "f", Algorithm: limit.FixedWindow, Rate: limit.Per(3, 1500*time.Microsecond)},
		"burst: not used":         {Name: "f", Algorithm: limit.FixedWindow, Rate: limit.Per(3, time.Second), Burst: 3},
		"align: sliding":          {Name: "s", Algorithm: limit.SlidingWindow, Rate: limit.Per(3, time.Second), AlignFirst: true},
		"concurrency: must":       {Name: "c", Algorithm: limit.Concurrency, Lease: time.Second},
		"lease: must":             {Name: "c", Algorithm: limit.Concurrency, Concurrency: 2},
		"count_rejected: a conc":  {Name: "c", Algorithm: limit.Concurrency, Concurrency: 2, Lease: time.Second, CountRejected: true},
		"rate: not used":          {Name: "c", Algorithm: limit.Concurrency, Concurrency: 2, Lease: time.Second, Rate: limit.Per(1, time.Second)},
		"align: not used by gcra": {Name: "g", Rate: limit.Per(1, time.Second), Burst: 1, AlignFirst: true},
		"count_rejected: window":  {Name: "g", Rate: limit.Per(1, time.Hour), Burst: 1300, CountRejected: true},
		"algorithm: unknown":      {Name: "x", Algorithm: 9},
	} {
		err := p.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), strings.SplitN(field, " ", 2)[0]) {
			t.Errorf("%s: err = %v", field, err)
		}
	}
	for _, name := range []string{"", "gcra", "fixed-window", "sliding-window", "concurrency"} {
		a, err := limit.ParseAlgorithm(name)
		if err != nil || (name != "" && a.String() != name) {
			t.Errorf("ParseAlgorithm(%q) = %v, %v", name, a, err)
		}
	}
	if _, err := limit.ParseAlgorithm("token-bucket"); err == nil {
		t.Error("ParseAlgorithm(token-bucket): no error")
	}
}

// The store keeps a keyed hash of (group, policy, key), never the strings:
// a key string that only the store could still reference is collected.
func TestMemoryDoesNotRetainKeys(t *testing.T) {
	s := limit.NewMemoryStore(limit.MemoryConfig{})
	p := &limit.Policy{Name: "p", Rate: limit.Per(1, time.Hour), Burst: 1}
	collected := make(chan struct{}, 3)
	func() {
		// Fresh allocations, each watched by a cleanup.
		key := strings.Repeat("k", 40)
		group := strings.Repeat("g", 40)
		name := strings.Repeat("n", 40)
		for _, str := range []string{key, group, name} {
			runtime.AddCleanup(unsafe.StringData(str), func(struct{}) { collected <- struct{}{} }, struct{}{})
		}
		q := &limit.Policy{Name: name, Rate: p.Rate, Burst: p.Burst}
		req := &limit.Request{Group: group, Now: time.Unix(1000, 0), Cost: 1, Tiers: []limit.Tier{{Policy: q, Key: key}}}
		var d limit.Decision
		if err := s.Decide(t.Context(), req, &d); err != nil || !d.Allowed {
			t.Fatalf("first decision: %v, allowed %v", err, d.Allowed)
		}
	}()
	deadline := time.After(5 * time.Second)
	for got := 0; got < 3; {
		runtime.GC()
		select {
		case <-collected:
			got++
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d of the 3 strings (key, group, policy name) collected; the store retains the others", got)
		}
	}
	// The state is still there, found by its hash.
	req := &limit.Request{Group: strings.Repeat("g", 40), Now: time.Unix(1000, 0), Cost: 1,
		Tiers: []limit.Tier{{Policy: &limit.Policy{Name: strings.Repeat("n", 40), Rate: p.Rate, Burst: p.Burst}, Key: strings.Repeat("k", 40)}}}
	var d limit.Decision
	if err := s.Decide(t.Context(), req, &d); err != nil || d.Allowed {
		t.Fatalf("second decision on the same key: %v, allowed %v; want rejected", err, d.Allowed)
	}
	runtime.KeepAlive(s)
}

// Window counts that do not fit a slot's packed word (Count ≥ 2³², Prev ≥
// 2³¹) live in a side record, exactly; back in range, they pack again.
func TestMemoryWideWindowCounts(t *testing.T) {
	for _, alg := range []limit.Algorithm{limit.FixedWindow, limit.SlidingWindow} {
		s := limit.NewMemoryStore(limit.MemoryConfig{Shards: 1})
		const quota = 1 << 40
		p := &limit.Policy{Name: "w", Algorithm: alg, Rate: limit.Per(quota, time.Second)}
		at := time.Unix(1000, 0)
		var d limit.Decision
		decide := func(cost int64) {
			t.Helper()
			req := &limit.Request{Now: at, Cost: cost, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}
			if err := s.Decide(t.Context(), req, &d); err != nil {
				t.Fatal(err)
			}
		}
		used := int64(0)
		for _, cost := range []int64{1, 1<<33 + 5, 1 << 38, 7} {
			decide(cost)
			used += cost
			if !d.Allowed || d.Tiers[0].Remaining != quota-used {
				t.Fatalf("%s: after %d, allowed %v remaining %d, want %d", alg, used, d.Allowed, d.Tiers[0].Remaining, quota-used)
			}
		}
		decide(quota - used + 1)
		if d.Allowed {
			t.Fatalf("%s: a request over the quota by 1 was admitted", alg)
		}
		// Three windows later both algorithms start afresh, and the
		// counts pack into the slot again.
		at = at.Add(3 * time.Second)
		decide(2)
		if !d.Allowed || d.Tiers[0].Remaining != quota-2 {
			t.Fatalf("%s: new window: allowed %v remaining %d, want %d", alg, d.Allowed, d.Tiers[0].Remaining, quota-2)
		}
		if st := s.Stats(); st.Keys != 1 {
			t.Fatalf("%s: %d keys, want 1", alg, st.Keys)
		}
	}
}
