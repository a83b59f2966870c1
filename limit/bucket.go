package limit

import (
	"math"
	"time"
)

// InfDuration is what Bucket.Wait returns for a cost the bucket can never
// admit.
const InfDuration = time.Duration(math.MaxInt64)

// Bucket is the client side of GCRA: a client's copy of a server's bucket
// (or a bucket of its own, to cap its rate), so that it sends a request
// only when the bucket admits it. It is the same algorithm as [Evaluate]
// (see the package doc), kept for one key, in integer nanoseconds, with
// time passed to every method.
//
// Interval is the emission interval T and Tolerance the tolerance τ. A
// server decides a little later than the client sends, and by an amount
// that varies; a local TAT can therefore run up to that variation behind
// the server's. Margin is a bound on it: Wait admits a request of cost n
// at now only when the server admits it whatever the delay within Margin,
//
//	n·T ≤ τ   and   TAT + Margin + n·T − τ ≤ now,
//
// which for n·T ≤ τ − Margin is the server's own rule with the tolerance
// τ − Margin. The margin costs no throughput, only a phase shift.
//
// The setters that take what a server said (SetRemaining, SetRetryAfter)
// only ever move the TAT forward: local state errs towards waiting.
//
// The zero Bucket has no history; set Interval and Tolerance before use.
// A Bucket is a plain value and is not safe for concurrent use.
type Bucket struct {
	Interval  time.Duration
	Tolerance time.Duration
	Margin    time.Duration
	// tat is the theoretical arrival time; the zero time is a full bucket.
	tat time.Time
}

// BucketOf returns a bucket with a policy's interval and tolerance.
func BucketOf(p *Policy, margin time.Duration) Bucket {
	return Bucket{Interval: p.Interval(), Tolerance: p.Tolerance(), Margin: margin}
}

// cost returns n·T, or false when the bucket can never admit it.
func (b *Bucket) cost(n int64) (time.Duration, bool) {
	if n <= 0 {
		return 0, true
	}
	if b.Interval > 0 && n > int64(b.Tolerance/b.Interval) {
		return 0, false
	}
	return time.Duration(n) * b.Interval, true
}

// Earliest returns the first instant at which Wait admits a request of
// cost n, and false when it never does (n·Interval > Tolerance). Before
// any Take it is the zero time: the bucket is full.
func (b *Bucket) Earliest(n int64) (time.Time, bool) {
	c, ok := b.cost(n)
	if !ok {
		return time.Time{}, false
	}
	if b.tat.IsZero() {
		return time.Time{}, true
	}
	return b.tat.Add(b.Margin + c - b.Tolerance), true
}

// Wait returns how long from now until the bucket admits a request of
// cost n: 0 when it admits it now, InfDuration when it never does.
// Nothing is taken.
func (b *Bucket) Wait(now time.Time, n int64) time.Duration {
	at, ok := b.Earliest(n)
	if !ok {
		return InfDuration
	}
	if !at.After(now) {
		return 0
	}
	return at.Sub(now)
}

// Take charges a request of cost n sent at now: TAT = max(TAT, now) + n·T.
// It charges whether or not Wait admitted the request, since a request
// that went (a learning request, a forced one) used the quota anyway.
func (b *Bucket) Take(now time.Time, n int64) {
	if b.tat.Before(now) {
		b.tat = now
	}
	b.tat = b.tat.Add(time.Duration(max(n, 0)) * b.Interval)
}

// Allow takes a request of cost n at now and reports true when Wait admits
// it now; otherwise it takes nothing and reports false.
func (b *Bucket) Allow(now time.Time, n int64) bool {
	if b.Wait(now, n) > 0 {
		return false
	}
	b.Take(now, n)
	return true
}

// SetRemaining records a server's word that r requests remain at now
// (RateLimit r, X-RateLimit-Remaining): the server's backlog is at least
// τ − r·T, so TAT is at least now + τ − r·T.
func (b *Bucket) SetRemaining(now time.Time, r int64) {
	if r < 0 {
		return
	}
	if b.Interval > 0 && r > int64(b.Tolerance/b.Interval) {
		return // more than a full bucket: no news
	}
	b.raise(now, now.Add(b.Tolerance-time.Duration(r)*b.Interval))
}

// SetRetryAfter records a server's word that a request of cost 1 is
// admitted again d after now (a 429's retry delay): TAT becomes at least
// now + d + τ − T, the point from which the server admits it, so that Wait
// next admits one at now + d + Margin.
func (b *Bucket) SetRetryAfter(now time.Time, d time.Duration) {
	if d < 0 {
		return
	}
	b.raise(now, now.Add(d+b.Tolerance-b.Interval))
}

// raise moves the TAT forward to tat, never back; a tat not after now says
// the bucket is full, which is no news.
func (b *Bucket) raise(now, tat time.Time) {
	if tat.After(now) && tat.After(b.tat) {
		b.tat = tat
	}
}

// TAT returns the bucket's theoretical arrival time: the instant it is
// full again. The zero time means it has never been charged.
func (b *Bucket) TAT() time.Time { return b.tat }
