package limit_test

import (
	"testing"
	"time"

	"ratelab/limit"
)

// TestBucket walks one bucket through fixed instants: T = 100 ms, τ = 300
// ms (burst 3), margin 20 ms. Each step acts at its offset from t0 and then
// checks what Wait says for a request of cost 1.
func TestBucket(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	ms := time.Millisecond
	type step struct {
		at   time.Duration
		do   string // "take", "allow", "remaining N", "retry D", or "" (check only)
		n    int64
		ok   bool          // the result of allow
		wait time.Duration // Wait(at, 1) after the action
		tat  time.Duration // TAT − t0 after the action (-1: zero time)
	}
	steps := []step{
		{at: 0, wait: 0, tat: -1},
		// The margin is tolerance left unused: of a burst of 3, two go at
		// once and the third waits until TAT + margin + T − τ = 20 ms.
		{at: 0, do: "allow", ok: true, wait: 0, tat: 100 * ms},
		{at: 0, do: "allow", ok: true, wait: 20 * ms, tat: 200 * ms},
		{at: 0, do: "allow", ok: false, wait: 20 * ms, tat: 200 * ms},
		{at: 19 * ms, wait: 1 * ms, tat: 200 * ms},
		{at: 20 * ms, do: "allow", ok: true, wait: 100 * ms, tat: 300 * ms},
		// The server says 0 remain at 150 ms: its TAT is at least
		// 150 + τ = 450 ms.
		{at: 150 * ms, do: "remaining", n: 0, wait: 120 * ms, tat: 450 * ms},
		// A remaining count above the local one is no news: the TAT never
		// moves back.
		{at: 150 * ms, do: "remaining", n: 3, wait: 120 * ms, tat: 450 * ms},
		// A 429 at 200 ms with a retry delay of 500 ms: the next request
		// is admitted at 700 ms + margin.
		{at: 200 * ms, do: "retry", n: 500, wait: 520 * ms, tat: 900 * ms},
		// Long after, the bucket is full again: three at once.
		{at: 5 * time.Second, do: "allow", ok: true, wait: 0, tat: 5100 * ms},
		// A forced take charges even when the bucket would not admit.
		{at: 5 * time.Second, do: "take", n: 5, wait: 420 * ms, tat: 5600 * ms},
	}
	b := limit.Bucket{Interval: 100 * ms, Tolerance: 300 * ms, Margin: 20 * ms}
	for i, s := range steps {
		now := t0.Add(s.at)
		switch s.do {
		case "allow":
			if ok := b.Allow(now, 1); ok != s.ok {
				t.Fatalf("step %d: Allow = %v, want %v", i, ok, s.ok)
			}
		case "take":
			b.Take(now, s.n)
		case "remaining":
			b.SetRemaining(now, s.n)
		case "retry":
			b.SetRetryAfter(now, time.Duration(s.n)*ms)
		}
		if got := b.Wait(now, 1); got != s.wait {
			t.Fatalf("step %d (%s at %v): Wait = %v, want %v", i, s.do, s.at, got, s.wait)
		}
		var tat time.Duration = -1
		if !b.TAT().IsZero() {
			tat = b.TAT().Sub(t0)
		}
		if tat != s.tat {
			t.Fatalf("step %d (%s at %v): TAT = %v, want %v", i, s.do, s.at, tat, s.tat)
		}
	}
}

// TestBucketBurstOne checks the case the margin matters most for: a burst
// of 1, where τ − margin < T. The next request waits for the margin after
// the TAT, and a fresh bucket still admits at once.
func TestBucketBurstOne(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	b := limit.Bucket{Interval: time.Second, Tolerance: time.Second, Margin: 25 * time.Millisecond}
	if !b.Allow(t0, 1) {
		t.Fatal("a fresh bucket refused")
	}
	if got, want := b.Wait(t0, 1), time.Second+25*time.Millisecond; got != want {
		t.Fatalf("Wait = %v, want %v", got, want)
	}
	if b.Allow(t0.Add(time.Second), 1) {
		t.Fatal("admitted within the margin")
	}
	if !b.Allow(t0.Add(time.Second+25*time.Millisecond), 1) {
		t.Fatal("refused after the margin")
	}
}

func TestBucketNeverAdmits(t *testing.T) {
	b := limit.Bucket{Interval: time.Second, Tolerance: 2 * time.Second}
	now := time.Unix(1, 0)
	if got := b.Wait(now, 3); got != limit.InfDuration {
		t.Fatalf("Wait(3) with burst 2 = %v, want InfDuration", got)
	}
	if _, ok := b.Earliest(3); ok {
		t.Fatal("Earliest(3) with burst 2 reported ok")
	}
	if got := b.Wait(now, 2); got != 0 {
		t.Fatalf("Wait(2) = %v, want 0", got)
	}
}

// TestBucketMatchesEvaluate checks that a bucket without margin admits
// exactly what the server's store admits, request by request, over a few
// seconds of requests sent faster than the rate.
func TestBucketMatchesEvaluate(t *testing.T) {
	p := &limit.Policy{Name: "p", Rate: limit.Per(3, time.Second), Burst: 4}
	s := limit.NewMemoryStore(limit.MemoryConfig{})
	b := limit.BucketOf(p, 0)
	t0 := time.Unix(2_000_000, 0)
	var d limit.Decision
	admitted := 0
	for i := range 200 {
		// Gaps of 32 to 42 ms, far below the interval of 333 ms, so that
		// both sides admit and reject.
		now := t0.Add(time.Duration(i*37+i%3*5) * time.Millisecond)
		if err := s.Decide(t.Context(), &limit.Request{Now: now, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}}, &d); err != nil {
			t.Fatal(err)
		}
		if got := b.Allow(now, 1); got != d.Allowed {
			t.Fatalf("request %d at %v: bucket %v, server %v", i, now.Sub(t0), got, d.Allowed)
		}
		if d.Allowed {
			admitted++
		}
	}
	// 4 at once, then 3/s over the 7.4 s the requests span.
	if admitted < 20 || admitted > 30 {
		t.Fatalf("%d of 200 admitted, want about 26", admitted)
	}
}
