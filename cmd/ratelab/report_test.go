package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ratelab/load"
	"ratelab/report"
)

// writeResults writes a results file of n requests sent every 100 ms from
// start, where every third one is a 429 of policy "per-script".
func writeResults(t *testing.T, path string, start time.Time, firstSeq uint64, n int) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	enc := load.NewEncoder(fh)
	if err := enc.WriteInfo(load.RunInfo{Start: start, Model: "open", TargetRPS: 10, Name: "script updates"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * 100 * time.Millisecond)
		r := &load.Result{
			Seq: firstSeq + uint64(i), Thread: 1, Label: "PUT script", Method: "PUT", URL: "http://127.0.0.1:1/s",
			Intended: at, Start: at, TTFB: 4 * time.Millisecond, Elapsed: 5 * time.Millisecond,
			Status: 200, Remaining: int64(n - i), ActiveThreads: 1,
		}
		if i%3 == 2 {
			r.Status, r.RetryAfter, r.Policy, r.Remaining = 429, time.Second, "per-script", 0
		}
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, b := filepath.Join(dir, "a.results"), filepath.Join(dir, "b.results")
	writeResults(t, a, start, 0, 30)
	writeResults(t, b, start.Add(50*time.Millisecond), 1000, 30)
	jsonOut, htmlOut, jtlOut := filepath.Join(dir, "s.json"), filepath.Join(dir, "r.html"), filepath.Join(dir, "r.jtl")

	// Flags before and after the files; both files merge into one report.
	code, out, errOut := runCmd(t, "report", "--html", htmlOut, a, b, "--json", jsonOut, "--jtl", jtlOut, "--threshold", "p99<1s")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	if !strings.Contains(out, "Requests     60 in ") || !strings.Contains(out, "429          20 (33.3%) first at request #3, 0.200 s in") ||
		!strings.Contains(out, "by policy    per-script 20") || !strings.Contains(out, "target 20.0/s") {
		t.Errorf("text summary:\n%s", out)
	}
	if !strings.Contains(errOut, "threshold ok    p99<1000ms") {
		t.Errorf("stderr: %s", errOut)
	}

	var sum report.Summary
	raw, err := os.ReadFile(jsonOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Requests != 60 || sum.RateLimit.Count429 != 20 || sum.StatusCounts["200"] != 40 || len(sum.Timeline) != 3 || sum.Title != "script updates" {
		t.Errorf("json summary: %s", raw)
	}
	jtl, err := os.ReadFile(jtlOut)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(jtl)), "\n"); len(lines) != 61 || lines[0] != report.JTLHeader {
		t.Errorf("jtl has %d lines, header %q", len(lines), lines[0])
	}
	html, err := os.ReadFile(htmlOut)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), `<svg id="throughput"`) {
		t.Errorf("html report lacks its charts")
	}
}

func TestReportCommandJSONToStdout(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.results")
	writeResults(t, a, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), 0, 10)
	code, out, errOut := runCmd(t, "report", a, "--json", "-")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var sum report.Summary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("stdout is not only JSON: %v\n%s", err, out)
	}
	if sum.Requests != 10 {
		t.Errorf("requests = %d", sum.Requests)
	}
}

func TestReportCommandThresholdFails(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.results")
	writeResults(t, a, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), 0, 10)
	code, _, errOut := runCmd(t, "report", a, "--threshold", "share_429<1%", "--threshold", "errors==0")
	if code != 99 || !strings.Contains(errOut, "threshold FAIL  share_429<1% (actual 30%)") || !strings.Contains(errOut, "1 of 2 thresholds failed") {
		t.Errorf("exit %d, stderr %s", code, errOut)
	}
}

func TestReportCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.results")
	if err := os.WriteFile(bad, []byte("{\"format\":\"something-else\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"report"}, 2, "no results file given"},
		{[]string{"report", filepath.Join(dir, "missing")}, 1, "open results"},
		{[]string{"report", bad}, 1, "not a ratelab results file"},
		{[]string{"report", bad, "--threshold", "p98<1ms"}, 1, `unknown metric "p98"`},
		{[]string{"report", bad, "--json", "-", "--jtl", "-"}, 2, "cannot both write to standard output"},
	} {
		code, _, errOut := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errOut, c.code, c.want)
		}
	}
}
