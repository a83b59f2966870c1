package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

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
