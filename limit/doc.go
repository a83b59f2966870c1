// Package limit is ratelab's rate-limit engine: exact, multi-tier,
// all-or-nothing decisions with the generic cell rate algorithm (GCRA), the
// stores that keep its state, and the HTTP headers that explain a decision
// to the client. It imports only the standard library, so it can be used
// on its own.
//
// # The model
//
// A [Policy] is a named limit: a sustained [Rate] (Count per Period) and a
// Burst, the most requests admitted at once from a full bucket. A [Tier]
// applies one policy to one partition key (an org, a client, a script). A
// [Request] asks for one decision over all the tiers that match an HTTP
// request; the [Decision] admits it only if every enforced tier admits it,
// and a rejected request consumes nothing from any tier. Shadow policies
// are evaluated and reported but never reject.
//
// A [Store] takes decisions atomically. [MemoryStore] keeps state in this
// process; package ratelab/redis keeps it in Redis for several replicas.
// Both share the pure arithmetic of [Evaluate], and both pass the
// conformance suite in limit/limittest.
//
// # GCRA
//
// GCRA is a leaky bucket that stores one number per key: the theoretical
// arrival time (TAT), the instant at which the bucket would be empty again
// if no more requests came. With the emission interval and the tolerance
//
//	T = Period / Count          (time one request's quota takes to return)
//	τ = T × Burst               (how far the TAT may run ahead of now)
//
// a request of cost n at time now is decided by
//
//	tat  = max(TAT, now)        (a TAT in the past carries no information)
//	next = tat + n·T
//	admit  ⇔  next − now ≤ τ,  and then TAT := next
//
// Everything the headers report follows from the TAT:
//
//	remaining   = ⌊(τ − (next − now)) / T⌋   after an admission
//	            = ⌊(τ − (tat − now)) / T⌋    after a rejection (nothing consumed)
//	reset-after = next − now (or tat − now)  time until the bucket is full again
//	retry-after = next − τ − now             for a rejected request: the exact
//	                                         instant the same request would pass
//
// The retry-after of a rejection is always positive, since next − now > τ.
// For several tiers the request's retry-after is the longest of the violated
// tiers': after that wait every one of them admits it (and tiers that
// admitted it still do, as waiting only adds room).
//
// The bound this gives is the one a user can rely on: in any window of
// length d, a tier admits at most Burst + d/T requests.
//
// # Integer time
//
// All arithmetic is in integer nanoseconds (time.Duration), never in float
// tokens: T is rounded down to the nanosecond once (1/3 s is 333333333 ns),
// and from there every result is exact, with no rounding to test. A
// fractional rate such as 0.5/s is stored as whole requests over a longer
// period (1 per 2 s). Windows are capped at [MaxWindow] (100 days), which
// keeps every offset below 2^53 ns so that the Redis store's Lua, whose
// numbers are doubles, computes exactly the same results.
//
// # All or nothing
//
// [Evaluate] computes next for every tier from its current backlog
// (TAT − now, clamped at zero). The request is admitted when every
// non-shadow tier admits it; then every tier that admits it, shadow ones
// included, stores TAT = next. Otherwise nothing is stored. The decisive tier
// ([Decision.Limiting]) is, for a rejection, the violated tier with the
// longest retry-after; for an admission, the enforced tier with the least
// remaining quota, which is the one the RateLimit header describes.
//
// A cost of zero takes no quota and reports the current state: ratelab's
// GET /api/v2/ratelimits uses it.
//
// # Headers
//
// [SetHeaders] writes a decision in the IETF httpapi draft fields
// (RateLimit-Policy, RateLimit), the common X-RateLimit-* fields and
// Retry-After; [ParseHeaders] reads those and the other families in use.
//
// # The client side
//
// The same package serves clients of a rate-limited API, so that ratelab's
// Go client, load tester and probe read limits one way. [ParseResponse] is
// the one parser of what a response says: every header family above and a
// 429 body ([ParseBody]: ratelab's own "limit" object with the exact retry
// delay, or a problem document's violated-policies), the body winning
// where it is more exact. [Bucket] is the one client-side GCRA: a copy of
// a server's bucket (fed with [Bucket.SetRemaining] and
// [Bucket.SetRetryAfter] from what responses say) or a cap of the
// client's own rate, with a margin for the delay between the client's
// decision and the server's.
package limit
