package limit

import (
	"math"
	"math/bits"
	"time"
)

// valid is the cheap check of Request.Validate: the fields the arithmetic
// divides by are in range. Policy.Validate is the full check.
func (p *Policy) valid() bool {
	switch p.Algorithm {
	case GCRA:
		// Rate.Interval() > 0, without its division: Period / Count is
		// zero or less exactly when Count <= 0 or Period < Count.
		return p.Burst > 0 && p.Rate.Count > 0 && p.Rate.Period >= time.Duration(p.Rate.Count)
	case FixedWindow, SlidingWindow:
		return p.Rate.Count > 0 && p.Rate.Period >= time.Millisecond && p.Rate.Period <= MaxWindow
	case Concurrency:
		return p.Concurrency > 0 && p.Lease > 0 && p.Lease <= MaxWindow
	}
	return false
}

// plain reports whether the policy is a GCRA that does not count rejected
// requests: the tiers Evaluate decides, on the fast path of every store.
func (p *Policy) plain() bool { return p.Algorithm == GCRA && !p.CountRejected }

// Plain reports whether every tier of req is a GCRA policy that does not
// count rejected requests, so that Evaluate can decide it from backlogs
// alone. Other requests go through EvaluateStates.
func (r *Request) Plain() bool {
	for i := range r.Tiers {
		if !r.Tiers[i].Policy.plain() {
			return false
		}
	}
	return true
}

// State is what a store keeps for one tier, as offsets from the
// decision's instant. A store reads it before EvaluateStates, which
// rewrites it in place to the state after the decision; the store then
// writes back the tiers whose TierState.Consumed is set.
//
//	             Until                              Count              Prev        First
//	GCRA         TAT − now (the backlog)            -                  -           -
//	fixed        until the current window ends      count in it        -           -
//	sliding      until the window after it ends     count in current   previous    -
//	concurrency  until the last lease expires       leases held        -           until the first expires
//
// Until ≤ 0 means the key carries no information (a missing key): the
// other fields are then ignored. A store may keep Until as an absolute
// expiry (now + Until); once it passes, the key can be dropped.
//
// For concurrency the store keeps the leases themselves: it counts the
// unexpired ones into Count, First and Until before the decision, and
// after it, for a consumed tier, adds one lease expiring at
// Policy.LeaseExpiry(now) (which is what Count, First and Until then
// already describe).
type State struct {
	Until time.Duration
	Count int64
	Prev  int64
	First time.Duration
}

// view is one tier's state before or after a decision, rolled to now.
type view struct {
	backlog time.Duration // GCRA
	window                // windows; count is a concurrency tier's leases held
	first   time.Duration // concurrency: until the first lease expires
	last    time.Duration // concurrency: until the last lease expires
}

// window is a fixed or sliding window tier's state, rolled to now. It is
// four words, few enough for the compiler to keep in registers (a bigger
// struct lives in memory), and its steps take and return it by value, so
// that the one-tier paths never store it.
type window struct {
	count   int64         // count in the current window
	prev    int64         // sliding: count in the previous window
	elapsed time.Duration // now − start of the current window, ≥ 0
	// lag is how far the key's current window starts after now: positive
	// only for an instant that reaches the store after a later one opened
	// a new window (callers' clocks disagree). Such a request is counted
	// in that window, at its start, as GCRA counts a late request after
	// the TAT: no window ever exceeds its quota.
	lag time.Duration
}

// floorMod returns a mod m in [0, m).
func floorMod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}

// load sets v to the stored state s rolled to now. It writes v's fields
// one by one, not as a returned struct: a decision is a few nanoseconds of
// arithmetic, and the compiler's copies of a returned view (stored a word
// at a time, reloaded 16 bytes at a time) stalled on store forwarding for
// longer than the arithmetic took.
func (v *view) load(p *Policy, now int64, s *State) {
	*v = view{}
	switch p.Algorithm {
	case GCRA:
		v.backlog = max(s.Until, 0)
	case FixedWindow:
		v.window = loadFixed(p, now, s)
	case SlidingWindow:
		v.window = loadSliding(p, now, s)
	case Concurrency:
		if s.Until > 0 {
			v.count, v.first, v.last = s.Count, max(s.First, 0), s.Until
		}
	}
}

// The window algorithms' steps are small functions of their own, most of
// which the compiler inlines: the generic steps (load, admits, store,
// report, wait) dispatch to them, and so do evaluateFixed and
// evaluateSliding, the one-tier paths, which dispatch once per decision
// instead of once per step.

// loadFixed is load for a fixed window.
func loadFixed(p *Policy, now int64, s *State) (v window) {
	w := p.Rate.Period
	switch {
	case s.Until > 0:
		v.count, v.elapsed, v.lag = s.Count, max(0, w-s.Until), max(0, s.Until-w)
	case !p.AlignFirst:
		v.elapsed = time.Duration(floorMod(now, int64(w)))
	}
	return v
}

// loadSliding is load for a sliding window. A state whose current window
// ended less than a window ago is rolled one window on: its current
// window becomes the previous one.
func loadSliding(p *Policy, now int64, s *State) (v window) {
	w, u := p.Rate.Period, s.Until
	switch {
	case u > w:
		v.count, v.prev = s.Count, s.Prev
	case u > 0:
		v.prev, u = s.Count, u+w
	default:
		v.elapsed = time.Duration(floorMod(now, int64(w)))
		return v
	}
	v.elapsed, v.lag = max(0, 2*w-u), max(0, u-2*w)
	return v
}

// admitsFixed is admits for a fixed window.
func (v window) admitsFixed(p *Policy, n int64) bool { return v.count <= p.Rate.Count-n }

// admitsSliding is admits for a sliding window: count + n +
// prev·(w − elapsed)/w ≤ quota, in integers: prev·(w − elapsed) ≤
// (quota − count − n)·w.
func (v window) admitsSliding(p *Policy, n int64) bool {
	r := p.Rate.Count - v.count - n
	return r >= 0 && (v.prev == 0 || mulLE(v.prev, int64(p.Rate.Period-v.elapsed), r, int64(p.Rate.Period)))
}

// storeFixed is store for a fixed window.
func (v window) storeFixed(p *Policy, s *State) {
	s.Until, s.Count, s.Prev, s.First = p.Rate.Period-v.elapsed+v.lag, v.count, 0, 0
}

// storeSliding is store for a sliding window.
func (v window) storeSliding(p *Policy, s *State) {
	s.Until, s.Count, s.Prev, s.First = 2*p.Rate.Period-v.elapsed+v.lag, v.count, v.prev, 0
}

// reportFixed is report for a fixed window.
func (v window) reportFixed(p *Policy) (remaining int64, reset time.Duration) {
	if v.count > 0 {
		reset = p.Rate.Period - v.elapsed + v.lag
	}
	return max(0, p.Rate.Count-v.count), reset
}

// reportSliding is report for a sliding window.
func (v window) reportSliding(p *Policy) (remaining int64, reset time.Duration) {
	return max(0, p.Rate.Count-v.count-v.weighed(p.Rate.Period)), v.resetSliding(p)
}

// resetSliding is the reset-after of report for a sliding window.
func (v window) resetSliding(p *Policy) (reset time.Duration) {
	if v.count > 0 || v.prev > 0 {
		reset = p.Rate.Period - v.elapsed + v.lag // until the current window ends
		if v.count > 0 {
			reset += p.Rate.Period // and the one after, which still weighs it
		}
	}
	return reset
}

// weighed is how many whole requests the previous window of a sliding
// window of w weighs: ⌈prev·(w − elapsed)/w⌉.
func (v window) weighed(w time.Duration) int64 {
	if v.prev == 0 {
		return 0
	}
	return mulDivCeil(v.prev, int64(w-v.elapsed), int64(w))
}

// waitFixed is wait for a fixed window: the next window starts empty.
func (v window) waitFixed(p *Policy) time.Duration { return p.Rate.Period - v.elapsed + v.lag }

// store writes a view back as a State.
func (v *view) store(p *Policy, s *State) {
	switch p.Algorithm {
	case GCRA:
		s.Until = v.backlog
	case FixedWindow:
		v.storeFixed(p, s)
	case SlidingWindow:
		v.storeSliding(p, s)
	case Concurrency:
		*s = State{Until: v.last, Count: v.count, First: v.first}
	}
}

// gcraNext returns backlog + cost·T, saturated where only a shadow tier
// (whose cost Validate does not cap) could overflow it.
func gcraNext(p *Policy, backlog time.Duration, cost int64) time.Duration {
	T := p.Interval()
	if cost > p.Burst && time.Duration(cost) > (math.MaxInt64-backlog)/T {
		return math.MaxInt64
	}
	return backlog + time.Duration(cost)*T
}

// mulLE reports whether a·b ≤ c·d, exactly, for non-negative a, b, c, d.
func mulLE(a, b, c, d int64) bool {
	h1, l1 := bits.Mul64(uint64(a), uint64(b))
	h2, l2 := bits.Mul64(uint64(c), uint64(d))
	return h1 < h2 || h1 == h2 && l1 <= l2
}

// mulDiv returns ⌊a·b / c⌋ for non-negative a, b and positive c, given
// that the quotient fits (a·b < c·2^63).
func mulDiv(a, b, c int64) int64 {
	h, l := bits.Mul64(uint64(a), uint64(b))
	q, _ := bits.Div64(h, l, uint64(c))
	return int64(q)
}

// mulDivCeil returns ⌈a·b / c⌉ under the conditions of mulDiv.
func mulDivCeil(a, b, c int64) int64 {
	h, l := bits.Mul64(uint64(a), uint64(b))
	q, r := bits.Div64(h, l, uint64(c))
	if r != 0 {
		q++
	}
	return int64(q)
}

// admits reports whether the tier in state v admits a request of cost n.
func (v *view) admits(p *Policy, n int64) bool {
	switch p.Algorithm {
	case GCRA:
		return gcraNext(p, v.backlog, n) <= p.Tolerance()
	case FixedWindow:
		return v.admitsFixed(p, n)
	case SlidingWindow:
		return v.admitsSliding(p, n)
	case Concurrency:
		// A check of cost 0 takes no slot: a full tier does not refuse it.
		return n == 0 || v.count < p.Concurrency
	}
	return false
}

// consume counts a request of cost n > 0 at now in v.
func (v *view) consume(p *Policy, n, now int64) {
	switch p.Algorithm {
	case GCRA:
		// A rejected request on a count-rejected tier pushes the backlog
		// up to 2τ at most: the tier then forgets what lies more than one
		// window back, as a window counter does.
		v.backlog = min(gcraNext(p, v.backlog, n), 2*p.Tolerance())
	case FixedWindow, SlidingWindow:
		v.count += n
	case Concurrency:
		l := time.Duration(p.LeaseExpiry(now) - now)
		if v.count == 0 || l < v.first {
			v.first = l
		}
		v.last = max(v.last, l)
		v.count++
	}
}

// report returns the tier's remaining quota and reset-after in state v.
func (v *view) report(p *Policy) (remaining int64, reset time.Duration) {
	switch p.Algorithm {
	case GCRA:
		if tau := p.Tolerance(); v.backlog < tau {
			remaining = int64((tau - v.backlog) / p.Interval())
		}
		return remaining, v.backlog
	case FixedWindow:
		return v.reportFixed(p)
	case SlidingWindow:
		return v.reportSliding(p)
	case Concurrency:
		if v.count > 0 {
			reset = v.last
		}
		return max(0, p.Concurrency-v.count), reset
	}
	return 0, 0
}

// retryAfter returns the time until the tier in state v admits a request
// of cost n, 0 if it admits it now. Time only ever adds room, so the tier
// admits the request at any instant from then on (unless other requests
// come first).
func (v *view) retryAfter(p *Policy, n int64) time.Duration {
	if v.admits(p, n) {
		return 0
	}
	return v.wait(p, n)
}

// wait is retryAfter for a tier known to reject the request in state v.
func (v *view) wait(p *Policy, n int64) time.Duration {
	switch p.Algorithm {
	case GCRA:
		next := gcraNext(p, v.backlog, n)
		if next == math.MaxInt64 {
			return next
		}
		return next - p.Tolerance()
	case FixedWindow:
		return v.waitFixed(p)
	case SlidingWindow:
		return slidingRetry(p, v.window, n)
	case Concurrency:
		// The earliest a slot is sure to free; a release frees one sooner.
		return v.first
	}
	return 0
}

// slidingRetry solves the sliding window's admission rule for the first
// instant at which a tier that rejects now admits a request of cost n.
func slidingRetry(p *Policy, v window, n int64) time.Duration {
	q, w := p.Rate.Count, int64(p.Rate.Period)
	// Later in this window: prev·(w − e) ≤ r·w holds from
	// e = w − ⌊r·w/prev⌋ on. It rejects now, so r < prev and the
	// quotient is below w.
	if r := q - v.count - n; r >= 0 && v.prev > 0 {
		if e := w - mulDiv(r, w, v.prev); e < w {
			return time.Duration(e) - v.elapsed + v.lag
		}
	}
	toNext := time.Duration(w) - v.elapsed + v.lag
	// In the next window, count becomes the previous one:
	// count·(w − e) ≤ (q − n)·w from e = w − ⌊(q − n)·w/count⌋ on
	// (0 when count ≤ q − n; w, the start of the window after, when
	// (q − n)·w < count).
	r := q - n
	if r < 0 {
		return toNext + time.Duration(w) // a cost above the quota: never; say two windows
	}
	if v.count <= r {
		return toNext
	}
	return toNext + time.Duration(w-mulDiv(r, w, v.count))
}

// EvaluateStates is the decision core for any mix of algorithms, shared
// by every store: Evaluate generalised. now is the decision's instant in
// Unix nanoseconds (windows align to it), st[i] tier i's stored state;
// EvaluateStates fills d but its At, as Evaluate does, and rewrites st to
// the state after the decision, which the store writes back for every
// tier with Consumed set.
//
// A tier consumes the request's cost when the request is admitted and
// the tier admits it, or, for a tier whose policy counts rejected
// requests, whenever the cost is positive: on a rejected request such a
// tier consumes whether it was the tier that rejected or not. Every other
// tier consumes nothing from a rejected request. Remaining and reset come
// from the state after the decision; a tier's retry-after is the wait
// until that state admits the same request, and the decision's is the
// longest of the enforced tiers'. See doc.go.
func EvaluateStates(req *Request, now int64, st []State, d *Decision) {
	if len(req.Tiers) == 1 {
		switch req.Tiers[0].Policy.Algorithm {
		case FixedWindow:
			evaluateFixed(req, now, &st[0], d)
			return
		case SlidingWindow:
			evaluateSliding(req, now, &st[0], d)
			return
		}
	}
	evaluateTiers(req, now, st, d)
}

// prepare sizes d for n tiers and clears what every decision sets.
func (d *Decision) prepare(n int) {
	if cap(d.Tiers) < n {
		d.Tiers = make([]TierState, n)
	}
	d.Tiers = d.Tiers[:n]
	d.Lease = Lease{}
	d.Limiting, d.RetryAfter = -1, 0
}

// evaluateTiers is EvaluateStates for any request: every tier's verdict
// first, then, once the request's is known, what each consumes and
// reports (settle).
func evaluateTiers(req *Request, now int64, st []State, d *Decision) {
	d.prepare(len(req.Tiers))
	if len(req.Tiers) == 1 {
		// One tier decides alone: the verdict is known as soon as its state
		// is loaded, so one load serves both steps.
		p := req.Tiers[0].Policy
		var v view
		v.load(p, now, &st[0])
		ok := v.admits(p, req.Cost)
		d.Tiers[0] = TierState{Policy: p, Key: req.Tiers[0].Key, Allowed: ok}
		d.Allowed = ok || p.Shadow
		settle(req, now, &st[0], d, 0, &v)
		return
	}
	d.Allowed = true
	for i := range req.Tiers {
		p := req.Tiers[i].Policy
		var v view
		v.load(p, now, &st[i])
		ok := v.admits(p, req.Cost)
		d.Tiers[i] = TierState{Policy: p, Key: req.Tiers[i].Key, Allowed: ok}
		if !ok && !p.Shadow {
			d.Allowed = false
		}
	}
	for i := range d.Tiers {
		var v view
		v.load(d.Tiers[i].Policy, now, &st[i])
		settle(req, now, &st[i], d, i, &v)
	}
}

// settle is the second step of EvaluateStates for tier i, in state v
// before the decision, once d.Allowed holds the verdict: it consumes what
// the tier consumes (rewriting st), reports the tier's state after the
// decision, and updates d.Limiting and d.RetryAfter.
func settle(req *Request, now int64, st *State, d *Decision, i int, v *view) {
	ts := &d.Tiers[i]
	p := ts.Policy
	counts := d.Allowed && ts.Allowed || p.CountRejected && p.Algorithm != Concurrency
	if ts.Consumed = counts && req.Cost > 0; ts.Consumed {
		v.consume(p, req.Cost, now)
		v.store(p, st)
	}
	ts.Remaining, ts.ResetAfter = v.report(p)
	switch {
	case d.Allowed && ts.Allowed:
	case !ts.Consumed && ts.Allowed:
		// v is the state the tier admitted the request in.
	case !ts.Consumed:
		ts.RetryAfter = v.wait(p, req.Cost) // v rejects, as it did
	default:
		ts.RetryAfter = v.retryAfter(p, req.Cost)
	}
	if d.Allowed {
		if d.Limiting < 0 || lessRoom(ts, &d.Tiers[d.Limiting]) {
			d.Limiting = i
		}
	} else if !p.Shadow && ts.RetryAfter > d.RetryAfter {
		d.Limiting, d.RetryAfter = i, ts.RetryAfter
	}
}

// evaluateFixed is EvaluateStates for a request of one fixed-window tier,
// with evaluateSliding the commonest requests that are not plain GCRA:
// the steps of evaluateTiers on the same per-algorithm functions,
// inlined, without a call and a switch on the algorithm per step.
//
// With one tier, the request is admitted exactly when the tier admits it
// or is shadow; the tier consumes when it admits or counts rejected
// requests (settle), and both windows count the cost in the current
// window. A tier that rejected still rejects after consuming, as counts
// only grow, so its retry is the wait on the state after the decision;
// one that admitted needs none. TestEvaluateWindowMatchesTiers holds both
// paths to evaluateTiers.
func evaluateFixed(req *Request, now int64, s *State, d *Decision) {
	d.prepare(1)
	p, n := req.Tiers[0].Policy, req.Cost
	v := loadFixed(p, now, s)
	ok := v.admitsFixed(p, n)
	ts := &d.Tiers[0]
	*ts = TierState{Policy: p, Key: req.Tiers[0].Key, Allowed: ok}
	if ts.Consumed = (ok || p.CountRejected) && n > 0; ts.Consumed {
		v.count += n
		v.storeFixed(p, s)
	}
	ts.Remaining, ts.ResetAfter = v.reportFixed(p)
	if !ok {
		ts.RetryAfter = v.waitFixed(p)
	}
	settleOne(d, ok || p.Shadow)
}

// evaluateSliding is evaluateFixed for a sliding-window tier.
func evaluateSliding(req *Request, now int64, s *State, d *Decision) {
	d.prepare(1)
	p, n := req.Tiers[0].Policy, req.Cost
	v := loadSliding(p, now, s)
	ok := v.admitsSliding(p, n)
	ts := &d.Tiers[0]
	*ts = TierState{Policy: p, Key: req.Tiers[0].Key, Allowed: ok}
	if ts.Consumed = (ok || p.CountRejected) && n > 0; ts.Consumed {
		v.count += n
		v.storeSliding(p, s)
	}
	if !ok && n == 1 {
		// A tier that rejects a request of cost 1 has nothing left, before
		// counting it or after (count + 1 + prev·(w − elapsed)/w > quota
		// makes ⌈prev·(w − elapsed)/w⌉ ≥ quota − count): no need to weigh
		// the previous window.
		ts.ResetAfter = v.resetSliding(p)
	} else {
		ts.Remaining, ts.ResetAfter = v.reportSliding(p)
	}
	if !ok {
		ts.RetryAfter = slidingRetry(p, v, n)
	}
	settleOne(d, ok || p.Shadow)
}

// settleOne sets the verdict of a one-tier decision whose tier is
// settled, as settle would: an admitted request's limit is its tier, and
// so is a rejected one's (the tier rejected and is enforced).
func settleOne(d *Decision, allowed bool) {
	d.Allowed = allowed
	switch ts := &d.Tiers[0]; {
	case allowed:
		d.Limiting = 0
	case ts.RetryAfter > 0:
		d.Limiting, d.RetryAfter = 0, ts.RetryAfter
	}
}
