// Package probe discovers the rate limits of an HTTP endpoint it does not
// control: the burst it admits from a full bucket, the sustained rate it
// admits once the burst is spent, and the scope of each limit (per
// resource, per endpoint, per client or shared by the clients of an org).
// It reads whatever the server advertises (every header family limit
// understands, and an optional limits endpoint) and then verifies it by
// measurement, so it also works against servers that send no rate-limit
// headers at all.
//
// Files: config.go (Config), sender.go (the one gate every request passes:
// budget, maximum rate, concurrency), probe.go (the steps), estimate.go
// (burst and rate from observations), report.go (Report and its parts).
//
// # Method
//
// Every limit that rejects with 429 and refills at a steady rate behaves,
// seen from outside, like a GCRA (or token bucket) with emission interval
// T = 1/r and tolerance τ = b·T, where r is the sustained rate and b the
// burst. From a full bucket at time 0, the n-th request (1-based, sent
// faster than T) is admitted iff
//
//	n ≤ b + r·tₙ
//
// so the first rejection, after c admissions, brackets the burst:
//
//	c − r·t_c ≤ b < c + 1 − r·t_rej
//
// where t_c is the send time of the last admission and t_rej that of the
// first rejection, both from the first request of the step. The interval
// is narrower than 1, so it holds one integer; the probe reports the one
// nearest to its midpoint, which tolerates a little timing noise.
//
// Once the burst is spent, every admission happens at the first request
// sent after a threshold, and the thresholds are exactly T apart whatever
// the sending rate (as long as it exceeds r). The admissions after the
// first rejection therefore measure r directly: with K of them spanning S
// seconds, r ≈ (K−1)/S, and the least-squares slope of admission index
// against send time uses them all. Each admission is late by less than the
// sending interval g (plus scheduling jitter), so the true rate lies in
//
//	(K−1)/(S+g) ≤ r ≤ (K−1)/(S−g)
//
// which is the interval reported. The probe keeps sending until the
// interval is within about 1 % (S ≥ 100·g) and at least three intervals
// have been seen; after the first admissions it lowers the sending rate to
// about 40·r, which keeps the interval tight while sparing the budget. This
// converges in a few emission intervals instead of a search over rates.
//
// # Steps
//
//  1. advertised: one request; every rate-limit header is parsed, and the
//     limits endpoint (when given) is read.
//  2. explore: send at the maximum rate until the first 429, then measure
//     the sustained rate as above.
//  3. refill: wait until the bucket is full again: (c+1)·T from the
//     measurement, or longer when Retry-After or a reset header says so.
//  4. burst: from the full bucket, send at the maximum rate until the first
//     429 and compute b from the bracket above.
//  5. scope: with a --vary variable, steps 2–4 again with a fresh value per
//     request: if the limit does not show up, it was per resource, and
//     whatever does show up is a broader limit (per endpoint); if the same
//     limit shows up, it is not per resource. With a second credential,
//     a burst step alternating the two clients: if together they are
//     admitted about twice the burst, the limit is per client, otherwise the
//     clients share it.
//
// # Safety
//
// Every request passes one gate that enforces the budget (a hard count)
// and the maximum rate (consecutive sends are never closer than 1/max-rate
// in the client's clock). A run of consecutive 5xx responses or network
// errors stops the probe, which then reports what it learned and why it
// stopped; so does cancelling the context (Ctrl-C).
package probe
