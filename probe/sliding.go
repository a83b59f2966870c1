package probe

import (
	"math"
	"sort"
)

// This file fits sliding windows: the two-window weighted counter of
// HAProxy's http_req_rate, Cloudflare and ratelab's sliding algorithm. A
// window of length W holds curr requests and the one before it prev; a
// request at d in the window that opened at b is admitted iff
//
//	curr + prev·(b + W − d)/W < q
//
// and then counted (a rejected one too, when rejected requests count).
// HAProxy compares curr + 1 + ⌊prev·remain/W⌋ > q in whole milliseconds,
// the same test: ⌊x⌋ ≤ q − 1 − curr iff x < q − curr. ratelab's sliding
// window admits iff curr + 1 + prev·(b + W − d)/W ≤ q, which rounds the
// other way (as ⌈x⌉ < q − curr); both variants are fitted. At each boundary
// prev becomes curr and curr 0; after a window with no request at all both
// are 0. Every hypothesis (W, the phase of the boundaries, q, and whether
// rejected requests count) is checked against the events; a grid point
// stands for its whole cell, the window lengths within half a grid step of
// it and the phases within half a phase step, and the server's decision
// instant is anywhere in the event's interval (widened by fitTol for a
// server that keeps time in milliseconds). It is ruled out only if no
// window, phase and instant in those ranges explains an answer: a point
// alone errs by its distance to the truth at every boundary, so over three
// windows of decisions near the threshold the truth's neighbours
// mispredict, and the truth with them. Boundary k of a cell lies in an
// interval that widens with k; a request that may fall on either side of
// it is tried in each window it may be in, and the counts of the windows
// are intervals: a request counts for certain only in the one window
// where it can lie and be explained.

// slideHyp is one cell of sliding windows and its state after the events
// so far.
type slideHyp struct {
	W  float64
	q  int64
	cr bool
	// ceil: admitted iff curr + prev·weight ≤ q − 1 (ratelab), else < q.
	ceil bool
	// ph is the cell centre's phase, the fraction of a window by which
	// the first event's window had opened before it.
	ph float64
	// The cell: window lengths u from uLo to uHi and first boundaries s
	// from sLo to sHi, window k opening at t0 + s + (k − 1)·u. Boundary k
	// is linear in (u, s), so its extremes are at the box's corners, and each request
	// whose window is settled narrows the box: the box starts as the grid
	// cell and keeps what the answers allow of it, so the boundaries three
	// windows on stay as sharp as the first ones made them.
	uLo, uHi, sLo, sHi float64
	// cnt[(k+1) mod slideRing] is the range [lo, hi] of the counted
	// requests window k holds, for k from −1 up to top.
	cnt [slideRing][2]int32
	top int
	// b, curr and prev are the cell centre's current window, simulated
	// at each event's midpoint, for the planner.
	b, curr, prev float64
}

// slideRing is how many windows' counts a cell keeps; a request that may
// lie in more windows than that leaves every count unbounded above.
const slideRing = 8

// advance rotates h's windows up to instant d.
func (h *slideHyp) advance(d float64) {
	if d < h.b+h.W {
		return
	}
	if d < h.b+2*h.W {
		h.prev, h.curr, h.b = h.curr, 0, h.b+h.W
		return
	}
	h.prev, h.curr = 0, 0
	h.b += math.Floor((d-h.b)/h.W) * h.W
}

// bound returns the range of s + (k − 1)·u over the cell: boundary k
// less t0.
func (h *slideHyp) bound(k int) (lo, hi float64) {
	m := float64(k - 1)
	if m >= 0 {
		return m*h.uLo + h.sLo, m*h.uHi + h.sHi
	}
	return m*h.uHi + h.sLo, m*h.uLo + h.sHi
}

// atMost narrows the cell to boundary k − t0 ≤ c and reports whether any
// of it is left.
func (h *slideHyp) atMost(k int, c float64) bool {
	lo, _ := h.bound(k)
	h.sHi = math.Min(h.sHi, c-lo+h.sLo)
	switch m := float64(k - 1); {
	case m > 0:
		h.uHi = math.Min(h.uHi, (c-h.sLo)/m)
	case m < 0:
		h.uLo = math.Max(h.uLo, (c-h.sLo)/m)
	}
	return h.uLo <= h.uHi && h.sLo <= h.sHi
}

// atLeast narrows the cell to boundary k − t0 ≥ c.
func (h *slideHyp) atLeast(k int, c float64) bool {
	_, hi := h.bound(k)
	h.sLo = math.Max(h.sLo, c-hi+h.sHi)
	switch m := float64(k - 1); {
	case m > 0:
		h.uLo = math.Max(h.uLo, (c-h.sHi)/m)
	case m < 0:
		h.uHi = math.Min(h.uHi, (c-h.sHi)/m)
	}
	return h.uLo <= h.uHi && h.sLo <= h.sHi
}

// count returns window k's range of counted requests.
func (h *slideHyp) count(k int) (lo, hi float64) {
	if k < -1 || k > h.top {
		return 0, 0
	}
	if k <= h.top-slideRing {
		return 0, math.Inf(1)
	}
	c := h.cnt[(k+1)%slideRing]
	if c[1] == math.MaxInt32 {
		return float64(c[0]), math.Inf(1)
	}
	return float64(c[0]), float64(c[1])
}

// touch makes window k's counts current.
func (h *slideHyp) touch(k int) {
	for ; h.top < k; h.top++ {
		h.cnt[(h.top+2)%slideRing] = [2]int32{}
	}
}

// step applies one event and reports whether h's cell explains it.
func (h *slideHyp) step(t0 float64, e event) bool {
	dl, dh := e.lo-fitTol-t0, e.hi+fitTol-t0
	// The windows e may lie in: kA (the first that may end after dl)
	// to kB (the last that may open by dh).
	k := max(int(math.Floor((dl+h.ph*h.W)/h.W)), -1)
	for k > -1 {
		if _, hi := h.bound(k); hi <= dl {
			break
		}
		k--
	}
	for {
		if _, hi := h.bound(k + 1); hi > dl {
			break
		}
		k++
	}
	kA, kB := k, k
	for {
		if lo, _ := h.bound(kB + 1); lo > dh {
			break
		}
		kB++
	}
	counts := (e.adm || h.cr) && !e.claim
	if kB-kA >= slideRing-2 {
		return false
	}
	q := float64(h.q)
	if h.ceil {
		// x ≤ q − 1 − curr admits; as a strict test, with the
		// equality on the admitting side.
		q -= 1 - 1e-6
	}
	first, last := 0, -2
	for k := kA; k <= kB; k++ {
		// The previous window's weight (t0 + s + k·u − d)/u =
		// k + (s + t0 − d)/u, at its extremes over the cell and the
		// interval.
		nHi, nLo := h.sHi-dl, h.sLo-dh
		var xHi, xLo float64
		if nHi >= 0 {
			xHi = nHi / h.uLo
		} else {
			xHi = nHi / h.uHi
		}
		if nLo >= 0 {
			xLo = nLo / h.uHi
		} else {
			xLo = nLo / h.uLo
		}
		wtLo := math.Max(0, float64(k)+xLo)
		wtHi := math.Min(1, float64(k)+xHi)
		if wtLo > wtHi {
			continue
		}
		cLo, cHi := h.count(k)
		pLo, pHi := h.count(k - 1)
		if e.adm && cLo+pLo*wtLo >= q-1e-9 {
			continue
		}
		if !e.adm && cHi+pHi*wtHi < q-1e-9 {
			continue
		}
		if last < kA {
			first = k
		}
		last = k
		if counts {
			h.touch(k)
			if c := &h.cnt[(k+1)%slideRing]; c[1] < math.MaxInt32 {
				c[1]++
			}
		}
	}
	if last < kA {
		return false
	}
	// e lies in a window from first to last: boundary first opened by
	// dh, boundary last + 1 not before dl.
	if !h.atMost(first, dh) || !h.atLeast(last+1, dl) {
		return false
	}
	if counts && first == last {
		h.cnt[(first+1)%slideRing][0]++
	}
	h.point(e)
	return true
}

// point moves the cell centre's simulated state past e.
func (h *slideHyp) point(e event) {
	h.advance((e.lo + e.hi) / 2)
	if (e.adm || h.cr) && !e.claim {
		h.curr++
	}
}

// next returns the earliest instant from `from` on at which h admits.
func (h slideHyp) next(from float64) float64 {
	h.advance(from)
	q := float64(h.q)
	if h.ceil {
		q--
	}
	if h.curr < q {
		if h.prev == 0 {
			return from
		}
		if t := h.b + h.W - h.W*(q-h.curr)/h.prev; t < h.b+h.W {
			return math.Max(from, t)
		}
	}
	b2 := h.b + h.W
	if h.curr == 0 {
		return math.Max(from, b2)
	}
	return math.Max(from, math.Max(b2, b2+h.W-h.W*q/h.curr))
}

// trickle returns the spacing of admissions while the previous window's
// weight decays: W/prev (one per W when it is empty).
func (h slideHyp) trickle() float64 { return h.W / math.Max(h.prev, 1) }

// slideFit is the sliding windows still consistent with a growing list
// of events.
type slideFit struct {
	hs []slideHyp
	n  int
	// t0 is the first event's send instant, where the phases count from.
	t0, last float64
}

// slidePhases is the number of boundary phases tried per window length:
// the first event lies j/slidePhases into its window, j = 0 (the window
// opened at the first request, as HAProxy's does) to slidePhases − 1.
const slidePhases = 200

// newSlideFit tries every window from wLo to wHi (cells 1 % wide), every
// phase (cells 1/slidePhases wide) and each quota in qs, over evs.
func newSlideFit(evs []event, wLo, wHi float64, qs []int64) *slideFit {
	f := &slideFit{}
	if len(evs) == 0 {
		return f
	}
	t0 := evs[0].lo
	f.t0 = t0
	r := math.Sqrt(1.01)
	for _, W := range periodGrid(wLo, wHi, 1.01) {
		for j := 0; j < slidePhases; j++ {
			ph := float64(j) / slidePhases
			// s = (1 − phase)·u over the cell's corners.
			pLo, pHi := ph-0.5/slidePhases, ph+0.5/slidePhases
			sLo, sHi := (1-pHi)*W/r, (1-pLo)*W*r
			for _, q := range qs {
				for _, v := range [4][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
					h := slideHyp{W: W, q: q, cr: v[0], ceil: v[1], ph: ph, top: -1, b: t0 - ph*W,
						uLo: W / r, uHi: W * r, sLo: sLo, sHi: sHi}
					ok := true
					for _, e := range evs {
						if !h.step(t0, e) {
							ok = false
							break
						}
					}
					if ok {
						f.hs = append(f.hs, h)
					}
				}
			}
		}
	}
	f.n = len(evs)
	f.last = evs[len(evs)-1].t
	return f
}

// add consumes evs[f.n:].
func (f *slideFit) add(evs []event) {
	if f.n >= len(evs) {
		return
	}
	news := evs[f.n:]
	f.n, f.last = len(evs), evs[len(evs)-1].t
	out := f.hs[:0]
	for _, h := range f.hs {
		ok := true
		for _, e := range news {
			if !h.step(f.t0, e) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, h)
		}
	}
	f.hs = out
}

// hyps lists the fit's hypotheses for the planner (at most about 1,500):
// the period is the trickle's spacing.
func (f *slideFit) hyps() []hyp {
	step := max(1, len(f.hs)/1500)
	var out []hyp
	for i := 0; i < len(f.hs); i += step {
		h := f.hs[i]
		out = append(out, hyp{kind: kindSliding, period: h.trickle(), n: h.q, cr: h.cr, next: h.next(f.last)})
	}
	return out
}

// slideSummary is the range of the surviving sliding windows.
type slideSummary struct {
	wLo, wHi float64
	qLo, qHi int64
	// q is the quota most hypotheses have.
	q  int64
	cr *bool
}

func (f *slideFit) summary() (slideSummary, bool) {
	if f == nil || len(f.hs) == 0 {
		return slideSummary{}, false
	}
	s := slideSummary{wLo: math.Inf(1), wHi: math.Inf(-1), qLo: math.MaxInt64, qHi: math.MinInt64}
	n := map[int64]int{}
	var yes, no bool
	for _, h := range f.hs {
		s.wLo, s.wHi = math.Min(s.wLo, h.uLo), math.Max(s.wHi, h.uHi)
		s.qLo, s.qHi = min(s.qLo, h.q), max(s.qHi, h.q)
		n[h.q]++
		yes, no = yes || h.cr, no || !h.cr
	}
	qs := make([]int64, 0, len(n))
	for q := range n {
		qs = append(qs, q)
	}
	sort.Slice(qs, func(i, j int) bool { return n[qs[i]] > n[qs[j]] || (n[qs[i]] == n[qs[j]] && qs[i] < qs[j]) })
	s.q = qs[0]
	if yes != no {
		s.cr = &yes
	}
	return s, true
}
