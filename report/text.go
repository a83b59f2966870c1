package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// WriteJSON writes s as indented JSON followed by a newline.
func WriteJSON(w io.Writer, s *Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("write json summary: %w", err)
	}
	return nil
}

// WriteText writes a human summary of s: totals, statuses, latency, and
// the rate limits met, which get a section of their own.
func WriteText(w io.Writer, s *Summary) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	if s.Title != "" {
		p("%s\n", s.Title)
	}
	p("%-13s%d in %s s, %s/s achieved", "Requests", s.Requests, fsec(s.DurationS), frate(s.AchievedRPS))
	if s.TargetRPS != nil {
		p(" (target %s/s)", frate(*s.TargetRPS))
	}
	if s.Model != "" {
		p(", %s model", s.Model)
	}
	p("\n")
	p("%-13s%s\n", "Status", statusLine(s.StatusCounts))
	p("%-13s%d\n", "Errors", s.Errors)
	if s.Dropped > 0 {
		p("%-13s%d scheduled requests not sent (no free worker)\n", "Dropped", s.Dropped)
	}
	p("%-13s%s  (from the intended send time)\n", "Latency", pctLine(s.Latency))
	p("%-13s%s  (from the actual send time)\n", "Service time", pctLine(s.ServiceTime))
	if s.SendLag != nil {
		p("%-13s%s  (actual − intended send time)\n", "Send lag", pctLine(*s.SendLag))
	}

	rl := s.RateLimit
	p("\nRate limits\n")
	if rl.Count429 == 0 {
		p("  %-13snone", "429")
	} else {
		p("  %-13s%d (%s%%)", "429", rl.Count429, fpct(rl.Share429))
		if rl.First429Request != nil && rl.First429S != nil {
			p(" first at request #%d, %s s in", *rl.First429Request+1, fsec(*rl.First429S))
		}
	}
	p("\n")
	if len(rl.ByPolicy) > 0 {
		p("  %-13s%s\n", "by policy", policyLine(rl.ByPolicy))
	} else if rl.Count429 > 0 {
		p("  %-13s%s\n", "by policy", "no 429 named its policy")
	}
	if rl.RetryAfterS != nil {
		p("  %-13s%s–%s s\n", "Retry-After", fnum(rl.RetryAfterS.Min), fnum(rl.RetryAfterS.Max))
	}
	if r := rl.RecoveryS; r != nil {
		p("  %-13s%d× from a 429 to the next success, %s–%s s (mean %s s)\n", "recovery", r.Count, fsec(r.Min), fsec(r.Max), fsec(r.Mean))
	}
	if rl.Unrecovered {
		p("  %-13s%s\n", "at the end", "still limited: no success after the last 429")
	}
	if rl.LastRemaining != nil {
		p("  %-13s%d (the last quota a response advertised)\n", "remaining", *rl.LastRemaining)
	} else {
		p("  %-13s%s\n", "remaining", "no response advertised its remaining quota")
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write text summary: %w", err)
	}
	return nil
}

// ProgressLine formats a Snapshot as one line (no newline) for a live
// progress display.
func ProgressLine(s Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs  sent %d (%s/s)  2xx %d", s.Elapsed.Seconds(), s.Sent, frate(s.Rate), s.OK)
	if s.Redirect > 0 {
		fmt.Fprintf(&b, "  3xx %d", s.Redirect)
	}
	fmt.Fprintf(&b, "  429 %d  4xx %d  5xx %d  err %d  p50 %s  p99 %s", s.TooMany, s.Other4xx, s.Server, s.Errors, fdur(s.P50), fdur(s.P99))
	if s.Remaining >= 0 {
		fmt.Fprintf(&b, "  remaining %d", s.Remaining)
	}
	if s.Dropped > 0 {
		fmt.Fprintf(&b, "  dropped %d", s.Dropped)
	}
	return b.String()
}

// statusKeys returns the keys of a status_counts map in numeric order,
// with ErrorStatus last.
func statusKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, errA := strconv.Atoi(keys[i])
		b, errB := strconv.Atoi(keys[j])
		switch {
		case errA == nil && errB == nil:
			return a < b
		case errA == nil:
			return true
		case errB == nil:
			return false
		}
		return keys[i] < keys[j]
	})
	return keys
}

func statusLine(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, k := range statusKeys(m) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, "  ")
}

// policyKeys returns policy names by descending count, then by name.
func policyKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

func policyLine(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for _, k := range policyKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func pctLine(p Percentiles) string {
	return fmt.Sprintf("p50 %s ms  p90 %s ms  p99 %s ms  max %s ms", fms(p.P50), fms(p.P90), fms(p.P99), fms(p.Max))
}

// fms formats milliseconds with three significant digits or more.
func fms(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 3, 64)
	case v < 100:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// fdur formats a duration for the progress line.
func fdur(d time.Duration) string { return fms(float64(d.Microseconds())/1000) + "ms" }

// fsec formats seconds with millisecond precision.
func fsec(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

// frate formats a rate in requests per second.
func frate(v float64) string {
	if v != 0 && v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// fpct formats a fraction as a percentage with one decimal.
func fpct(share float64) string { return strconv.FormatFloat(share*100, 'f', 1, 64) }

// fnum formats a number in its shortest exact form, to the millisecond.
func fnum(v float64) string {
	return strconv.FormatFloat(float64(int64(v*1000+0.5))/1000, 'f', -1, 64)
}
