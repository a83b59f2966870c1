package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ratelab/load"
)

// writeRun writes the results file of a synthetic open run of 300/s for
// 2.5 s from t0, or of segment seg of it: its arrivals (every third from
// the K-th), numbered by the file's own counter as a process numbers its
// requests, under a RunInfo whose Start is start (a segment's process may
// have started late) and whose target is the segment's share. Every
// fifth arrival is a 429; latencies vary with the arrival.
func writeRun(t *testing.T, path string, t0, start time.Time, seg load.Segment) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	enc := load.NewEncoder(fh)
	if err := enc.WriteInfo(load.RunInfo{Start: start, Model: "open", TargetRPS: 300 * seg.Share(),
		Name: "segments", Segment: seg.String()}); err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	for i := range 750 {
		if !seg.Has(uint64(i)) {
			continue
		}
		at := t0.Add(time.Duration(i) * time.Second / 300)
		r := &load.Result{Seq: seq, Thread: i + 1, Iteration: i, Label: "GET", Method: "GET", URL: "http://127.0.0.1:1/",
			Intended: at, Start: at.Add(time.Duration(i%7) * 100 * time.Microsecond),
			TTFB: time.Duration(1+i%13) * time.Millisecond, Elapsed: time.Duration(2+i%17) * time.Millisecond,
			Status: 200, Remaining: int64(750 - i), ActiveThreads: 1}
		if i%5 == 4 {
			r.Status, r.RetryAfter, r.Policy, r.Remaining = 429, time.Second, "org", 0
		}
		seq++
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

// TestReportMergesSegmentsExactly merges the files of three segments,
// whose processes started 0 ms, 400 ms and 700 ms after the run's time
// zero, and compares the report with the whole run's: the same counts,
// histograms, timeline (on the wall clock: rows of the same seconds),
// rate and target. Only what is a process's own differs: request numbers
// and the recovery episodes, which follow each file's order.
func TestReportMergesSegmentsExactly(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	whole := filepath.Join(dir, "whole.results")
	writeRun(t, whole, t0, t0, load.Segment{})
	var segs []string
	for k, late := range []time.Duration{0, 400 * time.Millisecond, 700 * time.Millisecond} {
		p := filepath.Join(dir, "seg"+string(rune('1'+k))+".results")
		writeRun(t, p, t0, t0.Add(late), load.Segment{K: k + 1, N: 3})
		segs = append(segs, p)
	}
	summary := func(files ...string) map[string]any {
		t.Helper()
		code, out, errOut := runCmd(t, append([]string{"report", "--json", "-"}, files...)...)
		if code != 0 || errOut != "" {
			t.Fatalf("report %v: exit %d, stderr %s", files, code, errOut)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatal(err)
		}
		rl := m["rate_limit"].(map[string]any)
		for _, own := range []string{"first_429_request", "recovery_s", "unrecovered"} {
			delete(rl, own)
		}
		return m
	}
	want, got := summary(whole), summary(segs[2], segs[0], segs[1])
	if want["requests"].(float64) != 750 {
		t.Fatalf("whole run: %v requests, want 750", want["requests"])
	}
	for _, key := range []string{"requests", "duration_s", "achieved_rps", "target_rps", "status_counts", "latency_ms",
		"service_time_ms", "send_lag_ms", "rate_limit", "timeline", "start"} {
		w, _ := json.Marshal(want[key])
		g, _ := json.Marshal(got[key])
		if string(w) != string(g) {
			t.Errorf("%s: segments merged %s, whole run %s", key, g, w)
		}
	}

	// Two of three: the report says what is missing.
	code, _, errOut := runCmd(t, "report", segs[0], segs[2])
	if code != 0 || !strings.Contains(errOut, "segment 2/3 is missing") {
		t.Errorf("report of segments 1 and 3: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCmd(t, "report", segs[0], segs[0], segs[1], segs[2])
	if code != 0 || !strings.Contains(errOut, "segment 1/3 is in both") {
		t.Errorf("report with segment 1 twice: exit %d, stderr %q", code, errOut)
	}
}
