package report

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// kind is what a metric measures, which decides the units its threshold
// value may carry.
type kind int

const (
	kindLatency kind = iota // milliseconds; units ms, s, us; bare = ms
	kindSeconds             // seconds; units s, ms; bare = s
	kindShare               // fraction; unit %; bare = fraction (0.01 = 1%)
	kindCount               // a count; no unit
	kindRate                // requests per second; unit /s; bare = per second
)

func (k kind) describe() string {
	switch k {
	case kindLatency:
		return "a latency: use ms or s"
	case kindSeconds:
		return "a time in seconds: use s or ms"
	case kindShare:
		return "a share: use % or a fraction"
	case kindCount:
		return "a count: use a plain number"
	}
	return "a rate: use a plain number or /s"
}

type metric struct {
	kind kind
	// value extracts the metric from a summary.
	value func(*Summary) float64
}

// metrics are the names a threshold may test.
var metrics = map[string]metric{
	"p50":               {kindLatency, func(s *Summary) float64 { return s.Latency.P50 }},
	"p90":               {kindLatency, func(s *Summary) float64 { return s.Latency.P90 }},
	"p99":               {kindLatency, func(s *Summary) float64 { return s.Latency.P99 }},
	"max":               {kindLatency, func(s *Summary) float64 { return s.Latency.Max }},
	"service_p50":       {kindLatency, func(s *Summary) float64 { return s.ServiceTime.P50 }},
	"service_p90":       {kindLatency, func(s *Summary) float64 { return s.ServiceTime.P90 }},
	"service_p99":       {kindLatency, func(s *Summary) float64 { return s.ServiceTime.P99 }},
	"service_max":       {kindLatency, func(s *Summary) float64 { return s.ServiceTime.Max }},
	"share_429":         {kindShare, func(s *Summary) float64 { return s.RateLimit.Share429 }},
	"error_rate":        {kindShare, errorRate},
	"count_429":         {kindCount, func(s *Summary) float64 { return float64(s.RateLimit.Count429) }},
	"errors":            {kindCount, func(s *Summary) float64 { return float64(s.Errors) }},
	"requests":          {kindCount, func(s *Summary) float64 { return float64(s.Requests) }},
	"dropped":           {kindCount, func(s *Summary) float64 { return float64(s.Dropped) }},
	"first_429_request": {kindCount, first429Request},
	"first_429_s":       {kindSeconds, first429S},
	"duration_s":        {kindSeconds, func(s *Summary) float64 { return s.DurationS }},
	"achieved_rps":      {kindRate, func(s *Summary) float64 { return s.AchievedRPS }},
}

func errorRate(s *Summary) float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// first429Request is +Inf when no 429 came: "the first 429 came after at
// least N requests" holds for every N.
func first429Request(s *Summary) float64 {
	if s.RateLimit.First429Request == nil {
		return math.Inf(1)
	}
	return float64(*s.RateLimit.First429Request)
}

func first429S(s *Summary) float64 {
	if s.RateLimit.First429S == nil {
		return math.Inf(1)
	}
	return *s.RateLimit.First429S
}

func metricNames() string {
	names := make([]string, 0, len(metrics))
	for n := range metrics {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Threshold is a pass/fail condition on one metric of a Summary, such as
// "p99<250ms" or "share_429<1%". Create one with ParseThreshold. A
// Threshold is immutable and safe for concurrent use.
type Threshold struct {
	// Metric is the metric's name, Op the comparison (<, <=, >, >=, ==).
	Metric string
	Op     string
	// Value is the limit in the metric's base unit: milliseconds for
	// latencies, seconds for times, a fraction for shares, requests per
	// second for rates, a number for counts.
	Value float64
	kind  kind
}

// ParseThreshold parses METRIC OP VALUE, e.g. "p99<250ms", "p50<=0.1s",
// "share_429<1%", "errors==0", "achieved_rps>9.5". Spaces around the parts
// are allowed. The metrics are p50, p90, p99, max (latency from the
// intended send time), service_p50…service_max, share_429, error_rate,
// count_429, errors, requests, dropped, first_429_request, first_429_s,
// duration_s and achieved_rps.
func ParseThreshold(s string) (*Threshold, error) {
	src := strings.TrimSpace(s)
	if src == "" {
		return nil, fmt.Errorf("empty threshold: want METRIC OP VALUE, e.g. p99<250ms")
	}
	i := strings.IndexAny(src, "<>=!")
	if i < 0 {
		return nil, fmt.Errorf("threshold %q: no comparison operator (use <, <=, >, >=, ==)", s)
	}
	name := strings.TrimSpace(src[:i])
	rest := src[i:]
	var op string
	for _, cand := range []string{"<=", ">=", "==", "<", ">"} {
		if strings.HasPrefix(rest, cand) {
			op = cand
			break
		}
	}
	if op == "" || strings.ContainsAny(rest[len(op):], "<>=!") {
		return nil, fmt.Errorf("threshold %q: bad comparison operator (use <, <=, >, >=, ==)", s)
	}
	if name == "" {
		return nil, fmt.Errorf("threshold %q: no metric before %q (known: %s)", s, op, metricNames())
	}
	m, ok := metrics[name]
	if !ok {
		return nil, fmt.Errorf("threshold %q: unknown metric %q (known: %s)", s, name, metricNames())
	}
	v, err := parseValue(strings.TrimSpace(rest[len(op):]), m.kind)
	if err != nil {
		return nil, fmt.Errorf("threshold %q: %w", s, err)
	}
	return &Threshold{Metric: name, Op: op, Value: v, kind: m.kind}, nil
}

// parseValue parses a number with an optional unit into the base unit of
// kind k.
func parseValue(s string, k kind) (float64, error) {
	if s == "" {
		return 0, fmt.Errorf("no value after the operator")
	}
	end := 0
	for end < len(s) && strings.IndexByte("0123456789.+-eE", s[end]) >= 0 {
		// An 'e' starts a unit unless digits follow (1e3 vs a unit).
		if (s[end] == 'e' || s[end] == 'E') && (end+1 >= len(s) || strings.IndexByte("0123456789+-", s[end+1]) < 0) {
			break
		}
		end++
	}
	num, unit := s[:end], strings.TrimSpace(s[end:])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("value %q is not a number with an optional unit", s)
	}
	scale, ok := unitScale(k, unit)
	if !ok {
		if unit == "" {
			return 0, fmt.Errorf("value %q needs a unit: this metric is %s", s, k.describe())
		}
		return 0, fmt.Errorf("unit %q does not fit this metric: it is %s", unit, k.describe())
	}
	return v * scale, nil
}

// unitScale returns the factor that converts a value in unit to kind's
// base unit.
func unitScale(k kind, unit string) (float64, bool) {
	switch k {
	case kindLatency:
		switch unit {
		case "", "ms":
			return 1, true
		case "s":
			return 1000, true
		case "us", "µs":
			return 0.001, true
		}
	case kindSeconds:
		switch unit {
		case "", "s":
			return 1, true
		case "ms":
			return 0.001, true
		}
	case kindShare:
		switch unit {
		case "":
			return 1, true
		case "%":
			return 0.01, true
		}
	case kindCount:
		return 1, unit == ""
	case kindRate:
		return 1, unit == "" || unit == "/s"
	}
	return 0, false
}

// String returns the threshold in canonical form, which ParseThreshold
// reads back to the same Threshold.
func (t *Threshold) String() string {
	return t.Metric + t.Op + formatValue(t.kind, t.Value)
}

// formatValue formats v, in kind's base unit, with kind's usual unit.
func formatValue(k kind, v float64) string {
	num := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	switch k {
	case kindLatency:
		return num(v) + "ms"
	case kindSeconds:
		return num(v) + "s"
	case kindShare:
		return num(v*100) + "%"
	case kindRate:
		return num(v) + "/s"
	}
	return num(v)
}

// Check reports whether s satisfies the threshold, and the metric's
// actual value formatted with its unit ("312.4ms", "61.7%"; "none" for a
// first-429 metric when no 429 came).
func (t *Threshold) Check(s *Summary) (ok bool, actual string) {
	m := metrics[t.Metric]
	v := m.value(s)
	switch t.Op {
	case "<":
		ok = v < t.Value
	case "<=":
		ok = v <= t.Value
	case ">":
		ok = v > t.Value
	case ">=":
		ok = v >= t.Value
	case "==":
		ok = v == t.Value
	}
	if math.IsInf(v, 1) {
		return ok, "none"
	}
	if t.kind == kindShare {
		return ok, strconv.FormatFloat(v*100, 'f', -1, 64) + "%"
	}
	return ok, formatValue(t.kind, v)
}

// Thresholds is a list of thresholds that is also a repeatable flag.Value:
// each --threshold adds one. The zero value is an empty list.
type Thresholds []*Threshold

// String returns the thresholds in canonical form, comma-separated.
func (ts *Thresholds) String() string {
	if ts == nil {
		return ""
	}
	parts := make([]string, len(*ts))
	for i, t := range *ts {
		parts[i] = t.String()
	}
	return strings.Join(parts, ",")
}

// Set parses one threshold and appends it.
func (ts *Thresholds) Set(s string) error {
	t, err := ParseThreshold(s)
	if err != nil {
		return err
	}
	*ts = append(*ts, t)
	return nil
}

// Check checks every threshold against s, writes one line per threshold
// to w ("ok    p99<250ms (actual 12.3ms)" or "FAIL  …"), and returns how
// many failed.
func (ts Thresholds) Check(w io.Writer, s *Summary) (failed int, err error) {
	for _, t := range ts {
		ok, actual := t.Check(s)
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			failed++
		}
		if _, werr := fmt.Fprintf(w, "threshold %s  %s (actual %s)\n", mark, t, actual); werr != nil && err == nil {
			err = fmt.Errorf("write thresholds: %w", werr)
		}
	}
	return failed, err
}
