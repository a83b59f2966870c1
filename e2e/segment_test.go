package e2e_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// segmentRate and segmentFor are TestSegmentsMergeToOneRun's open
// schedule: 1,200 arrivals.
const (
	segmentRate = 400
	segmentFor  = 3 * time.Second
)

// TestSegmentsMergeToOneRun runs one open schedule against one real
// `ratelab serve` (in-memory limits, GET /healthz, which no policy
// limits), first as one `ratelab load` process and then as three at once
// with --segment 1/3, 2/3 and 3/3 and a common --start-at, and merges the
// three result streams with `ratelab report`: the merged report has
// exactly the whole run's request count, its rate within 1 %, and a
// timeline of the same seconds.
func TestSegmentsMergeToOneRun(t *testing.T) {
	dir := t.TempDir()
	srv := startReplicas(t, 1, "--db", "sqlite:"+filepath.Join(dir, "r.db"), "--bootstrap-client", "e2e:e2e-secret")[0]
	load := func(results string, extra ...string) *exec.Cmd {
		args := append([]string{"load", "--url", srv.url + "/healthz", "--rate", fmt.Sprintf("%d/s", segmentRate),
			"--duration", segmentFor.String(), "--progress", "0", "--results", results}, extra...)
		return exec.Command(ratelabBin, args...)
	}
	whole := filepath.Join(dir, "whole.results")
	if out, err := load(whole).CombinedOutput(); err != nil {
		t.Fatalf("ratelab load: %v\n%s", err, out)
	}

	// The three segments start together: their processes are given a
	// start a moment ahead, time to start up and fetch nothing.
	startAt := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	var segs []string
	var cmds []*exec.Cmd
	for k := 1; k <= 3; k++ {
		p := filepath.Join(dir, fmt.Sprintf("segment-%d.results", k))
		segs = append(segs, p)
		c := load(p, "--segment", fmt.Sprintf("%d/3", k), "--start-at", startAt)
		out := &syncBuffer{}
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("segment %d/3:\n%s", k, out)
			}
		})
	}
	for k, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("segment %d/3: %v", k+1, err)
		}
	}

	type second struct {
		Requests int64 `json:"requests"`
	}
	type summary struct {
		Requests    int64            `json:"requests"`
		AchievedRPS float64          `json:"achieved_rps"`
		TargetRPS   float64          `json:"target_rps"`
		Status      map[string]int64 `json:"status_counts"`
		Latency     map[string]any   `json:"latency_ms"`
		Timeline    []second         `json:"timeline"`
		Dropped     int64            `json:"dropped"`
	}
	report := func(files ...string) summary {
		t.Helper()
		cmd := exec.Command(ratelabBin, append([]string{"report", "--json", "-"}, files...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ratelab report %v: %v", files, err)
		}
		var s summary
		if err := json.Unmarshal(out, &s); err != nil {
			t.Fatalf("report: %v in %s", err, out)
		}
		return s
	}
	one, merged := report(whole), report(segs...)
	parts := make([]summary, 3)
	for i, p := range segs {
		parts[i] = report(p)
	}
	t.Logf("one process: %d requests at %.2f/s (target %.0f); three segments merged: %d at %.2f/s (target %.0f), each %d, %d, %d",
		one.Requests, one.AchievedRPS, one.TargetRPS, merged.Requests, merged.AchievedRPS, merged.TargetRPS,
		parts[0].Requests, parts[1].Requests, parts[2].Requests)

	want := int64(segmentRate * segmentFor.Seconds())
	if one.Requests != want || merged.Requests != one.Requests {
		t.Errorf("requests: one process %d, segments merged %d, want %d both", one.Requests, merged.Requests, want)
	}
	for i, p := range parts {
		if p.Requests != want/3 {
			t.Errorf("segment %d/3: %d requests, want %d", i+1, p.Requests, want/3)
		}
	}
	if one.Status["200"] != one.Requests || merged.Status["200"] != merged.Requests {
		t.Errorf("statuses: one process %v, merged %v: want all 200", one.Status, merged.Status)
	}
	if math.Abs(merged.AchievedRPS-one.AchievedRPS) > 0.01*one.AchievedRPS {
		t.Errorf("rate: segments merged %.2f/s, one process %.2f/s: more than 1 %% apart", merged.AchievedRPS, one.AchievedRPS)
	}
	if merged.TargetRPS != one.TargetRPS {
		t.Errorf("target: segments merged %v/s, one process %v/s", merged.TargetRPS, one.TargetRPS)
	}
	// The timelines: as many seconds, each with its share of arrivals. A
	// row counts requests by their actual send, and a process that stalls
	// on a busy machine sends a few late, into the next second: up to 10 %
	// of a row apart. (That the rows are merged on the wall clock exactly
	// is cmd/ratelab's TestReportMergesSegmentsExactly.)
	// A late send past the last second opens one more row in either
	// timeline; that row then holds only the late few.
	perRow := int64(segmentRate)
	if d := len(merged.Timeline) - len(one.Timeline); d < -1 || d > 1 {
		t.Errorf("timeline: %d seconds merged, %d in one process", len(merged.Timeline), len(one.Timeline))
	}
	row := func(tl []second, i int) int64 {
		if i < len(tl) {
			return tl[i].Requests
		}
		return 0
	}
	var rows int64
	for i := range max(len(merged.Timeline), len(one.Timeline)) {
		m, o := row(merged.Timeline, i), row(one.Timeline, i)
		rows += m
		if math.Abs(float64(m-o)) > 0.1*float64(perRow)+2 {
			t.Errorf("second %d: %d requests merged, %d in one process", i, m, o)
		}
	}
	if rows != merged.Requests {
		t.Errorf("merged timeline holds %d requests, the report %d", rows, merged.Requests)
	}
}
