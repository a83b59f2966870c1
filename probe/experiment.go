package probe

import (
	"math"
	"sort"
	"time"
)

// experiment plans the one step that measures a limit: a burst at the
// maximum rate until the first 429, then, depending on what the burst
// showed, the concurrency test, or polite probes placed where the
// hypotheses still consistent with everything seen disagree. See doc.go.
type experiment struct {
	minGap  time.Duration
	maxWait time.Duration
	// prior are events of the same limit before the step (the advertised
	// request), in Unix seconds.
	prior []event
	// same, when set, ends the step right after the burst if it reports
	// that the burst's admissions (before the first 429) are those of a
	// limit already measured: the scope steps look for other limits.
	same func(admitted int, from, to float64) bool
	// grow, when set, is the step's request cap for a limit whose burst
	// admitted that many: a step capped by what an earlier limit needed
	// (the scope step) needs more for a larger one.
	grow func(admitted int) int

	mode string // "" until the burst is read; then modeDelayed, modeConcurrency or modeRate
	// The fits, as of fitN events.
	fitN    int
	tMin    float64
	all     []hyp // token buckets over every event
	sliding []hyp // sliding windows, once no token bucket explains everything
	// The events so far (see events), from st.obs[:evFrom].
	evs       []event
	evFrom    int
	evWidened int
	evStart   time.Time
	// claim is the last 429's claim, added to the events once the next
	// request is sent after it (see claimOf).
	claim *event
	// widened counts the times every family was ruled out and the fits
	// started again with twice the timing tolerance (a loaded machine).
	widened int
	allFit  *bucketFit
	// advFloor, when set, is the burst the server advertised, below which
	// the buckets the answers allow were set aside (see settled).
	advFloor int64
	slFit    *slideFit
	wins     []winHyp
	// winGrid is the windows the cycles still allow, at the tolerance
	// of winWidened.
	winGrid    []winGrid
	winWidened int
	// winQ is the quota winGrid was fitted with (see windowQuota).
	winQ int64
	// idle is the windows reset by silence (every request restarts
	// them), fitted over every event once a window reopened.
	idle *idleFit
	done string // why the plan ended

	// The concurrency test.
	conc concTest

	// drain: the bucket's level is unknown (sixteen admissions in a row):
	// requests from drainFrom on go at the maximum rate until a 429.
	drain     bool
	drainFrom int
	// drainAt is when the drain's first request goes (after a pause).
	drainAt time.Duration
	// lateDrains and lateStarts count the experiments that tell a fixed
	// window from a bucket, and one aligned to the clock from one that
	// opens at the first request (see ratePlan).
	lateDrains, lateStarts int
	// lateDrainCycle is the number of cycles at the last late drain.
	lateDrainCycle int
	// lateStart is the late start planned while the cycles numbered
	// lateStartCycle.
	lateStart      time.Duration
	lateStartCycle int
	// keepSends counts the requests sent to tell a window that every
	// request restarts from the other kinds (see keepSending).
	keepSends int
	// keepSentAt is the number of events when the last was planned.
	keepSentAt int
	// pauses counts the pauses made to tell the two variants of a token
	// bucket apart (see ratePlan).
	pauses int
}

const (
	modeDelayed     = "delayed"
	modeConcurrency = "concurrency"
	modeRate        = "rate"
)

// concTest is the state of the concurrency test: keep n requests in
// flight for a while (a concurrency limit admits them all, however fast
// they follow each other), then send one more while n are in flight
// (which it rejects at once).
type concTest struct {
	n          int
	streamFrom int // index of the first request of the test
	extra      int // extra requests sent while n were in flight
	lastExtra  int
}

// streamRejected reports whether a request of the in-flight test's
// stream (not one of its extra requests, which are meant to be rejected)
// was answered 429.
func (c *concTest) streamRejected(st *stepState) bool {
	end := min(len(st.obs), c.streamFrom+3*c.n+6)
	for _, o := range st.obs[min(c.streamFrom, end):end] {
		if o.done && o.rejected() {
			return true
		}
	}
	return false
}

// unix0 is the step's start in Unix seconds.
func unix0(st *stepState) float64 { return float64(st.start.UnixNano()) / 1e9 }

// events returns the step's answered requests (admitted or 429) as fit
// events, after the prior ones.
func (e *experiment) events(st *stepState) []event {
	u := unix0(st)
	if e.evs == nil || e.evWidened != e.widened || e.evStart != st.start {
		e.evs, e.evFrom, e.evWidened, e.evStart = append([]event(nil), e.prior...), 0, e.widened, st.start
		e.claim = nil
	}
	// Responses arrive in any order: convert the answered prefix only.
	for ; e.evFrom < len(st.obs) && st.obs[e.evFrom].done; e.evFrom++ {
		o := st.obs[e.evFrom]
		if o.admitted() || o.rejected() {
			t := u + o.at.Seconds()
			if e.claim != nil && t > e.claim.hi {
				e.evs = append(e.evs, *e.claim)
			}
			e.claim = nil
			tol := evTol(e.widened)
			e.evs = append(e.evs, event{t: t, adm: o.admitted(), lo: t - tol, hi: u + o.end.Seconds() + tol})
			if c, ok := claimOf(o, t, e.allFit != nil && len(e.all) == 0); ok && e.widened == 0 {
				e.claim = &c
			}
		}
	}
	return e.evs
}

// claimOf returns the claim a 429 makes: nothing is admitted before its
// Retry-After (or its reset, when it says nothing remains), less the
// delay's rounding. A header's delay or reset is in whole seconds (an
// epoch reset too: the instant is rounded), so the end it claims lies
// anywhere in its last second and the claim is a rejection one second
// before the end; a 429 body's milliseconds (ratelab's retryAfterMs) are
// exact to the clocks' few milliseconds, and the claim is a rejection
// 5 ms before the end, once no token bucket stands (exact says so): a
// window's length lies between its 429 and the instant the probe,
// honouring the delay, reopens it, and only the exact claim narrows it;
// a bucket is measured by its own 429s, and a claim that exact makes a
// window of one per W, its boundaries wherever the probe came back, look
// as good as a bucket of burst 1. The probe honours the claim, so it can
// test it only at its end (see doc.go); a claim counts nothing.
func claimOf(o *obs, t float64, exact bool) (event, bool) {
	d := o.retryAfter
	if d <= 0 && o.remaining == 0 {
		d = o.reset
	}
	if !o.rejected() || d <= 0 {
		return event{}, false
	}
	round := time.Second
	if exact && o.exactRetry && d == o.retryAfter {
		round = 5 * time.Millisecond
	}
	if d <= round+round/2 {
		return event{}, false
	}
	c := t + (d - round).Seconds()
	return event{t: c, lo: c, hi: c, claim: true, end: t + d.Seconds(), claim0: c, endHi: t + (o.end - o.at + d).Seconds()}, true
}

func outstanding(st *stepState) int {
	n := 0
	for _, o := range st.obs {
		if !o.done {
			n++
		}
	}
	return n
}

// plan is the step's planner (see step.plan).
func (e *experiment) plan(st *stepState) (time.Duration, bool, bool) {
	if e.done != "" {
		return 0, false, true
	}
	if st.firstReject < 0 {
		// The burst: as fast as the gate allows, until the first 429.
		if e.mode == modeConcurrency {
			return e.concPlan(st)
		}
		return 0, false, false
	}
	if e.mode == "" {
		if outstanding(st) > 0 {
			return 0, true, false
		}
		e.mode = readBurst(st, e.minGap, &e.conc)
		a := admittedBefore(st.obs, st.firstReject)
		if e.same != nil && e.same(a, unix0(st), unix0(st)+st.obs[st.firstReject].end.Seconds()) {
			e.done = "the limit already measured"
			return 0, false, true
		}
		if e.grow != nil && st.maxRequests > 0 {
			st.maxRequests = max(st.maxRequests, e.grow(a))
		}
		if e.mode == modeDelayed {
			e.done = "the limiter delays excess requests: their spacing is the rate"
			return 0, false, true
		}
	}
	if e.mode == modeConcurrency {
		return e.concPlan(st)
	}
	if e.drain {
		// A drain runs at the maximum rate without planning each request
		// (the fits take longer than a bucket of 500/s refills), one
		// request at a time (overlapping ones reach the server in any
		// order, which skewed the fitted rate by 4 %), until its first 429:
		// from then on each request is planned again.
		if rejectedSince(st, e.drainFrom) {
			e.drain = false
		} else if outstanding(st) == 0 {
			return e.drainAt, false, false
		} else {
			return 0, true, false
		}
	}
	if outstanding(st) > 0 {
		return 0, true, false
	}
	return e.ratePlan(st)
}

// rejectedShare is the share of the step's answers that were 429s.
func rejectedShare(st *stepState) float64 {
	n, r := 0, 0
	for _, o := range st.obs {
		if o.done {
			n++
			if o.rejected() {
				r++
			}
		}
	}
	if n == 0 {
		return 0
	}
	return float64(r) / float64(n)
}

// rejectedSince reports whether a request sent at index from or later
// was answered 429.
func rejectedSince(st *stepState, from int) bool {
	for _, o := range st.obs[min(from, len(st.obs)):] {
		if o.rejected() {
			return true
		}
	}
	return false
}

// readBurst classifies the burst once every response is in: a limiter
// that delayed the admitted requests (their responses spaced evenly while
// they were sent together), one that rejected only while requests
// overlapped (a concurrency limit candidate), or one that rejected on
// time alone.
func readBurst(st *stepState, minGap time.Duration, ct *concTest) string {
	var adm []*obs
	for _, o := range st.obs {
		if o.admitted() {
			adm = append(adm, o)
		}
	}
	if len(adm) < 2 {
		return modeRate
	}
	lats := make([]time.Duration, len(adm))
	for i, o := range adm {
		lats[i] = o.end - o.at
	}
	sorted := append([]time.Duration(nil), lats...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	lo, med, hi := sorted[0], sorted[len(sorted)/2], sorted[len(sorted)-1]
	if d, ok := delaySpacing(adm); ok && hi-lo >= 50*time.Millisecond && hi-lo > 3*time.Duration(len(adm)-1)*minGap {
		_ = d
		return modeDelayed
	}
	// Overlap: at the first 429, how many admitted requests were still in
	// flight.
	first := st.obs[st.firstReject]
	inFlight := 0
	for _, o := range adm {
		if o.at < first.at && o.end > first.at {
			inFlight++
		}
	}
	if med >= 5*time.Millisecond && med >= 3*minGap && inFlight >= len(adm)-1 && inFlight >= 1 {
		ct.n = maxOverlap(adm)
		ct.streamFrom = len(st.obs)
		return modeConcurrency
	}
	return modeRate
}

// delaySpacing fits the response times of admitted requests against their
// rank: a limiter that queues excess requests answers them one interval
// apart. It returns the interval and whether the fit is regular (each
// spacing within 25 % of it, at least two spacings).
func delaySpacing(adm []*obs) (time.Duration, bool) {
	ends := make([]float64, len(adm))
	for i, o := range adm {
		ends[i] = o.end.Seconds()
	}
	sort.Float64s(ends)
	// The first is answered at once; the queued ones follow.
	ends = ends[1:]
	if len(ends) < 3 {
		return 0, false
	}
	n := float64(len(ends))
	var mx, my, sxy, sxx float64
	for i, y := range ends {
		mx += float64(i)
		my += y
	}
	mx /= n
	my /= n
	for i, y := range ends {
		sxy += (float64(i) - mx) * (y - my)
		sxx += (float64(i) - mx) * (float64(i) - mx)
	}
	slope := sxy / sxx
	if slope <= 0 {
		return 0, false
	}
	for i := 1; i < len(ends); i++ {
		if d := ends[i] - ends[i-1]; math.Abs(d-slope) > 0.25*slope {
			return 0, false
		}
	}
	return time.Duration(slope * float64(time.Second)), true
}

// maxOverlap returns the most admitted requests in flight at once.
func maxOverlap(adm []*obs) int {
	best := 0
	for _, a := range adm {
		n := 0
		for _, b := range adm {
			if b.at <= a.at && b.end > a.at {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

// concPlan keeps n requests in flight for 3n+6 requests, then sends one
// more while n are in flight, three times.
func (e *experiment) concPlan(st *stepState) (time.Duration, bool, bool) {
	c := &e.conc
	sent := len(st.obs) - c.streamFrom
	out := outstanding(st)
	if c.streamRejected(st) {
		// A concurrency limit admits every request of a stream that keeps
		// n in flight, so one 429 in it refutes the hypothesis (slow
		// admissions and quick 429s looked like one). Stop the test there
		// rather than keep n in flight into a limiter that rejects each
		// request at once: once nothing is in flight, the step goes on as
		// a rate limit's, with its backoff after 429s.
		if out > 0 {
			return 0, true, false
		}
		e.mode = modeRate
		return e.ratePlan(st)
	}
	switch {
	case sent < 3*c.n+6:
		if out < c.n {
			return 0, false, false
		}
		return 0, true, false
	case c.extra < 3 && sent < 2*(3*c.n+6):
		// The extra requests go while n are in flight; a limiter that
		// answers too fast ever to hold n gets no more than another
		// stream's worth of attempts.
		if out < c.n {
			if c.extra > 0 && !st.obs[c.lastExtra].done {
				return 0, true, false
			}
			return 0, false, false
		}
		if c.extra > 0 && !st.obs[c.lastExtra].done {
			return 0, true, false
		}
		c.extra++
		c.lastExtra = len(st.obs)
		return 0, false, false
	}
	if out > 0 {
		return 0, true, false
	}
	e.done = "concurrency test complete"
	return 0, false, true
}

// refit brings the hypotheses up to date with the step's events.
func (e *experiment) refit(st *stepState) []event {
	evs := e.events(st)
	if len(evs) == e.fitN {
		return evs
	}
	if e.allFit == nil {
		e.tMin = math.Max(e.minGap.Seconds()/4, 0.0002)
		e.allFit = newBucketFit(e.tMin, math.Max(e.maxWait.Seconds(), 1), 1.002)
	}
	e.allFit.add(evs)
	e.all = e.allFit.hyps(kindGCRA)
	cs := cycles(evs)
	if len(cs) >= 2 {
		if len(e.all) == 0 {
			// Sliding windows matter only once no bucket explains
			// everything: a reopening that admits less than the first
			// burst after a dead time.
			if e.slFit == nil {
				e.slFit = e.newSlideFit(evs, cs)
			} else {
				e.slFit.add(evs)
			}
			e.sliding = e.slFit.hyps()
		}
		if e.winGrid == nil || e.winWidened != e.widened {
			grid := periodGrid(0.02, 2*math.Max(e.maxWait.Seconds(), 1), 1.001)
			e.winGrid = newWinGrid(grid)
			e.winWidened = e.widened
			q := cs[0].M
			e.idle = newIdleFit(grid, []int64{q - 1, q, q + 1})
			e.winQ = windowQuota(cs)
		}
		if q := windowQuota(cs); e.winQ != q {
			// A new quota (a reopening that admits less than the first
			// burst, which straddled a boundary) changes what every cycle
			// says to the other windows: a new grid for them.
			e.winGrid = newWinGrid(periodGrid(0.02, 2*math.Max(e.maxWait.Seconds(), 1), 1.001))
			e.winQ = q
		}
		e.wins = fitWindows(cs, &e.winGrid)
		if len(e.all) == 0 {
			// Like sliding windows, windows that every request restarts
			// matter only once no bucket explains everything (a burst of
			// q after a silence, and nothing while the client keeps
			// sending): while a bucket stands, its trickle is told by the
			// bucket's own experiments.
			e.idle.add(evs)
			e.wins = append(e.wins, e.idle.hyps()...)
		}
	}
	e.fitN = len(evs)
	if len(e.all) == 0 && len(e.wins) == 0 && len(e.sliding) == 0 && e.widened < 3 && len(evs) > 0 {
		e.widened++
		e.allFit, e.slFit, e.sliding, e.fitN = nil, nil, nil, 0
		return e.refit(st)
	}
	return evs
}

// hypotheses returns the hypotheses the planner follows: the token
// buckets, fixed windows and sliding windows fitted to every event.
func (e *experiment) hypotheses(evs []event) []hyp {
	hs := append([]hyp(nil), e.all...)
	cs := cycles(evs)
	last := evs[len(evs)-1]
	for _, w := range e.wins {
		lo, hi := w.nextLo, w.nextHi
		if c := cs[len(cs)-1]; last.adm && (c.M < w.q || c.M == w.q && len(e.all) == 0) {
			// Up to the quota, and, once no bucket stands, one more:
			// the 429 that shows the window spent (without it two
			// windows read as one).
			lo, hi = last.t, last.t
		}
		hs = append(hs, hyp{kind: w.kind, period: w.W, n: w.q, next: lo}, hyp{kind: w.kind, period: w.W, n: w.q, next: hi})
	}
	// Sliding windows once no bucket stands (they are fitted only then),
	// beside fixed windows that still stand: the planner weighs each
	// family the same, so it probes where they disagree (a window that
	// every request restarts and a sliding window that counts its 429s
	// both never recover while the client keeps sending).
	return append(hs, e.sliding...)
}

// onlyIdle reports whether the only fixed windows standing are ones that
// every request restarts.
func (e *experiment) onlyIdle() bool {
	for _, w := range e.wins {
		if w.kind != kindFixedIdle {
			return false
		}
	}
	return len(e.wins) > 0
}

// ratePlan places the next probe: never before every hypothesis says the
// limiter admits again; at the time by which 85 % of them say so (so that
// about one probe in seven meets a 429), but, after a 429, no later than
// an exponential backoff from 100 ms (doubling with each further 429, up
// to the maximum wait) and never sooner than the server's Retry-After.
func (e *experiment) ratePlan(st *stepState) (time.Duration, bool, bool) {
	evs := e.refit(st)
	if why := e.settled(evs, st); why != "" {
		e.done = why
		return 0, false, true
	}
	u := unix0(st)
	rel := func(t float64) time.Duration { return time.Duration((t - u) * float64(time.Second)) }
	var last *obs
	k := 0
	for i := len(st.obs) - 1; i >= 0; i-- {
		o := st.obs[i]
		if !o.admitted() && !o.rejected() {
			continue
		}
		if last == nil {
			last = o
		}
		if !o.rejected() {
			break
		}
		k++
	}
	if last == nil {
		return 0, false, false
	}
	hs := e.hypotheses(evs)
	lo, q := last.at, time.Duration(math.MaxInt64)
	if len(hs) > 0 {
		lo = time.Duration(math.MaxInt64)
		for _, h := range hs {
			lo = min(lo, rel(h.next))
		}
		q = rel(nextQuantile(hs, 0.9)) + 2*time.Millisecond
		lo += time.Millisecond
	}
	// A bucket (or the trickle of a sliding window) admits one per T.
	var T time.Duration

	src := e.all
	if len(src) == 0 && len(e.wins) == 0 {
		src = e.sliding
	}
	pinned := false
	if len(src) > 0 {
		s := merge(summarize(src))
		T = time.Duration(math.Sqrt(s.pLo*s.pHi) * float64(time.Second))
		pinned = s.pHi <= 1.1*s.pLo
	}
	shift := min(max(k-1, 0), 30)
	backoff := min(100*time.Millisecond<<shift, e.maxWait)
	floor := min(10*time.Millisecond<<shift, e.maxWait)
	now := time.Since(st.start)
	var t time.Duration
	switch {
	case k == 0 && len(e.all) == 0 && len(e.sliding) == 0 && len(e.wins) > 0 && e.wholeSeconds(st) && windowSpent(evs, e.wins):
		// The window is spent, and its 429 will say when it reopens in
		// whole seconds: a boundary B claimed as (at+d−1, at+d]. Sent
		// right after the quota, that 429 brackets B the same way in every
		// window (20 per 5 s: 4.22–5.22 s, window after window). Sent
		// when the middle of the boundaries still standing is a whole
		// number of seconds away, its d says on which side of the
		// middle B lies: each window halves them. It waits under a
		// second for that. (Before the late drain's case: its
		// fallthrough runs the next case without testing it, and this
		// wait after every bucket's refill slowed TestProbeTwoTiers'
		// endpoint step past its 100 requests.)
		at := last.at + e.minGap
		if lo, hi := winNextRange(e.wins); hi > lo {
			x := (lo+hi)/2 - (u + at.Seconds())
			if x >= 2 {
				at += time.Duration((x - math.Floor(x)) * float64(time.Second))
			}
		}
		return at, false, false
	case k == 0 && e.windowsMatter() && len(e.all) > 0 && e.lateDrains < 2 && openedNow(evs) && len(cycles(evs)) > e.lateDrainCycle+1:
		// A window just opened, or a bucket refilled: drain it late. A
		// fixed window refills all at once at its next boundary, however
		// late in it the quota was spent; a bucket drained a third of a
		// window late holds only two thirds of its burst there. A third
		// of the shortest window still standing, or of the time since
		// the previous opening (an aligned window opens at most a window
		// after it), keeps the drain inside the window. The opening
		// after it is drained at once: that is where the two differ.
		cs := cycles(evs)
		d := math.Min(minWin(e.wins), cs[len(cs)-1].U-cs[len(cs)-2].U) / 3
		if d >= 0.05 {
			e.lateDrainCycle = len(cs)
			e.lateDrains++
			e.drain, e.drainFrom, e.drainAt = true, len(st.obs), last.at+time.Duration(d*float64(time.Second))
			return e.drainAt, false, false
		}
		fallthrough
	case k == 0 && len(e.wins) > 0 && kindMedianDue(hs, now+e.minGap, rel):
		// A window that just opened, if it is one: test it.
		return 0, false, false
	case k == 0 && e.lateDrainCycle > 0 && len(e.wins) > 0 && len(e.all) > 0 && openedNow(evs) && len(cycles(evs)) == e.lateDrainCycle+1:
		// The opening after a late drain: drain it at once.
		return 0, false, false
	case T > 0 && k == 0:
		// A bucket, after an admission: when 85 % of the hypotheses say
		// the next is admitted (about one probe in seven meets a 429, and
		// a 429 rules out most of them); now, if that is now (a bucket
		// with tokens left is drained at the maximum rate).
		trailing := 0
		for i := len(st.obs) - 1; i >= 0 && !st.obs[i].rejected(); i-- {
			if st.obs[i].admitted() {
				trailing++
			}
		}
		if trailing >= 16 {
			// Sixteen admissions without a 429 leave the bucket's level
			// unknown: drain it.
			e.drain, e.drainFrom, e.drainAt = true, len(st.obs), 0
			return 0, false, false
		}
		if P, ok := e.pauseToTell(); ok {
			// Both variants explain everything, each with its own period:
			// pause, then drain. The probe's steady share of 429s let a
			// bucket that counts them and refills faster mimic one that
			// does not; a pause has no 429s, so the faster one holds more
			// tokens after it, and the drain counts them.
			e.pauses++
			e.drain, e.drainFrom, e.drainAt = true, len(st.obs), last.at+P
			return e.drainAt, false, false
		}
		if s, ok := e.slFit.summary(); ok && len(e.all) == 0 && len(e.wins) == 0 && s.wHi > 1.04*s.wLo {
			// Only sliding windows stand, their length not pinned:
			// probe where the short and the long ones disagree.
			if ts, ok := e.slFit.split(e.slFit.last); ok {
				return max(lo, rel(ts)), false, false
			}
		}
		if q <= now+e.minGap {
			return 0, false, false
		}
		return max(lo, min(q, last.at+2*T)), false, false
	case T > 0:
		// After a 429: 0.3·T of the middle hypothesis, doubling with
		// each further 429, no later than the backoff.
		// While T is not known to 10 %, the backoff: a period taken
		// from a wide range is a guess, and three 429s 20 ms apart
		// after a 10/s bucket's first reopening were a fifth of a
		// short probe's requests.
		wait := (T * 3 / 10) << shift
		if !pinned {
			wait = backoff
		}
		t = max(lo, last.at+floor, last.at+min(wait, backoff))
		if rejectedShare(st) > 0.15 {
			// Near the probe's bound on 429s (a fifth of its requests),
			// as short probes of small buckets come under load (6 of
			// nginx's 29 at 10/s burst 5, two CPU hogs): wait until nine
			// hypotheses in ten say the bucket has refilled.
			t = max(t, min(q, last.at+backoff))
		}
	case k == 0:
		// After an admission: if a whole family says another one is due
		// now, test it (a window that just opened).
		if kindMedianDue(hs, now+e.minGap, rel) {
			return 0, false, false
		}
		if len(hs) == 0 {
			return last.at + 100*time.Millisecond, false, false
		}
		return max(lo, min(q, last.at+e.maxWait)), false, false
	case len(e.wins) > 0 && !hasKind(summarizeWins(e.wins), kindFixedIdle):
		// Fixed windows, after a 429: where a quarter of them (each
		// family weighing the same, an aligned window by how likely its
		// phases make the answers: see boundaryQuantile) expect the
		// window open again. Each 429 rules out a quarter of what is
		// left, and the admission that ends the search comes soon after
		// the boundary: its bracket, the last 429 to that admission, is
		// what pins W and the phase (two brackets k windows apart give W
		// to their widths over k). The median of the hypotheses counted
		// alike (every W of the grid the same) put the probe after the
		// first reopening of a 10 s window 30 s later, the long windows
		// outnumbering the rest, and its bracket was as wide.
		t = max(lo, last.at+floor, min(rel(boundaryQuantile(e.wins, e.sliding, searchQuantile))+time.Millisecond, last.at+e.maxWait))
	case len(e.wins) > 0:
		// Fixed windows among them one that every request restarts,
		// after a 429: at the median of the instants the windows still
		// standing reopen (each family weighing the same), so that each
		// probe halves them whether it is admitted or not. The 90 %
		// quantile, a backoff's lead, left a window of 5 s known to 30 %
		// after six windows, and spent six 429s on each. A window that
		// every request restarts reopens only after a silence of its
		// length: a probe before it is a 429 that moves it, so the median
		// moves with every 429 and the probes come no closer than it.
		// (The quarter above put HAProxy's http_req_cnt at 20.0 % 429s,
		// 16.5 % with the median.)
		t = max(lo, last.at+floor, min(rel(nextQuantile(hs, 0.5))+time.Millisecond, last.at+e.maxWait))
		if ks, ok := e.keepSending(hs, last, rel); ok {
			t = max(last.at+min(backoff, 100*time.Millisecond), ks)
		}
	default:
		t = max(lo, last.at+floor, min(q, last.at+backoff))
	}
	// honour is the instant the server's Retry-After (or reset, when
	// nothing remains) lets the next request go.
	var honour time.Duration
	if last.retryAfter > 0 {
		honour = last.at + last.retryAfter
	} else if last.reset > 0 && last.remaining == 0 {
		honour = last.at + last.reset
	}
	t = max(t, honour)
	if k > 0 && len(e.all) == 0 && e.lateStartCycle == len(cycles(evs)) {
		t = max(t, e.lateStart)
	} else if k > 0 && len(e.all) == 0 && e.lateStarts < 3 && (e.lateStartCycle == 0 || len(cycles(evs)) > e.lateStartCycle+1) {
		if ws := summarizeWins(e.wins); hasKind(ws, kindFixedAligned) && hasKind(ws, kindFixedFirst) && !hasKind(ws, kindFixedIdle) && !e.kindsApart(u+honour.Seconds()) {
			// Both kinds of fixed window stand: start the next window
			// late, half a window past the latest end that one opening
			// at the first request predicts. A window aligned to the
			// clock still ends at its boundary, half a window later; one
			// that opens at the first request ends a whole window after
			// it. An aligned window's first reopening (after a burst at
			// some phase in it) already rules out most first-request
			// ones; this is for the other way round, once the window is
			// known to 10 % (the closing 429's phase halves a whole-second
			// Retry-After's bracket each window; a late start while W is
			// known to 50 % left an aligned alias 1.3 times as long).
			// A late start leaves its boundary anywhere in the wait: an
			// aligned window 1.25 times as long, its boundaries in the
			// waits, explains it. The next window, opened at once (a
			// whole window after the late start), breaks that lattice,
			// so late starts are never planned in consecutive windows.
			// Nor is one planned when the two kinds already disagree on
			// the next reopening (every window of one kind reopens
			// before every window of the other): the probe between them
			// decides at once, where a late start would cost half a
			// window and leave aliases of its own (our own 20 per 5 s
			// without headers: an aligned 6.3-6.4 s beside 5.0-5.06 s
			// from the first request, which reopen 1.3 s apart, and the
			// step spent its last 7 s on a third late start).
			for _, w := range ws {
				if w.kind == kindFixedFirst && w.pHi <= 1.1*w.pLo {
					cs := cycles(evs)
					end := cs[len(cs)-1].U + w.pHi
					e.lateStarts++
					e.lateStart, e.lateStartCycle = rel(end)+time.Duration(w.pLo/2*float64(time.Second)), len(cs)
					t = max(t, e.lateStart)
				}
			}
		}
	}
	return t, false, false
}

// kindsApart reports whether the two kinds of fixed window expect the
// next opening at instants apart enough for the search after a 429 to
// tell them by itself: three quarters of the aligned windows (weighed as
// in boundaryQuantile) after the latest end of a window opened by the
// first request (a 429 there rules out that kind), or before its earliest
// (an admission there does). A late start then only costs a window: its
// wait leaves the aligned boundary anywhere in it, so the next bracket,
// and W, come out no better than that wait (a 10 s window aligned to the
// epoch, started just after a boundary, ended its 45 s step with both
// kinds standing after two late starts).
//
// No probe goes before honour (Unix seconds: the instant a Retry-After
// lets the next request go; no later than the step's start when there is
// none), so the two kinds are apart only
// where a probe at or after it still meets one kind closed and the other
// open. Our own 30 per 10 s with GitHub's whole-second headers, its first
// burst 0.3 s past a boundary, read as a window of 9.34-9.42 s opened by
// the first request beside the aligned 10 s: each next opening of the one
// came before the Retry-After the other's 429 gave, the quantiles alone
// said apart, no late start was planned until the step's last window, and
// its start came out unknown at the 45 s bound (2 of 4 start phases).
func (e *experiment) kindsApart(honour float64) bool {
	var al []winHyp
	fLo, fHi := math.Inf(1), math.Inf(-1)
	for _, w := range e.wins {
		switch w.kind {
		case kindFixedAligned:
			al = append(al, w)
		case kindFixedFirst:
			fLo, fHi = math.Min(fLo, w.nextLo), math.Max(fHi, w.nextHi)
		}
	}
	if len(al) == 0 || math.IsInf(fLo, 1) {
		return false
	}
	return boundaryQuantile(al, nil, 0.25) > max(fHi, honour) || max(boundaryQuantile(al, nil, 0.75), honour) < fLo
}

// keepSending plans the experiments that tell a window every request
// restarts from the other kinds of fixed window. A window opened by the
// first request, or aligned to the clock, reopens at its end however
// often the client sent; the restarted one reopens only after a silence
// of its length (doc.go: "a count-rejected limiter never recovers while
// you keep sending and does after a pause"). So, when the other kinds
// all reopen later than a silence of the restarted window's longest
// length, pause that long and probe once: only the restarted window
// admits it. Otherwise keep sending, each request less than the
// restarted window's shortest length after the last, until past the
// instant by which half the other windows reopen: only they admit
// there. Each request of it is a 429 if the restarted window is the
// one, so the probe spends at most eight on it.
func (e *experiment) keepSending(hs []hyp, last *obs, rel func(float64) time.Duration) (time.Duration, bool) {
	var idle winSummary
	for _, w := range summarizeWins(e.wins) {
		if w.kind == kindFixedIdle {
			idle = w
		}
	}
	if idle.count == 0 {
		return 0, false
	}
	var idles, firsts []hyp
	earliest := time.Duration(math.MaxInt64)
	for _, h := range hs {
		switch h.kind {
		case kindFixedIdle:
			idles = append(idles, h)
		case kindFixedFirst:
			firsts = append(firsts, h)
			fallthrough
		default:
			earliest = min(earliest, rel(h.next))
		}
	}
	if len(idles) == len(hs) {
		// Only restarted windows: halve their lengths.
		return rel(nextQuantile(idles, 0.5)) + time.Millisecond, true
	}
	if e.keepSentAt != len(e.evs) {
		e.keepSentAt = len(e.evs)
		e.keepSends++
	}
	if e.keepSends > 8 {
		return 0, false
	}
	if pause := last.at + time.Duration(1.05*idle.pHi*float64(time.Second)); pause < earliest {
		return pause, true
	}
	if len(firsts) == 0 {
		// Aligned windows of any phase reopen soon after any instant:
		// the cycles, not a run of 429s, rule them out. Halve the
		// restarted windows meanwhile.
		return rel(nextQuantile(idles, 0.5)) + time.Millisecond, true
	}
	// The latest end of the windows opened by the first request: one
	// 429 there rules them all out, where their median would take a 429
	// per half.
	keep := last.at + time.Duration(0.9*idle.pLo*float64(time.Second))
	return min(keep, rel(nextQuantile(firsts, 1))+time.Millisecond), true
}

// wholeSeconds reports whether the step's last 429 gave its delay in
// whole seconds (a header's Retry-After or reset), not a body's
// milliseconds.
func (e *experiment) wholeSeconds(st *stepState) bool {
	for i := len(st.obs) - 1; i >= 0; i-- {
		if o := st.obs[i]; o.rejected() {
			return !o.exactRetry && (o.retryAfter > 0 || o.reset > 0)
		}
	}
	return false
}

// windowSpent reports whether the window in progress has admitted the
// quota of every window still standing.
func windowSpent(evs []event, ws []winHyp) bool {
	cs := cycles(evs)
	if len(cs) == 0 || !evs[len(evs)-1].adm {
		return false
	}
	c := cs[len(cs)-1]
	for _, w := range ws {
		if c.M < w.q {
			return false
		}
	}
	return true
}

// winNextRange returns the earliest and the latest instant at which a
// window still standing reopens.
func winNextRange(ws []winHyp) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, w := range ws {
		lo, hi = math.Min(lo, w.nextLo), math.Max(hi, w.nextHi)
	}
	return lo, hi
}

// hasKind reports whether a window of kind still stands.
func hasKind(ws []winSummary, kind string) bool {
	for _, w := range ws {
		if w.kind == kind {
			return true
		}
	}
	return false
}

// openedNow reports whether the last event is the first admission after
// a 429.
func openedNow(evs []event) bool {
	n := len(evs)
	return n >= 2 && evs[n-1].adm && !evs[n-2].adm
}

// minWin returns the shortest window still standing, in seconds.
func minWin(ws []winHyp) float64 {
	m := math.Inf(1)
	for _, w := range ws {
		m = math.Min(m, w.W)
	}
	return m
}

// pauseToTell returns the pause that tells the two variants of a token
// bucket apart (rejected requests count, or not) when both survive, each
// with its period pinned to 2 % and their periods apart: half the
// smallest burst's worth of tokens, which no bucket caps, and which the
// faster bucket fills by a request more per 2 % of difference. Small
// buckets are told apart by the 429s' timing alone.
func (e *experiment) pauseToTell() (time.Duration, bool) {
	if e.pauses >= 3 {
		return 0, false
	}
	var v [2]summary
	var ok [2]bool
	for _, h := range e.all {
		i := 0
		if h.cr {
			i = 1
		}
		if !ok[i] {
			v[i], ok[i] = summary{pLo: h.period, pHi: h.period, nLo: h.n, nHi: h.n}, true
		}
		v[i].pLo, v[i].pHi = math.Min(v[i].pLo, h.period), math.Max(v[i].pHi, h.period)
		v[i].nLo, v[i].nHi = min(v[i].nLo, h.n), max(v[i].nHi, h.n)
	}
	if !ok[0] || !ok[1] {
		return 0, false
	}
	b := min(v[0].nLo, v[1].nLo)
	if b < 8 || v[0].pHi/v[0].pLo > 1.03 || v[1].pHi/v[1].pLo > 1.03 || math.Max(v[0].pHi, v[1].pHi)/math.Min(v[0].pLo, v[1].pLo) <= 1.02 {
		return 0, false
	}
	T := math.Sqrt(v[0].pLo * v[0].pHi)
	return time.Duration(float64(b/2) * T * float64(time.Second)), true
}

// settled reports why the measurement is complete: one family left, its
// numbers pinned to about 2 %.
func (e *experiment) settled(evs []event, st *stepState) string {
	obs := st.obs
	cs := cycles(evs)
	if s, ok := e.allFit.summary(); ok && !e.windowsMatter() {
		adm := 0
		if len(cs) > 0 {
			for _, c := range cs[1:] {
				adm += int(c.M)
			}
		}
		pinned := func(s summary) bool {
			return s.pHi/s.pLo <= 1.02 && s.nHi-s.nLo <= 1 && adm >= 3 && !e.slidingMimics(evs, s)
		}
		if pinned(s) {
			return "token bucket pinned"
		}
		if hb, ok := e.advertisedBurst(obs, s); ok && hb > s.nLo+1 {
			// A client whose responses come late (a loaded machine)
			// cannot rule out a bucket much faster than the true one
			// with a burst of a few: each 429 of a drain could be a
			// request that reached the server right behind the one
			// before, and a bucket of burst 1 refilling every 0.2 ms
			// rejects it (at 500/s, 4 CPU hogs on 2 cores: 5 runs in
			// 15 spent their requests on that). The server's own count
			// of what was left, when the answers allow it, sets those
			// aside; conclude says so in the evidence.
			if r, ok := e.allFit.summaryFrom(hb); ok && pinned(r) {
				e.advFloor = hb
				return "token bucket pinned, given the burst the server advertised"
			}
		}
		if e.pauses >= 3 && adm >= 3 && e.variantsPinned() {
			// Both variants stand, each pinned, after the three pauses
			// that could tell them apart. (A bucket too small for a
			// pause is told by the timing of the 429s, which each
			// variant puts elsewhere: the step goes on.)
			return "token bucket pinned, whether rejected requests count not established"
		}
		return ""
	}
	if len(e.wins) > 0 && len(e.all) == 0 {
		// Both kinds standing, each pinned, is not an answer: the late
		// starts go on telling them apart until the step's bounds. Nor
		// is a window while a sliding one stands: HAProxy's sliding
		// window, which counts its 429s, reopens only after a silence,
		// as a window that every request restarts does, until the
		// trickle after a reopening (read as a window of 6.4 s that
		// every request restarts in 3 of 5 runs).
		if len(e.sliding) > 0 {
			return ""
		}
		ws := summarizeWins(e.wins)
		if len(ws) == 1 && ws[0].pHi/ws[0].pLo <= 1.02 && (ws[0].kind != kindFixedIdle || len(e.sliding) == 0) {
			return "fixed window pinned"
		}
		if len(ws) == 1 && ws[0].kind == kindFixedAligned && ws[0].pHi/ws[0].pLo <= 1.05 {
			// An aligned window whose advertised resets step by a length
			// inside the measured range (conclude reports that length):
			// the measurement has verified the claim to within 2.5 %,
			// and the whole-second headers bracket a boundary no better
			// than a second a window (the GitHub-headers 30 per 10 s ran
			// its 45 s step to the bound at 1.02, 46-55 s in all).
			if _, _, ok := claimedWindow(st.start, obs, ws[0].pLo, ws[0].pHi); ok {
				return "fixed window pinned, given the resets the server advertised"
			}
			// Without headers, the one round length aligned to the epoch
			// that fits every boundary (see epochWindow), after three
			// reopenings: conclude reports it.
			if _, ok := epochWindow(e.wins); ok && len(cs) >= 4 {
				return "fixed window pinned to the one round length aligned to the epoch"
			}
		}
		if len(ws) == 1 && ws[0].kind == kindFixedIdle && ws[0].pHi/ws[0].pLo <= 1.04 && len(e.sliding) == 0 {
			// Each probe that halves a restarted window's range waits a
			// whole window, and a 429 restarts it: 4 % (the middle
			// within 2 %) is as far as a step of 30 s gets it.
			return "fixed window pinned"
		}
		return ""
	}
	if len(e.all) == 0 && len(e.wins) == 0 && len(e.sliding) > 0 {
		s, _ := e.slFit.summary()
		adm := 0
		for _, c := range cs[1:] {
			adm += int(c.M)
		}
		// Whether 429s count, too: it decides how a client recovers.
		// A probe that honours exact retry instants meets a 429 only at
		// the end of each drain, and a counting window that shifts its
		// boundaries explains those as well (ratelab serve's sliding
		// window ended counts_rejected null in 1 run of 10); the
		// hypotheses of each variant put the next admission elsewhere,
		// and the planner probes between them.
		if s.wHi/s.wLo <= 1.04 && s.qHi-s.qLo <= 1 && adm >= 4 && s.cr != nil {
			return "sliding window pinned"
		}
	}
	return ""
}

// advertisedBurst is the burst the step's first response advertised
// (see headerBurst), when the answers allow it.
func (e *experiment) advertisedBurst(obs []*obs, s summary) (int64, bool) {
	return headerBurst(obs, policyOf(obs), s.nLo, s.nHi, e.admittedPrior())
}

// admittedPrior counts the admissions from the step's bucket before the
// step (the advertised request).
func (e *experiment) admittedPrior() int64 {
	if len(e.prior) > 0 && e.prior[0].adm {
		return 1
	}
	return 0
}

// bucketSummary is the token buckets' ranges the step ended with (over
// the variants cr accepts).
func (e *experiment) bucketSummary(cr func(bool) bool) (summary, bool) {
	return e.allFit.summaryIf(max(e.advFloor, 1), cr)
}

// slidingMimics reports whether a sliding window still explains every
// answer a pinned bucket s explains, and the bucket has not yet been seen
// rejecting over a whole refill of its burst after it first reopened.
// Over less, a sliding window whose trickle a bucket that counts 429s
// matches explains the same answers (ratelab serve's 20 per 2 s read as a
// bucket of 20 refilling at 2.25/s after 2 s, in 3 runs of 10).
// Admissions alone do not count: a window paced at a bucket's rate admits
// them all (the same case, read as a bucket of 5/s after 15 admissions in
// a row); the drain that sixteen admissions in a row start shows the
// window's capacity. The sliding fit is made here only when a bucket
// would be pinned, and kept up to date from then on.
func (e *experiment) slidingMimics(evs []event, s summary) bool {
	cs := cycles(evs)
	if len(cs) < 2 {
		return false
	}
	span := 0.0
	for i := len(evs) - 1; i >= 0; i-- {
		if !evs[i].adm && !evs[i].claim {
			span = evs[i].t - cs[1].U
			break
		}
	}
	if span >= float64(s.nHi)*s.pLo {
		return false
	}
	if e.slFit == nil {
		e.slFit = e.newSlideFit(evs, cs)
	} else {
		e.slFit.add(evs)
	}
	_, ok := e.slFit.summary()
	return ok
}

// newSlideFit fits sliding windows to evs: from ten sends at the maximum
// rate to twice the longest wait, with the quota the first burst admitted
// or one either side (when it crosses a boundary it admits up to a
// fraction of the previous window's weight more).
func (e *experiment) newSlideFit(evs []event, cs []cycle) *slideFit {
	q := cs[0].M
	return newSlideFit(evs, math.Max(10*e.minGap.Seconds(), 0.05), 2*math.Max(e.maxWait.Seconds(), 1), []int64{q - 1, q, q + 1}[min(q-1, 1):])
}

// windowsMatter reports whether a fixed window still stands that is not a
// token bucket in disguise: a window of quota 1 opened by the first
// request is a bucket of burst 1 (one admission per W after the last),
// and one that every request restarts a bucket of burst 1 that counts
// its 429s; no answer can tell them apart.
func (e *experiment) windowsMatter() bool {
	for _, w := range e.wins {
		if (w.kind != kindFixedFirst && w.kind != kindFixedIdle) || w.q != 1 {
			return true
		}
	}
	return false
}

// variantsPinned reports whether each variant of the token bucket still
// standing has its period pinned to 2 % and its burst to one.
func (e *experiment) variantsPinned() bool {
	for _, s := range summarize(e.all) {
		if s.pHi/s.pLo > 1.02 || s.nHi-s.nLo > 1 {
			return false
		}
	}
	return true
}

// merge joins summaries into one range.
func merge(ss []summary) summary {
	m := ss[0]
	for _, s := range ss[1:] {
		m.count += s.count
		m.pLo, m.pHi = math.Min(m.pLo, s.pLo), math.Max(m.pHi, s.pHi)
		m.nLo, m.nHi = min(m.nLo, s.nLo), max(m.nHi, s.nHi)
		m.nextLo, m.nextHi = math.Min(m.nextLo, s.nextLo), math.Max(m.nextHi, s.nextHi)
	}
	return m
}

// winSummary is one fixed-window kind's range.
type winSummary struct {
	kind     string
	pLo, pHi float64
	q        int64
	epoch    bool
	count    int
}

func summarizeWins(ws []winHyp) []winSummary {
	var out []winSummary
	for _, w := range ws {
		i := -1
		for j := range out {
			if out[j].kind == w.kind {
				i = j
			}
		}
		if i < 0 {
			out = append(out, winSummary{kind: w.kind, pLo: w.W, pHi: w.W, q: w.q})
			i = len(out) - 1
		}
		o := &out[i]
		o.pLo, o.pHi = math.Min(o.pLo, w.W), math.Max(o.pHi, w.W)
		o.epoch = o.epoch || w.epoch
		o.count++
	}
	return out
}

// kindMedianDue reports whether the median hypothesis of some family
// admits another request by due.
func kindMedianDue(hs []hyp, due time.Duration, rel func(float64) time.Duration) bool {
	by := map[string][]float64{}
	for _, h := range hs {
		by[h.kind] = append(by[h.kind], h.next)
	}
	for _, ts := range by {
		sort.Float64s(ts)
		if rel(ts[len(ts)/2]) <= due {
			return true
		}
	}
	return false
}

// admittedBefore counts the admissions sent before obs[i].
func admittedBefore(obs []*obs, i int) int {
	n := 0
	for _, o := range obs[:i] {
		if o.admitted() {
			n++
		}
	}
	return n
}

// searchQuantile is where, once only windows stand, the probe after a
// 429 goes: the instant by which this fraction of them (weighed by
// boundaryQuantile) admit again.
const searchQuantile = 0.25
