package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ratelab/load"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// t0 is the fixed start of the fixture test.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// row describes one fixture result; times are milliseconds from t0.
type row struct {
	intended, delay  int // intended send time; actual send = intended+delay
	status           int
	elapsed, ttfb    int
	retryAfter       int // ms
	policy           string
	remaining        int64
	waited           int
	label, errorText string
}

// fixtureRows: 20 requests paced at 10/s, two seconds of timeline. The
// script's per-script limit answers 429 to requests 5–9, the per-org
// limit to request 13; 11 is a network error, 12 a 500, 14 a 404 whose
// label needs CSV quoting, 15 waited 100 ms for a worker (and 250 ms for
// a Retry-After before that), 16 is a redirect.
var fixtureRows = []row{
	{intended: 0, status: 200, elapsed: 10, ttfb: 5, remaining: 4},
	{intended: 100, status: 200, elapsed: 11, ttfb: 5, remaining: 3},
	{intended: 200, status: 200, elapsed: 12, ttfb: 6, remaining: 2},
	{intended: 300, status: 200, elapsed: 13, ttfb: 6, remaining: 1},
	{intended: 400, status: 200, elapsed: 14, ttfb: 7, remaining: 0},
	{intended: 500, status: 429, elapsed: 2, ttfb: 2, retryAfter: 1000, policy: "script-writes-per-script", remaining: 0},
	{intended: 600, status: 429, elapsed: 2, ttfb: 2, retryAfter: 1000, policy: "script-writes-per-script", remaining: 0},
	{intended: 700, status: 429, elapsed: 3, ttfb: 2, retryAfter: 1000, policy: "script-writes-per-script", remaining: 0},
	{intended: 800, status: 429, elapsed: 3, ttfb: 2, retryAfter: 500, policy: "script-writes-per-script", remaining: 0},
	{intended: 900, status: 429, elapsed: 4, ttfb: 3, retryAfter: 1000, policy: "script-writes-per-script", remaining: 0},
	{intended: 1000, status: 200, elapsed: 10, ttfb: 5, remaining: 4},
	{intended: 1100, status: 0, elapsed: 1, remaining: -1, errorText: "dial tcp 127.0.0.1:1: connect: connection refused"},
	{intended: 1200, status: 500, elapsed: 20, ttfb: 19, remaining: 3},
	{intended: 1300, status: 429, elapsed: 2, ttfb: 2, retryAfter: 2000, policy: "script-writes-per-org", remaining: 0},
	{intended: 1400, status: 404, elapsed: 5, ttfb: 4, remaining: 2, label: `PUT "odd", label`},
	{intended: 1500, delay: 100, status: 200, elapsed: 10, ttfb: 5, remaining: 1, waited: 250},
	{intended: 1600, status: 302, elapsed: 6, ttfb: 6, remaining: -1},
	{intended: 1700, status: 200, elapsed: 30, ttfb: 25, remaining: 2},
	{intended: 1800, status: 200, elapsed: 40, ttfb: 35, remaining: 1},
	{intended: 1900, status: 200, elapsed: 50, ttfb: 45, remaining: 0},
}

func msd(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func fixture() []*load.Result {
	out := make([]*load.Result, len(fixtureRows))
	for i, r := range fixtureRows {
		label := r.label
		if label == "" {
			label = "PUT /api/v2/architect/scripts/{scriptId}"
		}
		out[i] = &load.Result{
			Seq:           uint64(i),
			Thread:        i%4 + 1,
			Iteration:     i / 4,
			Label:         label,
			Method:        "PUT",
			URL:           "http://127.0.0.1:8080/api/v2/architect/scripts/s1",
			Intended:      t0.Add(msd(r.intended)),
			Start:         t0.Add(msd(r.intended + r.delay)),
			TTFB:          msd(r.ttfb),
			Elapsed:       msd(r.elapsed),
			Status:        r.status,
			Error:         r.errorText,
			BytesIn:       int64(100 + i),
			BytesOut:      42,
			RetryAfter:    msd(r.retryAfter),
			Policy:        r.policy,
			Remaining:     r.remaining,
			Waited:        msd(r.waited),
			ActiveThreads: 4,
		}
	}
	return out
}

func fixtureSummary(t *testing.T) *Summary {
	t.Helper()
	a := NewAggregator(Config{Start: t0, TargetRPS: 10, Model: "open", Title: "fixture"})
	for _, r := range fixture() {
		a.Add(r)
	}
	a.SetDropped(3)
	return a.Summary()
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestGoldenText(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, fixtureSummary(t)); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.txt.golden", b.Bytes())
}

func TestGoldenJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, fixtureSummary(t)); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.json.golden", b.Bytes())
}

func TestGoldenJTL(t *testing.T) {
	var b bytes.Buffer
	w := NewJTLWriter(&b)
	for _, r := range fixture() {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	golden(t, "results.jtl.golden", b.Bytes())
}

func TestJTLHeaderOnlyWhenEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := NewJTLWriter(&b).Flush(); err != nil {
		t.Fatal(err)
	}
	if b.String() != JTLHeader+"\n" {
		t.Fatalf("empty JTL = %q", b.String())
	}
}

// A sub-result (Parent set: an embedded resource, a parent sample's
// child) is no line of its own, as in JMeter's CSV results file.
func TestJTLLeavesOutSubResults(t *testing.T) {
	var b bytes.Buffer
	w := NewJTLWriter(&b)
	for _, r := range []*load.Result{{Label: "http://h/a.png", Parent: "page", Status: 200}, {Label: "page", Status: 200}} {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], ",page,") {
		t.Errorf("JTL %q: want the header and the parent only", lines)
	}
}

func TestJTLFields(t *testing.T) {
	var b bytes.Buffer
	w := NewJTLWriter(&b)
	rs := fixture()
	for _, r := range rs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != len(rs)+1 || lines[0] != JTLHeader {
		t.Fatalf("got %d lines, header %q", len(lines), lines[0])
	}
	// Request 15 was sent 100 ms late after waiting 250 ms for Retry-After.
	want15 := []string{
		itoa(t0.Add(1600 * time.Millisecond).UnixMilli()), "10", "PUT /api/v2/architect/scripts/{scriptId}",
		"200", "OK", "Thread Group 1-4", "text", "true", "", "115", "42", "4", "4",
		"http://127.0.0.1:8080/api/v2/architect/scripts/s1", "5", "250", "0",
	}
	if got := strings.Split(lines[16], ","); strings.Join(got, "|") != strings.Join(want15, "|") {
		t.Errorf("line of request 15:\ngot  %q\nwant %q", got, want15)
	}
	if !strings.Contains(lines[6], ",429,Too Many Requests,") || !strings.Contains(lines[6], ",false,") {
		t.Errorf("429 line = %q", lines[6])
	}
	if !strings.Contains(lines[12], ",Non HTTP response code: connection refused,Non HTTP response message: dial tcp 127.0.0.1:1: connect: connection refused,") {
		t.Errorf("network error line = %q", lines[12])
	}
	if !strings.Contains(lines[15], `,"PUT ""odd"", label",404,Not Found,`) {
		t.Errorf("quoted label line = %q", lines[15])
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestStatistics checks every figure of the fixture's summary against
// values worked out by hand from fixtureRows.
func TestStatistics(t *testing.T) {
	s := fixtureSummary(t)
	if s.Requests != 20 || s.Errors != 1 || s.Dropped != 3 {
		t.Errorf("requests %d errors %d dropped %d, want 20 1 3", s.Requests, s.Errors, s.Dropped)
	}
	// The last response ends at 1900+50 ms.
	if s.DurationS != 1.95 {
		t.Errorf("duration_s = %v, want 1.95", s.DurationS)
	}
	// 19 intervals between the first send (0 ms) and the last (1900 ms).
	if s.AchievedRPS != 10 {
		t.Errorf("achieved_rps = %v, want 10", s.AchievedRPS)
	}
	if s.TargetRPS == nil || *s.TargetRPS != 10 {
		t.Errorf("target_rps = %v", s.TargetRPS)
	}
	wantStatus := map[string]int64{"200": 10, "302": 1, "404": 1, "429": 6, "500": 1, "error": 1}
	if !equalMaps(s.StatusCounts, wantStatus) {
		t.Errorf("status_counts = %v, want %v", s.StatusCounts, wantStatus)
	}

	rl := s.RateLimit
	if rl.Count429 != 6 || rl.Share429 != 0.3 {
		t.Errorf("429: %d (%v), want 6 (0.3)", rl.Count429, rl.Share429)
	}
	if rl.First429Request == nil || *rl.First429Request != 5 || rl.First429S == nil || *rl.First429S != 0.5 {
		t.Errorf("first 429: %v at %v, want 5 at 0.5", rl.First429Request, rl.First429S)
	}
	if rl.RetryAfterS == nil || *rl.RetryAfterS != (Range{Min: 0.5, Max: 2}) {
		t.Errorf("retry_after_s = %+v, want 0.5–2", rl.RetryAfterS)
	}
	if !equalMaps(rl.ByPolicy, map[string]int64{"script-writes-per-script": 5, "script-writes-per-org": 1}) {
		t.Errorf("by_policy = %v", rl.ByPolicy)
	}
	// The last request sent (19) advertised 0.
	if rl.LastRemaining == nil || *rl.LastRemaining != 0 {
		t.Errorf("last_remaining = %v, want 0", rl.LastRemaining)
	}
	// Episode 1: 429 received at 502 ms, next success sent after it (request
	// 10) received at 1010 ms: 0.508 s. Episode 2: 429 received at 1302 ms,
	// request 15 (sent 1600) received at 1610 ms: 0.308 s.
	want := Recovery{Count: 2, Min: 0.308, Max: 0.508, Mean: 0.408}
	if rl.RecoveryS == nil || *rl.RecoveryS != want {
		t.Errorf("recovery_s = %+v, want %+v", rl.RecoveryS, want)
	}
	if rl.Unrecovered {
		t.Error("unrecovered = true after a recovery")
	}

	// Latency from the intended send time: request 15 counts its 100 ms
	// wait (110 ms); service time does not (its max is request 19's 50 ms).
	// HDR reports the highest value equivalent to the recorded one: within
	// 0.1% with three significant digits.
	near := func(got, want, rel float64) bool { return math.Abs(got-want) <= want*rel }
	if !near(s.Latency.Max, 110, 0.001) || !near(s.ServiceTime.Max, 50, 0.001) {
		t.Errorf("max latency %v, service %v, want 110, 50", s.Latency.Max, s.ServiceTime.Max)
	}
	// Sorted service times (ms): 1 2 2 2 3 3 4 5 6 10 10 10 11 12 13 14 20
	// 30 40 50. p50 is the 10th = 10; p90 the 18th = 30; p99 the 20th = 50.
	if !near(s.ServiceTime.P50, 10, 0.001) || !near(s.ServiceTime.P90, 30, 0.001) || !near(s.ServiceTime.P99, 50, 0.001) {
		t.Errorf("service percentiles = %+v, want p50 10 p90 30 p99 50", s.ServiceTime)
	}
	// With request 15 at 110 ms, latency p99 is the max.
	if !near(s.Latency.P50, 10, 0.001) || !near(s.Latency.P99, 110, 0.001) {
		t.Errorf("latency percentiles = %+v, want p50 10 p99 110", s.Latency)
	}

	if len(s.Timeline) != 2 {
		t.Fatalf("timeline has %d seconds, want 2", len(s.Timeline))
	}
	s0, s1 := s.Timeline[0], s.Timeline[1]
	if s0.Requests != 10 || s0.C2xx != 5 || s0.C4xx != 5 || s0.C429 != 5 || s0.C5xx != 0 || s0.Errors != 0 {
		t.Errorf("second 0 = %+v", s0)
	}
	if s1.Second != 1 || s1.Requests != 10 || s1.C2xx != 5 || s1.C3xx != 1 || s1.C4xx != 2 || s1.C429 != 1 || s1.C5xx != 1 || s1.Errors != 1 {
		t.Errorf("second 1 = %+v", s1)
	}
	if s0.Remaining == nil || *s0.Remaining != 0 || s1.Remaining == nil || *s1.Remaining != 0 {
		t.Errorf("remaining per second = %v, %v", s0.Remaining, s1.Remaining)
	}
	if s0.RetryAfterS == nil || *s0.RetryAfterS != 1 || s1.RetryAfterS == nil || *s1.RetryAfterS != 2 {
		t.Errorf("retry-after per second = %v, %v", s0.RetryAfterS, s1.RetryAfterS)
	}
	// Second 0 latencies: 10 11 12 13 14 2 2 3 3 4 → p50 is the 5th of the
	// sorted ten = 4 ms, p90 the 9th = 13 ms, p99 the 10th = 14 ms; two
	// significant digits keep these within 1%.
	if !near(s0.Latency.P50, 4, 0.01) || !near(s0.Latency.P90, 13, 0.01) || !near(s0.Latency.P99, 14, 0.01) {
		t.Errorf("second 0 latency = %+v, want 4/13/14", s0.Latency)
	}
}

// TestOrderIndependent checks that results arriving in another order (as
// they do from concurrent workers) give the same figures, apart from
// recovery, which follows arrival order by definition.
func TestOrderIndependent(t *testing.T) {
	rs := fixture()
	a := NewAggregator(Config{Start: t0, TargetRPS: 10, Model: "open", Title: "fixture"})
	for i := len(rs) - 1; i >= 0; i-- {
		a.Add(rs[i])
	}
	a.SetDropped(3)
	got, want := a.Summary(), fixtureSummary(t)
	got.RateLimit.RecoveryS, want.RateLimit.RecoveryS = nil, nil
	got.RateLimit.Unrecovered, want.RateLimit.Unrecovered = false, false
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("reverse order differs:\n%s\nwant\n%s", g, w)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func equalMaps(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestPercentilesKnownInputs(t *testing.T) {
	a := NewAggregator(Config{Start: t0})
	// 1..1000 ms, one each, sent at once: p50 = 500 ms, p90 = 900 ms,
	// p99 = 990 ms, max = 1000 ms, within 0.1% (3 significant digits).
	for i := 1; i <= 1000; i++ {
		a.Add(&load.Result{Seq: uint64(i), Intended: t0, Start: t0, Elapsed: msd(i), Status: 200, Remaining: -1})
	}
	s := a.Summary()
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", s.Latency.P50, 500}, {"p90", s.Latency.P90, 900}, {"p99", s.Latency.P99, 990}, {"max", s.Latency.Max, 1000},
	} {
		if math.Abs(c.got-c.want) > c.want*0.001 {
			t.Errorf("%s = %v, want %v ±0.1%%", c.name, c.got, c.want)
		}
	}
	if s.RateLimit.First429Request != nil || s.RateLimit.RetryAfterS != nil || s.RateLimit.LastRemaining != nil || s.RateLimit.RecoveryS != nil {
		t.Errorf("rate-limit figures without 429s: %+v", s.RateLimit)
	}
	if s.TargetRPS != nil {
		t.Errorf("target_rps = %v, want null", *s.TargetRPS)
	}
	// All sent at one instant: the rate falls back to requests/duration.
	if s.AchievedRPS != 1000 {
		t.Errorf("achieved_rps = %v, want 1000", s.AchievedRPS)
	}
}

func TestUnrecovered(t *testing.T) {
	a := NewAggregator(Config{Start: t0})
	a.Add(&load.Result{Seq: 0, Intended: t0, Start: t0, Elapsed: msd(5), Status: 200, Remaining: -1})
	a.Add(&load.Result{Seq: 1, Intended: t0.Add(msd(10)), Start: t0.Add(msd(10)), Elapsed: msd(5), Status: 429, Remaining: -1})
	// Sent before the 429 arrived: it does not end the episode.
	a.Add(&load.Result{Seq: 2, Intended: t0.Add(msd(12)), Start: t0.Add(msd(12)), Elapsed: msd(5), Status: 200, Remaining: -1})
	s := a.Summary()
	if !s.RateLimit.Unrecovered || s.RateLimit.RecoveryS != nil {
		t.Errorf("unrecovered %v recovery %+v, want true, nil", s.RateLimit.Unrecovered, s.RateLimit.RecoveryS)
	}
}

func TestMerge(t *testing.T) {
	rs := fixture()
	// Two machines each saw half of the requests; the second one was given
	// no start, so it starts at its first result (100 ms later): its rows
	// still fall on the same seconds.
	a := NewAggregator(Config{Start: t0, TargetRPS: 10, Model: "open", Title: "fixture"})
	b := NewAggregator(Config{})
	for _, r := range rs {
		if r.Seq%2 == 0 {
			a.Add(r)
		} else {
			b.Add(r)
		}
	}
	a.SetDropped(1)
	b.SetDropped(2)
	a.Merge(b)
	a.Merge(a) // no-op
	got := a.Summary()
	want := fixtureSummary(t)
	got.RateLimit.RecoveryS, want.RateLimit.RecoveryS = nil, nil
	got.RateLimit.Unrecovered, want.RateLimit.Unrecovered = false, false
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("merged summary differs:\n%s\nwant\n%s", g, w)
	}
	// b is unchanged.
	if bs := b.Summary(); bs.Requests != 10 || bs.Dropped != 2 {
		t.Errorf("merge changed its argument: %d requests, %d dropped", bs.Requests, bs.Dropped)
	}

	// Merging into an aggregator that started later re-bases its timeline.
	late := NewAggregator(Config{Start: t0.Add(time.Second)})
	late.Add(rs[15])
	early := NewAggregator(Config{Start: t0})
	early.Add(rs[0])
	late.Merge(early)
	tl := late.Summary().Timeline
	if len(tl) != 2 || tl[0].Requests != 1 || tl[1].Requests != 1 {
		t.Errorf("re-based timeline = %+v", tl)
	}
}

func TestConcurrentAdd(t *testing.T) {
	a := NewAggregator(Config{Start: t0})
	rs := fixture()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				a.Add(rs[i%len(rs)])
				if i%10 == 0 {
					_ = a.Snapshot()
				}
			}
		}()
	}
	wg.Wait()
	if s := a.Summary(); s.Requests != 800 || s.RateLimit.Count429 != 8*5*6 {
		t.Errorf("requests %d, 429s %d; want 800, 240", s.Requests, s.RateLimit.Count429)
	}
}

func TestAddDoesNotAllocate(t *testing.T) {
	a := NewAggregator(Config{Start: t0})
	rs := fixture()
	for _, r := range rs { // warm up: create rows and map keys
		a.Add(r)
	}
	allocs := testing.AllocsPerRun(200, func() {
		for _, r := range rs {
			a.Add(r)
		}
	})
	if allocs != 0 {
		t.Errorf("Add allocates %v times per %d results", allocs, len(rs))
	}
}

func TestSnapshotAndProgressLine(t *testing.T) {
	a := NewAggregator(Config{Start: t0})
	for _, r := range fixture() {
		a.Add(r)
	}
	a.SetDropped(2)
	s := a.SnapshotAt(t0.Add(2500 * time.Millisecond))
	// Rate: the two complete seconds held 10 requests each.
	if s.Elapsed != 2500*time.Millisecond || s.Sent != 20 || s.Rate != 10 {
		t.Errorf("elapsed %v sent %d rate %v", s.Elapsed, s.Sent, s.Rate)
	}
	if s.OK != 10 || s.Redirect != 1 || s.TooMany != 6 || s.Other4xx != 1 || s.Server != 1 || s.Errors != 1 || s.Remaining != 0 {
		t.Errorf("snapshot = %+v", s)
	}
	line := ProgressLine(s)
	want := "   2.5s  sent 20 (10.0/s)  2xx 10  3xx 1  429 6  4xx 1  5xx 1  err 1  p50 10.01ms  p99 110.0ms  remaining 0  dropped 2"
	if line != want {
		t.Errorf("progress line\ngot  %q\nwant %q", line, want)
	}
	// In the first second the rate is sent/elapsed.
	b := NewAggregator(Config{Start: t0})
	b.Add(fixture()[0])
	if s := b.SnapshotAt(t0.Add(500 * time.Millisecond)); s.Rate != 2 || s.Remaining != 4 {
		t.Errorf("early snapshot rate %v remaining %d", s.Rate, s.Remaining)
	}
	if s := NewAggregator(Config{}).SnapshotAt(t0); s.Remaining != -1 || s.Sent != 0 {
		t.Errorf("empty snapshot = %+v", s)
	}
}

func TestStartFromFirstResult(t *testing.T) {
	a := NewAggregator(Config{})
	rs := fixture()
	for _, r := range rs[10:] {
		a.Add(r)
	}
	s := a.Summary()
	if !s.Start.Equal(rs[10].Intended) || len(s.Timeline) != 1 || s.Timeline[0].Requests != 10 {
		t.Errorf("start %v, timeline %d rows", s.Start, len(s.Timeline))
	}
}

func TestFarFutureResultHasNoRow(t *testing.T) {
	a := NewAggregator(Config{Start: t0})
	a.Add(&load.Result{Intended: t0.Add(1000 * time.Hour), Start: t0.Add(1000 * time.Hour), Status: 200, Remaining: -1})
	if s := a.Summary(); s.Requests != 1 || len(s.Timeline) != 0 {
		t.Errorf("requests %d, timeline rows %d", s.Requests, len(s.Timeline))
	}
}

// A flow's assertion failure goes in failureMessage; a transaction's
// sample has an empty code and data type, as JMeter 2.13 writes it.
func TestJTLFlowFields(t *testing.T) {
	var b bytes.Buffer
	w := NewJTLWriter(&b)
	w.Write(&load.Result{Start: t0, Label: "page", Status: 200, Thread: 1, Failure: "Test failed: text expected to contain /ok/"})
	w.Write(&load.Result{Start: t0, Label: "tx", Status: 200, Thread: 3, Group: "Users", GroupNum: 2, Transaction: true,
		Failure: "Number of samples in transaction : 2, number of failing samples : 1"})
	w.Flush()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if !strings.Contains(lines[1], ",page,200,OK,Thread Group 1-1,text,false,Test failed: text expected to contain /ok/,") {
		t.Errorf("assertion line %q", lines[1])
	}
	if !strings.Contains(lines[2], `,tx,,"Number of samples in transaction : 2, number of failing samples : 1",Users 2-3,,false,,`) {
		t.Errorf("transaction line %q", lines[2])
	}
}
