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
	Burst    int64    `json:"burst"`
	Evidence Evidence `json:"evidence"`
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
		fmt.Fprintln(tw, "SCOPE\tPOLICY\tRATE/S\tINTERVAL\tBURST\tCLAIMED\tEVIDENCE")
		for _, l := range r.Limits {
			pol := l.Policy
			if pol == "" {
				pol = "-"
			}
			claimed := "-"
			if c := l.Evidence.Claimed; c != nil {
				claimed = fmt.Sprintf("%.4g/s burst %d", c.RatePerS, c.Burst)
			}
			burst := "?"
			if l.Burst > 0 {
				burst = fmt.Sprint(l.Burst)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.4g\t%s\t%s\t%s\t%d admitted before the first 429; %d admissions over %.2fs (steps %s)\n",
				l.Scope, pol, l.RatePerS, interval(l.RateLow, l.RateHigh), burst, claimed,
				l.Evidence.AdmittedBeforeFirst429, l.Evidence.Admissions, l.Evidence.SpanS, strings.Join(l.Evidence.Steps, ", "))
		}
		tw.Flush()
		for _, l := range r.Limits {
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
