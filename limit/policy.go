package limit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Rate is a sustained rate: Count requests per Period. The zero Rate is
// invalid; a policy needs a positive count and period.
//
// A fractional rate such as 0.5/s is stored as whole requests over a longer
// period (1 per 2s), so that every computation stays in integer nanoseconds.
type Rate struct {
	Count  int64
	Period time.Duration
}

// Per returns the rate of count requests per period.
func Per(count int64, period time.Duration) Rate { return Rate{Count: count, Period: period} }

// Interval returns the emission interval T = Period / Count: the time one
// request's worth of quota takes to come back. It is 0 for an invalid rate.
func (r Rate) Interval() time.Duration {
	if r.Count <= 0 || r.Period <= 0 {
		return 0
	}
	return r.Period / time.Duration(r.Count)
}

// PerSecond returns the rate as requests per second.
func (r Rate) PerSecond() float64 {
	if r.Period <= 0 {
		return 0
	}
	return float64(r.Count) / r.Period.Seconds()
}

// String formats the rate as ParseRate reads it: "2/s", "300/m", "1/2s".
func (r Rate) String() string {
	switch r.Period {
	case time.Second:
		return strconv.FormatInt(r.Count, 10) + "/s"
	case time.Minute:
		return strconv.FormatInt(r.Count, 10) + "/m"
	case time.Hour:
		return strconv.FormatInt(r.Count, 10) + "/h"
	}
	return strconv.FormatInt(r.Count, 10) + "/" + r.Period.String()
}

// Describe spells the rate out for people: "2 per second", "1 per 2 seconds".
func (r Rate) Describe() string {
	unit := func(n int64, one, many string) string {
		if n == 1 {
			return one
		}
		return strconv.FormatInt(n, 10) + " " + many
	}
	var per string
	switch {
	case r.Period%time.Hour == 0:
		per = unit(int64(r.Period/time.Hour), "hour", "hours")
	case r.Period%time.Minute == 0:
		per = unit(int64(r.Period/time.Minute), "minute", "minutes")
	case r.Period%time.Second == 0:
		per = unit(int64(r.Period/time.Second), "second", "seconds")
	default:
		per = r.Period.String()
	}
	return strconv.FormatInt(r.Count, 10) + " per " + per
}

// ParseRate reads a rate written as COUNT/PERIOD, where COUNT may be
// fractional ("0.5") and PERIOD is s, m, h, or a Go duration with an optional
// number ("10s", "1m30s"): "10/s", "600/m", "0.5/s", "1/10s". A fractional
// count is scaled to whole requests over a longer period: 0.5/s is 1/2s.
func ParseRate(s string) (Rate, error) {
	countText, periodText, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want COUNT/PERIOD, e.g. 10/s or 600/m", s)
	}
	count, err := strconv.ParseFloat(strings.TrimSpace(countText), 64)
	if err != nil || count <= 0 || math.IsInf(count, 0) || math.IsNaN(count) {
		return Rate{}, fmt.Errorf("rate %q: count must be a positive number", s)
	}
	period, err := parsePeriod(strings.TrimSpace(periodText))
	if err != nil {
		return Rate{}, fmt.Errorf("rate %q: %w", s, err)
	}
	return makeRate(count, period)
}

// RateOf returns count requests per period, scaling a fractional count to a
// whole one over a longer period as ParseRate does.
func RateOf(count float64, period time.Duration) (Rate, error) {
	if count <= 0 || math.IsInf(count, 0) || math.IsNaN(count) || period <= 0 {
		return Rate{}, errors.New("rate needs a positive count and period")
	}
	return makeRate(count, period)
}

func makeRate(count float64, period time.Duration) (Rate, error) {
	// Find the smallest multiplier that makes the count whole (to 6 decimals).
	for mult := int64(1); mult <= 1_000_000; mult *= 10 {
		scaled := count * float64(mult)
		if whole := math.Round(scaled); math.Abs(scaled-whole) < 1e-9*math.Max(1, scaled) {
			n, p := int64(whole), period*time.Duration(mult)
			if g := gcd(n, int64(mult)); g > 1 {
				n, p = n/g, p/time.Duration(g)
			}
			if n <= 0 || p <= 0 || p/time.Duration(n) <= 0 {
				return Rate{}, errors.New("rate is too high: under 1ns per request")
			}
			return Rate{Count: n, Period: p}, nil
		}
	}
	return Rate{}, errors.New("count has more than 6 decimal places")
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func parsePeriod(s string) (time.Duration, error) {
	switch s {
	case "s", "sec", "second":
		return time.Second, nil
	case "m", "min", "minute":
		return time.Minute, nil
	case "h", "hour":
		return time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("period %q: want s, m, h or a duration such as 10s", s)
	}
	return d, nil
}

// Policy is one rate limit: a name, a sustained rate, and a burst (the most
// requests admitted at once from a full bucket). A shadow policy is
// evaluated and reported like any other but never rejects a request.
//
// A Policy must not change once it is in use by a store; build a new one
// instead (stores key state by name, so a replacement with the same name
// keeps the state of its predecessor).
type Policy struct {
	Name   string
	Rate   Rate
	Burst  int64
	Shadow bool
}

// Interval returns the policy's emission interval T.
func (p *Policy) Interval() time.Duration { return p.Rate.Interval() }

// Tolerance returns τ = T × Burst: how far ahead of now the theoretical
// arrival time may run before requests are rejected.
func (p *Policy) Tolerance() time.Duration { return p.Rate.Interval() * time.Duration(p.Burst) }

// Window returns how long an empty bucket takes to refill completely: the
// tolerance, which is the window advertised in RateLimit-Policy.
func (p *Policy) Window() time.Duration { return p.Tolerance() }

// Validate reports the first problem with p, naming the field.
func (p *Policy) Validate() error {
	switch {
	case p.Name == "":
		return errors.New("name: must not be empty")
	case p.Rate.Count <= 0:
		return errors.New("rate: count must be positive")
	case p.Rate.Period <= 0:
		return errors.New("rate: period must be positive")
	case p.Rate.Interval() <= 0:
		return errors.New("rate: too high, under 1ns per request")
	case p.Burst <= 0:
		return errors.New("burst: must be at least 1")
	case p.Tolerance()/time.Duration(p.Burst) != p.Rate.Interval():
		return errors.New("burst: too large for the rate (window overflows)")
	case p.Tolerance() > MaxWindow:
		return fmt.Errorf("burst: window %v (burst × interval) exceeds %v", p.Tolerance(), MaxWindow)
	}
	return nil
}

// MaxWindow bounds a policy's tolerance. Stores keep time offsets in
// nanoseconds; 100 days keeps every offset exactly representable in the
// 53-bit integers of Redis's Lua, so all stores decide identically.
const MaxWindow = 100 * 24 * time.Hour

// String describes the policy for people: "script-writes (2/s, burst 5)".
func (p *Policy) String() string {
	s := fmt.Sprintf("%s (%s, burst %d)", p.Name, p.Rate, p.Burst)
	if p.Shadow {
		s += " shadow"
	}
	return s
}
