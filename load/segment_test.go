package load

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"ratelab/limit"
)

func TestParseSegment(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Segment
		err  string
	}{
		{"", Segment{}, ""},
		{"1/1", Segment{1, 1}, ""},
		{"2/3", Segment{2, 3}, ""},
		{" 3 / 3 ", Segment{3, 3}, ""},
		{"0/3", Segment{}, "1 ≤ K ≤ N"},
		{"4/3", Segment{}, "1 ≤ K ≤ N"},
		{"1/0", Segment{}, "1 ≤ K ≤ N"},
		{"-1/3", Segment{}, "1 ≤ K ≤ N"},
		{"2", Segment{}, "want K/N"},
		{"a/b", Segment{}, "want K/N"},
		{"1:3", Segment{}, "want K/N"},
	} {
		got, err := ParseSegment(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.in, got, err, tc.want)
		}
	}
}

// TestSegmentsPartition checks the arithmetic: for every N, the segments
// 1/N … N/N take every index exactly once, and Count agrees with Has.
func TestSegmentsPartition(t *testing.T) {
	for n := 1; n <= 7; n++ {
		for total := 0; total <= 50; total++ {
			owners := make([]int, total)
			sum := 0
			for k := 1; k <= n; k++ {
				s := Segment{k, n}
				c := 0
				for i := range total {
					if s.Has(uint64(i)) {
						owners[i]++
						c++
					}
				}
				if c != s.Count(total) {
					t.Fatalf("%v of %d: Has takes %d, Count says %d", s, total, c, s.Count(total))
				}
				sum += c
			}
			if sum != total || slices.ContainsFunc(owners, func(o int) bool { return o != 1 }) {
				t.Fatalf("N=%d, %d indexes: owners %v", n, total, owners)
			}
		}
	}
}

// segmentRun is what a run sent: per request its thread, iteration and
// intended offset from the start.
type segmentRun []string

func runSegment(t *testing.T, url string, w Workload, seg Segment, startAt time.Time) segmentRun {
	t.Helper()
	var c collect
	var start time.Time
	_, err := Run(context.Background(), Config{Plan: plan(t, url), Workload: w, Segment: seg, StartAt: startAt,
		Sink: c.sink, Started: func(s time.Time) { start = s }})
	if err != nil {
		t.Fatal(err)
	}
	if !startAt.IsZero() && !start.Equal(startAt) {
		t.Fatalf("started at %v, want StartAt %v", start, startAt)
	}
	var out segmentRun
	for _, r := range c.sorted() {
		if w.Open() {
			out = append(out, fmt.Sprintf("arrival %d at %v", r.Iteration, r.Intended.Sub(start)))
		} else {
			out = append(out, fmt.Sprintf("thread %d iteration %d", r.Thread, r.Iteration))
		}
	}
	slices.Sort(out)
	return out
}

// TestSegmentsMakeOneRun runs workloads whole and in three segments
// against a loopback server: the segments together send exactly the
// requests of the whole run (the same iterations at the same intended
// offsets; the same threads and iterations), none twice.
func TestSegmentsMakeOneRun(t *testing.T) {
	url := serve(t, &limitServer{})
	stages, err := ParseStages("200ms:0-400/s,200ms:400/s")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		w    Workload
	}{
		{"constant rate", Workload{Rate: limit.Per(300, time.Second), Duration: 250 * time.Millisecond}},
		{"stages", Workload{Stages: stages}},
		{"arrivals", Workload{Rate: limit.Per(500, time.Second), Loops: 40}},
		{"closed", Workload{Threads: 7, RampUp: 70 * time.Millisecond, Loops: 3}},
		{"closed, paced per thread", Workload{Threads: 4, Loops: 3, Throughput: limit.Per(6000, time.Minute)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whole := runSegment(t, url, tc.w, Segment{}, time.Time{})
			startAt := time.Now().Add(50 * time.Millisecond)
			var joined segmentRun
			for k := 1; k <= 3; k++ {
				part := runSegment(t, url, tc.w, Segment{k, 3}, startAt)
				if len(part) == 0 && len(whole) >= 3 {
					t.Errorf("segment %d/3 sent nothing", k)
				}
				joined = append(joined, part...)
			}
			slices.Sort(joined)
			if len(whole) == 0 || !slices.Equal(joined, whole) {
				t.Fatalf("the three segments sent %d requests, the whole run %d:\nsegments: %v\nwhole:    %v",
					len(joined), len(whole), joined, whole)
			}
		})
	}
}

func TestSegmentRefusals(t *testing.T) {
	url := serve(t, &limitServer{})
	_, err := Run(context.Background(), Config{Plan: plan(t, url), Sink: func(*Result) {},
		Workload: Workload{Threads: 2, Loops: 1, Throughput: limit.Per(60, time.Minute), ThroughputMode: AllThreadsShared},
		Segment:  Segment{1, 2}})
	if err == nil || !strings.Contains(err.Error(), "all-threads-shared") {
		t.Errorf("shared throughput timer in a segment: %v", err)
	}
	_, err = Run(context.Background(), Config{Plan: plan(t, url), Sink: func(*Result) {},
		Workload: Workload{Threads: 1, Loops: 1}, Segment: Segment{3, 2}})
	if err == nil || !strings.Contains(err.Error(), "1 ≤ K ≤ N") {
		t.Errorf("segment 3/2: %v", err)
	}
}
