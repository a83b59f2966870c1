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

// Algorithm is how a policy counts. The zero value is GCRA.
type Algorithm uint8

// The algorithms a Policy can use. See doc.go for each one's arithmetic.
const (
	// GCRA is the generic cell rate algorithm: a leaky bucket of Burst
	// requests refilled at Rate, one number (the TAT) per key.
	GCRA Algorithm = iota
	// FixedWindow admits Rate.Count requests per window of Rate.Period.
	// Windows are aligned to the Unix epoch, or, with AlignFirst, start at
	// the first request of a key that has no open window.
	FixedWindow
	// SlidingWindow is the two-window weighted counter: a request is
	// counted in the epoch-aligned window of Rate.Period it falls in, and
	// the admitted count is current + previous × (1 − elapsed/window).
	SlidingWindow
	// Concurrency admits at most Policy.Concurrency requests in flight per
	// key. A decision acquires a slot (Decision.Lease) that the caller
	// releases when the response is complete; a slot never released frees
	// itself after Policy.Lease.
	Concurrency
)

var algorithmNames = [...]string{GCRA: "gcra", FixedWindow: "fixed-window", SlidingWindow: "sliding-window", Concurrency: "concurrency"}

// String returns the algorithm's name as ParseAlgorithm reads it.
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return "algorithm(" + strconv.Itoa(int(a)) + ")"
}

// ParseAlgorithm reads an algorithm name: gcra, fixed-window,
// sliding-window or concurrency. The empty string is GCRA.
func ParseAlgorithm(s string) (Algorithm, error) {
	if s == "" {
		return GCRA, nil
	}
	for i, n := range algorithmNames {
		if s == n {
			return Algorithm(i), nil
		}
	}
	return 0, fmt.Errorf("unknown algorithm %q: want gcra, fixed-window, sliding-window or concurrency", s)
}

// Policy is one rate limit: a name, an algorithm and its parameters. A
// shadow policy is evaluated and reported like any other but never rejects
// a request.
//
// Which fields apply depends on Algorithm:
//
//	GCRA            Rate (sustained), Burst (requests admitted at once)
//	FixedWindow     Rate: Count requests per window of Period; AlignFirst
//	SlidingWindow   Rate: Count requests per window of Period
//	Concurrency     Concurrency (requests in flight), Lease (their timeout)
//
// Fields that do not apply must be zero, so that a policy says what it
// does. CountRejected applies to all but Concurrency.
//
// A Policy must not change once it is in use by a store; build a new one
// instead (stores key state by name, so a replacement with the same name
// keeps the state of its predecessor; give a policy whose algorithm
// changes a new name, as stores do not convert state between algorithms).
type Policy struct {
	Name      string
	Algorithm Algorithm
	Rate      Rate
	Burst     int64
	Shadow    bool
	// AlignFirst starts a fixed window at the first request of a key that
	// has no open window, instead of at a multiple of the period since the
	// Unix epoch.
	AlignFirst bool
	// CountRejected makes a rejected request consume from this tier too,
	// as Envoy's ratelimit service and HAProxy's http_req_rate do: a client
	// that keeps sending over the limit keeps itself limited. See doc.go,
	// "Counting rejected requests", for what it consumes when another tier
	// rejects.
	CountRejected bool
	// Concurrency is the most requests in flight per key (Concurrency only).
	Concurrency int64
	// Lease is how long an acquired slot is held when it is never released
	// (Concurrency only).
	Lease time.Duration
}

// Interval returns the policy's emission interval T (GCRA).
func (p *Policy) Interval() time.Duration { return p.Rate.Interval() }

// Tolerance returns τ = T × Burst (GCRA): how far ahead of now the
// theoretical arrival time may run before requests are rejected.
func (p *Policy) Tolerance() time.Duration { return p.Rate.Interval() * time.Duration(p.Burst) }

// Quota returns the most requests the policy admits at once: the burst
// of a GCRA policy, the count per window of a window policy, the requests
// in flight of a concurrency policy. It is the q of RateLimit-Policy.
func (p *Policy) Quota() int64 {
	switch p.Algorithm {
	case FixedWindow, SlidingWindow:
		return p.Rate.Count
	case Concurrency:
		return p.Concurrency
	}
	return p.Burst
}

// Window returns the policy's time window, the w of RateLimit-Policy: for
// GCRA how long an empty bucket takes to refill completely (the
// tolerance), for a window policy its period, for a concurrency policy
// its lease.
func (p *Policy) Window() time.Duration {
	switch p.Algorithm {
	case FixedWindow, SlidingWindow:
		return p.Rate.Period
	case Concurrency:
		return p.Lease
	}
	return p.Tolerance()
}

// Validate reports the first problem with p, naming the field.
func (p *Policy) Validate() error {
	if p.Name == "" {
		return errors.New("name: must not be empty")
	}
	switch p.Algorithm {
	case GCRA:
		return p.validateGCRA()
	case FixedWindow, SlidingWindow:
		return p.validateWindow()
	case Concurrency:
		return p.validateConcurrency()
	}
	return fmt.Errorf("algorithm: unknown (%d)", p.Algorithm)
}

func (p *Policy) validateGCRA() error {
	switch {
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
	case p.CountRejected && p.Tolerance() > MaxWindow/2:
		// A count-rejected tier's backlog may reach 2τ (see doc.go).
		return fmt.Errorf("count_rejected: window %v (burst × interval) exceeds %v, half the longest window", p.Tolerance(), MaxWindow/2)
	}
	return p.noneOf("align", p.AlignFirst, "concurrency", p.Concurrency != 0, "lease", p.Lease != 0)
}

func (p *Policy) validateWindow() error {
	switch {
	case p.Rate.Count <= 0:
		return errors.New("rate: quota must be positive")
	case p.Rate.Count > MaxQuota:
		return fmt.Errorf("rate: quota %d exceeds %d", p.Rate.Count, int64(MaxQuota))
	case p.Rate.Period < time.Millisecond || p.Rate.Period%time.Millisecond != 0:
		// Stores align windows on whole milliseconds since the epoch: Redis's
		// Lua cannot divide unix nanoseconds exactly.
		return fmt.Errorf("rate: window %v must be a whole number of milliseconds", p.Rate.Period)
	case p.Rate.Period > MaxWindow:
		return fmt.Errorf("rate: window %v exceeds %v", p.Rate.Period, MaxWindow)
	case p.AlignFirst && p.Algorithm == SlidingWindow:
		return errors.New("align: sliding windows are always aligned to the epoch")
	}
	return p.noneOf("burst", p.Burst != 0, "concurrency", p.Concurrency != 0, "lease", p.Lease != 0)
}

func (p *Policy) validateConcurrency() error {
	switch {
	case p.Concurrency <= 0:
		return errors.New("concurrency: must be at least 1")
	case p.Concurrency > MaxQuota:
		return fmt.Errorf("concurrency: %d exceeds %d", p.Concurrency, int64(MaxQuota))
	case p.Lease < time.Millisecond || p.Lease%time.Millisecond != 0:
		// Stores keep lease expiries in whole microseconds (Redis's sorted
		// set scores are doubles); a whole-millisecond lease keeps that exact.
		return fmt.Errorf("lease: %v must be a whole number of milliseconds, at least 1ms", p.Lease)
	case p.Lease > MaxWindow:
		return fmt.Errorf("lease: %v exceeds %v", p.Lease, MaxWindow)
	case p.CountRejected:
		// A rejected request is never in flight, so there is nothing it
		// could hold; counting it would need a lease nobody releases.
		return errors.New("count_rejected: a concurrency limit counts requests in flight, and a rejected request never is")
	}
	return p.noneOf("rate", p.Rate != (Rate{}), "burst", p.Burst != 0, "align", p.AlignFirst)
}

// LeaseExpiry returns when a slot acquired at now (Unix nanoseconds) on a
// concurrency policy expires: now + Lease, rounded up to a whole
// microsecond, so that every store (Redis keeps expiries as sorted-set
// scores, which are doubles) holds it exactly.
func (p *Policy) LeaseExpiry(now int64) int64 {
	us := now / 1000
	if us*1000 < now {
		us++
	}
	return us*1000 + int64(p.Lease)
}

// noneOf returns an error naming the first field that is set although
// the algorithm does not use it.
func (p *Policy) noneOf(fields ...any) error {
	for i := 0; i < len(fields); i += 2 {
		if fields[i+1].(bool) {
			return fmt.Errorf("%s: not used by %s", fields[i], p.Algorithm)
		}
	}
	return nil
}

// MaxQuota bounds the quota of window and concurrency policies: counts
// stay far below 2^53, so that Redis's Lua holds them exactly.
const MaxQuota = 1 << 40

// MaxWindow bounds a policy's tolerance. Stores keep time offsets in
// nanoseconds; 100 days keeps every offset exactly representable in the
// 53-bit integers of Redis's Lua, so all stores decide identically.
const MaxWindow = 100 * 24 * time.Hour

// String describes the policy for people: "script-writes (2/s, burst 5)",
// "org (fixed-window 300/m)", "uploads (concurrency 4, lease 30s)".
func (p *Policy) String() string {
	var s string
	switch p.Algorithm {
	case GCRA:
		s = fmt.Sprintf("%s (%s, burst %d)", p.Name, p.Rate, p.Burst)
	case Concurrency:
		s = fmt.Sprintf("%s (concurrency %d, lease %v)", p.Name, p.Concurrency, p.Lease)
	default:
		s = fmt.Sprintf("%s (%s %s)", p.Name, p.Algorithm, p.Rate)
		if p.AlignFirst {
			s += " align first"
		}
	}
	if p.CountRejected {
		s += " count rejected"
	}
	if p.Shadow {
		s += " shadow"
	}
	return s
}
