// Package limit is ratelab's rate-limit engine: exact, multi-tier,
// all-or-nothing decisions with the four families of limits real APIs use
// (GCRA, fixed windows, sliding windows and concurrency limits), the stores
// that keep their state, and the HTTP headers that explain a decision to
// the client; and the client side of the same: reading what a response
// says about limits, every header family and a 429 body (ParseResponse, the
// one parser of rejections that ratelab's client, load tester and probe
// use), and a client's copy of a GCRA bucket ([Bucket]). It imports only
// the standard library, so it can be used on its own.
//
// Files: policy.go (Policy, Rate, Algorithm), decision.go (Request,
// Decision, Evaluate), algorithm.go (the window families, EvaluateStates),
// lease.go (concurrency leases), memory.go (MemoryStore), header.go
// (SetHeaders), parse.go (ParseHeaders), reject.go (ParseBody,
// ParseResponse), bucket.go (Bucket).
//
// # The model
//
// A [Policy] is a named limit with an [Algorithm]: by default GCRA, a
// sustained [Rate] (Count per Period) and a Burst, the most requests
// admitted at once from a full bucket. A [Tier]
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
// # MemoryStore keeps hashes, not keys
//
// [MemoryStore] identifies a tier's key by a 128-bit hash of (group,
// policy name, key), never keeping the strings: two maphash sums, under
// two seeds drawn at random when the store is made, of one unambiguous
// encoding (each of group and policy name preceded by its length). One bit
// marks a slot as used, so 127 bits are random. Two different keys that
// get the same hash would share one state, so exactness rests on that not
// happening: with n keys tracked at once, the probability that any two of
// them collide is at most n²/2¹²⁸ — about 3·10⁻²⁷ at a million keys, 3·10⁻²¹
// at a billion — and a new key lands on a tracked one with probability at
// most n/2¹²⁷ (6·10⁻³³ at a million). These figures take maphash to behave
// as a random function of its seed; it is not a cryptographic hash, but
// the seeds are per process and no hash ever leaves it, so a client cannot
// choose keys that collide on purpose.
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
// # The four families
//
// A newcomer's map: GCRA (above) is a bucket that refills continuously, so
// a client may burst and then keeps a steady pace; it is what ratelab used
// alone until now and what token-bucket APIs (Stripe, AWS) behave like. A
// fixed window counts requests in consecutive slices of time and forgets
// the count at each boundary: GitHub's 5,000 per hour, Envoy's ratelimit
// service, Kong, and the contact-center platform of the reference scenario
// (300 per minute per OAuth client). It is the simplest to explain and
// lets a client send up to twice the quota across a boundary. A sliding
// window smooths that boundary by weighing the previous window's count
// (HAProxy stick tables, Cloudflare, go-chi/httprate). A concurrency limit
// does not count over time at all but bounds the requests in flight
// (GitHub's secondary limit of 100, nginx limit_conn, Stripe's concurrent
// requests limiter). Each can count rejected requests too (see below).
//
// # Fixed windows
//
// A FixedWindow policy admits Q = Rate.Count requests per window of
// W = Rate.Period. Windows start at multiples of W since the Unix epoch,
// or, with AlignFirst, at the first request of a key that has no open
// window (the window then runs W from it, and the next one opens with the
// first request after it ends). With c the count in the current window, e
// the time since it started, and a request of cost n:
//
//	admit        ⇔  c + n ≤ Q,  and then c := c + n
//	remaining    = Q − c                    (after the decision, at least 0)
//	reset-after  = W − e                    (0 when nothing is counted)
//	retry-after  = W − e                    the next window starts empty
//
// Bound: at most Q in every window (aligned, or opened by a first request),
// and so at most 2Q in any span of length W that straddles a boundary.
//
// # Sliding windows
//
// A SlidingWindow policy keeps two counters per key: c, the count in the
// current epoch-aligned window of W, and p, the previous window's. A
// request at elapsed e in the current window is decided on the weighted
// count, the approximation Cloudflare and HAProxy use:
//
//	count  = c + p × (W − e)/W
//	admit  ⇔  count + n ≤ Q,  computed exactly as p·(W − e) ≤ (Q − c − n)·W
//	remaining    = Q − c − ⌈p·(W − e)/W⌉    (at least 0)
//	reset-after  = 2W − e if c > 0;  W − e if only p > 0;  else 0
//
// retry-after is the first instant the rule holds again: later in this
// window, at e′ = W − ⌊(Q − c − n)·W/p⌋ when Q − c − n ≥ 0 and e′ < W,
// so retry-after = e′ − e; otherwise in the next window, where c becomes
// the previous count, at e″ = W − ⌊(Q − n)·W/c⌋ (0 when c ≤ Q − n), so
// retry-after = (W − e) + e″. Products are formed in 128 bits.
//
// Bound: at most Q in every aligned window (an admission needs c + n ≤ Q),
// and in any span of length W starting at
// elapsed e₀ of a window, at most Q + ⌊B·e₀/W⌋ ≤ 2Q − 1, where B is what
// the span took from the earlier window. The worst case is a client that
// sends Q at the very end of a quiet window and keeps sending: the next
// window admits Q·e/W of it by elapsed e. Against a true sliding log the
// approximation errs only when requests are unevenly spread over the
// previous window, which is why Cloudflare measured it as good enough.
//
// # Concurrency
//
// A Concurrency policy admits at most N = Policy.Concurrency requests in
// flight per key. A decision that admits acquires a slot on every
// concurrency tier, under one [Lease] the caller releases (see [Releaser])
// when the response is complete; a slot never released expires Lease
// after the decision, so a crashed holder frees it. A request takes one
// slot whatever its cost, and cost 0 peeks. With h the unexpired slots:
//
//	admit        ⇔  h < N,  and then a slot expiring at now + Lease
//	                          (rounded up to a whole microsecond)
//	remaining    = N − h                    (after the decision)
//	reset-after  = until the last slot expires (0 when none is held)
//	retry-after  = until the first slot expires
//
// The retry-after is the latest a slot can free: a release frees one
// sooner, which the client cannot know of. Bound: never more than N held.
//
// # Counting rejected requests
//
// A policy with CountRejected counts a rejected request as if admitted,
// as Envoy's ratelimit service increments every descriptor and HAProxy's
// http_req_rate counts denied requests: a client that keeps sending over
// the limit never recovers until it pauses. Precisely, a request of cost
// n > 0 consumes n from a tier when
//
//	the request is admitted and the tier admits it, or
//	the tier counts rejected requests (whatever rejected the request)
//
// So when tier A rejects a request, a count-rejected tier B that had room
// consumes n all the same, and every other tier consumes nothing; when B
// itself rejects, it consumes too. A window tier adds n to its count,
// which may then exceed Q. A GCRA tier moves its TAT by n·T as for an
// admission, but keeps the backlog at most 2τ: it forgets what lies more
// than one window back, as a window counter does, so the longest pause a
// flood can cost is τ beyond the admission line (such a policy needs τ at
// most MaxWindow/2). Concurrency cannot count rejected requests: a
// rejected request is never in flight. Remaining, reset-after and
// retry-after are then taken on the state the decision left, so a
// rejection's retry-after is exact for the next request even though the
// rejection itself counted.
//
// # Mixing algorithms
//
// A [Request] may mix tiers of every algorithm. The verdict is the same:
// admitted when every enforced tier admits it. Consumption follows the
// rule above; a rejected request acquires no concurrency slot. The
// decision's retry-after is the longest of the enforced tiers' on the
// state the decision left: each algorithm only gains room as time passes,
// so after that wait all of them admit the request, and 1ns earlier at
// least one does not. Stores decide requests whose tiers are all plain
// GCRA on [Evaluate]'s fast path and all others on [EvaluateStates]; both
// give identical results on plain GCRA tiers.
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
// RateLimit-Policy gives each tier's quota as q and its window as w: the
// burst and refill time for GCRA, the quota and period for windows; a
// concurrency tier says q=N;qu="concurrent-requests" and has no w.
//
// # The client side
//
// The same package serves clients of a rate-limited API, so that ratelab's
// Go client, load tester and probe read limits one way. [ParseResponse] is
// the one parser of what a response says: every header family above and a
// 429 body ([ParseBody]: ratelab's own "limit" object, from which it
// rebuilds the policy of any algorithm and takes the exact retry delay,
// or a problem document's violated-policies), the body winning where it
// is more exact. [Bucket] is the one client-side GCRA: a copy of
// a server's bucket (fed with [Bucket.SetRemaining] and
// [Bucket.SetRetryAfter] from what responses say) or a cap of the
// client's own rate, with a margin for the delay between the client's
// decision and the server's.
package limit
