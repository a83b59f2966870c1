package limit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Tier is one policy applied to one partition: the policy's state is kept
// per (Request.Group, Policy.Name, Key). Key is whatever partitions the
// policy: an org id, a client id, "org/script-id".
type Tier struct {
	Policy *Policy
	Key    string
}

// Request asks for one all-or-nothing decision over every tier in Tiers.
type Request struct {
	// Now is the instant of the decision. The zero Time means the store's
	// own clock: time.Now for the memory store, Redis's TIME for Redis, so
	// that replicas with skewed clocks agree.
	Now time.Time
	// Group places the decision: every key it touches belongs to the group
	// (ratelab uses the org), and the Redis store puts the group in each
	// key's hash tag so that one decision touches one Redis Cluster slot.
	// State is kept per group, so every decision that names a tier must give
	// the same group. The empty group is a valid group.
	Group string
	// Tiers are the policies that apply, in any order. At most MaxTiers.
	Tiers []Tier
	// Cost is how much quota the request takes from every tier. Zero asks
	// for the current state without consuming anything.
	Cost int64
}

// MaxTiers bounds the tiers of one decision. It leaves room for a bulk
// write of 50 scripts in httpapi: one per-script tier per item beside the
// request's own tiers.
const MaxTiers = 64

// ErrTooManyTiers is returned for a request with more than MaxTiers tiers.
var ErrTooManyTiers = errors.New("limit: too many tiers in one decision")

// ErrUnavailable is wrapped by the error of a Store that cannot take
// decisions because its backend is unreachable and that fails closed
// rather than deciding locally. A server answers such a request as
// temporarily unavailable (503), not as an internal failure.
var ErrUnavailable = errors.New("limit: store unavailable")

// CostError reports a request whose cost exceeds the quota (the burst of
// a GCRA policy, the count per window of a window policy) of a non-shadow
// policy: no amount of waiting would admit it. A concurrency policy takes
// one slot per request whatever its cost, so it never refuses a cost.
type CostError struct {
	Policy string
	Cost   int64
	Burst  int64 // the policy's Quota
}

func (e *CostError) Error() string {
	return fmt.Sprintf("limit: cost %d exceeds the quota %d of policy %q", e.Cost, e.Burst, e.Policy)
}

// Validate checks the request's shape; stores call it before touching state.
func (r *Request) Validate() error {
	if len(r.Tiers) > MaxTiers {
		return ErrTooManyTiers
	}
	if r.Cost < 0 {
		return fmt.Errorf("limit: negative cost %d", r.Cost)
	}
	for i := range r.Tiers {
		p := r.Tiers[i].Policy
		if p == nil {
			return fmt.Errorf("limit: tier %d has no policy", i)
		}
		if !p.valid() {
			// Policy.Validate says which field; this is the cheap check that
			// keeps a bad policy from dividing by zero.
			return fmt.Errorf("limit: invalid policy %q (see Policy.Validate)", p.Name)
		}
		if !p.Shadow && p.Algorithm != Concurrency && r.Cost > p.Quota() {
			return &CostError{Policy: p.Name, Cost: r.Cost, Burst: p.Quota()}
		}
		for j := range i {
			if r.Tiers[j].Policy.Name == p.Name && r.Tiers[j].Key == r.Tiers[i].Key {
				return fmt.Errorf("limit: tier %q key %q named twice", p.Name, r.Tiers[i].Key)
			}
		}
	}
	return nil
}

// Decision is the outcome of one Request. Reuse a Decision across calls to
// avoid allocating: stores reset it and grow Tiers only when it is too short.
type Decision struct {
	// Allowed reports whether the request was admitted: every non-shadow
	// tier admitted it. When false, nothing was consumed from any tier
	// but those whose policy counts rejected requests (CountRejected).
	Allowed bool
	// Tiers holds each tier's state after the decision, in request order.
	Tiers []TierState
	// Limiting is the index in Tiers of the tier that decided: when
	// rejected, the violated tier with the longest retry-after; when
	// allowed, the non-shadow tier with the least remaining quota (a shadow
	// tier only if all are shadow). -1 when there are no tiers.
	Limiting int
	// RetryAfter is, for a rejected request, the exact time until every
	// enforced tier would admit it, given the state this decision left;
	// always positive then. 0 when allowed.
	RetryAfter time.Duration
	// Lease holds the slots the decision acquired on concurrency tiers.
	// The caller releases it (see Releaser) when the response is complete;
	// Lease.ID is empty when the decision acquired none.
	Lease Lease
	// At is the instant the decision was taken at, by the store's clock:
	// Request.Now when set, otherwise the store's own (time.Now for the
	// memory store, Redis's TIME for Redis). Every duration in the
	// decision runs from it, so At + ResetAfter is exactly the instant a
	// tier is full again, however late the caller reads the decision.
	// Every store in this module sets it; it is the zero Time from a
	// store that does not.
	At time.Time
}

// TierState is one tier's view of a decision.
type TierState struct {
	Policy *Policy
	Key    string
	// Allowed reports whether this tier alone would admit the request.
	Allowed bool
	// Consumed reports whether the decision took quota from this tier (a
	// slot, on a concurrency tier).
	Consumed bool
	// Remaining is how many more requests of cost 1 the tier admits now,
	// after the decision.
	Remaining int64
	// ResetAfter is the time until the tier's quota is full again, after
	// the decision: TAT − now for GCRA; see doc.go for the others.
	ResetAfter time.Duration
	// RetryAfter is the time until this tier would admit the request, on
	// the state the decision left; 0 if it admits it now (or admitted it).
	RetryAfter time.Duration
}

// Limit returns the decisive tier's state, or nil when there is none.
func (d *Decision) Limit() *TierState {
	if d.Limiting < 0 || d.Limiting >= len(d.Tiers) {
		return nil
	}
	return &d.Tiers[d.Limiting]
}

// Store takes decisions and keeps the state they need. Implementations are
// safe for concurrent use, and each Decide is atomic across all its tiers.
type Store interface {
	// Decide takes the decision for req and writes it to d. An error means
	// the decision could not be taken (a bad request, an unreachable
	// backend); a rejection is not an error.
	Decide(ctx context.Context, req *Request, d *Decision) error
}

// Evaluate is the pure GCRA core that every store shares, the fast path
// for requests whose tiers are all plain GCRA (Request.Plain); any other
// request goes through EvaluateStates, which decides plain tiers exactly
// as Evaluate does. backlog[i] is
// tier i's TAT − now before the decision, clamped at zero (a TAT in the past
// carries no information). Evaluate fills d but its At, which the store
// sets to now; the store then commits, for every tier with Consumed set,
// TAT = now + ResetAfter.
//
// For a tier with interval T and tolerance τ the request of cost n gives
// next = backlog + n·T; the tier admits it when next ≤ τ. The request is
// admitted when every non-shadow tier admits it, and then consumes from
// every tier that admits it (a shadow tier that would reject is reported
// and left alone). A rejected request consumes nothing. See doc.go.
func Evaluate(req *Request, backlog []time.Duration, d *Decision) {
	n := len(req.Tiers)
	if cap(d.Tiers) < n {
		d.Tiers = make([]TierState, n)
	}
	d.Tiers = d.Tiers[:n]
	d.Allowed = true
	d.Lease = Lease{}
	cost := time.Duration(req.Cost)
	for i := range req.Tiers {
		p := req.Tiers[i].Policy
		// τ is Tolerance() without dividing twice: divisions are the
		// costliest arithmetic of a decision.
		T := p.Interval()
		tau := T * time.Duration(p.Burst)
		next := backlog[i] + cost*T
		if req.Cost > p.Burst && cost > (math.MaxInt64-backlog[i])/T {
			// Only a shadow tier can see a cost above its burst (Validate
			// refuses it on the others); such a tier never admits, and
			// cost·T may overflow: saturate instead.
			next = math.MaxInt64
		}
		ts := &d.Tiers[i]
		*ts = TierState{Policy: p, Key: req.Tiers[i].Key, Allowed: next <= tau}
		if ts.Allowed {
			ts.Remaining = int64((tau - next) / T)
			ts.ResetAfter = next
		} else {
			ts.RetryAfter = next - tau
			ts.Remaining = int64((tau - backlog[i]) / T)
			ts.ResetAfter = backlog[i]
			if !p.Shadow {
				d.Allowed = false
			}
		}
	}
	d.Limiting, d.RetryAfter = -1, 0
	if !d.Allowed {
		// Nothing is consumed: every tier reports its state before the
		// request, and the retry is the longest of the violated tiers'.
		for i := range d.Tiers {
			ts := &d.Tiers[i]
			if ts.Allowed {
				// Before the request the tier had (τ − backlog) / T left,
				// which is (τ − next) / T + cost exactly: next = backlog +
				// cost·T and τ − next ≥ 0, so no division is needed.
				ts.Remaining += req.Cost
				ts.ResetAfter = backlog[i]
			}
			if !ts.Allowed && !ts.Policy.Shadow && ts.RetryAfter > d.RetryAfter {
				d.Limiting, d.RetryAfter = i, ts.RetryAfter
			}
		}
		return
	}
	for i := range d.Tiers {
		ts := &d.Tiers[i]
		ts.Consumed = ts.Allowed && req.Cost > 0
		if d.Limiting < 0 || lessRoom(ts, &d.Tiers[d.Limiting]) {
			d.Limiting = i
		}
	}
}

// lessRoom orders tiers for Limiting when a request is allowed: enforced
// tiers before shadow ones, then least remaining, then longest reset.
func lessRoom(a, b *TierState) bool {
	if a.Policy.Shadow != b.Policy.Shadow {
		return !a.Policy.Shadow
	}
	if a.Remaining != b.Remaining {
		return a.Remaining < b.Remaining
	}
	return a.ResetAfter > b.ResetAfter
}
