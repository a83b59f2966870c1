package probe

import (
	"math"
	"time"
)

// jitter is the send-time uncertainty allowed beside the sending interval:
// the time between the client's clock reading and the server's decision
// varies by about this much on a quiet loopback.
const jitter = 2 * time.Millisecond

// firstReject returns the index in obs (send order) of the first 429, or
// -1.
func firstReject(obs []*obs) int {
	for i, o := range obs {
		if o.rejected() {
			return i
		}
	}
	return -1
}

// burstEst is the burst measured by one step from a full bucket.
type burstEst struct {
	Burst int64
	// Admitted is c, the admissions before the first 429.
	Admitted int
	// Low and High bracket the burst (see estimateBurst).
	Low, High float64
	// LastAdmit and FirstReject are t_c and t_rej.
	LastAdmit, FirstReject time.Duration
}

// estimateBurst computes the burst from a step that started on a full
// bucket and ran until its first 429, given the sustained rate r (per
// second). Every admission n (counted in send order, at tₙ) satisfies
// n ≤ b + r·tₙ, so Low = maxₙ(n − r·tₙ) lies within one below b; the
// first 429 at t_rej after c admissions puts b below c + 1 − r·t_rej. With
// requests sent g apart, b ∈ [Low, Low + 1 − r·g): the estimate is the
// integer nearest the middle. Using every admission, rather than the last
// before the first 429, keeps the estimate right when concurrent requests
// reach the server out of order. It reports false when the step saw no
// 429 or no admission.
func estimateBurst(obs []*obs, r float64) (burstEst, bool) {
	fr := firstReject(obs)
	if fr < 0 {
		return burstEst{}, false
	}
	t0 := obs[0].at
	e := burstEst{FirstReject: obs[fr].at - t0, Low: math.Inf(-1)}
	n := 0
	for _, o := range obs {
		if !o.admitted() {
			continue
		}
		n++
		if o.seq < obs[fr].seq {
			e.Admitted++
			e.LastAdmit = o.at - t0
		}
		e.Low = math.Max(e.Low, float64(n)-r*(o.at-t0).Seconds())
	}
	if n == 0 {
		return e, false
	}
	g := 0.0
	if fr > 0 {
		g = (obs[fr].at - obs[fr-1].at).Seconds()
	}
	e.High = e.Low + math.Max(0, 1-r*g)
	e.Burst = max(1, int64(math.Round((e.Low+e.High)/2)))
	return e, true
}

// rateEst is the sustained rate measured from the admissions after the
// first 429.
type rateEst struct {
	Rate, Low, High float64 // per second
	// Admissions is K, Span the time from the first to the last of them.
	Admissions int
	Span       time.Duration
	// Lags bound how late each admission was seen: the time since the
	// request sent before it (the threshold passed within that interval).
	Lags []time.Duration
}

// estimateRate computes the sustained rate from the admissions that follow
// the first 429. Each admission was seen late by less than its lag bound
// (plus jitter), so the span is off by less than the first one's lag one
// way and the last one's the other. It reports false with fewer than two
// such admissions.
func estimateRate(obs []*obs) (rateEst, bool) {
	fr := firstReject(obs)
	if fr < 0 {
		return rateEst{}, false
	}
	var times []time.Duration
	var e rateEst
	for i := fr + 1; i < len(obs); i++ {
		if obs[i].admitted() {
			times = append(times, obs[i].at)
			e.Lags = append(e.Lags, obs[i].at-obs[i-1].at)
		}
	}
	k := len(times)
	e.Admissions = k
	if k < 2 {
		return e, false
	}
	e.Span = times[k-1] - times[0]
	n := float64(k - 1)
	s := e.Span.Seconds()
	e.Low = n / (s + (e.Lags[k-1] + jitter).Seconds())
	e.High = math.Inf(1)
	if d := s - (e.Lags[0] + jitter).Seconds(); d > 0 {
		e.High = n / d
	}
	e.Rate = n / s
	if k >= 3 {
		// The least-squares slope of admission index against time uses
		// every admission, not just the two ends.
		var mt, mi float64
		for i, t := range times {
			mt += t.Seconds()
			mi += float64(i)
		}
		mt /= float64(k)
		mi /= float64(k)
		var cov, vt float64
		for i, t := range times {
			dt := t.Seconds() - mt
			cov += dt * (float64(i) - mi)
			vt += dt * dt
		}
		if vt > 0 && cov > 0 {
			e.Rate = cov / vt
		}
	}
	e.Rate = math.Max(e.Low, math.Min(e.Rate, e.High))
	return e, true
}

// unitBurst corrects a rate measured on a limit of burst 1. There the
// bucket holds no slack: an admission seen δ late moves the next
// threshold δ later too, so each interval is T plus its own lag, and the
// lags add up instead of cancelling. With the mean interval m and each lag
// in [0, lag bound), T lies in (m − max lag, m]; the estimate takes half
// the mean lag bound off m.
func unitBurst(e rateEst) rateEst {
	k := e.Admissions
	if k < 2 {
		return e
	}
	n := float64(k - 1)
	m := e.Span.Seconds() / n
	var sum, most time.Duration
	for _, l := range e.Lags[1:] {
		sum += l
		most = max(most, l)
	}
	mean := (sum / time.Duration(k-1)).Seconds()
	e.Low = 1 / (m + jitter.Seconds()/n)
	e.High = math.Inf(1)
	if d := m - (most + jitter).Seconds(); d > 0 {
		e.High = 1 / d
	}
	if d := m - mean/2; d > 0 {
		e.Rate = 1 / d
	}
	e.Rate = math.Max(e.Low, math.Min(e.Rate, e.High))
	return e
}

// admissionsAfterReject returns the send times of the admissions after the
// first 429, in send order.
func admissionsAfterReject(obs []*obs) []time.Duration {
	fr := firstReject(obs)
	if fr < 0 {
		return nil
	}
	var times []time.Duration
	for _, o := range obs[fr+1:] {
		if o.admitted() {
			times = append(times, o.at)
		}
	}
	return times
}

// precise reports whether the admissions pin the rate to about 1 %: at
// least two intervals, and a span of at least 100 times the uncertainty
// of its ends.
func precise(e rateEst) bool {
	k := e.Admissions
	return k >= 3 && e.Span >= 100*(max(e.Lags[0], e.Lags[k-1])+jitter)
}
