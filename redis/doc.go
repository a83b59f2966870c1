// Package redis is a limit.Store on Redis: several ratelab processes share
// one exact rate limit, each decision taking at most one script run, all
// of its tiers atomically. It works on a single Redis node and on Redis
// Cluster. Decisions that Redis is sure to reject are rejected locally,
// without a round trip, and decisions taken concurrently share round
// trips (see "Local rejections" and "Pipelining").
//
// # Key layout
//
// Each tier keeps one key, its theoretical arrival time (TAT):
//
//	<prefix>{<group>}<policy>\x00<key>
//
// for example "ratelab:{org-42}script-writes\x00org-42/script-7". The
// group (Request.Group, the org in ratelab) is the key's Redis Cluster hash
// tag, so every key of one decision lies in one slot and the script never
// fails with CROSSSLOT. The parts are escaped so that distinct
// (group, policy, key) triples never share a key: in the group '%' and '}'
// are percent-encoded, so the tag ends where the group ends, and the empty
// group is written "%" because an empty tag "{}" would make Redis hash the
// whole key; in the policy name '%' and NUL are percent-encoded, so the
// first NUL ends it; the partition key follows verbatim.
//
// # The script
//
// One Lua script, sent with EVALSHA (and EVAL when Redis answers NOSCRIPT,
// as after SCRIPT FLUSH or a restart, which loads it again), reads every
// tier's TAT with one MGET and decides exactly as limit.Evaluate does. For
// a tier with emission interval T and tolerance τ, and a request of cost n:
//
//	backlog = max(TAT − now, 0)
//	next    = backlog + n·T
//	admitted by the tier when next ≤ τ
//
// The request is admitted when every non-shadow tier admits it. Then, if n
// > 0, every tier that admits it gets TAT = now + next, with an expiry
// (PX) of next (rounded up to a millisecond): the key disappears when its TAT
// passes, since from then on it carries no information. A shadow tier that
// rejects is left alone; a rejected request, or one of cost 0, writes
// nothing. The script returns its verdict and each tier's backlog; the
// Store then calls limit.Evaluate on those backlogs, so that remaining,
// reset and retry-after come from the very code the memory store runs, and
// checks that Evaluate's verdict agrees with the script's.
//
// Redis runs one script at a time, so the script's cost is every
// replica's latency. It takes n·T and τ precomputed (a shadow tier's τ
// travels as −1−τ), builds no table but its reply, and leaves everything
// that is not needed to decide and write to the Go side. What remains is
// inherent to exact, atomic tiers: one TIME, one MGET, and one SET with
// PX per tier it consumes. The Store builds each call's arguments in a
// pooled list that go-redis writes without boxing or copying them.
//
// # Other algorithms
//
// A request with any tier that is not plain GCRA (fixed or sliding window,
// concurrency, or a tier that counts rejected requests; see
// limit.Request.Plain) goes to a second script, statesSource, still one
// round trip per decision and all of its tiers atomically. It reads each
// tier's state, decides exactly as limit.EvaluateStates does, writes what
// the decision consumed, and returns the states it read, from which the
// Store runs limit.EvaluateStates for remaining, reset and retry-after and
// checks the verdict, as for GCRA. The keys:
//
//	GCRA            <prefix>{<group>}<policy>\x00<key>    string: the TAT (shared with the fast script)
//	fixed window    <prefix>f{<group>}<policy>\x00<key>   hash: e (window end), c (count)
//	sliding window  <prefix>s{<group>}<policy>\x00<key>   hash: e (end of the next window), c, p (previous count)
//	concurrency     <prefix>c{<group>}<policy>\x00<key>   sorted set: lease IDs scored by expiry (unix µs)
//
// The letter keeps algorithms apart (a policy that changes algorithm
// under one name starts afresh instead of meeting a value of another
// type) and leaves the hash tag alone, so one decision is still one
// Cluster slot. Every key expires (PX / PEXPIRE) when it stops carrying
// information: a window at its end (a sliding one at the end of the
// window after, when its count no longer weighs), a lease set with its
// last lease; a set whose last lease is released disappears at once.
// Expired leases are removed (ZREMRANGEBYSCORE) before a concurrency tier
// is counted. Windows and leases are whole milliseconds, and the sliding
// window's products, which may exceed 2^53, are compared exactly in 18-bit
// limbs, so the script is as exact as the memory store. A decision that
// acquires slots carries a lease ID made by the Store (random per Store,
// then a counter); Store.Release removes it from every tier in one round
// trip. A lease taken on the fallback while Redis was away is released on
// the fallback.
//
// # Time
//
// When Request.Now is zero the script reads the instant from Redis TIME,
// so that replicas whose clocks disagree still share one timeline. When
// Request.Now is set (tests walking fixed instants, replays) the script
// uses it. Either way the script returns the instant it decided at, which
// the Decision reports (limit.Decision.At), and a local rejection reports
// the instant it was decided at (see "Local rejections"). Expiry is
// relative to the decision's instant, so fixed instants in the past still
// give keys their full lifetime. Redis counts that expiry on its own
// clock, though, which a caller-given instant need not follow: a caller
// whose clock runs behind Redis's, or a test whose instants advance more
// slowly than real time, would see a key vanish while its TAT still lies
// ahead and be admitted too much. So keys written at a given
// instant live Config.FixedTimeGrace (1s by default) longer; a key that
// outlives its TAT is harmless, as a TAT in the past means a full bucket.
//
// # Precision
//
// Lua numbers are doubles, exact for integers below 2^53; unix nanoseconds
// (about 1.8·10^18) are not. So a TAT is stored as a decimal string of unix
// nanoseconds, the script splits it (and now) into seconds and nanoseconds,
// and all arithmetic is done on offsets from now: backlog =
// (TAT_s − now_s)·10^9 + (TAT_ns − now_ns) is exact whenever |TAT − now|
// is below 2^53 ns, about 104 days. Policies cap their window at
// limit.MaxWindow (100 days), so every stored TAT is within that of the
// instant that wrote it; a TAT further in the past is simply past, and one
// further in the future (only if time runs backwards by months) is clamped
// to 2^53 ns, which every tier rejects. The new TAT is formed as
// now_s + carry and a nanosecond remainder, both exact. Instants before
// 1970 are refused.
//
// # Local rejections
//
// A Store keeps what Redis last told it of each tier's state (the TAT of
// a GCRA tier, the end and count of a fixed window), as absolute
// instants, in a bounded cache (Config.CacheKeys), keyed by the tier's
// Redis key and the policy's parameters. A request whose every tier the
// cache may hold, and that the cached states reject, is rejected without
// a round trip, with the Decision limit.Evaluate (or EvaluateStates)
// gives on those states: the same code, on the same numbers, as for a
// reply from Redis, so the headers and the 429 body are the same.
//
// This is exact where a tier's state only grows until a known instant, so
// that what the cache holds is a lower bound of what Redis holds, whoever
// wrote it since:
//
//   - GCRA: a key's TAT never decreases, whichever replica writes it (an
//     admitted request moves it forward; a rejected one writes nothing).
//     A tier that rejects a cost on the cached TAT rejects it on Redis's.
//   - A fixed window, until the window's end: its count never decreases
//     and its end does not move before it.
//
// and nowhere else, so the Store does not try:
//
//   - sliding windows (the previous window's weight falls as time passes,
//     the current one's count rises: no bound in one direction) and
//     concurrency tiers (a release frees a slot at any moment): a request
//     with such a tier always goes to Redis;
//   - tiers that count rejected requests: a rejected request must still be
//     counted on Redis, so a request with one always goes to Redis;
//   - requests of cost 0, which reject nothing;
//   - a policy change: an entry is used only by a tier whose policy has
//     the same algorithm, rate, burst and alignment as the one it was
//     learnt under; a changed policy asks Redis again.
//
// The verdict is exact in every case above. The other fields of a local
// rejection (the admitting tiers' remaining and reset, the tier named as
// limiting when several reject) are exactly Redis's when this Store is
// the only writer of those keys; with several replicas they come from the
// last reply this Store saw, and what it did not see (another replica's
// consumption) can only make Redis's answer the stricter one. A key the
// cache has never held reads as empty (a lower bound too); a key it
// dropped (the cache is full, or was cleared) reads as unknown until the
// end of the state it held, so that the cache never mistakes a dropped key
// for an empty one.
//
// Redis may lose its state behind the Store's back: a restart without
// persistence, a failover to a replica that had not caught up. The Store
// clears the cache when Redis becomes unreachable and when it answers
// NOSCRIPT (as after a restart); a FLUSHALL or DEL of the limiter's keys
// while the scripts stay loaded is not seen, and keeps rejecting until
// the cached states end, as a replica that had not seen the flush would.
//
// Time. At a caller-given instant (Request.Now set) the cache decides at
// that instant, as the script would. On Redis time it needs Redis's
// clock, which it bounds from its replies: a script that read Redis TIME
// t and was sent at local monotonic instant s and answered at r puts
// Redis's clock at local instant l within [l + t − r, l + t − s]. The
// Store keeps the tightest bounds from the replies of the last 250–500 ms
// and widens them by 250 µs (clocks drift by up to 500 ppm). A request is
// rejected locally only when the cached states reject it at the upper
// bound — the latest instant Redis's clock can read at that moment, so
// the Store never rejects locally past the instant Redis would admit —
// and its Decision is taken at the lower bound, so that its retry-after
// is never shorter than Redis's would be. Without a reply in the last
// 500 ms it asks Redis.
//
// # Pipelining
//
// On a client with ContextTimeoutEnabled (as `ratelab serve` builds it),
// decisions taken concurrently share round trips. A decision that finds
// fewer than Config.MaxInFlight round trips in flight (by default one on a
// single Redis, which runs one script at a time anyway, and four on a
// Cluster) and none waiting is sent at once, alone: a lone decision is
// never delayed. One that arrives while the round trips allowed are in
// flight waits for the first of them to end, at most one round trip more
// than alone: the price of sharing, which Config.MaxInFlight sets. Otherwise it
// waits, and goes with every decision waiting beside it in one pipeline
// of EVALSHA calls (at most Config.MaxBatch) as soon as a round trip in
// flight ends, or at once when it fills the batch. Each decision is still
// a script run of its own, atomic and all-or-nothing on its own; only the
// write, the read and the wake-ups are shared. On Redis Cluster go-redis
// splits a pipeline per node, each decision going to its group's slot. A
// waiting decision's deadline (Config.Timeout) runs from the moment it
// starts waiting, and a pipeline's deadline is the earliest of its
// decisions'. Stats counts the local rejections, the scripts sent and the
// pipelines.
//
// # Failure
//
// Every round trip has a deadline (Config.Timeout, 50ms by default). A
// client with ContextTimeoutEnabled (as `ratelab serve` builds it) keeps it
// itself; for any other client, which would wait out its ReadTimeout, the
// Store keeps it, running the call on a goroutine of its own. Like any
// timeout it cannot undo the request: a
// script that reached Redis before the deadline may still run, so a
// decision taken on the fallback may also have been counted on Redis. When
// Redis does not answer in time, cannot be reached, or answers that it
// cannot serve (LOADING, READONLY, CLUSTERDOWN, …), the Store turns
// degraded: it logs one Warn record, calls Config.OnStateChange(true), and
// decides on a local limit.MemoryStore (Config.Fallback) — fail open, with
// the same policies since they travel with each request — or, with
// Config.FailClosed, returns an error wrapping ErrUnavailable. While
// degraded it does not try Redis per request; a background goroutine pings
// Redis every Config.HealthInterval and, once Redis answers, turns the
// Store back (one Info record, OnStateChange(false)). Limits are local to
// each process while degraded, and the fallback's state is dropped from
// consideration when Redis returns. Errors Redis returns for a bad request
// (a script error, a key of the wrong type) are returned to the caller and
// do not degrade the Store; nor does the caller's own context ending.
package redis
