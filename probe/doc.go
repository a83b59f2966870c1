// Package probe discovers the rate limits of an HTTP endpoint it does not
// control: each limit's family (token bucket, fixed window, sliding
// window, concurrency), its numbers (burst and sustained rate, quota and
// window, requests in flight), whether rejected requests count, and its
// scope (per resource, per endpoint, per client or shared by the clients
// of an org). It reads whatever the server advertises (every header
// family limit understands, and an optional limits endpoint), but a
// header is a hypothesis: the numbers come from measurement, so it also
// works against servers that send no rate-limit headers at all.
//
// Files: config.go (Config), sender.go (the one gate every request passes:
// budget, maximum rate, concurrency), experiment.go (the plan of a
// measuring step: the burst, the concurrency test, the polite probes),
// model.go (the families as hypotheses fitted to the answers), conclude.go
// (a step's answers to a limit), probe.go (the steps), report.go (Report
// and its parts).
//
// # Telling the families apart
//
// Each limit is measured in one step. It starts with a burst at the
// maximum rate until the first 429, and then every response is matched
// against every family, each simulated over the requests actually sent:
// a hypothesis survives only if it reproduces every admission and every
// 429. The server decided each request somewhere between the send and the
// response; an outcome is checked against that interval, so a loaded
// machine loosens the fit but never breaks it (when every family is ruled
// out, the fits start again with twice the tolerance, at most three
// times). The families, and the behaviour that tells them apart:
//
//   - token bucket (GCRA, leaky bucket, nginx limit_req with nodelay):
//     request n is admitted iff tₙ ≥ TAT − (b−1)·T, where TAT grows by T
//     with each admission (and, if rejected requests count, with each
//     429). After exhaustion it refills one per T after your last
//     admission; in any span it admits at most b + span/T. The fit keeps,
//     per period T on a grid 0.2 % apart, the range of b the events allow,
//     in one pass per event.
//   - fixed window: nothing is admitted until an instant, then the whole
//     quota at once, and that instant does not depend on when you sent:
//     windows aligned to the clock (boundaries φ + k·W; "epoch" when φ is
//     a multiple of W since the Unix epoch) or opening at the first
//     request after the last window ended (boundary = that request + W).
//     Each reopening brackets a boundary between the last 429 and the
//     admission after it, and no boundary lies between that admission and
//     the next 429 (it would have admitted the 429); the fit intersects
//     these brackets on the circle of phases for every W on a grid.
//   - sliding window (current + previous × (1 − elapsed/W) < quota, as
//     HAProxy's http_req_rate and Cloudflare count): a full quota at once,
//     then nothing until the aligned window ends, then a trickle of one
//     per W/quota as the old window's weight decays. No token bucket
//     explains the dead time (it would have refilled after T), no fixed
//     window the trickle (it would have refilled all at once); the
//     trickle is fitted as a bucket, and W = quota × its period.
//   - concurrency (nginx limit_conn, GitHub's 100 concurrent): the burst's
//     first 429 came while every admitted request was still in flight.
//     The test keeps exactly n in flight for 3n+6 requests, which a
//     concurrency limit admits however fast they follow one another, then
//     sends one more while n are in flight, twice, which it rejects at
//     once. A limiter that counts time, not overlap, rejects the stream.
//   - a limiter that delays instead of rejecting (nginx limit_req without
//     nodelay): its admitted requests, sent together, are answered one
//     interval apart; the spacing of their responses is the rate and the
//     number admitted the burst. This is "delayed then admitted", not
//     "rejected while overlapping": it is not a concurrency limit.
//   - whether rejected requests count: both variants of the token bucket
//     and of the trickle are fitted. A limiter that counts them never
//     recovers while you keep sending, and does after a pause: the 429s
//     the probe sends move its next admission, and only the counting
//     variant predicts where it is. When both variants survive (or for a
//     fixed window, which forgets its 429s at its end) it is null.
//
// Confidence is 0.95 when one family survives with its period pinned to
// 2 % and its count to one, and falls as the range widens or several
// families survive.
//
// # Politeness
//
// After the burst's first 429 the probe never sends into a wall at the
// maximum rate. Each next request is planned from the surviving
// hypotheses: never before every one of them expects an admission again,
// after an admission when 85 % of them expect one (a bucket with tokens
// left is drained at once: all of them agree), and after a 429 on an
// exponential backoff from 100 ms, doubling with each further 429 up to
// --max-wait, or sooner when the hypotheses say exactly when (a bucket's
// next token). A Retry-After (or a 429 body's exact delay, or a reset when
// the response says nothing remains) is honoured: no request goes before
// it. So about one request in seven meets a 429 once the numbers are
// roughly known, and the backoff spends a handful more while they are not.
//
// # Steps
//
//  1. advertised: one request; every rate-limit header is parsed, and the
//     limits endpoint (when given) is read.
//  2. explore: the burst and the planned probes above, until one family
//     is left with its numbers pinned (or the step's bounds).
//  3. scope: with a --vary variable, step 2 again with a fresh value per
//     request, once the limit is full again: if no 429 comes, the limit
//     was per resource; if the burst admits what the first limit's quota
//     does, it is the same limit (not per resource) and the step ends
//     there; otherwise it is a broader limit (per endpoint), measured in
//     full. With a second credential, a burst alternating the two clients:
//     if together they are admitted about twice the quota, the limit is
//     per client, otherwise the clients share it.
//
// # Safety
//
// Every request passes one gate that enforces the budget (a hard count)
// and the maximum rate (consecutive sends are never closer than 1/max-rate
// in the client's clock). A run of consecutive 5xx responses or network
// errors stops the probe, which then reports what it learned and why it
// stopped; so does cancelling the context (Ctrl-C).
package probe
