package limittest

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ratelab/limit"
)

// runAlgorithms runs the suite's tests of the window and concurrency
// algorithms, of counting rejected requests, and of mixes.
func runAlgorithms(t *testing.T, newStore NewStore) {
	t.Run("FixedWindowSteps", func(t *testing.T) { testFixedSteps(t, newStore(t)) })
	t.Run("FixedWindowAlignFirst", func(t *testing.T) { testFixedAlignFirst(t, newStore(t)) })
	t.Run("SlidingWindowSteps", func(t *testing.T) { testSlidingSteps(t, newStore(t)) })
	t.Run("ConcurrencySteps", func(t *testing.T) { testConcurrencySteps(t, newStore(t)) })
	t.Run("CountRejected", func(t *testing.T) { testCountRejected(t, newStore(t)) })
	t.Run("MixAllOrNothing", func(t *testing.T) { testMixAllOrNothing(t, newStore(t)) })
	t.Run("FixedWindowBound", func(t *testing.T) { testWindowBound(t, newStore(t), limit.FixedWindow) })
	t.Run("SlidingWindowBound", func(t *testing.T) { testWindowBound(t, newStore(t), limit.SlidingWindow) })
	t.Run("ConcurrencyBound", func(t *testing.T) { testConcurrencyBound(t, newStore(t)) })
	t.Run("WindowLateInstant", func(t *testing.T) { testWindowLate(t, newStore(t)) })
	for _, alg := range []limit.Algorithm{limit.GCRA, limit.FixedWindow, limit.SlidingWindow, limit.Concurrency} {
		t.Run("Property/"+alg.String(), func(t *testing.T) { testModel(t, newStore(t), []limit.Algorithm{alg}) })
	}
	t.Run("Property/mix", func(t *testing.T) {
		testModel(t, newStore(t), []limit.Algorithm{limit.GCRA, limit.FixedWindow, limit.SlidingWindow, limit.Concurrency})
	})
}

func window(name string, alg limit.Algorithm, quota int64, w time.Duration) *limit.Policy {
	return &limit.Policy{Name: name, Algorithm: alg, Rate: limit.Per(quota, w)}
}

func concurrency(name string, n int64, lease time.Duration) *limit.Policy {
	return &limit.Policy{Name: name, Algorithm: limit.Concurrency, Concurrency: n, Lease: lease}
}

// aligned returns the first instant after the suite's epoch that starts a
// window of w since the Unix epoch, plus off.
func aligned(w time.Duration, off time.Duration) time.Time {
	e := epoch.UnixNano()
	return time.Unix(0, (e/int64(w)+1)*int64(w)).Add(off)
}

// step is one decision of a step table and what it must report about
// its only tier.
type step struct {
	at         time.Duration
	allowed    bool
	remaining  int64
	resetAfter time.Duration
	retryAfter time.Duration
}

func runSteps(t *testing.T, s limit.Store, base time.Time, p *limit.Policy, steps []step) {
	t.Helper()
	g := group(t)
	for i, st := range steps {
		d := decide(t, s, &limit.Request{Now: base.Add(st.at), Group: g, Cost: 1,
			Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
		ts := d.Tiers[0]
		if d.Allowed != st.allowed || ts.Remaining != st.remaining || ts.ResetAfter != st.resetAfter ||
			d.RetryAfter != st.retryAfter || ts.RetryAfter != st.retryAfter || ts.Consumed != st.allowed {
			t.Errorf("%s step %d at %v: got allowed=%v remaining=%d reset=%v retry=%v (tier retry %v, consumed %v); want %v %d %v %v",
				p.Algorithm, i, st.at, d.Allowed, ts.Remaining, ts.ResetAfter, d.RetryAfter, ts.RetryAfter, ts.Consumed,
				st.allowed, st.remaining, st.resetAfter, st.retryAfter)
		}
	}
}

// testFixedSteps walks a fixed window of 3 per 10s aligned to the epoch.
func testFixedSteps(t *testing.T, s limit.Store) {
	p := window("fixed", limit.FixedWindow, 3, 10*time.Second)
	s10 := 10 * time.Second
	runSteps(t, s, aligned(s10, 0), p, []step{
		{1 * time.Second, true, 2, 9 * time.Second, 0},
		{2 * time.Second, true, 1, 8 * time.Second, 0},
		{2 * time.Second, true, 0, 8 * time.Second, 0},
		{3 * time.Second, false, 0, 7 * time.Second, 7 * time.Second},
		{s10 - time.Nanosecond, false, 0, time.Nanosecond, time.Nanosecond},
		{s10, true, 2, s10, 0},
		{s10 + 9*time.Second, true, 1, time.Second, 0},
		{s10 + 9*time.Second, true, 0, time.Second, 0},
		{s10 + 9*time.Second, false, 0, time.Second, time.Second},
		{2*s10 + 5*time.Second, true, 2, 5 * time.Second, 0},
		{5 * s10, true, 2, s10, 0},
	})
}

// testFixedAlignFirst walks a fixed window of 2 per 10s that opens at a
// key's first request.
func testFixedAlignFirst(t *testing.T, s limit.Store) {
	p := window("fixed-first", limit.FixedWindow, 2, 10*time.Second)
	p.AlignFirst = true
	base := aligned(10*time.Second, 3*time.Second+7*time.Millisecond)
	runSteps(t, s, base, p, []step{
		{0, true, 1, 10 * time.Second, 0},
		{4 * time.Second, true, 0, 6 * time.Second, 0},
		{9 * time.Second, false, 0, time.Second, time.Second},
		{10 * time.Second, true, 1, 10 * time.Second, 0}, // a new window opens here
		{19 * time.Second, true, 0, time.Second, 0},
		{20*time.Second - time.Nanosecond, false, 0, time.Nanosecond, time.Nanosecond},
		{45 * time.Second, true, 1, 10 * time.Second, 0}, // no window open since 20s
	})
}

// testSlidingSteps walks a sliding window of 10 per 10s.
func testSlidingSteps(t *testing.T, s limit.Store) {
	p := window("sliding", limit.SlidingWindow, 10, 10*time.Second)
	w := 10 * time.Second
	var steps []step
	// Ten at the start of window 0: count 1..10; the reset is the end of
	// the window after (20s), since the count weighs on the next window.
	for i := range 10 {
		steps = append(steps, step{0, true, int64(9 - i), 2 * w, 0})
	}
	steps = append(steps,
		// Rejected until window 1 weighs 10·(1 − e/10s) ≤ 9: e = 1s, 6s on.
		step{5 * time.Second, false, 0, 15 * time.Second, 6 * time.Second},
		// Window 1 at elapsed 0: 0 + 10×1 = 10, full: count + 1 ≤ 10 needs
		// 10·(1 − e/10s) ≤ 9, e ≥ 1s.
		step{w, false, 0, w, time.Second},
		step{w + time.Second - time.Nanosecond, false, 0, 9*time.Second + time.Nanosecond, time.Nanosecond},
		// e = 1s: 10×0.9 = 9, +1 = 10 ≤ 10. Remaining 10 − 1 − ⌈9⌉ = 0.
		step{w + time.Second, true, 0, 19 * time.Second, 0},
		// e = 1.5s: 1 + 8.5 + 1 > 10; 8.5·… ≤ 8 needs e ≥ 2s.
		step{w + 1500*time.Millisecond, false, 0, 18500 * time.Millisecond, 500 * time.Millisecond},
		// e = 2.5s: 1 + 7.5 + 1 = 9.5 ≤ 10; after it 2 + ⌈7.5⌉ = 10: 0 left.
		step{w + 2500*time.Millisecond, true, 0, 17500 * time.Millisecond, 0},
		// e = 5s: 2 + 5 = 7: 3 left after this one.
		step{w + 5*time.Second, true, 2, 15 * time.Second, 0},
		// Window 3: both counters are gone.
		step{3 * w, true, 9, 2 * w, 0},
	)
	runSteps(t, s, aligned(w, 0), p, steps)
}

func releaser(t *testing.T, s limit.Store) limit.Releaser {
	t.Helper()
	r, ok := s.(limit.Releaser)
	if !ok {
		t.Fatalf("%T does not implement limit.Releaser", s)
	}
	return r
}

func release(t *testing.T, s limit.Store, l limit.Lease) {
	t.Helper()
	if err := releaser(t, s).Release(context.Background(), &l); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// testConcurrencySteps walks a concurrency limit of 2 with a 5s lease:
// acquire, reject, release, expiry.
func testConcurrencySteps(t *testing.T, s limit.Store) {
	p := concurrency("conc", 2, 5*time.Second)
	g := group(t)
	acq := func(at time.Duration) *limit.Decision {
		return decide(t, s, &limit.Request{Now: epoch.Add(at), Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
	}
	check := func(what string, d *limit.Decision, allowed bool, remaining int64, reset, retry time.Duration) {
		t.Helper()
		ts := d.Tiers[0]
		if d.Allowed != allowed || ts.Remaining != remaining || ts.ResetAfter != reset || d.RetryAfter != retry || ts.Consumed != allowed || d.Lease.Held() != allowed {
			t.Errorf("%s: allowed=%v remaining=%d reset=%v retry=%v consumed=%v lease=%q; want %v %d %v %v",
				what, d.Allowed, ts.Remaining, ts.ResetAfter, d.RetryAfter, ts.Consumed, d.Lease.ID, allowed, remaining, reset, retry)
		}
	}
	a := acq(0)
	check("a", a, true, 1, 5*time.Second, 0)
	if len(a.Lease.Tiers) != 1 || a.Lease.Tiers[0].Key != "k" || a.Lease.Group != g {
		t.Fatalf("lease %+v does not name the tier", a.Lease)
	}
	la := a.Lease
	b := acq(time.Second)
	check("b", b, true, 0, 5*time.Second, 0)
	lb := b.Lease
	if la.ID == lb.ID {
		t.Fatalf("two decisions got the same lease ID %q", la.ID)
	}
	check("c, over the limit", acq(2*time.Second), false, 0, 4*time.Second, 3*time.Second)
	// A peek (cost 0) at a full tier takes no slot, so nothing refuses it:
	// GET /api/v2/ratelimits under a concurrency limit on every route.
	full := decide(t, s, &limit.Request{Now: epoch.Add(2 * time.Second), Group: g, Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
	if !full.Allowed || full.Lease.Held() || full.Tiers[0].Consumed || full.Tiers[0].Remaining != 0 {
		t.Errorf("peek at a full tier: allowed=%v %+v lease %q; want allowed, 0 remaining, nothing acquired", full.Allowed, full.Tiers[0], full.Lease.ID)
	}
	release(t, s, la)
	release(t, s, la) // twice: nothing more
	d := acq(2 * time.Second)
	check("d, after releasing a", d, true, 0, 5*time.Second, 0)
	// b expires at 6s, d at 7s: 1ns before b's expiry still full.
	check("e, before b expires", acq(6*time.Second-time.Nanosecond), false, 0, time.Second+time.Nanosecond, time.Nanosecond)
	check("f, b expired", acq(6*time.Second), true, 0, 5*time.Second, 0)
	// A peek (cost 0) reports without acquiring.
	peek := decide(t, s, &limit.Request{Now: epoch.Add(8 * time.Second), Group: g, Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
	if !peek.Allowed || peek.Lease.Held() || peek.Tiers[0].Consumed || peek.Tiers[0].Remaining != 1 {
		t.Errorf("peek at 8s: %+v lease %q; want allowed, 1 remaining, nothing acquired", peek.Tiers[0], peek.Lease.ID)
	}
	release(t, s, lb) // expired already: nothing happens
	release(t, s, limit.Lease{})
}

// testCountRejected checks count-rejected tiers of every algorithm that
// has one: rejected requests count, so a client sending at twice the rate
// never recovers until it pauses, and the pause it needs is exact.
func testCountRejected(t *testing.T, s limit.Store) {
	g := group(t)
	// GCRA 1/s burst 1, a request every 500ms (twice the rate).
	p := policy("gcra-counted", 1, time.Second, 1)
	p.CountRejected = true
	plain := policy("gcra-plain", 1, time.Second, 1)
	at := epoch
	var admittedCounted, admittedPlain int
	for i := range 20 {
		at = epoch.Add(time.Duration(i) * 500 * time.Millisecond)
		dc := decide(t, s, &limit.Request{Now: at, Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
		dp := decide(t, s, &limit.Request{Now: at, Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: plain, Key: "k"}}})
		if dc.Allowed {
			admittedCounted++
		} else if !dc.Tiers[0].Consumed {
			t.Fatalf("request %d: a rejected request on a count-rejected tier consumed nothing", i)
		}
		if dp.Allowed {
			admittedPlain++
		}
	}
	if admittedCounted != 1 || admittedPlain != 10 {
		t.Fatalf("admitted %d counted, %d plain; want 1 (the first) and 10", admittedCounted, admittedPlain)
	}
	// The backlog is capped at 2τ = 2s: the exact pause is 2s from the last
	// request, whose retry-after says so.
	last := decide(t, s, &limit.Request{Now: at, Group: g, Cost: 0, Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
	if last.Tiers[0].ResetAfter != 2*time.Second {
		t.Fatalf("backlog after the flood %v, want 2s", last.Tiers[0].ResetAfter)
	}
	if d := decide(t, s, &limit.Request{Now: at.Add(2*time.Second - time.Nanosecond), Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}); d.Allowed || d.RetryAfter != time.Second+time.Nanosecond {
		// That rejection counted as well: backlog 1ns + T, so its own
		// retry-after is T + 1ns.
		t.Fatalf("1ns early: allowed=%v retry=%v, want rejected, retry 1.000000001s", d.Allowed, d.RetryAfter)
	}
	at = at.Add(2*time.Second - time.Nanosecond)
	if d := decide(t, s, &limit.Request{Now: at.Add(2 * time.Second), Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}); !d.Allowed {
		t.Fatal("rejected after pausing for the retry-after")
	}

	// Fixed window 3/10s counted: the count goes on past the quota.
	fw := window("fixed-counted", limit.FixedWindow, 3, 10*time.Second)
	fw.CountRejected = true
	base := aligned(10*time.Second, 0)
	for i := range 6 {
		d := decide(t, s, &limit.Request{Now: base.Add(time.Duration(i) * time.Second), Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: fw, Key: "k"}}})
		if d.Allowed != (i < 3) || !d.Tiers[0].Consumed || d.Tiers[0].Remaining != max(0, int64(2-i)) {
			t.Fatalf("fixed counted %d: allowed=%v consumed=%v remaining=%d", i, d.Allowed, d.Tiers[0].Consumed, d.Tiers[0].Remaining)
		}
		if i >= 3 && d.RetryAfter != time.Duration(10-i)*time.Second {
			t.Fatalf("fixed counted %d: retry %v", i, d.RetryAfter)
		}
	}

	// Sliding window 10/10s counted, a client at 2/s (twice the rate): after
	// the first window it is never admitted again while it keeps sending.
	sw := window("sliding-counted", limit.SlidingWindow, 10, 10*time.Second)
	sw.CountRejected = true
	admitted := 0
	for i := range 80 {
		d := decide(t, s, &limit.Request{Now: base.Add(time.Duration(i) * 500 * time.Millisecond), Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: sw, Key: "k"}}})
		if d.Allowed {
			if i >= 20 {
				t.Fatalf("sliding counted: admitted request %d at %v while sending at twice the rate", i, time.Duration(i)*500*time.Millisecond)
			}
			admitted++
		}
	}
	if admitted != 10 {
		t.Fatalf("sliding counted: admitted %d in the first window, want 10", admitted)
	}
	// 40s sent, 20 counted in window 3 and 20 in window 3's predecessor… a
	// pause to the end of window 5 (the next window with an empty
	// predecessor) admits again.
	if d := decide(t, s, &limit.Request{Now: base.Add(50 * time.Second), Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: sw, Key: "k"}}}); !d.Allowed {
		t.Fatal("sliding counted: still rejected after pausing two windows")
	}
}

// testMixAllOrNothing checks one decision over every algorithm: when one
// tier rejects, exactly the count-rejected tiers consume, and nothing
// else is taken (no lease either); when all admit, all consume.
func testMixAllOrNothing(t *testing.T, s limit.Store) {
	g := group(t)
	w := 10 * time.Second
	gate := policy("mix-gate", 1, time.Hour, 2) // the tier that will reject
	counted := window("mix-fixed-counted", limit.FixedWindow, 100, w)
	counted.CountRejected = true
	gcraCounted := policy("mix-gcra-counted", 10, time.Second, 100)
	gcraCounted.CountRejected = true
	sliding := window("mix-sliding", limit.SlidingWindow, 100, w)
	conc := concurrency("mix-conc", 10, time.Minute)
	tiers := []limit.Tier{{Policy: gate, Key: "g"}, {Policy: counted, Key: "c"}, {Policy: gcraCounted, Key: "c"}, {Policy: sliding, Key: "s"}, {Policy: conc, Key: "n"}}
	base := aligned(w, time.Second)
	for i := range 2 {
		d := decide(t, s, &limit.Request{Now: base, Group: g, Cost: 1, Tiers: tiers})
		if !d.Allowed || !d.Lease.Held() {
			t.Fatalf("request %d: allowed=%v lease %q; want admitted with a lease", i, d.Allowed, d.Lease.ID)
		}
		for j, ts := range d.Tiers {
			if !ts.Consumed {
				t.Fatalf("request %d: tier %d not consumed on an admission", i, j)
			}
		}
		if d.Limiting != 0 {
			t.Errorf("request %d: limiting %d, want the gate", i, d.Limiting)
		}
	}
	for i := range 3 {
		d := decide(t, s, &limit.Request{Now: base, Group: g, Cost: 1, Tiers: tiers})
		if d.Allowed || d.Limiting != 0 || d.Lease.Held() {
			t.Fatalf("rejection %d: allowed=%v limiting=%d lease=%q", i, d.Allowed, d.Limiting, d.Lease.ID)
		}
		want := []struct {
			consumed  bool
			remaining int64
		}{
			{false, 0},
			{true, int64(100 - 3 - i)}, // counted: 2 admitted + this one and those before
			{true, int64(100 - 3 - i)}, // GCRA counted: the same, T at a time
			{false, 98},                // sliding: untouched
			{false, 8},                 // concurrency: no slot taken
		}
		for j, ts := range d.Tiers {
			if ts.Consumed != want[j].consumed || ts.Remaining != want[j].remaining {
				t.Errorf("rejection %d tier %s: consumed=%v remaining=%d; want %v %d",
					i, ts.Policy.Name, ts.Consumed, ts.Remaining, want[j].consumed, want[j].remaining)
			}
		}
		if d.RetryAfter != gate.Interval() {
			t.Errorf("rejection %d: retry %v, want the gate's %v", i, d.RetryAfter, gate.Interval())
		}
	}
	// A count-rejected tier that rejects consumes, the others do not.
	tightCounted := window("mix-tight-counted", limit.FixedWindow, 1, w)
	tightCounted.CountRejected = true
	wide := policy("mix-wide", 100, time.Second, 100)
	two := []limit.Tier{{Policy: wide, Key: "w"}, {Policy: tightCounted, Key: "t"}}
	decide(t, s, &limit.Request{Now: base, Group: g, Cost: 1, Tiers: two})
	d := decide(t, s, &limit.Request{Now: base, Group: g, Cost: 1, Tiers: two})
	if d.Allowed || d.Tiers[0].Consumed || d.Tiers[0].Remaining != 99 || !d.Tiers[1].Consumed || d.RetryAfter != w-time.Second {
		t.Fatalf("tight counted: allowed=%v wide %+v tight %+v retry %v", d.Allowed, d.Tiers[0], d.Tiers[1], d.RetryAfter)
	}
}

// testWindowBound hammers one window tier from many goroutines at
// instants spread over three windows, one window after the other, and
// checks the algorithm's bound:
// at most the quota in every aligned window, and for a sliding window at
// most quota + ⌊quota·(w − 1ns)/w⌋ ≤ 2·quota − 1 in any span of one
// window's length (see doc.go).
func testWindowBound(t *testing.T, s limit.Store, alg limit.Algorithm) {
	const quota = 20
	w := time.Second
	p := window("bound-"+alg.String(), alg, quota, w)
	g := group(t)
	base := aligned(w, 0)
	const goroutines, perG = 8, 40
	var mu sync.Mutex
	var admits []time.Duration
	var failed atomic.Value
	// One window at a time, so that the instants of the requests are the
	// windows they are counted in; within a window, goroutines interleave.
	for k := range time.Duration(3) {
		var wg sync.WaitGroup
		for gi := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var d limit.Decision
				for i := range perG {
					off := k*w + w*time.Duration(i)/perG + time.Duration(gi)*time.Microsecond
					req := limit.Request{Now: base.Add(off), Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}
					if err := s.Decide(context.Background(), &req, &d); err != nil {
						failed.Store(err)
						return
					}
					if d.Allowed {
						mu.Lock()
						admits = append(admits, off)
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
	}
	if err, ok := failed.Load().(error); ok {
		t.Fatal(err)
	}
	perWindow := map[int64]int{}
	for _, a := range admits {
		perWindow[int64(a/w)]++
	}
	for k, n := range perWindow {
		if n > quota {
			t.Fatalf("%s: %d admitted in aligned window %d, quota %d", alg, n, k, quota)
		}
	}
	if alg == limit.FixedWindow {
		// Demand far exceeds the quota in every window, and each window is
		// fresh, so every window admits exactly its quota.
		for k := range int64(3) {
			if perWindow[k] != quota {
				t.Fatalf("fixed: window %d admitted %d, want %d", k, perWindow[k], quota)
			}
		}
		return
	}
	for _, a := range admits {
		n := 0
		for _, b := range admits {
			if b >= a && b < a+w {
				n++
			}
		}
		if n > 2*quota-1 {
			t.Fatalf("sliding: %d admitted in [%v, %v), bound %d", n, a, a+w, 2*quota-1)
		}
	}
}

// testConcurrencyBound has many goroutines acquire and release one
// concurrency tier of 3 and checks that no more than 3 are ever in
// flight, and that the slots keep being reused.
func testConcurrencyBound(t *testing.T, s limit.Store) {
	const n = 3
	p := concurrency("bound-conc", n, time.Hour)
	g := group(t)
	var inFlight, most, admitted atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d limit.Decision
			for i := range 40 {
				req := limit.Request{Now: epoch.Add(time.Duration(i) * time.Millisecond), Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}
				if err := s.Decide(context.Background(), &req, &d); err != nil {
					failed.Store(err)
					return
				}
				if !d.Allowed {
					continue
				}
				admitted.Add(1)
				cur := inFlight.Add(1)
				for {
					m := most.Load()
					if cur <= m || most.CompareAndSwap(m, cur) {
						break
					}
				}
				time.Sleep(100 * time.Microsecond)
				// Leave before releasing: the count seen here never runs
				// behind the store's.
				inFlight.Add(-1)
				l := d.Lease
				if err := s.(limit.Releaser).Release(context.Background(), &l); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		t.Fatal(err)
	}
	if m := most.Load(); m > n {
		t.Fatalf("%d in flight at once, limit %d", m, n)
	}
	if a := admitted.Load(); a <= n {
		t.Fatalf("only %d admitted: released slots were not reused", a)
	}
	// Everything was released: all n slots are free.
	d := decide(t, s, &limit.Request{Now: epoch.Add(time.Second), Group: g, Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
	if d.Tiers[0].Remaining != n {
		t.Fatalf("after every release %d remaining, want %d", d.Tiers[0].Remaining, n)
	}
}

// refTier is a reference model of one tier, written for clarity rather
// than speed: it keeps every counted request with its instant, and
// decides from those. Instants are nanoseconds since the Unix epoch.
type refTier struct {
	p      *limit.Policy
	tat    int64           // GCRA
	counts map[int64]int64 // windows: window start (align first: opening instant) → count
	open   int64           // fixed align first: start of the open window, or -1
	leases map[int]int64   // concurrency: lease number → expiry
}

func newRef(p *limit.Policy) *refTier {
	return &refTier{p: p, counts: map[int64]int64{}, open: -1, leases: map[int]int64{}}
}

// start returns the start of the window that now falls in (fixed align
// first: the open window's, or now if none is open).
func (r *refTier) start(now int64) int64 {
	w := int64(r.p.Rate.Period)
	if r.p.AlignFirst {
		if r.open >= 0 && now < r.open+w {
			return r.open
		}
		return now
	}
	return now - ((now%w)+w)%w
}

// admits reports whether the tier admits cost at now.
func (r *refTier) admits(now, cost int64) bool {
	p := r.p
	switch p.Algorithm {
	case limit.GCRA:
		return max(r.tat, now)+cost*int64(p.Interval())-now <= int64(p.Tolerance())
	case limit.FixedWindow:
		return r.counts[r.start(now)]+cost <= p.Rate.Count
	case limit.SlidingWindow:
		w := int64(p.Rate.Period)
		st := r.start(now)
		// count + cost + prev·(1 − (now − st)/w) ≤ q, in exact rationals.
		lhs := new(big.Rat).SetInt64(r.counts[st] + cost)
		weight := big.NewRat(w-(now-st), w)
		lhs.Add(lhs, weight.Mul(weight, new(big.Rat).SetInt64(r.counts[st-w])))
		return lhs.Cmp(new(big.Rat).SetInt64(p.Rate.Count)) <= 0
	case limit.Concurrency:
		return cost == 0 || r.held(now) < p.Concurrency
	}
	return false
}

func (r *refTier) held(now int64) int64 {
	var n int64
	for _, e := range r.leases {
		if e > now {
			n++
		}
	}
	return n
}

// consume counts cost at now; lease numbers a concurrency slot.
func (r *refTier) consume(now, cost int64, lease int) {
	p := r.p
	switch p.Algorithm {
	case limit.GCRA:
		r.tat = min(max(r.tat, now)+cost*int64(p.Interval()), now+2*int64(p.Tolerance()))
	case limit.FixedWindow, limit.SlidingWindow:
		st := r.start(now)
		if p.AlignFirst {
			r.open = st
		}
		r.counts[st] += cost
	case limit.Concurrency:
		us := (now + 999) / 1000 // now ≥ 0 here: whole microseconds, rounded up
		r.leases[lease] = us*1000 + int64(p.Lease)
	}
}

// remaining returns the requests of cost 1 the tier admits at now.
func (r *refTier) remaining(now int64) int64 {
	if r.p.Algorithm == limit.Concurrency {
		return max(0, r.p.Concurrency-r.held(now))
	}
	var n int64
	for n < 1<<20 && r.admits(now, n+1) {
		n++
	}
	return n
}

// retry returns the least wait from now after which every tier admits
// cost, by bisection: waiting only ever adds room.
func retry(tiers []*refTier, now, cost int64) int64 {
	ok := func(at int64) bool {
		for _, r := range tiers {
			if !r.p.Shadow && !r.admits(at, cost) {
				return false
			}
		}
		return true
	}
	if ok(now) {
		return 0
	}
	lo, hi := int64(0), int64(time.Hour) // lo rejects, hi admits
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if ok(now + mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// testModel replays random arrivals (random costs, random releases) over
// tiers of the given algorithms, with random count-rejected flags and
// alignment, against the reference model: every verdict, every tier's
// consumption and remaining quota, and the decision's retry-after, which
// the model finds by search rather than by formula.
func testModel(t *testing.T, s limit.Store, algs []limit.Algorithm) {
	rng := rand.New(rand.NewPCG(7, uint64(len(algs))*31+uint64(algs[0])))
	r := releaser(t, s)
	trials := 12
	if len(algs) > 1 {
		trials = 20
	}
	for trial := range trials {
		g := fmt.Sprintf("%s/%d", group(t), trial)
		var tiers []limit.Tier
		var refs []*refTier
		for i, alg := range algs {
			name := fmt.Sprintf("m%d-%d-%s", trial, i, alg)
			var p *limit.Policy
			switch alg {
			case limit.GCRA:
				p = policy(name, int64(1+rng.IntN(20)), time.Second, int64(2+rng.IntN(6)))
			case limit.FixedWindow, limit.SlidingWindow:
				p = window(name, alg, int64(3+rng.IntN(12)), time.Duration(200+rng.IntN(1800))*time.Millisecond)
				p.AlignFirst = alg == limit.FixedWindow && rng.IntN(2) == 0
			case limit.Concurrency:
				p = concurrency(name, int64(1+rng.IntN(4)), time.Duration(100+rng.IntN(900))*time.Millisecond)
			}
			p.CountRejected = alg != limit.Concurrency && rng.IntN(3) == 0
			tiers = append(tiers, limit.Tier{Policy: p, Key: "k"})
			refs = append(refs, newRef(p))
		}
		var leases []limit.Lease
		var leaseNums []int
		now := epoch.UnixNano() + int64(rng.IntN(int(time.Second)))
		for i := range 150 {
			now += int64(rng.ExpFloat64() * float64(60*time.Millisecond))
			if len(leases) > 0 && rng.IntN(3) == 0 {
				k := rng.IntN(len(leases))
				if err := r.Release(context.Background(), &leases[k]); err != nil {
					t.Fatal(err)
				}
				for _, ref := range refs {
					delete(ref.leases, leaseNums[k])
				}
				leases = append(leases[:k], leases[k+1:]...)
				leaseNums = append(leaseNums[:k], leaseNums[k+1:]...)
			}
			cost := int64(1 + rng.IntN(2))
			if rng.IntN(10) == 0 {
				cost = 0
			}
			d := decide(t, s, &limit.Request{Now: time.Unix(0, now), Group: g, Cost: cost, Tiers: tiers})
			where := fmt.Sprintf("trial %d step %d (cost %d, %v)", trial, i, cost, tiers)
			allowed := true
			for _, ref := range refs {
				if !ref.admits(now, cost) {
					allowed = false
				}
			}
			if d.Allowed != allowed {
				t.Fatalf("%s: allowed=%v, model says %v", where, d.Allowed, allowed)
			}
			for j, ref := range refs {
				p := ref.p
				consumed := cost > 0 && (allowed || p.CountRejected && p.Algorithm != limit.Concurrency)
				if d.Tiers[j].Consumed != consumed {
					t.Fatalf("%s: tier %s consumed=%v, model %v", where, p.Name, d.Tiers[j].Consumed, consumed)
				}
				if consumed {
					ref.consume(now, cost, i)
				}
			}
			if d.Lease.Held() {
				leases = append(leases, d.Lease)
				leaseNums = append(leaseNums, i)
			}
			for j, ref := range refs {
				if want := ref.remaining(now); d.Tiers[j].Remaining != want {
					t.Fatalf("%s: tier %s remaining %d, model %d", where, ref.p.Name, d.Tiers[j].Remaining, want)
				}
			}
			if !allowed {
				if want := retry(refs, now, cost); int64(d.RetryAfter) != want {
					t.Fatalf("%s: retry-after %v, model %v", where, d.RetryAfter, time.Duration(want))
				}
			}
		}
	}
}

// testWindowLate checks a request whose instant precedes the key's
// current window (it reached the store after a request from a clock
// further ahead): it is counted in the current window, whose end does not
// move, so no window exceeds its quota.
func testWindowLate(t *testing.T, s limit.Store) {
	g := group(t)
	w := 10 * time.Second
	base := aligned(w, 0)
	for _, alg := range []limit.Algorithm{limit.FixedWindow, limit.SlidingWindow} {
		p := window("late-"+alg.String(), alg, 2, w)
		one := func(at time.Duration) *limit.Decision {
			return decide(t, s, &limit.Request{Now: base.Add(at), Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
		}
		one(w + time.Second) // opens window 1
		d := one(w - time.Second)
		// Counted in window 1, which starts 1s after this instant.
		if !d.Allowed || d.Tiers[0].Remaining != 0 {
			t.Fatalf("%s late request: allowed=%v remaining=%d, want admitted into window 1 with 0 left", alg, d.Allowed, d.Tiers[0].Remaining)
		}
		if alg == limit.FixedWindow && d.Tiers[0].ResetAfter != w+time.Second {
			t.Fatalf("fixed late request: reset %v, want 11s (window 1's end)", d.Tiers[0].ResetAfter)
		}
		if d := one(w + 2*time.Second); d.Allowed {
			t.Fatalf("%s: window 1 admitted a third request", alg)
		} else if alg == limit.FixedWindow && d.RetryAfter != 8*time.Second {
			t.Fatalf("fixed: retry %v, want 8s: the late request moved the window's end", d.RetryAfter)
		}
	}
}
