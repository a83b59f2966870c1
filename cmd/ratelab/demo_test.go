package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDemoQuick runs the whole demo against its embedded server over
// loopback and checks the story its numbers tell.
func TestDemoQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo sends real load for about 15 s")
	}
	code, out, errOut := runCmd(t, "demo", "--quick", "--json", "--out", t.TempDir())
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var doc struct {
		Runs []struct {
			Name       string           `json:"name"`
			Requests   int64            `json:"requests"`
			Achieved   float64          `json:"achieved_rps"`
			Statuses   map[string]int64 `json:"status_counts"`
			HTML       string           `json:"html_report"`
			UpdatesPer float64          `json:"script_updates_per_s"`
			RateLimit  struct {
				Count429 int64            `json:"count_429"`
				ByPolicy map[string]int64 `json:"by_policy"`
			} `json:"rate_limit"`
		} `json:"runs"`
		Diagnosis []struct{ Finding, Evidence, Fix string } `json:"diagnosis"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if len(doc.Runs) != 4 {
		t.Fatalf("%d runs, want 4", len(doc.Runs))
	}
	asIs, paced, spread, bulk := doc.Runs[0], doc.Runs[1], doc.Runs[2], doc.Runs[3]
	if asIs.Name != "the plan as JMeter runs it" || asIs.Requests != 400 {
		t.Errorf("run 1: %s with %d requests", asIs.Name, asIs.Requests)
	}
	// The per-thread timer multiplies the rate: far above the intended 10/s.
	if asIs.Achieved < 50 {
		t.Errorf("run 1 achieved %.1f req/s; the per-thread timer should give ~200", asIs.Achieved)
	}
	for i, r := range doc.Runs[:2] {
		if r.RateLimit.Count429 == 0 || r.RateLimit.ByPolicy["script-writes-per-script"] != r.RateLimit.Count429 {
			t.Errorf("run %d: 429s %d by %v; want all by script-writes-per-script", i+1, r.RateLimit.Count429, r.RateLimit.ByPolicy)
		}
	}
	if paced.Achieved < 8 || paced.Achieved > 12 {
		t.Errorf("run 2 achieved %.1f req/s, want about 10", paced.Achieved)
	}
	if spread.RateLimit.Count429 != 0 || bulk.RateLimit.Count429 != 0 {
		t.Errorf("fixed runs got 429s: spread %d, bulk %d", spread.RateLimit.Count429, bulk.RateLimit.Count429)
	}
	if bulk.UpdatesPer < 2*spread.UpdatesPer {
		t.Errorf("bulk %.1f updates/s is not well above one-by-one %.1f", bulk.UpdatesPer, spread.UpdatesPer)
	}
	for _, r := range doc.Runs {
		if !strings.HasSuffix(r.HTML, ".html") {
			t.Errorf("run %q has no HTML report", r.Name)
		}
	}
	var findings []string
	for _, f := range doc.Diagnosis {
		findings = append(findings, f.Finding)
		if f.Evidence == "" || f.Fix == "" {
			t.Errorf("finding without evidence or fix: %+v", f)
		}
	}
	all := strings.Join(findings, "\n")
	for _, want := range []string{"this thread only", `"script-writes-per-script"`, "Retry-After", "bulk"} {
		if !strings.Contains(all, want) {
			t.Errorf("diagnosis lacks %q:\n%s", want, all)
		}
	}
	if !strings.Contains(errOut, "Diagnosis:") {
		t.Errorf("the narrative did not go to stderr with --json")
	}
}
