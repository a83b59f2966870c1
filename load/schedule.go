package load

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"ratelab/limit"
)

// Schedule is the open model's pacer: it says when arrival i (from 0) is
// intended, as an offset from the start of the test. Offsets are computed
// from i directly, never by accumulating sleeps, so a long run does not
// drift and a late start does not cause a burst of catch-up sleeps.
//
// At returns false when the schedule has no arrival i (it has ended).
// Implementations must be pure functions of i and safe for concurrent use.
type Schedule interface {
	At(i uint64) (time.Duration, bool)
	// RateAt returns the target rate in requests per second at offset t
	// (for reports).
	RateAt(t time.Duration) float64
}

// ConstantRate is a schedule of Rate.Count arrivals every Rate.Period,
// evenly spaced: arrival i is at i·Period/Count exactly (in integer
// nanoseconds, no rounding error accumulates). The zero ConstantRate has
// no arrivals.
type ConstantRate struct {
	Rate limit.Rate
}

// At implements Schedule.
func (c ConstantRate) At(i uint64) (time.Duration, bool) {
	if c.Rate.Count <= 0 || c.Rate.Period <= 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(i, uint64(c.Rate.Period))
	if hi >= uint64(c.Rate.Count) {
		return 0, false // beyond any representable time
	}
	q, _ := bits.Div64(hi, lo, uint64(c.Rate.Count))
	if q > math.MaxInt64 {
		return 0, false
	}
	return time.Duration(q), true
}

// RateAt implements Schedule.
func (c ConstantRate) RateAt(time.Duration) float64 { return c.Rate.PerSecond() }

// Stage is one stage of a ramping schedule: over Duration the rate moves
// linearly from From to To (requests per second).
type Stage struct {
	Duration time.Duration
	From, To float64
}

// Stages is a schedule that ramps linearly through its stages and ends
// after the last one. Arrival i is at the instant t where the integral of
// the rate from 0 to t reaches i, solved exactly per stage.
type Stages []Stage

// ParseStages reads stages written as DURATION:RATE or DURATION:FROM-TO,
// comma separated: "30s:0-200/s,60s:200/s". A rate has a unit as
// limit.ParseRate reads it; FROM may omit it ("0-200/s") and may be 0.
func ParseStages(s string) (Stages, error) {
	var st Stages
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		dText, rText, ok := strings.Cut(f, ":")
		if !ok {
			return nil, fmt.Errorf("stage %q: want DURATION:RATE or DURATION:FROM-TO", f)
		}
		d, err := time.ParseDuration(strings.TrimSpace(dText))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("stage %q: duration must be positive, e.g. 30s", f)
		}
		fromText, toText, ramp := strings.Cut(strings.TrimSpace(rText), "-")
		if !ramp {
			fromText, toText = rText, rText
		}
		unit := unitOf(toText)
		if unit == "" {
			unit = unitOf(fromText)
		}
		to, err := stageRate(toText, unit)
		if err != nil {
			return nil, fmt.Errorf("stage %q: %w", f, err)
		}
		from, err := stageRate(fromText, unit)
		if err != nil {
			return nil, fmt.Errorf("stage %q: %w", f, err)
		}
		st = append(st, Stage{Duration: d, From: from, To: to})
	}
	if len(st) == 0 {
		return nil, errors.New("no stages")
	}
	return st, nil
}

// unitOf returns the "/unit" part of a rate, or "".
func unitOf(s string) string {
	if i := strings.Index(s, "/"); i >= 0 {
		return strings.TrimSpace(s[i:])
	}
	return ""
}

// stageRate reads a rate in requests per second; a bare number takes the
// unit unit ("/s", "/m", ...). Zero is allowed.
func stageRate(s, unit string) (float64, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		if unit == "" {
			return 0, fmt.Errorf("rate %q needs a unit, e.g. 200/s", s)
		}
		s += unit
	}
	if n, err := strconv.ParseFloat(strings.TrimSpace(s[:strings.Index(s, "/")]), 64); err == nil && n == 0 {
		return 0, nil
	}
	r, err := limit.ParseRate(s)
	if err != nil {
		return 0, err
	}
	return r.PerSecond(), nil
}

// Duration returns the total length of the stages.
func (s Stages) Duration() time.Duration {
	var d time.Duration
	for _, st := range s {
		d += st.Duration
	}
	return d
}

// At implements Schedule.
func (s Stages) At(i uint64) (time.Duration, bool) {
	want := float64(i)
	var start time.Duration
	var done float64 // arrivals due before the current stage
	for _, st := range s {
		secs := st.Duration.Seconds()
		n := (st.From + st.To) / 2 * secs // arrivals due within this stage
		if want < done+n || (want == 0 && n > 0) {
			x := want - done // arrivals into the stage
			// Solve from·t + (to−from)·t²/(2·secs) = x for t in [0, secs].
			a := (st.To - st.From) / (2 * secs)
			var t float64
			if math.Abs(a) < 1e-12 {
				t = x / st.From
			} else {
				disc := st.From*st.From + 4*a*x
				t = (-st.From + math.Sqrt(math.Max(disc, 0))) / (2 * a)
			}
			t = math.Min(math.Max(t, 0), secs)
			return start + time.Duration(math.Round(t*1e9)), true
		}
		done += n
		start += st.Duration
	}
	return 0, false
}

// RateAt implements Schedule.
func (s Stages) RateAt(t time.Duration) float64 {
	var start time.Duration
	for _, st := range s {
		if t < start+st.Duration {
			f := float64(t-start) / float64(st.Duration)
			return st.From + (st.To-st.From)*f
		}
		start += st.Duration
	}
	return 0
}

// retryPause is a Schedule that honoured Retry-After responses pause: a
// worker that reads one calls pause with the offset before which no
// arrival may go out, and the pacer moves the arrival it is waiting for to
// that offset with hold, shifting every later arrival by the same amount
// so that they keep their spacing. At returns the base schedule's offset
// plus the shifts so far.
//
// pause is safe for concurrent use; At and hold are called by the pacer
// alone, in arrival order. A nil *retryPause never pauses.
type retryPause struct {
	Schedule
	until atomic.Int64 // offset (ns) of the latest pause's end
	shift time.Duration
}

// At implements Schedule: arrival i shifted by the pauses so far.
func (p *retryPause) At(i uint64) (time.Duration, bool) {
	off, ok := p.Schedule.At(i)
	return off + p.shift, ok
}

// pause says that no arrival may go out before offset until.
func (p *retryPause) pause(until time.Duration) {
	for {
		u := p.until.Load()
		if int64(until) <= u || p.until.CompareAndSwap(u, int64(until)) {
			return
		}
	}
}

// shifted returns the shift of all pauses so far.
func (p *retryPause) shifted() time.Duration {
	if p == nil {
		return 0
	}
	return p.shift
}

// covers reports whether a pause holds an arrival at off.
func (p *retryPause) covers(off time.Duration) bool {
	return p != nil && time.Duration(p.until.Load()) > off
}

// hold returns how far a pause moves an arrival at off (0 when none holds
// it) and shifts every later arrival by the same amount.
func (p *retryPause) hold(off time.Duration) time.Duration {
	if p == nil {
		return 0
	}
	d := time.Duration(p.until.Load()) - off
	if d <= 0 {
		return 0
	}
	p.shift += d
	return d
}
