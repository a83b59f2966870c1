package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Report is what a probe found. A report is complete when Stopped is
// empty; otherwise it holds what was learned before the probe stopped.
type Report struct {
	URL    string `json:"url"`
	Method string `json:"method"`
	// MaxRate and Budget are the bounds the probe ran under.
	MaxRate string `json:"max_rate"`
	Budget  int    `json:"budget"`
	// Limits are the limits found, narrowest scope first.
	Limits []Limit `json:"limits"`
	// Advertised is what the server claims about its limits.
	Advertised Advertised `json:"advertised"`
	// Steps are every step the probe ran, in order.
	Steps        []Step  `json:"steps"`
	RequestsUsed int64   `json:"requests_used"`
	DurationS    float64 `json:"duration_s"`
	// Stopped says why the probe stopped early ("" when it finished).
	Stopped string `json:"stopped,omitempty"`
	// Notes are conclusions in words (e.g. no other limit below max-rate).
	Notes []string `json:"notes,omitempty"`
}

// Limit is one limit the probe found.
type Limit struct {
	// Scope is what the limit is counted per: "resource" (its bucket
	// follows the --vary value), "endpoint" (shared by every value of it),
	// with ", per client" or ", shared by clients" when a second credential
	// told; "unknown" when nothing told.
	Scope string `json:"scope"`
	// Policy is the server's name for the limit, when its responses named it.
	Policy string `json:"policy,omitempty"`
	// RatePerS is the sustained rate, within [RateLow, RateHigh].
	RatePerS float64 `json:"rate_per_s"`
	RateLow  float64 `json:"rate_low"`
	RateHigh float64 `json:"rate_high"`
	// Burst is the most requests admitted at once from a full bucket; 0
	// when it could not be measured.
	Burst int64 `json:"burst"`
	// Algorithm is the limit's family: "token-bucket", "fixed-window",
	// "sliding-window", "concurrency", or "unknown" when no family
	// explained what was seen.
	Algorithm string `json:"algorithm"`
	// Quota is the requests per window (windows), the burst (token
	// buckets) or the requests in flight (concurrency).
	Quota int64 `json:"quota"`
	// WindowS is the window (windows) or the time an empty bucket takes
	// to fill (token buckets), in seconds; 0 for concurrency.
	WindowS float64 `json:"window_s"`
	// WindowStart says where a fixed window starts: "epoch" (aligned to
	// multiples of the window since the Unix epoch), "first request" (at
	// the first request after the last window ended), "aligned" (a fixed
	// phase, not the epoch's), or "unknown".
	WindowStart string `json:"window_start,omitempty"`
	// Delays is set when the limiter queued excess requests instead of
	// rejecting them (nginx limit_req without nodelay).
	Delays bool `json:"delays,omitempty"`
	// CountsRejected says whether rejected requests count against the
	// limit; nil when the probe could not tell.
	CountsRejected *bool `json:"counts_rejected"`
	// Confidence is how sure the probe is of the family and its numbers,
	// from 0 to 1 (see doc.go).
	Confidence float64  `json:"confidence"`
	Evidence   Evidence `json:"evidence"`
}

// Evidence is how a limit was found.
type Evidence struct {
	// Steps name the steps (see Report.Steps) that measured the limit.
	Steps []string `json:"steps"`
	// AdmittedBeforeFirst429 is c of the burst step; BurstLow/High the
	// bracket c − r·t_c ≤ b < c + 1 − r·t_rej.
	AdmittedBeforeFirst429 int     `json:"admitted_before_first_429"`
	BurstLow               float64 `json:"burst_low"`
	BurstHigh              float64 `json:"burst_high"`
	// Admissions after the first 429 over SpanS seconds gave the rate.
	Admissions int     `json:"admissions_after_first_429"`
	SpanS      float64 `json:"span_s"`
	// Claimed is what the server advertised for this policy, if anything.
	Claimed *Claim `json:"claimed,omitempty"`
	// Headers are rate-limit header lines seen ("STATUS Name: value").
	Headers []string `json:"headers,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// Claim is one limit as the server advertises it.
type Claim struct {
	Source   string  `json:"source"`
	Policy   string  `json:"policy"`
	Scope    string  `json:"scope,omitempty"`
	RatePerS float64 `json:"rate_per_s,omitempty"`
	Burst    int64   `json:"burst,omitempty"`
}

// Advertised is what the first response and the limits endpoint said.
type Advertised struct {
	// Status of the first request.
	Status int `json:"status"`
	// Policy is the decisive policy the first response named.
	Policy    string  `json:"policy,omitempty"`
	Limit     int64   `json:"limit"`
	Remaining int64   `json:"remaining"`
	ResetS    float64 `json:"reset_s"`
	// Claims are the policies the server listed.
	Claims []Claim `json:"claims,omitempty"`
	// Headers are the rate-limit header lines of the first response.
	Headers []string `json:"headers,omitempty"`
}

// Step is one step's summary.
type Step struct {
	Name     string `json:"name"`
	Mode     string `json:"mode"`
	Requests int    `json:"requests"`
	Admitted int    `json:"admitted"`
	Rejected int    `json:"rejected"`
	Errors   int    `json:"errors"`
	// SentPerS is the average sending rate.
	SentPerS  float64 `json:"sent_per_s"`
	DurationS float64 `json:"duration_s"`
	// First429 is the index of the first 429, -1 when none.
	First429 int      `json:"first_429"`
	Policies []string `json:"policies,omitempty"`
	// WaitS is how long the probe waited for the bucket to refill before
	// the step.
	WaitS float64 `json:"wait_s,omitempty"`
	// Bound is "time" or "requests" when the step ended at that bound of
	// its own (Config.MaxStep, its share of the budget) rather than by
	// deciding; empty otherwise.
	Bound string `json:"bound,omitempty"`
}

// WriteText writes the report as people read it: the limits as a table,
// then what the server claims, the notes, and why the probe stopped.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "probe %s %s (max rate %s, budget %d): %d requests in %.1fs\n\n",
		r.Method, r.URL, r.MaxRate, r.Budget, r.RequestsUsed, r.DurationS)
	if len(r.Limits) == 0 {
		b.WriteString("no limit found\n")
	} else {
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SCOPE\tPOLICY\tFAMILY\tLIMIT\tRATE/S\tCONFIDENCE\tCLAIMED")
		for _, l := range r.Limits {
			pol := l.Policy
			if pol == "" {
				pol = "-"
			}
			claimed := "-"
			if c := l.Evidence.Claimed; c != nil {
				claimed = fmt.Sprintf("%.4g/s burst %d", c.RatePerS, c.Burst)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\n",
				l.Scope, pol, family(l), l.Terms(), interval(l.RateLow, l.RateHigh), l.Confidence, claimed)
		}
		tw.Flush()
		for _, l := range r.Limits {
			fmt.Fprintf(&b, "  %s: %s\n", l.Scope, l.Advice())
			for _, n := range l.Evidence.Notes {
				fmt.Fprintf(&b, "  %s: %s\n", l.Scope, n)
			}
		}
	}
	if a := r.Advertised; len(a.Claims) > 0 || len(a.Headers) > 0 {
		b.WriteString("\nadvertised:\n")
		for _, h := range a.Headers {
			fmt.Fprintf(&b, "  %s\n", h)
		}
		for _, c := range a.Claims {
			fmt.Fprintf(&b, "  %s: %.4g/s burst %d %s (%s)\n", c.Policy, c.RatePerS, c.Burst, c.Scope, c.Source)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\nnote: %s\n", n)
	}
	if r.Stopped != "" {
		fmt.Fprintf(&b, "\nstopped early: %s; the limits above are what was learned before\n", r.Stopped)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// family names the limit's family with its particulars.
func family(l Limit) string {
	f := l.Algorithm
	switch {
	case l.Delays:
		f += " (delays excess)"
	case l.Algorithm == "fixed-window" && l.WindowStart != "":
		f += " (" + startWords(l.WindowStart) + ")"
	}
	if l.CountsRejected != nil && *l.CountsRejected {
		f += ", counts 429s"
	}
	return f
}

func startWords(s string) string {
	switch s {
	case "epoch":
		return "aligned to the clock"
	case "first request":
		return "from the first request"
	case "aligned":
		return "fixed phase"
	}
	return "start unknown"
}

// Terms states the limit in its family's own terms: "30 per 10 s",
// "2/s, burst 6", "4 in flight".
func (l Limit) Terms() string {
	switch l.Algorithm {
	case "fixed-window", "sliding-window":
		return fmt.Sprintf("%d per %s", l.Quota, secs(l.WindowS))
	case "concurrency":
		return fmt.Sprintf("%d in flight", l.Quota)
	case "token-bucket":
		return fmt.Sprintf("%.4g/s, burst %d", l.RatePerS, l.Burst)
	}
	if l.Burst > 0 {
		return fmt.Sprintf("%d before the first 429", l.Burst)
	}
	return "?"
}

func secs(s float64) string {
	if s >= 1 {
		return fmt.Sprintf("%.3g s", s)
	}
	return fmt.Sprintf("%.3g ms", s*1000)
}

// Advice says how a client lives with the limit, from its family.
func (l Limit) Advice() string {
	switch l.Algorithm {
	case "token-bucket":
		if l.Delays {
			return fmt.Sprintf("pace at %.4g/s: above it requests queue (up to %d) and wait before they are answered, then fail", l.RatePerS, l.Burst-1)
		}
		return fmt.Sprintf("pace at %.4g/s; after a pause up to %d may go at once, and one more every %s after that", l.RatePerS, l.Burst, secs(1/l.RatePerS))
	case "fixed-window":
		at := "at the window's start"
		if l.WindowStart == "epoch" {
			at = "on the clock's multiples of " + secs(l.WindowS)
		}
		if l.CountsRejected != nil && *l.CountsRejected {
			return fmt.Sprintf("%d per %s of activity: every request, a 429 too, restarts the window, so after a 429 stay silent for %s instead of retrying, or it never recovers",
				l.Quota, secs(l.WindowS), secs(l.WindowS))
		}
		return fmt.Sprintf("spread %d over each %s (windows reset %s); a burst at the end of one window and the start of the next gets %d within moments, and after a 429 nothing comes back until the reset",
			l.Quota, secs(l.WindowS), at, 2*l.Quota)
	case "sliding-window":
		s := fmt.Sprintf("keep under %d per %s (%.4g/s): a burst spends the quota at once, and it comes back as a trickle, about one per %s, as the old window's weight decays; a full window still weighs on the next, so a burst costs for up to %s",
			l.Quota, secs(l.WindowS), l.RatePerS, secs(l.WindowS/float64(max(l.Quota, 1))), secs(2*l.WindowS))
		if l.CountsRejected != nil && *l.CountsRejected {
			s += "; its 429s count too: after one, pause instead of retrying, or it never recovers"
		}
		return s
	case "concurrency":
		return fmt.Sprintf("keep at most %d requests in flight; any rate is fine as long as they do not overlap more", l.Quota)
	}
	return "family unknown: honour Retry-After and back off after a 429"
}

func interval(lo, hi float64) string {
	if math.IsInf(hi, 1) || hi == 0 {
		return fmt.Sprintf("≥ %.4g", lo)
	}
	return fmt.Sprintf("%.4g–%.4g", lo, hi)
}

// WriteJSON writes the report as indented JSON. An unbounded rate
// interval is written as a rate_high of -1.
func (r *Report) WriteJSON(w io.Writer) error {
	out := *r
	out.Limits = make([]Limit, len(r.Limits))
	for i, l := range r.Limits {
		if math.IsInf(l.RateHigh, 0) || math.IsNaN(l.RateHigh) {
			l.RateHigh = -1
		}
		out.Limits[i] = l
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&out); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}
