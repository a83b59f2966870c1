package probe

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// conclude turns a measuring step into a limit: the family whose
// hypotheses survived, its numbers as the range they span, and the
// evidence.
func (p *prober) conclude(e *experiment, res *stepResult) *found {
	f := &found{lim: Limit{Scope: "unknown", Algorithm: "unknown", Evidence: Evidence{Steps: []string{res.name}}}}
	l := &f.lim
	ev := &l.Evidence
	l.Policy = policyOf(res.obs)
	fr := firstReject(res.obs)
	ev.AdmittedBeforeFirst429 = admittedBefore(res.obs, fr)
	end := res.start.Add(res.duration)
	f.refillAt = end
	var adm []*obs
	for _, o := range res.obs {
		if o.admitted() {
			adm = append(adm, o)
		}
	}
	switch e.mode {
	case modeDelayed:
		T, _ := delaySpacing(adm)
		c := int64(len(adm))
		n := float64(len(adm) - 2)
		// Each response time is off by the server's timer granularity and
		// the loopback's jitter, about 2 ms at either end of the span.
		span := T.Seconds() * n
		l.Algorithm, l.Delays = "token-bucket", true
		l.RatePerS, l.RateLow, l.RateHigh = 1/T.Seconds(), n/(span+0.004), n/math.Max(span-0.004, 1e-9)
		l.Burst, l.Quota, l.WindowS = c, c, float64(c)*T.Seconds()
		l.Confidence = 0.8
		ev.Admissions, ev.SpanS = len(adm)-1, span
		ev.Notes = append(ev.Notes, fmt.Sprintf("%d requests sent together were all admitted, the responses of all but the first %.0f ms apart, and the next rejected: a bucket that queues up to %d excess requests and releases one per %.0f ms",
			c, T.Seconds()*1000, c-1, T.Seconds()*1000))
		f.refillAt = end.Add(time.Duration(float64(c+1)*float64(T)) + 50*time.Millisecond)
		return f
	case modeConcurrency:
		stream, extraRej, extraAdm := 0, 0, 0
		for _, o := range res.obs[e.conc.streamFrom:] {
			if o.rejected() {
				stream++
			}
		}
		if e.conc.extra > 0 {
			for _, o := range res.obs {
				if o.seq >= e.conc.streamFrom+3*e.conc.n+6 {
					if o.rejected() {
						extraRej++
					} else if o.admitted() {
						extraAdm++
					}
				}
			}
		}
		streamRej := stream - extraRej
		if streamRej == 0 && extraRej >= 2 {
			n := int64(e.conc.n)
			l.Algorithm, l.Quota, l.Burst = "concurrency", n, n
			l.Confidence = 0.9
			ev.Notes = append(ev.Notes, fmt.Sprintf("%d requests kept %d in flight were all admitted; %d sent while %d were in flight were rejected at once: at most %d in flight",
				3*n+6, n, extraRej, n, n))
			return f
		}
		ev.Notes = append(ev.Notes, fmt.Sprintf("the burst overlapped, but the in-flight test saw %d 429s keeping %d in flight and %d of %d extra requests admitted: not a concurrency limit",
			streamRej, e.conc.n, extraAdm, e.conc.extra))
		l.Burst, l.Quota = int64(ev.AdmittedBeforeFirst429), int64(ev.AdmittedBeforeFirst429)
		return f
	}
	// The answers that came after the last plan join the events: the list
	// is continued, not rebuilt, since the fits take new events only at
	// its end, and a rebuilt list can differ before it (a claim is exact
	// or rounded by the families standing when its 429 was read, and a
	// rebuilt one lands where the fits already took another event).
	st := &stepState{obs: res.obs, start: res.start}
	e.fitN = -1
	evs := e.refit(st)
	cs := cycles(evs)
	after := 0
	for _, c := range cs[min(1, len(cs)):] {
		after += int(c.M)
	}
	ev.Admissions = after
	if len(cs) > 1 {
		ev.SpanS = evs[len(evs)-1].t - cs[1].U
	}
	switch {
	case len(e.all) > 0:
		s, _ := e.bucketSummary(func(bool) bool { return true })
		l.Algorithm = "token-bucket"
		l.RateLow, l.RateHigh = 1/s.pHi, 1/s.pLo
		l.RatePerS = (l.RateLow + l.RateHigh) / 2
		l.CountsRejected = crOf(e.all)
		if l.CountsRejected == nil {
			// Both variants explain every answer: the one that counts
			// 429s refills faster (the probe's own 429s spent some of
			// it), and a pause cannot tell them apart by more than a
			// token (both are full after b·T). The rate is the other
			// one's: a client below it is never rejected by either (serve's
			// 20/s burst 10 beside a counting 22/s read as 21.07/s).
			sf, okF := e.bucketSummary(func(cr bool) bool { return !cr })
			st, okT := e.bucketSummary(func(cr bool) bool { return cr })
			if okF && okT {
				l.RatePerS = (1/sf.pHi + 1/sf.pLo) / 2
				ev.Notes = append(ev.Notes, fmt.Sprintf("a bucket that counts its 429s, refilling at %.4g–%.4g/s, explains every answer too: the rate given is that of one that does not (%.4g–%.4g/s), and a client below it meets neither",
					1/st.pHi, 1/st.pLo, 1/sf.pHi, 1/sf.pLo))
			}
		}
		l.Burst = (s.nLo + s.nHi + 1) / 2
		before := e.admittedPrior()
		if hb, ok := e.advertisedBurst(res.obs, s); ok {
			l.Burst = hb
			ev.Notes = append(ev.Notes, fmt.Sprintf("burst %d as the server advertised it (remaining %d on the step's first response, after %d from the same bucket), within the measured %d–%d", hb, hb-1-before, before+1, s.nLo, s.nHi))
		}
		l.Quota = l.Burst
		T := 1 / l.RatePerS
		l.WindowS = float64(l.Burst) * T
		ev.BurstLow, ev.BurstHigh = float64(s.nLo), float64(s.nHi)
		l.Confidence = confidence(s.pHi/s.pLo, s.nHi-s.nLo, 1)
		if all, _ := e.allFit.summary(); e.advFloor > 0 && all.nLo < e.advFloor {
			l.Confidence = math.Round(l.Confidence*85) / 100
			ev.Notes = append(ev.Notes, fmt.Sprintf("buckets of burst %d–%d, refilling as often as every %.4g s, also explain every answer: only the burst the server advertised (%d) sets them aside; the client's timing could not (each 429 could have reached the server right behind the request before it)",
				all.nLo, e.advFloor-1, all.pLo, e.advFloor))
		}
		ev.Notes = append(ev.Notes, fmt.Sprintf("one admission per %.4g s after the last one, from a bucket of %d: every token bucket consistent with the %d answers has T in %.4g–%.4g s and burst %d–%d; no fixed window or dead time explains them",
			T, l.Burst, len(evs), s.pLo, s.pHi, s.nLo, s.nHi))
		f.refillAt = end.Add(time.Duration(float64(l.Burst+1)*T*float64(time.Second)) + 50*time.Millisecond)
	case len(e.wins) > 0 && !(e.onlyIdle() && len(e.sliding) > 0):
		// (A window that every request restarts gives way to a sliding
		// window still standing beside it: the more common family.)
		ws := summarizeWins(e.wins)
		lo, hi := ws[0].pLo, ws[0].pHi
		for _, w := range ws[1:] {
			lo, hi = math.Min(lo, w.pLo), math.Max(hi, w.pHi)
		}
		q := ws[0].q
		W := (lo + hi) / 2
		l.Algorithm, l.Quota, l.Burst, l.WindowS = "fixed-window", q, q, W
		l.RatePerS, l.RateLow, l.RateHigh = float64(q)/W, float64(q)/hi, float64(q)/lo
		// Where windows start is the fit's, never a header's: the
		// claims only narrow an aligned window's length.
		switch {
		case len(ws) >= 2:
			l.WindowStart = "unknown"
		case ws[0].kind == kindFixedFirst:
			l.WindowStart = "first request"
		case ws[0].kind == kindFixedIdle:
			// Opened by the first request, and restarted by every
			// request after it, 429s included: they count.
			l.WindowStart = "first request"
			l.CountsRejected = ptrBool(true)
			ev.Notes = append(ev.Notes, fmt.Sprintf("every request, a 429 too, restarted the window: nothing was admitted while the probe kept sending less than %.4g s apart, and a silence of %.4g s gave the whole quota back", lo, hi))
		case ws[0].epoch:
			l.WindowStart = "epoch"
		default:
			l.WindowStart = "aligned"
		}
		l.Confidence = confidence(hi/lo, 0, len(ws))
		if len(ws) == 1 && ws[0].kind == kindFixedAligned {
			if r, ok := roundestEpochWindow(e.wins); ok && hi/lo > 1.02 && hi/lo <= 1.15 {
				// The measured range is wide (a step ends at its bound
				// after four 10 s windows; without headers, the middle of
				// 9.61-10.32 s was 9.96 s, of 9.89-10.91 s 10.4 s, the
				// first burst 0.05 or 0.3 s past a boundary): the one
				// round length whose multiples since the epoch fit every
				// boundary (the roundest, when several do) reads it
				// better. A window neither round nor aligned to the epoch
				// that a round one fits by chance is still within the
				// range.
				W = r
				l.WindowS, l.RatePerS = W, float64(q)/W
				l.Confidence = max(l.Confidence, 0.7)
				ev.Notes = append(ev.Notes, fmt.Sprintf("window %.4g s: of the windows of %.4g–%.4g s still standing, the roundest length whose multiples since the Unix epoch fall in every boundary's bracket", r, lo, hi))
			}
			if claimW, claimEpoch, ok := claimedWindow(res.start, res.obs, lo, hi); ok {
				W = claimW
				ev.Notes = append(ev.Notes, fmt.Sprintf("window %.4g s from the reset instants the 429s advertised, within the measured %.4g–%.4g s (each reopening came at an advertised reset)", claimW, lo, hi))
				l.WindowS = W
				l.RateLow, l.RateHigh = float64(q)/W, float64(q)/W
				l.RatePerS = float64(q) / W
				l.Confidence = 0.8
				if claimEpoch {
					l.WindowStart = "epoch"
				}
			}
		}
		ev.Notes = append(ev.Notes, fmt.Sprintf("after each exhaustion nothing until an instant, then %d at once (%d reopenings): windows of %.4g–%.4g s, start %s", q, len(cs)-1, lo, hi, l.WindowStart))
		next := math.Inf(-1)
		for _, w := range e.wins {
			next = math.Max(next, w.nextHi)
		}
		f.refillAt = time.Unix(0, int64(next*1e9)).Add(50 * time.Millisecond)
	case len(e.sliding) > 0:
		s, _ := e.slFit.summary()
		q := s.q
		l.Algorithm, l.Quota, l.Burst = "sliding-window", q, q
		l.CountsRejected = s.cr
		l.WindowS = math.Sqrt(s.wLo * s.wHi)
		l.RatePerS = float64(q) / l.WindowS
		l.RateLow, l.RateHigh = float64(q)/s.wHi, float64(q)/s.wLo
		l.Confidence = confidence(s.wHi/s.wLo, s.qHi-s.qLo, 1) * 0.9
		dead := cs[1].U - cs[0].U
		cr := "rejected requests not counted"
		if s.cr == nil {
			cr = "whether rejected requests count not established"
		} else if *s.cr {
			cr = "rejected requests counted"
		}
		ev.Notes = append(ev.Notes, fmt.Sprintf("%d at once, then nothing for %.2f s (no token bucket explains it), then a trickle as the previous window's weight decayed (no fixed window explains it): every sliding window (current + previous × the part of it still in the window < quota) consistent with the %d answers has quota %d–%d and a window of %.4g–%.4g s, %s",
			q, dead, len(evs), s.qLo, s.qHi, s.wLo, s.wHi, cr))
		f.refillAt = end.Add(time.Duration(2 * l.WindowS * float64(time.Second)))
	default:
		l.Burst, l.Quota = int64(ev.AdmittedBeforeFirst429), int64(ev.AdmittedBeforeFirst429)
		ev.Notes = append(ev.Notes, "no token bucket, fixed window or sliding window explains every answer: family unknown; the burst is what was admitted before the first 429")
	}
	if l.CountsRejected == nil && l.Algorithm == "fixed-window" {
		ev.Notes = append(ev.Notes, "whether rejected requests count is not established: a fixed window forgets them at its end")
	}
	return f
}

func ptrBool(b bool) *bool { return &b }

// crOf says whether the surviving hypotheses count rejected requests:
// nil when both kinds survive.
func crOf(hs []hyp) *bool {
	var yes, no bool
	for _, h := range hs {
		yes = yes || h.cr
		no = no || !h.cr
	}
	if yes == no {
		return nil
	}
	return &yes
}

// epochLengths returns the round window lengths (see roundWindow) among
// the aligned windows ws still standing whose boundaries fall on their
// multiples since the Unix epoch. A window aligned to the epoch is one of
// a few such lengths in any range of a few percent (multiples of a tenth
// of a second), and a phase that fits every bracket by chance is rare
// (about the brackets' width over W for each length).
func epochLengths(ws []winHyp) []float64 {
	var found []float64
	for _, w := range ws {
		if w.kind != kindFixedAligned || !w.epoch {
			continue
		}
		if r, ok := roundWindow(w.W); ok && !slices.Contains(found, r) {
			found = append(found, r)
		}
	}
	return found
}

// epochWindow returns the only one of epochLengths; false when there is
// none, or more than one.
func epochWindow(ws []winHyp) (float64, bool) {
	if found := epochLengths(ws); len(found) == 1 {
		return found[0], true
	}
	return 0, false
}

// roundestEpochWindow is epochWindow, or when several round lengths fit,
// the one that alone is a multiple of the coarsest unit (a whole second,
// then half a second): limiters are configured in whole seconds, and each
// finer length that fits did so by chance (the aligned 30 per 10 s
// without headers ended a step with 10, 10.1 and 10.3 s fitting).
func roundestEpochWindow(ws []winHyp) (float64, bool) {
	found := epochLengths(ws)
	if len(found) == 1 {
		return found[0], true
	}
	for _, u := range []float64{1, 0.5} {
		var at []float64
		for _, r := range found {
			if math.Abs(math.Round(r/u)*u-r) < 1e-9 {
				at = append(at, r)
			}
		}
		if len(at) > 0 {
			return at[0], len(at) == 1
		}
	}
	return 0, false
}

// confidence grows as the surviving period range narrows and falls with
// the spread of the count and the number of families left.
func confidence(ratio float64, nSpread int64, families int) float64 {
	c := 0.95
	if ratio > 1.02 {
		c -= math.Min(0.5, (ratio-1.02)*5)
	}
	if nSpread > 1 {
		c -= 0.1 * float64(nSpread-1)
	}
	c /= float64(max(families, 1))
	return math.Round(math.Max(c, 0.05)*100) / 100
}

// claimedWindow reads an aligned window's length from the reset instants
// the step's 429s advertised (a reset, else Retry-After, from the instant
// of each, to the second): the smallest step between distinct instants,
// when it lies within the measured range [lo, hi]. A header in whole
// seconds puts each instant up to a second after the boundary it claims,
// so that step can be a second short (or half the window, for a window of
// 2 s): the measurement, not the header, decides, and a step outside it is
// no claim. epoch reports whether the instants are multiples of the
// window since the Unix epoch, within the headers' second (for a window
// of under 4 s, exactly: a second is then too much of it). The instants
// of a window that opens at the first request are not steps of the
// window (each window starts when a request comes after the last one
// ended): conclude asks only for aligned windows.
func claimedWindow(start time.Time, obs []*obs, lo, hi float64) (w float64, epoch, ok bool) {
	var at []float64
	for _, o := range obs {
		if !o.rejected() {
			continue
		}
		d := o.reset
		if d <= 0 {
			d = o.retryAfter
		}
		if d <= 0 {
			continue
		}
		t := float64(start.Add(o.at+d).UnixNano()) / 1e9
		at = append(at, math.Round(t))
	}
	sort.Float64s(at)
	w = math.Inf(1)
	for i := 1; i < len(at); i++ {
		if d := at[i] - at[i-1]; d > 0.5 {
			w = math.Min(w, d)
		}
	}
	if math.IsInf(w, 1) || w < lo*0.995 || w > hi*1.005 {
		return 0, false, false
	}
	tol := math.Min(1, w/4)
	epoch = true
	for _, t := range at {
		if r := math.Mod(t, w); r > tol && r < w-tol {
			epoch = false
		}
	}
	return w, epoch, true
}
