package probe

import (
	"math"
	"sort"
)

// This file holds the hypotheses the probe fits to what it observed: each
// family of limiter, simulated over the requests sent, must reproduce every
// admission and every 429 that is not within tol of its own threshold (the
// send instant is the client's; the decision happens a little later).
// See doc.go, "Telling the families apart".

// event is one request as the fits see it: its send instant in Unix
// seconds (windows are aligned to the epoch) and whether it was admitted.
type event struct {
	t   float64
	adm bool
	// The server decided within [lo, hi]: from just before the send to
	// just after the response was read.
	lo, hi float64
	// claim: not a request but a 429's claim that a request then would
	// have been rejected; it counts nothing.
	claim bool
	// end is a claim's end: the instant the 429 said a request would be
	// admitted again (its send instant plus the delay); claim0 is the
	// start of the delay's rounding, the claim's own instant (t). endHi
	// is the latest the server can have meant: its response plus the
	// delay.
	end, claim0, endHi float64
}

// hypothesis kinds.
const (
	kindGCRA         = "token-bucket"
	kindFixedAligned = "fixed-window aligned"
	kindFixedFirst   = "fixed-window from first request"
	kindFixedIdle    = "fixed-window reset by silence"
	kindSliding      = "sliding-window"
)

// hyp is one consistent hypothesis: a family and its numbers.
type hyp struct {
	kind string
	// period is T (token bucket) or the window W, in seconds.
	period float64
	// n is the burst (token bucket) or the quota (windows).
	n int64
	// cr: rejected requests count (sliding windows, token buckets).
	cr bool
	// next is the earliest instant (Unix seconds) at which the hypothesis
	// admits another request, from the end of the events.
	next float64
}

// fitTol is the margin kept around a window's phase: a server that keeps
// time in whole milliseconds (nginx, HAProxy) moves its boundaries by up
// to one.
const fitTol = 0.001

// evTol is the margin added to each side of an event's decision interval
// after the fits were widened w times. The interval itself is measured:
// the server decided after the client took the send instant and before
// it read the response, both on the client's monotonic clock, so at w = 0
// it needs no margin, and a loaded machine only widens it (a slow
// response is a wide interval). A server whose clock is coarser than the
// loopback's round trip (milliseconds, cached per event loop) can put a
// decision just outside; then every family is ruled out, and the fits
// start again with 0.5 ms, 1 ms and 2 ms.
func evTol(w int) float64 {
	if w == 0 {
		return 0
	}
	return 0.0005 * float64(int(1)<<(w-1))
}

// periodGrid returns log-spaced periods from lo to hi, step ratio.
func periodGrid(lo, hi, ratio float64) []float64 {
	var g []float64
	for p := lo; p <= hi; p *= ratio {
		g = append(g, p)
	}
	return g
}

// summary is a family's consistent hypotheses, reduced to ranges.
type summary struct {
	kind           string
	cr             bool
	count          int
	pLo, pHi       float64 // period range, seconds
	nLo, nHi       int64
	nextLo, nextHi float64
}

// summarize groups hyps by kind and cr.
func summarize(hs []hyp) []summary {
	idx := map[string]int{}
	var out []summary
	for _, h := range hs {
		key := h.kind
		if h.cr {
			key += " cr"
		}
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, summary{kind: h.kind, cr: h.cr, pLo: h.period, pHi: h.period, nLo: h.n, nHi: h.n, nextLo: h.next, nextHi: h.next})
		}
		s := &out[i]
		s.count++
		s.pLo, s.pHi = math.Min(s.pLo, h.period), math.Max(s.pHi, h.period)
		s.nLo, s.nHi = min(s.nLo, h.n), max(s.nHi, h.n)
		s.nextLo, s.nextHi = math.Min(s.nextLo, h.next), math.Max(s.nextHi, h.next)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].count > out[j].count })
	return out
}

// nextQuantile returns the instant by which the fraction f of the
// hypotheses (each family weighted equally, and within it each hypothesis)
// admits another request.
func nextQuantile(hs []hyp, f float64) float64 {
	if len(hs) == 0 {
		return math.Inf(1)
	}
	per := map[string]float64{}
	for _, h := range hs {
		per[h.kind]++
	}
	ws := make([]weighted, len(hs))
	for i, h := range hs {
		ws[i] = weighted{h.next, 1 / per[h.kind] / float64(len(per))}
	}
	return weightedQuantile(ws, f)
}

// weighted is an instant and its weight, for weightedQuantile.
type weighted struct{ t, w float64 }

// weightedQuantile returns the instant by which the weights of xs (which
// sum to 1) reach f; it sorts xs.
func weightedQuantile(xs []weighted, f float64) float64 {
	sort.Slice(xs, func(a, b int) bool { return xs[a].t < xs[b].t })
	acc := 0.0
	for _, x := range xs {
		acc += x.w
		if acc >= f-1e-9 {
			return x.t
		}
	}
	return xs[len(xs)-1].t
}

// boundaryQuantile returns the instant by which the fraction f of the
// fixed windows ws (and the sliding windows sl) admit again, each family
// weighing the same, and an aligned window of length W by how likely its
// phases make what was seen: the phases still possible, as a part of W
// (a phase uniform on the circle explains the answers with that
// probability), spread over the instants its next boundary may come at.
// Counted as hypotheses alike, every W of the grid from the shortest dead
// time to twice the longest wait weighs the same, and after one reopening
// (which bounds W only from below) the median aligned window was 36 s
// long for a window of 10 s; weighed, the long windows, whose phases the
// brackets pin to a sliver of W, count for little, and the median is
// about twice the shortest W (the chance that a burst at a uniform phase
// of a window W met its boundary within d is d/W).
func boundaryQuantile(ws []winHyp, sl []hyp, f float64) float64 {
	var xs []weighted
	tot := map[string]float64{}
	add := func(kind string, t, wt float64) {
		xs = append(xs, weighted{t, wt})
		tot[kind] += wt
	}
	for _, h := range ws {
		if h.kind != kindFixedAligned || len(h.phases) == 0 {
			add(h.kind, h.nextLo, 1)
			continue
		}
		for _, arc := range h.phases {
			const k = 4
			for i := 0; i < k; i++ {
				ph := arc[0] + (float64(i)+0.5)/k*(arc[1]-arc[0])
				add(h.kind, ph+math.Ceil((h.from-ph)/h.W)*h.W, (arc[1]-arc[0])/k/h.W)
			}
		}
	}
	for _, h := range sl {
		add(kindSliding, h.next, 1)
	}
	if len(xs) == 0 {
		return math.Inf(1)
	}
	// Each sample's family, to normalise: recomputed in the same order.
	i := 0
	scale := func(kind string, n int) {
		for j := 0; j < n; j++ {
			if tot[kind] > 0 {
				xs[i].w /= tot[kind] * float64(len(tot))
			}
			i++
		}
	}
	for _, h := range ws {
		n := 1
		if h.kind == kindFixedAligned && len(h.phases) > 0 {
			n = 4 * len(h.phases)
		}
		scale(h.kind, n)
	}
	scale(kindSliding, len(sl))
	return weightedQuantile(xs, f)
}

// cycle is one opening of a window as the events show it: the last 429
// before an admission (L) and that admission (U), the admissions from U
// up to the next 429 (M), and that next run of 429s up to its last one
// (R, the last rejection before the next opening; 0 when none yet).
type cycle struct {
	L, U float64
	// Ulo is the earliest instant the opening admission can have been
	// decided at (U the latest).
	Ulo float64
	// B is the latest instant the boundary before the opening can lie
	// at: U, or sooner when a 429 of the previous window said the window
	// reopens by then (its claim's endHi) and no 429 decided after that
	// instant said otherwise.
	B       float64
	M       int64
	R       float64
	hasNext bool
	// adm holds each admission's decision interval, in order (adm[0] is
	// [Ulo, U]): a run of more than a quota holds a boundary, and which
	// of its admissions fell after it places that boundary.
	adm [][2]float64
}

// cycles reads the openings from evs: an admission after a 429 opens a
// cycle. The first run (before any 429) is cycle 0, with L = −∞. A claim
// (a 429's Retry-After or reset) bounds the boundary before the next
// opening from above: the server said a request would be admitted by
// then, and it decided the 429 no later than its response, so by the
// response plus the delay. A 429 decided after that instant refutes the
// claim, which then bounds nothing.
func cycles(evs []event) []cycle {
	var cs []cycle
	cur := -1
	lastRej := math.Inf(-1)
	bound := math.Inf(1)
	for i, e := range evs {
		switch {
		case e.adm && (i == 0 || !evs[i-1].adm):
			cs = append(cs, cycle{L: lastRej, U: e.hi, Ulo: e.lo, B: math.Min(e.hi, bound), M: 1, adm: [][2]float64{{e.lo, e.hi}}})
			bound = math.Inf(1)
			cur = len(cs) - 1
			if i == 0 {
				cs[cur].L = math.Inf(-1)
			}
		case e.adm && cur >= 0:
			cs[cur].M++
			cs[cur].adm = append(cs[cur].adm, [2]float64{e.lo, e.hi})
		case !e.adm:
			lastRej = e.lo
			switch {
			case e.claim && e.endHi > 0:
				bound = math.Min(bound, e.endHi)
			case !e.claim && e.lo > bound:
				bound = math.Inf(1)
			}
			if cur >= 0 {
				cs[cur].R, cs[cur].hasNext = e.lo, true
			}
		}
	}
	return cs
}

// windowQuota is the quota the cycles show: what every complete
// reopening after the first admits; with none yet, the first burst's count
// (which a burst that straddled a boundary makes too large until a
// reopening shows the quota). It returns -1 when there are no cycles.
func windowQuota(cs []cycle) int64 {
	if len(cs) == 0 {
		return -1
	}
	q := int64(-1)
	for _, c := range cs[1:] {
		if c.hasNext && (q < 0 || c.M < q) {
			q = c.M
		}
	}
	if q < 0 {
		q = cs[0].M
	}
	return q
}

// winHyp is a fixed window consistent with the cycles.
type winHyp struct {
	kind string
	W    float64
	q    int64
	// phases are the boundary phases (mod W, aligned kind) still possible.
	phases [][2]float64
	// epoch: a boundary falls on a multiple of W since the Unix epoch.
	epoch          bool
	nextLo, nextHi float64
	// from is the instant the next boundary comes after (aligned kind).
	from float64
}

// fitWindows returns the fixed windows (aligned, with any phase, or
// opening at the first request after the last one ended) whose W on grid
// explains the cycles with the quota windowQuota reads from them: every
// complete reopening after the first admits it. An aligned window's first
// burst, or any run of admissions, may admit up to twice the quota (a run
// that straddles a boundary admits what was left of one window and the
// whole of the next: see fitAligned; a reopening drained late, or by a
// client slowed by load, does too); a window opened by the first
// request's first burst at most one more (see fitFirst), its reopenings
// exactly the quota. It returns nothing when fewer than two cycles (one
// reopening) were seen.
//
// grid shrinks: it drops each W (and kind) whose phases the cycles rule
// out. New events only add or tighten such constraints (a new cycle, a
// longer run of 429s), never loosen one, so a W ruled out stays ruled
// out as long as the quota stays the same; the caller starts a new grid
// when windowQuota changes (a reopening that admits less than the first
// burst: that burst straddled a boundary). Without this the fit over
// every window costs the planner more than a bucket of 500/s refills in.
func fitWindows(cs []cycle, grid *[]winGrid) []winHyp {
	if len(cs) < 2 {
		return nil
	}
	q := windowQuota(cs)
	alignedOK := cs[0].M <= 2*q
	firstOK := cs[0].M <= q+1
	for _, c := range cs[1:] {
		// A reopening drained late (the late drain, or a client slow
		// under load) can run across the next boundary too: an aligned
		// window then admits up to twice the quota before its 429, as a
		// first burst that straddles one does (alignedPhases places that
		// boundary before the run's last q). fitFirst reads every
		// reopening as one window.
		// A window of one per W is a bucket of burst 1 in disguise,
		// whose admissions come a period apart, two in a row at once:
		// read as straddles, they kept such windows standing and a
		// bucket of 0.5/s burst 1 ran its step to the bound (48 s, 18
		// before).
		if c.hasNext && c.M != q {
			firstOK = false
			if c.M > 2*q || q < 2 {
				alignedOK = false
			}
		}
	}
	last := cs[len(cs)-1]
	if !last.hasNext && last.M > q {
		firstOK = false
		if last.M > 2*q || q < 2 {
			alignedOK = false
		}
	}
	if !alignedOK && !firstOK {
		return nil
	}
	// Whether a window is aligned to the epoch matters once few are left,
	// and testing it doubles the fit's cost, which at 500/s the planner
	// cannot spare while thousands stand.
	epoch := len(*grid) <= 200
	var out []winHyp
	keep := (*grid)[:0]
	for _, g := range *grid {
		g.aligned, g.first = g.aligned && alignedOK, g.first && firstOK
		if g.aligned {
			h, ok := fitAligned(cs, g.W, q, epoch)
			if ok {
				h.q = q
				out = append(out, h)
			}
			g.aligned = ok
		}
		if g.first {
			h, ok := fitFirst(cs, g.W)
			if ok {
				h.q = q
				out = append(out, h)
			}
			g.first = ok
		}
		if g.aligned || g.first {
			keep = append(keep, g)
		}
	}
	*grid = keep
	return out
}

// winGrid is one window length of fitWindows' grid and the kinds still
// possible with it.
type winGrid struct {
	W              float64
	aligned, first bool
}

func newWinGrid(ws []float64) []winGrid {
	g := make([]winGrid, len(ws))
	for i, W := range ws {
		g[i] = winGrid{W: W, aligned: true, first: true}
	}
	return g
}

// alignedPhases returns the phases (mod W) of boundaries φ + k·W that
// explain the cycles with quota q. A window that rejects R holds exactly
// q admissions, the last q of the run before R, so the boundary that
// opened it lies between the admission before those q (the 429 before
// the run, when the run holds q) and the first of them, and no boundary
// lies after it until R. A run of more than q (a first burst that
// straddles a boundary) holds at least one boundary before its last q
// admissions, and possibly more: every window before the last holds at
// most the M−q ≤ q admissions before it, so the counts allow any. After a
// 429, the run's first admission also came after a boundary.
func alignedPhases(cs []cycle, W float64, q int64) ([][2]float64, bool) {
	set := [][2]float64{{0, W}}
	// some: at least one boundary in (lo, hi]; none: no boundary in
	// (lo, hi).
	some := func(lo, hi float64) {
		if hi-lo+2*fitTol < W {
			set = intersectArc(set, lo-fitTol, hi+fitTol, W)
		}
	}
	none := func(lo, hi float64) bool {
		lo, hi = lo+fitTol, hi-fitTol
		if hi-lo >= W {
			return false
		}
		if hi > lo {
			set = subtractArc(set, lo, hi, W)
		}
		return true
	}
	for i, c := range cs {
		if i > 0 {
			some(c.L, c.B)
		}
		if !c.hasNext {
			continue
		}
		from := c.U
		if k := int64(len(c.adm)) - q; k > 0 {
			// The admissions before the boundary, then the q after it.
			some(c.adm[k-1][0], c.adm[k][1])
			from = c.adm[k][1]
		}
		if !none(from, c.R) {
			return nil, false
		}
		if len(set) == 0 {
			return nil, false
		}
	}
	if len(set) == 0 {
		return nil, false
	}
	return set, true
}

// fitAligned is the aligned window of length W and quota q when
// alignedPhases leaves it a phase, with the instants its next boundary
// may come at and, when asked, whether it is aligned to the epoch.
func fitAligned(cs []cycle, W float64, q int64, epoch bool) (winHyp, bool) {
	set, ok := alignedPhases(cs, W, q)
	if !ok {
		return winHyp{}, false
	}
	last := cs[len(cs)-1]
	from := last.U
	if last.hasNext {
		from = last.R
	}
	h := winHyp{kind: kindFixedAligned, W: W, phases: set, nextLo: math.Inf(1), nextHi: math.Inf(-1), from: from}
	for _, iv := range set {
		for _, ph := range []float64{iv[0], iv[1]} {
			n := ph + math.Ceil((from-ph)/W)*W
			h.nextLo, h.nextHi = math.Min(h.nextLo, n), math.Max(h.nextHi, n)
		}
	}
	// Epoch: boundaries at multiples of the window since the Unix epoch.
	// The grid's W is only within its cell of the truth, and a phase mod
	// W of instants 1.8e9 s from the epoch says nothing about multiples
	// of the true window; a round window within the cell (whole seconds,
	// halves, tenths) is tested instead, with the same constraints.
	if r, ok := roundWindow(W); ok && epoch {
		if rs, ok := alignedPhases(cs, r, q); ok {
			for _, iv := range rs {
				if iv[0] <= 1.5*fitTol || iv[1] >= r-1.5*fitTol {
					h.epoch = true
				}
			}
		}
	}
	return h, true
}

// roundWindow returns the roundest window (a multiple of 1 s, 0.5 s or
// 0.1 s) within half a grid step (0.05 %) of W.
func roundWindow(W float64) (float64, bool) {
	for _, u := range []float64{1, 0.5, 0.1} {
		if r := math.Round(W/u) * u; r > 0 && math.Abs(r-W) <= 0.0005*W {
			return r, true
		}
	}
	return 0, false
}

// fitFirst: each window opens at the first request after the previous
// one ended, and lasts W.
func fitFirst(cs []cycle, W float64) (winHyp, bool) {
	for i := 1; i < len(cs); i++ {
		if W <= cs[i].L-cs[i-1].U || W > cs[i].B-cs[i-1].Ulo {
			return winHyp{}, false
		}
	}
	last := cs[len(cs)-1]
	if last.hasNext && W <= last.R-last.U {
		return winHyp{}, false
	}
	n := last.U + W
	return winHyp{kind: kindFixedFirst, W: W, nextLo: n, nextHi: n}, true
}

// idleFit is the windows reset by silence still consistent with a
// growing list of events: a window opened by the first request whose
// every request, a rejected one too, restarts it, so that it ends W after
// the last request (HAProxy's http_req_cnt in a stick-table entry that
// expires W after it was last touched). It admits q after a silence of W
// and nothing while the client keeps sending. Each cell (a W of the grid
// and a quota) simulates the counter over the events: it is reset when
// the gap between two decisions exceeds W, kept when it is shorter, and
// either when the decision intervals leave the gap on both sides of W;
// the count is an interval for that reason. A cell survives if it
// reproduces every admission and every 429. A claim (nothing admitted
// before it) is a 429 that touches nothing.
type idleFit struct {
	cells []idleCell
	n     int // events consumed
	// The last request's decision interval, and its send instant.
	lastLo, lastHi, lastT float64
}

// idleCell is one window and quota, and the count the events so far
// leave in its current window.
type idleCell struct {
	W        float64
	q        int64
	cLo, cHi int64
}

// newIdleFit covers the windows of grid with the quotas qs.
func newIdleFit(grid []float64, qs []int64) *idleFit {
	f := &idleFit{lastLo: math.Inf(-1), lastHi: math.Inf(-1)}
	for _, q := range qs {
		if q < 1 {
			continue
		}
		for _, W := range grid {
			f.cells = append(f.cells, idleCell{W: W, q: q})
		}
	}
	return f
}

// add consumes evs[f.n:] (evs grows; its prefix never changes).
func (f *idleFit) add(evs []event) {
	for ; f.n < len(evs); f.n++ {
		e := evs[f.n]
		gapLo, gapHi := e.lo-f.lastHi-fitTol, e.hi-f.lastLo+fitTol
		out := f.cells[:0]
		for _, c := range f.cells {
			cLo, cHi := c.cLo, c.cHi
			switch {
			case c.W <= gapLo:
				cLo, cHi = 0, 0
			case c.W <= gapHi:
				cLo = 0
			}
			if e.claim && (c.W > e.end-f.lastT+1e-4 || c.W <= e.claim0-f.lastT-1e-4) {
				// The 429 restarted the window, so the server's delay
				// is the window itself, from the same instant of its
				// clock: W lies in the claim's (d−1, d] (or within a
				// few ms of an exact d), and every 429 of such a window
				// says the same delay.
				continue
			}
			if e.adm {
				if cLo >= c.q {
					continue
				}
				cHi = min(cHi, c.q-1)
			} else {
				if cHi < c.q {
					continue
				}
				cLo = max(cLo, c.q)
			}
			if !e.claim {
				c.cLo, c.cHi = cLo+1, cHi+1
			}
			out = append(out, c)
		}
		f.cells = out
		if !e.claim {
			f.lastLo, f.lastHi, f.lastT = e.lo, e.hi, e.t
		}
	}
}

// hyps lists the surviving windows: each admits again at once while its
// count may be below the quota, else W after the last request.
func (f *idleFit) hyps() []winHyp {
	out := make([]winHyp, 0, len(f.cells))
	for _, c := range f.cells {
		n := f.lastLo + c.W
		if c.cLo < c.q {
			n = f.lastT
		}
		out = append(out, winHyp{kind: kindFixedIdle, W: c.W, q: c.q, nextLo: n, nextHi: n})
	}
	return out
}

// intersectArc keeps the part of set (arcs of [0, W)) within (lo, hi]
// taken mod W.
func intersectArc(set [][2]float64, lo, hi, W float64) [][2]float64 {
	var out [][2]float64
	for _, arc := range splitArc(lo, hi, W) {
		for _, s := range set {
			a, b := math.Max(s[0], arc[0]), math.Min(s[1], arc[1])
			if a < b {
				out = append(out, [2]float64{a, b})
			}
		}
	}
	return out
}

// subtractArc removes (lo, hi] mod W from set.
func subtractArc(set [][2]float64, lo, hi, W float64) [][2]float64 {
	for _, arc := range splitArc(lo, hi, W) {
		var out [][2]float64
		for _, s := range set {
			if arc[1] <= s[0] || arc[0] >= s[1] {
				out = append(out, s)
				continue
			}
			if s[0] < arc[0] {
				out = append(out, [2]float64{s[0], arc[0]})
			}
			if arc[1] < s[1] {
				out = append(out, [2]float64{arc[1], s[1]})
			}
		}
		set = out
	}
	return set
}

// splitArc returns (lo, hi] mod W as one or two arcs of [0, W).
func splitArc(lo, hi, W float64) [][2]float64 {
	a := math.Mod(lo, W)
	if a < 0 {
		a += W
	}
	b := a + (hi - lo)
	if b <= W {
		return [][2]float64{{a, b}}
	}
	return [][2]float64{{a, W}, {0, b - W}}
}

// bucketFit is the token buckets still consistent with a growing list of
// events, fitted incrementally: per cell of periods [T/√r, T·√r] of a
// log grid of ratio r (and whether rejected requests count) it keeps the
// TAT the events imply and the range of x = (b−1)·T they allow, so each
// new event costs one step per cell. A cell stands for every period in
// it, not only its centre: a grid point 0.1 % off the true period drifts
// by a whole period over a thousand admissions, which would rule out
// the truth with its neighbours on a long run at 500/s.
type bucketFit struct {
	groups []bucketGroup
	// lo and hi scale a cell's centre to its ends.
	lo, hi float64
	n      int // events consumed
	last   float64
}

// bucketGroup is one cell's state. The theoretical arrival time is an
// interval [tatLo, tatHi]: each admission moves it to max(TAT, d) + T,
// where the server's decision instant d is known only to lie within the
// event's interval and T only within the cell (a midpoint instead errs by
// up to half the round trip at every full bucket, which at 500/s is half
// the period).
type bucketGroup struct {
	T, tatLo, tatHi, xLo, xHi float64
	cr                        bool
}

// newBucketFit covers the periods from lo to hi with cells of ratio r.
func newBucketFit(lo, hi, r float64) *bucketFit {
	f := &bucketFit{lo: 1 / math.Sqrt(r), hi: math.Sqrt(r)}
	grid := periodGrid(lo, hi, r)
	for _, cr := range []bool{false, true} {
		for _, T := range grid {
			f.groups = append(f.groups, bucketGroup{T: T, cr: cr, tatLo: math.Inf(-1), tatHi: math.Inf(-1), xHi: math.Inf(1)})
		}
	}
	return f
}

// add consumes evs[f.n:] (evs grows; its prefix never changes).
func (f *bucketFit) add(evs []event) {
	if f.n >= len(evs) {
		return
	}
	news := evs[f.n:]
	f.n = len(evs)
	f.last = evs[len(evs)-1].t
	out := f.groups[:0]
	for _, g := range f.groups {
		ok := true
		for _, e := range news {
			// Admitted at d: x ≥ TAT − d, so x ≥ tatLo − hi at least;
			// rejected: x < TAT − d ≤ tatHi − lo.
			if e.adm {
				g.xLo = math.Max(g.xLo, g.tatLo-e.hi)
			} else {
				g.xHi = math.Min(g.xHi, g.tatHi-e.lo)
			}
			if (e.adm || g.cr) && !e.claim {
				g.tatLo = math.Max(g.tatLo, e.lo) + g.T*f.lo
				g.tatHi = math.Max(g.tatHi, e.hi) + g.T*f.hi
			}
			// Some burst b and period in the cell: xLo ≤ (b−1)·T < xHi.
			if g.xLo > g.xHi || float64(f.bLo(&g)-1)*g.T*f.lo >= g.xHi {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, g)
		}
	}
	f.groups = out
}

func (f *bucketFit) bLo(g *bucketGroup) int64 {
	return max(int64(math.Ceil(g.xLo/(g.T*f.hi)-1e-9))+1, 1)
}

func (f *bucketFit) bHi(g *bucketGroup) int64 {
	if math.IsInf(g.xHi, 1) {
		return f.bLo(g) + 50
	}
	b := int64(math.Ceil(g.xHi/(g.T*f.lo) - 1e-9)) // (b−1)·T < xHi
	return max(b, f.bLo(g))
}

// hyps lists the fit's hypotheses: per period its smallest, middle and
// largest burst.
func (f *bucketFit) hyps(kind string) []hyp {
	var out []hyp
	// Planning needs the spread, not every period: at most about 1,500.
	step := max(1, len(f.groups)/1500)
	for i := 0; i < len(f.groups); i++ {
		g := f.groups[i]
		if step > 1 && i%step != 0 && i != len(f.groups)-1 {
			continue
		}
		lo, hi := f.bLo(&g), f.bHi(&g)
		for _, b := range []int64{lo, (lo + hi) / 2, hi} {
			if b == lo || b != out[len(out)-1].n {
				out = append(out, hyp{kind: kind, period: g.T, n: b, cr: g.cr,
					next: math.Max(f.last, (g.tatLo+g.tatHi)/2-float64(b-1)*g.T)})
			}
		}
	}
	return out
}

// summary returns the exact ranges of the fit's periods and bursts.
func (f *bucketFit) summary() (summary, bool) {
	return f.summaryFrom(1)
}

// summaryFrom is summary over the buckets of burst b or more: the cells
// that allow such a burst, their bursts cut at b.
func (f *bucketFit) summaryFrom(b int64) (summary, bool) {
	return f.summaryIf(b, func(bool) bool { return true })
}

// summaryIf is summaryFrom over the variants keep accepts (by whether
// rejected requests count).
func (f *bucketFit) summaryIf(b int64, keep func(cr bool) bool) (summary, bool) {
	if f == nil {
		return summary{}, false
	}
	s := summary{pLo: math.Inf(1), pHi: math.Inf(-1), nLo: math.MaxInt64, nHi: math.MinInt64}
	for _, g := range f.groups {
		lo, hi := f.bLo(&g), f.bHi(&g)
		if hi < b || !keep(g.cr) {
			continue
		}
		s.count++
		s.pLo, s.pHi = math.Min(s.pLo, g.T*f.lo), math.Max(s.pHi, g.T*f.hi)
		s.nLo, s.nHi = min(s.nLo, max(lo, b)), max(s.nHi, hi)
	}
	return s, s.count > 0
}
