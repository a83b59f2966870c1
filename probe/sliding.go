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
// rejected requests count) is simulated over the events; one survives only
// if it reproduces every admission and every 429 whose decision interval
// does not straddle a boundary or the threshold (the weight is evaluated at
// both ends of the interval, widened by fitTol for a server that keeps
// time in milliseconds).

// slideHyp is one sliding window and its state after the events so far.
type slideHyp struct {
	W  float64
	q  int64
	cr bool
	// ceil: admitted iff curr + prev·weight ≤ q − 1 (ratelab), else < q.
	ceil bool
	// b is the start of the current window; curr and prev its count and
	// the previous window's.
	b, curr, prev float64
}

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

// step applies one event and reports whether h explains it.
func (h *slideHyp) step(e event) bool {
	d := (e.lo + e.hi) / 2
	h.advance(d)
	// A boundary within the interval: either outcome.
	ambiguous := h.b > e.lo-fitTol || h.b+h.W < e.hi+fitTol
	if !ambiguous {
		q := float64(h.q)
		if h.ceil {
			// x ≤ q − 1 − curr admits; as a strict test, with the
			// equality on the admitting side.
			q -= 1 - 1e-6
		}
		vMin := h.curr + h.prev*(h.b+h.W-(e.hi+fitTol))/h.W
		vMax := h.curr + h.prev*(h.b+h.W-(e.lo-fitTol))/h.W
		if e.adm && vMin >= q-1e-9 {
			return false
		}
		if !e.adm && vMax < q-1e-9 {
			return false
		}
	}
	if (e.adm || h.cr) && !e.claim {
		h.curr++
	}
	return true
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
	hs   []slideHyp
	n    int
	last float64
}

// slidePhases is the number of boundary phases tried per window length:
// the first event lies j/slidePhases into its window, j = 0 (the window
// opened at the first request, as HAProxy's does) to slidePhases − 1.
const slidePhases = 200

// newSlideFit tries every window from wLo to wHi (1 % apart), every
// phase and each quota in qs, over evs.
func newSlideFit(evs []event, wLo, wHi float64, qs []int64) *slideFit {
	f := &slideFit{}
	if len(evs) == 0 {
		return f
	}
	t0 := evs[0].lo
	for _, W := range periodGrid(wLo, wHi, 1.01) {
		for j := 0; j < slidePhases; j++ {
			for _, q := range qs {
				for _, v := range [4][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
					h := slideHyp{W: W, q: q, cr: v[0], ceil: v[1], b: t0 - float64(j)*W/slidePhases}
					ok := true
					for _, e := range evs {
						if !h.step(e) {
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
			if !h.step(e) {
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
		s.wLo, s.wHi = math.Min(s.wLo, h.W), math.Max(s.wHi, h.W)
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
	// A grid point stands for the 1 % around it.
	s.wLo, s.wHi = s.wLo/1.005, s.wHi*1.005
	return s, true
}
