package probe

import (
	"math"
	"sort"
)

// This file fits sliding windows: the two-window weighted counter of
// HAProxy's http_req_rate, Cloudflare and ratelab's sliding algorithm. A
// window of length W holds curr requests and the one before it prev; a
// request decided at d in the window that ends at E is admitted iff
//
//	curr + prev·(E − d)/W < q
//
// and then counted (a rejected one too, when rejected requests count).
// HAProxy compares curr + 1 + ⌊prev·remain/W⌋ > q in whole milliseconds,
// the same test: ⌊x⌋ ≤ q − 1 − curr iff x < q − curr. ratelab's sliding
// window admits iff curr + 1 + prev·(E − d)/W ≤ q, which rounds the other
// way (as ⌈x⌉ < q − curr); both variants are fitted. At each boundary prev
// becomes curr and curr 0; after a window with no request at all both are
// 0.
//
// The fit is exact, not a grid. Once it is known which window each request
// fell in, every count is known, and every event is a linear inequality in
// (E, W), where E is the end of the window that holds the last event: an
// admission at d ≤ hi says curr·W + prev·(E − hi) < q·W, a rejection at
// d ≥ lo says curr·W + prev·(E − lo) ≥ q·W, and lying in the window says
// E − W ≤ hi and E > lo. So the windows that place every request in the
// same windows, with the same quota and variant, form a convex polygon in
// the (E, W) plane: a slideCell. An event that can lie on either side of
// a boundary splits a cell in two (each with its own counts), an outcome
// cuts it by a line, and a cell that is cut to nothing is ruled out. No
// window between two grid points can be lost that way (a point grid lost
// HAProxy's 10 s in about one run in five: the truth lay between its
// points, and a request sent where the fit expected a threshold ruled out
// both neighbours), and the range of W that remains is exactly what the
// answers allow, so the planner probes until it is narrow. Two relaxations
// keep it small and never lose a window that explains the events: the two
// inequalities of one event take their decision instants independently
// within the event's interval, and after two or more windows with no
// request the new window's end is taken anywhere in (lo, hi + W] (which
// is also HAProxy's rule: after two empty periods its next period starts
// at the request).

// slideHyp is one sliding window, a point of a cell, and its state after
// the events so far: what the planner asks about.
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

// next returns the earliest instant from `from` on at which h admits.
func (h slideHyp) next(from float64) float64 {
	h.advance(from)
	q := float64(h.q)
	if h.ceil {
		q--
	}
	if h.curr < q || (h.curr < float64(h.q) && h.prev == 0) {
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

// pt is a point of the (E, W) plane: E in seconds since the fit's first
// event.
type pt struct{ e, w float64 }

// slideCell is the sliding windows that put every event so far in the
// same windows: one quota and variant, exact counts, and a convex polygon
// of (E, W).
type slideCell struct {
	q          int64
	cr, ceil   bool
	curr, prev int64
	poly       []pt
}

// clipEps is the slack of a clip, in seconds: a polygon cut to a segment
// (a window known exactly) survives rounding.
const clipEps = 1e-9

// clip returns the part of the convex polygon p where a·e + b·w ≤ c.
func clip(p []pt, a, b, c float64) []pt {
	if len(p) == 0 {
		return nil
	}
	f := func(q pt) float64 { return a*q.e + b*q.w - c }
	tol := clipEps * (math.Abs(a) + math.Abs(b) + 1)
	in := true
	for _, q := range p {
		if f(q) > tol {
			in = false
			break
		}
	}
	if in {
		return p
	}
	var out []pt
	for i, cur := range p {
		prev := p[(i+len(p)-1)%len(p)]
		fc, fp := f(cur), f(prev)
		if (fc <= tol) != (fp <= tol) {
			// The edge crosses the line: add the crossing.
			s := fp / (fp - fc)
			out = append(out, pt{prev.e + s*(cur.e-prev.e), prev.w + s*(cur.w-prev.w)})
		}
		if fc <= tol {
			out = append(out, cur)
		}
	}
	return out
}

// shear moves every point's E one window on (E + W).
func shear(p []pt) []pt {
	out := make([]pt, len(p))
	for i, q := range p {
		out[i] = pt{q.e + q.w, q.w}
	}
	return out
}

// wRange returns the smallest and largest W of p.
func wRange(p []pt) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, q := range p {
		lo, hi = math.Min(lo, q.w), math.Max(hi, q.w)
	}
	return lo, hi
}

// outcome cuts c by the event's outcome, decided within [lo, hi] in the
// window that ends at E, and counts the request; it reports whether any
// window of c explains it.
func (c *slideCell) outcome(e event, lo, hi float64) bool {
	rej := !e.adm
	if c.prev == 0 {
		// curr < q, whatever the instant.
		if (c.curr < c.q) == rej {
			return false
		}
	} else {
		q := float64(c.q)
		if c.ceil {
			q--
		}
		p, k := float64(c.prev), float64(c.curr)-q
		if rej {
			// k·W + p·(E − lo) ≥ 0.
			c.poly = clip(c.poly, -p, -k, -p*lo)
		} else {
			// k·W + p·(E − hi) < 0.
			c.poly = clip(c.poly, p, k, p*hi)
		}
		if len(c.poly) == 0 {
			return false
		}
	}
	if (e.adm || c.cr) && !e.claim {
		c.curr++
	}
	return true
}

// step applies one event to c, appending to out the cells (at most three:
// the event in c's window, in the next one, or later) that explain it.
func (c slideCell) step(e event, t0 float64, out []slideCell) []slideCell {
	lo, hi := e.lo-t0-fitTol, e.hi-t0+fitTol
	// In the same window: E > lo.
	if p := clip(c.poly, -1, 0, -lo); len(p) > 0 {
		s := c
		s.poly = p
		if s.outcome(e, lo, hi) {
			out = append(out, s)
		}
	}
	// In the next one: E ≤ hi and E + W > lo.
	if p := clip(clip(c.poly, 1, 0, hi), -1, -1, -lo); len(p) > 0 {
		s := c
		s.poly, s.prev, s.curr = shear(p), c.curr, 0
		if s.outcome(e, lo, hi) {
			out = append(out, s)
		}
	}
	// Two or more windows on: E + W ≤ hi. Nothing is left to weigh, and
	// the new window's end lies anywhere in (lo, hi + W].
	if p := clip(c.poly, 1, 1, hi); len(p) > 0 {
		wa, wb := wRange(p)
		s := c
		s.poly, s.prev, s.curr = []pt{{lo, wa}, {hi + wa, wa}, {hi + wb, wb}, {lo, wb}}, 0, 0
		if s.outcome(e, lo, hi) {
			out = append(out, s)
		}
	}
	return out
}

// slideFit is the sliding windows still consistent with a growing list
// of events.
type slideFit struct {
	cells []slideCell
	t0    float64
	n     int
	last  float64
}

// newSlideFit fits every window from wLo to wHi, each quota in qs, both
// roundings and whether 429s count, to evs.
func newSlideFit(evs []event, wLo, wHi float64, qs []int64) *slideFit {
	f := &slideFit{}
	if len(evs) == 0 {
		return f
	}
	e0 := evs[0]
	f.t0 = e0.lo
	lo, hi := -fitTol, e0.hi-f.t0+fitTol
	// The first event lies in the window that ends at E: E − W ≤ hi,
	// E > lo.
	poly := []pt{{lo, wLo}, {hi + wLo, wLo}, {hi + wHi, wHi}, {lo, wHi}}
	for _, q := range qs {
		for _, v := range [4][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			c := slideCell{q: q, cr: v[0], ceil: v[1], poly: poly}
			if c.outcome(e0, lo, hi) {
				f.cells = append(f.cells, c)
			}
		}
	}
	f.n, f.last = 1, e0.t
	f.add(evs)
	return f
}

// add consumes evs[f.n:].
func (f *slideFit) add(evs []event) {
	for _, e := range evs[min(f.n, len(evs)):] {
		var out []slideCell
		for _, c := range f.cells {
			out = c.step(e, f.t0, out)
		}
		f.cells = mergeCells(out)
		f.last = e.t
	}
	f.n = max(f.n, len(evs))
}

// mergeCells joins the cells with the same quota, variant and counts into
// one, the convex hull of their polygons. Their futures are the same
// function of (E, W), so the hull is a relaxation that never loses a
// window; without it an event near a boundary splits every cell that
// admits it either way, and windows that admit everything (short ones,
// over a slow stream) multiply with every boundary.
func mergeCells(cs []slideCell) []slideCell {
	type key struct {
		q          int64
		cr, ceil   bool
		curr, prev int64
	}
	idx := map[key]int{}
	out := cs[:0]
	var pts [][]pt
	for _, c := range cs {
		k := key{c.q, c.cr, c.ceil, c.curr, c.prev}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			out = append(out, c)
			pts = append(pts, c.poly)
			continue
		}
		pts[i] = append(append([]pt(nil), pts[i]...), c.poly...)
	}
	for i := range out {
		if len(pts[i]) != len(out[i].poly) {
			out[i].poly = hull(pts[i])
		}
	}
	return out
}

// hull returns the convex hull of ps, counter-clockwise (Andrew's
// monotone chain).
func hull(ps []pt) []pt {
	ps = append([]pt(nil), ps...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].e < ps[j].e || (ps[i].e == ps[j].e && ps[i].w < ps[j].w) })
	cross := func(o, a, b pt) float64 { return (a.e-o.e)*(b.w-o.w) - (a.w-o.w)*(b.e-o.e) }
	var h []pt
	for _, p := range ps {
		for len(h) >= 2 && cross(h[len(h)-2], h[len(h)-1], p) <= 0 {
			h = h[:len(h)-1]
		}
		h = append(h, p)
	}
	lower := len(h) + 1
	for i := len(ps) - 2; i >= 0; i-- {
		p := ps[i]
		for len(h) >= lower && cross(h[len(h)-2], h[len(h)-1], p) <= 0 {
			h = h[:len(h)-1]
		}
		h = append(h, p)
	}
	if len(h) > 1 {
		h = h[:len(h)-1]
	}
	return h
}

// points returns the corners and the centre of each cell as windows the
// planner can simulate.
func (f *slideFit) points(c slideCell) []slideHyp {
	var e, w float64
	out := make([]slideHyp, 0, len(c.poly)+1)
	for _, q := range c.poly {
		e, w = e+q.e, w+q.w
		out = append(out, c.at(f.t0, q))
	}
	n := float64(len(c.poly))
	return append(out, c.at(f.t0, pt{e / n, w / n}))
}

func (c slideCell) at(t0 float64, p pt) slideHyp {
	return slideHyp{W: p.w, q: c.q, cr: c.cr, ceil: c.ceil, b: t0 + p.e - p.w, curr: float64(c.curr), prev: float64(c.prev)}
}

// hyps lists the fit's hypotheses for the planner (at most about 1,500):
// the corners and centre of each cell, the period the trickle's spacing.
func (f *slideFit) hyps() []hyp {
	step := max(1, len(f.cells)*5/1500)
	var out []hyp
	for i := 0; i < len(f.cells); i += step {
		for _, h := range f.points(f.cells[i]) {
			out = append(out, hyp{kind: kindSliding, period: h.trickle(), n: h.q, cr: h.cr, next: h.next(f.last)})
		}
	}
	return out
}

// split returns an instant at which the short and the long windows still
// standing disagree about the next admission: halfway between when the
// shortest third of the cells' points and the longest third (each
// taken at its median) admit again, from `from` on. A probe there cuts
// off one end of the range of W whatever the answer. Probes where nearly
// every window expects an admission (the planner's usual place) mostly
// cut the cells along E: a trickle paced a little slower than the
// threshold admits every request and leaves W where it was.
func (f *slideFit) split(from float64) (float64, bool) {
	type wn struct{ w, next float64 }
	var ps []wn
	for _, c := range f.cells {
		for _, h := range f.points(c) {
			ps = append(ps, wn{h.W, h.next(from)})
		}
	}
	if len(ps) < 2 {
		return 0, false
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].w < ps[j].w })
	third := max(len(ps)/3, 1)
	median := func(xs []wn) float64 {
		ts := make([]float64, len(xs))
		for i, x := range xs {
			ts[i] = x.next
		}
		sort.Float64s(ts)
		return ts[len(ts)/2]
	}
	a, b := median(ps[:third]), median(ps[len(ps)-third:])
	if math.Abs(a-b) < 0.005 {
		return 0, false
	}
	return (a + b) / 2, true
}

// slideSummary is the range of the surviving sliding windows.
type slideSummary struct {
	wLo, wHi float64
	qLo, qHi int64
	// q is the quota most cells have.
	q  int64
	cr *bool
}

func (f *slideFit) summary() (slideSummary, bool) {
	if f == nil || len(f.cells) == 0 {
		return slideSummary{}, false
	}
	s := slideSummary{wLo: math.Inf(1), wHi: math.Inf(-1), qLo: math.MaxInt64, qHi: math.MinInt64}
	n := map[int64]int{}
	var yes, no bool
	for _, c := range f.cells {
		lo, hi := wRange(c.poly)
		s.wLo, s.wHi = math.Min(s.wLo, lo), math.Max(s.wHi, hi)
		s.qLo, s.qHi = min(s.qLo, c.q), max(s.qHi, c.q)
		n[c.q]++
		yes, no = yes || c.cr, no || !c.cr
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
