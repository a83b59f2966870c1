package limit

import "context"

// Lease is the slots one decision acquired on its concurrency tiers: one
// per tier, all under one ID. Copy it out of the Decision before reusing
// the Decision; the copy stays valid (stores never reuse a Lease's
// Tiers).
type Lease struct {
	// ID names the lease in its store; empty when nothing was acquired.
	ID string
	// Group and Tiers are the decision's group and its concurrency tiers
	// that acquired a slot.
	Group string
	Tiers []Tier
}

// Held reports whether the lease holds any slot.
func (l *Lease) Held() bool { return l.ID != "" }

// Releaser is a Store whose concurrency tiers can be released. Every store
// in ratelab is one.
type Releaser interface {
	// Release frees the lease's slots. Releasing a lease twice, one that
	// expired, or one that holds nothing, does nothing and is not an error.
	Release(ctx context.Context, l *Lease) error
}
