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
// response, both read on the client's monotonic clock; an outcome is
// checked against that measured interval, with no fixed margin, so a
// loaded machine (slow answers, wide intervals) loosens the fit but never
// breaks it. A server whose clock is coarser than the loopback round trip
// can still put a decision just outside; when every family is ruled out
// the fits start again with margins of 0.5, 1 and 2 ms. The families, and
// the experiments that tell them apart:
//
//   - token bucket (GCRA, leaky bucket, nginx limit_req with nodelay):
//     request n is admitted iff tₙ ≥ TAT − (b−1)·T, where TAT grows by T
//     with each admission (and, if rejected requests count, with each
//     429). After exhaustion it refills one per T after your last
//     admission; in any span it admits at most b + span/T. The fit keeps,
//     per cell of periods 0.2 % wide, TAT as an interval (the decision
//     instant is known to its interval, the period to its cell) and the
//     range of b the events allow, in one pass per event. A point
//     estimate of either drifts a whole period over a thousand
//     admissions at 500/s and rules out the truth. A bucket counts as
//     measured only once it has been seen rejecting over a whole refill
//     of its burst (b·T) after it first reopened: over less, a sliding
//     window whose trickle a bucket that counts 429s matches explains
//     the same answers; a window paced at the bucket's rate admits every
//     request, and the drain that sixteen admissions in a row start shows
//     its capacity.
//   - fixed window: nothing is admitted until an instant, then the whole
//     quota at once, and that instant does not depend on when you sent:
//     windows aligned to the clock (boundaries φ + k·W; "epoch" when φ is
//     a multiple of W since the Unix epoch) or opening at the first
//     request after the last window ended (boundary = that request + W).
//     Each reopening brackets a boundary between the last 429 and the
//     admission after it, and no boundary lies between that admission and
//     the next 429; the fit intersects these brackets on the circle of
//     phases for every W on a grid. The planner sends one request past
//     the quota in each window (the 429 that closes it; without it two
//     windows read as one). A window that rejects holds exactly the
//     quota, the last q admissions before its 429, so a run of more than
//     q admissions without a 429 holds a boundary just before its last q:
//     a first burst that starts late in a window admits what is left of
//     it and the whole next one (q+1 to 2q), and places that boundary
//     between two of its requests. The quota is what each reopening
//     admits (each starts a fresh window); until one ends, the first
//     burst's count, which a straddling burst makes too large. A window
//     is "epoch" when a round length (whole seconds, halves or tenths)
//     within the fitted W's grid cell leaves a phase of 0: the grid's
//     own W is only near the truth, and its phase mod W of instants
//     1.8e9 s from the epoch says nothing of multiples of the true one.
//     Two experiments separate what the brackets alone do not:
//     a late drain tells a window from a bucket of the same numbers
//     (b = quota, T = W/quota): after a reopening the probe waits a third
//     of a window before it spends the quota, and drains the next
//     reopening at once. A window refills all at once at its boundary
//     however late its quota was spent; the bucket holds only two thirds
//     of its burst there.
//     A whole-second Retry-After brackets a boundary in (at+d−1, at+d];
//     sent right after the quota, every window's 429 brackets it the same
//     way (20 per 5 s: 4.22–5.22 s, window after window), so the probe
//     sends the 429 that closes a window when the middle of the
//     boundaries still standing is a whole number of seconds away, and
//     its d says on which side the boundary lies: each window halves
//     them. A late start tells the two kinds of window apart, once W is
//     known to 10 %: the probe sends the first request of a window half a
//     window after the latest end a first-request window predicts. An
//     aligned window still ends at its boundary, half a window later; a
//     window opened by that request ends a whole window after it. (An
//     aligned window usually rules the other kind out by itself: the
//     first burst starts at some phase in it, so the first reopening
//     comes less than a window after the burst, the next ones a window
//     apart.) The late start leaves its own boundary anywhere in the
//     wait, which an aligned window 1.25 times as long explains; the
//     next window, opened at once, does not fit that lattice, so late
//     starts are never planned in consecutive windows, and a step whose
//     two kinds both still stand goes on (to its bounds) rather than end
//     on a window whose start is unknown. What tells them apart is that
//     a window opened by the first request carries the late start's
//     delay into every boundary after it, and an aligned one does not:
//     after a late start, and a window opened at once, the two kinds put
//     the next reopening apart (the aligned aliases that fit the late
//     start's wait, 1.25 to 1.3 windows long, more than a second later
//     for 5 s). No late start is planned when the two kinds already
//     expect the next opening apart (three quarters of the aligned
//     windows after the latest end a first-request window predicts, or
//     before its earliest): the search after a 429 then tells them by
//     itself, where a late start would cost a window and leave the
//     aligned boundary anywhere in its wait (a 10 s window aligned to the
//     epoch, its first burst just after a boundary, ended its step with
//     both kinds standing after two late starts; our own 20 per 5 s from
//     the first request without headers ended its step after about 40 s,
//     a late start or two and eight windows, where planning another late
//     start had it end at its 45 s with both kinds standing).
//   - a window that every request restarts (HAProxy's http_req_cnt in a
//     stick-table entry that expires W after it was last touched): the
//     first request after a silence of W opens it, every request, a 429
//     too, counts and moves its end to W after itself, and above the
//     quota it rejects. It admits the quota after a silence of W and
//     nothing while the client keeps sending less than W apart, which a
//     window opened by the first request (or aligned) does not: it
//     reopens at its end however often the client sent. Its rejected
//     requests count (counts_rejected true); where it starts is "first
//     request". The fit simulates the counter for every W of the grid
//     and the quota, each gap between decisions longer, shorter or
//     either way than W. It stands only once no bucket does (like the
//     sliding window: a bucket's trickle is told by the bucket's own
//     experiments). Its 429 restarts it, so a server's delay is the
//     window itself from the same instant: W lies in every claim's
//     (d−1, d], and one such window says the same d to every 429 (a
//     window from the first request says 4 or 5 s by phase). Two
//     experiments separate it from the other windows:
//     when they all reopen later than its longest W after the last
//     request, a pause of that long (only it admits); otherwise keep
//     sending, each request less than its shortest W after the last,
//     until the latest end of a window opened by the first request (only
//     that one admits), at most eight such requests in a step. Late
//     starts wait until it is ruled out. A sliding window that counts
//     its 429s never recovers while the client keeps sending either: while
//     one stands beside it the probe plans for both, does not end the
//     step on this window, and reports the sliding window if both
//     still stand at the step's end (HAProxy's http_req_rate read as
//     this window, 50 per 6.4 s, in 1 of 3 runs before).
//   - sliding window (HAProxy's http_req_rate, Cloudflare's count,
//     ratelab's sliding): a window of W holds curr requests and the one
//     before it prev, and a request at elapsed e is admitted iff
//     curr + prev·(1 − e/W) < quota (HAProxy's ⌊⌋ in milliseconds is the
//     same test; ratelab's ≤ quota − 1 is the other rounding, fitted
//     too). A full quota at once, then nothing until the window ends,
//     then a trickle as prev's weight decays: no token bucket explains
//     the dead time, no fixed window the trickle (a bucket fitted to the
//     trickle breaks at the next boundary, where prev changes). The fit
//     is exact, with no grid: once it is known which window each request
//     fell in, the counts are known, and every answer is a linear
//     inequality in W and the end E of the current window; so the windows
//     that place every request alike (with one quota, rounding and
//     choice of whether 429s count) form a convex polygon in (E, W). A
//     request that may lie on either side of a boundary splits a polygon,
//     an answer cuts it, and polygons with the same counts are joined
//     (their hull). A grid of W 1 % apart and 200 phases lost HAProxy's
//     10 s in about one run in five, the truth between its points; the
//     polygons keep every window the answers allow, and no other, and
//     the probe goes on until they span 4 % of W. To get there it probes
//     where the windows disagree: while W spans more than 4 %, the next
//     request after an admission goes halfway between the instants at
//     which the shortest and the longest windows standing admit again,
//     so that either answer rules out one end. (Where nearly all of them
//     expect an admission, the planner's usual place, an answer cuts the
//     polygons along E: a trickle paced a little behind the threshold is
//     admitted every time and leaves W where it was, and HAProxy's
//     window ran to the step's 30 s in 3 of 10 runs.) No fixed window is
//     an answer while a sliding window stands, and the planner follows
//     both: HAProxy's sliding window, which counts its 429s, reopens only
//     after a silence, as a window that every request restarts does;
//     the trickle after the reopening tells them apart. A sliding
//     window is an answer only once whether its 429s count is known too
//     (or at the step's bounds).
//   - concurrency (nginx limit_conn, GitHub's 100 concurrent): the burst's
//     first 429 came while every admitted request was still in flight.
//     The test keeps exactly n in flight for 3n+6 requests, which a
//     concurrency limit admits however fast they follow one another, then
//     sends one more while n are in flight, twice, which it rejects at
//     once. A limiter that counts time, not overlap, rejects the stream,
//     and its first 429 there ends the test: once nothing is in flight
//     the step goes on as a rate limit's, with the backoff (a rate limit
//     whose admissions are slow and whose 429s are quick looks like a
//     concurrency limit in the burst; kept in flight, it would get a 429
//     for every request at the maximum rate).
//   - a limiter that delays instead of rejecting (nginx limit_req without
//     nodelay): its admitted requests, sent together, are answered one
//     interval apart; the spacing of their responses is the rate and the
//     number admitted the burst. This is "delayed then admitted", not
//     "rejected while overlapping": it is not a concurrency limit.
//   - whether rejected requests count: both variants of the token bucket
//     and of the sliding window are fitted. A limiter that counts them
//     never recovers while you keep sending, and does after a pause: the
//     429s the probe sends move its next admission, and only the counting
//     variant predicts where it is. The probe's steady share of 429s can
//     let a counting bucket with a slightly shorter period mimic one that
//     does not count; when both stand, each pinned, the probe pauses
//     (half a burst's worth of periods, no 429s) and drains: the faster
//     bucket holds more tokens after the pause. When both variants
//     survive (or for a fixed window, which forgets its 429s at its end)
//     counts_rejected is null; a bucket's rate is then that of the
//     variant that does not count, the slower one, which a client below
//     it meets neither way.
//
// A Retry-After (or a reset with nothing remaining) is a claim that no
// request before it would be admitted. The probe honours it, so it can
// test the claim only at its end (a window must reopen there, with its
// whole quota); the fits take it as a rejection one second before the
// end (the header's rounding: the claimed end lies in (at+d−1, at+d]),
// or 5 ms before it when a 429 body gave the delay in milliseconds,
// which counts nothing. Without it a bucket that refills in a fraction
// of the advertised wait would explain every answer of a polite probe,
// and a window opened by the first request, which the probe honouring
// an exact delay reopens the instant it ends, would be any length from
// the 429 to that instant. When it leaves no family standing (a server
// whose Retry-After overstates), the widened fits drop the claims.
// The fixed-window fits take the claim's end as an upper bound too: the
// server decided the 429 no later than its response, so it said the
// window reopens by the response plus the delay, and the boundary before
// the next opening lies no later (unless a 429 decided after that
// instant says otherwise). Without it, each reopening brackets its
// boundary only to the probe's honouring request, up to a second after
// it, and aligned windows with a boundary anywhere in that second stood
// beside a window opened by the first request until the step's end
// ("start unknown", our own 20 per 5 s with GitHub headers, 1 run in 5).
// Claims alone never decide the family or where windows start (the
// answers must rule the other kinds out), and they give
// a window's length only for an aligned window, when the step between
// the claimed instants lies within the measured range: whole-second
// headers make that step a second short as easily as right (20 per 2 s
// read as 20 per 1 s), and the claimed instants of windows opened by a
// request are a window plus the wait for that request apart.
//
// The quota a step's first response says is left (RateLimit r,
// X-RateLimit-Remaining), plus one, is a burst the bucket has at least:
// a bucket not quite full shows less. A client whose responses come late
// (a loaded machine) cannot rule out a bucket much faster than the true
// one with a burst of a few, since each 429 of a drain could have reached
// the server right behind the request before it; when the buckets of the
// advertised burst or more are pinned, the step ends there, and the
// evidence names the smaller bursts only the header set aside (the
// confidence falls by 15 %).
//
// A fixed window shows one boundary a window, and a 45 s step fits four
// of a 10 s window: its length may still be a few percent wide when the
// step ends. Two readings narrow it, each a hypothesis the measurement
// verifies, never the answer alone. With headers, the resets the 429s
// advertise step by the length (claimedWindow): once the measured range
// is within 5 % and holds that step, the window is pinned to it. Without
// headers, an aligned window's boundaries either fall on multiples of a
// round length since the Unix epoch (a whole second, a half or a tenth)
// or do not: after three reopenings, when exactly one round length
// within a measured 5 % fits every bracket so (epochWindow), the window
// is pinned to it; a wider range (up to 15 %) at the step's bound is
// reported at the roundest such length, not its middle. Each reading is
// within the measured range, so a window that fits one by chance is off
// by no more than that range.
//
// Confidence is 0.95 when one family survives with its period pinned to
// 2 % and its count to one, and falls as the range widens or several
// families survive. A step that reaches its time bound first ends at once
// (not at the instant of a probe the bound would refuse), and a note
// says its numbers are the range that still stood.
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
// next token). Once only fixed windows stand, a probe after a 429 goes
// where a quarter of them expect the window open again (the backoff's
// lead had a window of 5 s known to 30 % after six windows, at six 429s
// each): each 429 rules out a quarter of what is left, and the admission
// that ends the search comes soon after the boundary, so that the
// bracket it leaves (the last 429 to that admission) is narrow; two
// brackets k windows apart give W to their widths over k. Each family
// weighs the same, and an aligned window of length W as much as its
// standing phases are a part of W: a phase uniform on the circle
// explains what was seen with that chance. Counted alike, the windows of
// the grid (log-spaced up to twice the longest wait) are mostly long
// after one reopening, which bounds W only from below, and the median
// probe after the first reopening of a 10 s window came 30 s later;
// weighed, the median aligned window is about twice the shortest still
// standing. While a window that every request restarts stands, the
// probe goes at the median of the hypotheses instead: that window is
// halved on its own, since each 429 moves its end. A Retry-After (or a 429 body's exact delay, or a reset when
// the response says nothing remains) is honoured: no request goes before
// it. So about one request in seven meets a 429 once the numbers are
// roughly known, and the backoff spends a handful more while they are not.
//
// # Steps
//
//  1. advertised: one request; every rate-limit header is parsed, and the
//     limits endpoint (when given) is read.
//  2. explore: the burst and the planned probes above, until one family
//     is left with its numbers pinned (or the step's bounds: by default
//     45 s, since a fixed window shows a boundary once a window, and
//     telling where a 10 s window starts takes four or five of them at
//     some start phases).
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
