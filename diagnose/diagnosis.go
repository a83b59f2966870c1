package diagnose

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"ratelab/wire"
	"slices"
	"strings"

	"ratelab/jmx"
	"ratelab/report"
)

// Run is one measured run of the demo.
type Run struct {
	Name    string
	Summary *report.Summary
	// HTML is the path of the run's HTML report.
	HTML string
	// UpdatesPerRequest is how many script updates one request carries
	// (a bulk request carries several); 0 counts as 1.
	UpdatesPerRequest int
}

// MarshalJSON writes the run as its name followed by every field of the
// load JSON summary, plus the report path and script updates per second.
func (r *Run) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(r.Summary)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["name"] = r.Name
	m["html_report"] = r.HTML
	m["script_updates_per_s"] = r.UpdatesPerSecond()
	return json.Marshal(m)
}

// UpdatesPerSecond is the rate of accepted script updates: 2xx responses
// times the updates each carries, over the run's duration (0 for a run of
// no duration).
func (r *Run) UpdatesPerSecond() float64 {
	s := r.Summary
	if s.DurationS <= 0 {
		return 0
	}
	var ok int64
	for code, n := range s.StatusCounts {
		if strings.HasPrefix(code, "2") {
			ok += n
		}
	}
	return float64(ok) * float64(max(r.UpdatesPerRequest, 1)) / s.DurationS
}

// Finding is one item of the diagnosis: what is wrong, the measured
// evidence, and the fix.
type Finding struct {
	Finding  string `json:"finding"`
	Evidence string `json:"evidence"`
	Fix      string `json:"fix"`
}

// Diagnose joins the plan's analysis with what the demo's four runs
// measured: the plan as JMeter runs it (asIs), paced globally on one script
// (paced), spread over scripts with Retry-After honoured (spread), and
// through the bulk endpoint (bulk). Each finding's evidence is read from
// the runs; a pitfall the runs did not confirm is still reported, with the
// plan's own figures as evidence. The batching finding comes last, always.
func Diagnose(a *jmx.Analysis, asIs, paced, spread, bulk *Run) []Finding {
	return DiagnoseLimits(a, asIs, paced, spread, bulk, nil)
}

// DiagnoseLimits is Diagnose with the limits the server advertises
// (GET /api/v2/ratelimits, by policy name): a finding names the policy
// that rejected in its own terms (Describe), and claims a per-script
// limit only for a policy scoped per script. bulk may be nil when the
// policies have no per-script limit to batch against: there is then no
// batching finding.
func DiagnoseLimits(a *jmx.Analysis, asIs, paced, spread, bulk *Run, limits map[string]wire.LimitState) []Finding {
	pit := map[string]jmx.Pitfall{}
	for _, p := range a.Pitfalls {
		pit[p.ID] = p
	}
	var out []Finding
	s1, s2, s3 := asIs.Summary, paced.Summary, spread.Summary
	if p, ok := pit["ctt-per-thread"]; ok {
		ev := fmt.Sprintf("run 1 sent %.1f req/s", s1.AchievedRPS)
		if a.IntendedRPS != nil {
			ev += fmt.Sprintf(" against an intended %s req/s", Number(*a.IntendedRPS))
		}
		out = append(out, Finding{Finding: p.Message, Evidence: ev, Fix: p.Fix})
	}
	if p, ok := pit["startup-burst"]; ok {
		ev := fmt.Sprintf("the plan sends %d requests in its first second", a.StartupBurst)
		if rl := s1.RateLimit; rl.First429Request != nil && rl.First429S != nil {
			ev += fmt.Sprintf("; in run 1 the first 429 answered request #%d, %.0f ms into the test", *rl.First429Request+1, 1000**rl.First429S)
		}
		out = append(out, Finding{Finding: p.Message, Evidence: ev, Fix: p.Fix})
	}
	if p, ok := pit["same-resource"]; ok {
		pol := topPolicy(s2.RateLimit.ByPolicy)
		ev := fmt.Sprintf("run 2, paced at %.1f req/s on one script: %d of %d requests got 429 (%.1f%%)",
			s2.AchievedRPS, s2.RateLimit.Count429, s2.Requests, 100*s2.RateLimit.Share429)
		if pol != "" {
			ev += fmt.Sprintf(", every one of them naming policy %q (%s)", pol, ByPolicy(s2.RateLimit.ByPolicy))
		}
		ev += fmt.Sprintf("; run 3, the same rate over many scripts: %d 429s", s3.RateLimit.Count429)
		f := Finding{Finding: p.Message, Evidence: ev, Fix: p.Fix}
		st, known := limits[pol]
		switch {
		case pol == "":
		case !known:
			f.Finding = fmt.Sprintf("there is a separate limit for updates of one script: %q. %s", pol, p.Message)
		case st.Scope == wire.ScopeOrgScript:
			f.Finding = fmt.Sprintf("there is a separate limit for updates of one script: %q, %s. %s", pol, Describe(st), p.Message)
		default:
			f.Finding = fmt.Sprintf("the writes run into %q, %s, per %s", pol, Describe(st), st.Scope)
			f.Fix = fmt.Sprintf("send the writes below what %q allows (%s): spreading them over scripts does not help against a limit per %s", pol, Describe(st), st.Scope)
		}
		out = append(out, f)
	}
	if p, ok := pit["no-retry-after"]; ok {
		rl := s1.RateLimit
		ev := fmt.Sprintf("run 1 kept sending after its first 429 and collected %d of them", rl.Count429)
		if rl.RetryAfterS != nil {
			ev += fmt.Sprintf(" while the server said to retry after %s to %s", Seconds(rl.RetryAfterS.Min), Seconds(rl.RetryAfterS.Max))
		}
		out = append(out, Finding{Finding: p.Message, Evidence: ev, Fix: p.Fix})
	}
	if bulk == nil {
		return out
	}
	out = append(out, Finding{
		Finding: "batching is the cheap path: a bulk request counts once against the request limits and once per script against the per-script limit",
		Evidence: fmt.Sprintf("run 4 applied %.1f script updates/s with %d 429s, against %.1f updates/s in run 3",
			bulk.UpdatesPerSecond(), bulk.Summary.RateLimit.Count429, spread.UpdatesPerSecond()),
		Fix: "send updates through POST /api/v2/architect/scripts/bulk (up to 50 per request), or use ratelab's Go client, which coalesces and batches them",
	})
	return out
}

// Describe says what a policy allows in its algorithm's terms, from its
// advertised state: "2 per 1s, burst 4", "300 per 1m0s in fixed windows",
// "4 requests in flight"; ", counting rejected requests" when it does.
func Describe(st wire.LimitState) string {
	var s string
	switch st.Algorithm {
	case "fixed-window":
		s = fmt.Sprintf("%d per %s in fixed windows", st.Limit, st.Window)
		if st.Align == "first" {
			s += " from the first request"
		}
	case "sliding-window":
		s = fmt.Sprintf("%d per %s in a sliding window", st.Limit, st.Window)
	case "concurrency":
		s = fmt.Sprintf("%d requests in flight", st.Limit)
	default:
		s = fmt.Sprintf("%d per %s, burst %d", st.Limit, st.Window, st.Burst)
	}
	if st.CountRejected {
		s += ", counting rejected requests"
	}
	return s
}

// ByPolicy lists policies by descending count, ties by name:
// "a (12), b (3)".
func ByPolicy(m map[string]int64) string {
	names := slices.Collect(maps.Keys(m))
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s (%d)", n, m[n])
	}
	return strings.Join(parts, ", ")
}

// topPolicy returns the policy that rejected most requests (the first by
// name among equals), or "" when none did.
func topPolicy(m map[string]int64) string {
	best, n := "", int64(0)
	for k, v := range m {
		if v > n || v == n && k < best {
			best, n = k, v
		}
	}
	return best
}

// Seconds formats a duration in seconds for people: "430 ms", "1.5 s";
// anything under a millisecond shows as "1 ms".
func Seconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", math.Max(1, math.Round(s*1000)))
	}
	return Number(s) + " s"
}

// Number formats f with at most two decimals and no trailing zeros:
// "10", "0.5", "3.14".
func Number(f float64) string {
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
}
