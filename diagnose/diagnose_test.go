package diagnose

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"ratelab/jmx"
	"ratelab/limit"
	"ratelab/load"
	"ratelab/report"
	"ratelab/wire"
)

func TestTargetOf(t *testing.T) {
	for _, c := range []struct {
		name    string
		w       load.Workload
		perIter int
		want    Target
	}{
		{"closed, unpaced", load.Workload{Threads: 5}, 2, Target{Model: "closed"}},
		{"open rate counts iterations", load.Workload{Rate: limit.Per(10, time.Second)}, 3,
			Target{RPS: 30, Model: "open", Schedule: "10/s"}},
		// 0→100/s over 10 s is 500 arrivals, then 100/s for 10 s is 1000:
		// 1500 in 20 s, 75/s on average.
		{"stages average", load.Workload{Stages: load.Stages{{Duration: 10 * time.Second, From: 0, To: 100}, {Duration: 10 * time.Second, From: 100, To: 100}}}, 1,
			Target{RPS: 75, Model: "open", Schedule: "stages"}},
		// JMeter's default mode paces every thread to the target.
		{"this-thread multiplies", load.Workload{Threads: 20, Throughput: limit.Per(600, time.Minute), ThroughputMode: load.ThisThread}, 1,
			Target{RPS: 200, Model: "closed, throughput this-thread", Schedule: "600/m"}},
		{"all-threads does not", load.Workload{Threads: 20, Throughput: limit.Per(600, time.Minute), ThroughputMode: load.AllThreadsShared}, 4,
			Target{RPS: 10, Model: "closed, throughput all-threads-shared", Schedule: "600/m"}},
		{"no threads count as one", load.Workload{Throughput: limit.Per(5, time.Second)}, 1,
			Target{RPS: 5, Model: "closed, throughput this-thread", Schedule: "5/s"}},
	} {
		if got := TargetOf(&c.w, c.perIter); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestScriptLimit(t *testing.T) {
	const id = "00000000-0000-0000-0000-000000000001"
	ps := []wire.LimitState{
		{Policy: "org", Key: "org-1", Limit: 100, Window: "1s", Burst: 100},
		{Policy: "loose", Key: "script:" + id, Limit: 60, Window: "1m", Burst: 10},
		{Policy: "tight", Key: "script:" + id, Limit: 10, Window: "1m", Burst: 5},
		{Policy: "shadowed", Key: "script:" + id, Limit: 1, Window: "1m", Burst: 1, Shadow: true},
		{Policy: "broken", Key: "script:" + id, Limit: 1, Window: "a while", Burst: 1},
		{Policy: "other", Key: "script:ffffffff", Limit: 1, Window: "1h", Burst: 1},
	}
	p, err := ScriptLimit(ps, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "tight" || p.Rate != limit.Per(10, time.Minute) || p.Burst != 5 {
		t.Fatalf("limit %+v, want tight 10/m burst 5", p)
	}
	if _, err := ScriptLimit(ps[:1], id); err == nil || !strings.Contains(err.Error(), "no per-script limit") {
		t.Fatalf("without a per-script policy: %v", err)
	}
}

func TestSettle(t *testing.T) {
	ps := []wire.LimitState{
		{Limit: 100, Window: "1s", Burst: 100},  // 1 s to refill
		{Limit: 5, Window: "1s", Burst: 10},     // 2 s: the longest
		{Limit: 0, Window: "1s", Burst: 10},     // no rate: ignored
		{Limit: 5, Window: "forever", Burst: 9}, // unparsable: ignored
	}
	if got, want := Settle(ps), 2*time.Second+settleMargin; got != want {
		t.Fatalf("settle %v, want %v", got, want)
	}
	if got := Settle(nil); got != settleMargin {
		t.Fatalf("settle of nothing %v", got)
	}
}

func TestUpdatesPerSecond(t *testing.T) {
	s := &report.Summary{DurationS: 4, StatusCounts: map[string]int64{"200": 6, "204": 2, "429": 30, "error": 1}}
	if got := (&Run{Summary: s}).UpdatesPerSecond(); got != 2 {
		t.Errorf("one update per request: %v/s, want 8 successes / 4 s", got)
	}
	if got := (&Run{Summary: s, UpdatesPerRequest: 50}).UpdatesPerSecond(); got != 100 {
		t.Errorf("bulk of 50: %v/s, want 100", got)
	}
	if got := (&Run{Summary: &report.Summary{StatusCounts: map[string]int64{"200": 3}}}).UpdatesPerSecond(); got != 0 {
		t.Errorf("no duration: %v", got)
	}
}

func TestRunJSON(t *testing.T) {
	r := &Run{Name: "bulk", HTML: "/tmp/run-4.html", UpdatesPerRequest: 10,
		Summary: &report.Summary{Requests: 4, DurationS: 2, StatusCounts: map[string]int64{"200": 4}}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["name"] != "bulk" || m["html_report"] != "/tmp/run-4.html" || m["script_updates_per_s"] != 20.0 || m["requests"] != 4.0 {
		t.Fatalf("json %s", b)
	}
}

func ptr[T any](v T) *T { return &v }

// TestDiagnose walks the demo's four runs as fixed summaries: each
// finding quotes the figures of the run that shows it.
func TestDiagnose(t *testing.T) {
	a := &jmx.Analysis{IntendedRPS: ptr(10.0), StartupBurst: 200, Pitfalls: []jmx.Pitfall{
		{ID: "ctt-per-thread", Message: "per thread", Fix: "share the timer"},
		{ID: "startup-burst", Message: "burst", Fix: "ramp up"},
		{ID: "same-resource", Message: "one script", Fix: "spread"},
		{ID: "no-retry-after", Message: "ignores Retry-After", Fix: "honour it"},
	}}
	asIs := &Run{Summary: &report.Summary{AchievedRPS: 198.44, Requests: 400, RateLimit: report.RateLimit{
		Count429: 390, First429Request: ptr(uint64(9)), First429S: ptr(0.0421),
		RetryAfterS: &report.Range{Min: 0.0004, Max: 5.5}, ByPolicy: map[string]int64{"script-writes-per-script": 390}}}}
	paced := &Run{Summary: &report.Summary{AchievedRPS: 10, Requests: 30, RateLimit: report.RateLimit{
		Count429: 20, Share429: 2.0 / 3, ByPolicy: map[string]int64{"script-writes-per-script": 18, "org": 2}}}}
	spread := &Run{Summary: &report.Summary{DurationS: 3, StatusCounts: map[string]int64{"200": 30}}}
	bulk := &Run{UpdatesPerRequest: 20, Summary: &report.Summary{DurationS: 3, StatusCounts: map[string]int64{"200": 6}}}

	got := Diagnose(a, asIs, paced, spread, bulk)
	want := []Finding{
		{"per thread", "run 1 sent 198.4 req/s against an intended 10 req/s", "share the timer"},
		{"burst", "the plan sends 200 requests in its first second; in run 1 the first 429 answered request #10, 42 ms into the test", "ramp up"},
		{`there is a separate limit for updates of one script: "script-writes-per-script". one script`,
			`run 2, paced at 10.0 req/s on one script: 20 of 30 requests got 429 (66.7%), every one of them naming policy "script-writes-per-script" (script-writes-per-script (18), org (2)); run 3, the same rate over many scripts: 0 429s`, "spread"},
		{"ignores Retry-After", "run 1 kept sending after its first 429 and collected 390 of them while the server said to retry after 1 ms to 5.5 s", "honour it"},
	}
	if len(got) != len(want)+1 {
		t.Fatalf("%d findings, want %d: %+v", len(got), len(want)+1, got)
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("finding %d:\n got %+v\nwant %+v", i+1, got[i], w)
		}
	}
	last := got[len(got)-1]
	if !strings.Contains(last.Finding, "batching") || last.Evidence != "run 4 applied 40.0 script updates/s with 0 429s, against 10.0 updates/s in run 3" {
		t.Errorf("batching finding %+v", last)
	}

	// A plan with no pitfalls still gets the batching finding, and no
	// pitfall's evidence is read from a run that has none (no nil
	// dereference when nothing was intended).
	got = Diagnose(&jmx.Analysis{Pitfalls: []jmx.Pitfall{{ID: "ctt-per-thread"}}}, asIs, paced, spread, bulk)
	if len(got) != 2 || got[0].Evidence != "run 1 sent 198.4 req/s" {
		t.Fatalf("without an intended rate: %+v", got)
	}
}

func TestFormatting(t *testing.T) {
	for in, want := range map[float64]string{10: "10", 0.5: "0.5", 3.14159: "3.14", 2.999: "3", 0: "0"} {
		if got := Number(in); got != want {
			t.Errorf("Number(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0.43: "430 ms", 0.0001: "1 ms", 1.5: "1.5 s", 60: "60 s"} {
		if got := Seconds(in); got != want {
			t.Errorf("Seconds(%v) = %q, want %q", in, got, want)
		}
	}
	if got := ByPolicy(map[string]int64{"b": 3, "a": 3, "c": 12}); got != "c (12), a (3), b (3)" {
		t.Errorf("ByPolicy %q", got)
	}
	if got := topPolicy(map[string]int64{"b": 3, "a": 3, "c": 1}); got != "a" {
		t.Errorf("topPolicy %q", got)
	}
}

// TestLimitsOfWindows: a window policy as /api/v2/ratelimits describes it
// (no burst) is a bucket whose burst is its quota, and settles after one
// window (fixed) or two (sliding); a concurrency policy has no rate.
func TestLimitsOfWindows(t *testing.T) {
	const id = "s1"
	ps := []wire.LimitState{
		{Policy: "per-script", Algorithm: "fixed-window", Key: id, Limit: 2, Window: "1s"},
		{Policy: "in-flight", Algorithm: "concurrency", Key: id, Limit: 1, Lease: "30s"},
	}
	p, err := ScriptLimit(ps, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "per-script" || p.Rate != limit.Per(2, time.Second) || p.Burst != 2 || p.Validate() != nil {
		t.Fatalf("limit %+v, want per-script 2/s burst 2", p)
	}
	if got, want := Settle(ps), time.Second+settleMargin; got != want {
		t.Errorf("settle fixed %v, want %v", got, want)
	}
	ps[0].Algorithm, ps[0].Window = "sliding-window", "10s"
	if got, want := Settle(ps), 20*time.Second+settleMargin; got != want {
		t.Errorf("settle sliding %v, want %v", got, want)
	}
}
