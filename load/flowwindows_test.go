package load

import (
	"strings"
	"testing"
	"time"
)

// Each thread of a group with windows sends from its window's start to
// its stop (or the group's end), and not outside it.
func TestFlowThreadWindows(t *testing.T) {
	srv := &flowServer{}
	url := serve(t, srv)
	windows := []ThreadWindow{{Start: 0, Stop: 300 * time.Millisecond}, {Start: 250 * time.Millisecond, Stop: 550 * time.Millisecond},
		{Start: 500 * time.Millisecond}}
	f := &Flow{Groups: []*ThreadGroup{{Workload: Workload{Threads: 3, Duration: 800 * time.Millisecond}, Windows: windows,
		Steps: []Step{&Request{URL: url + "/x", Think: 20 * time.Millisecond}}}}}
	t0 := time.Now()
	rs := runParsedFlow(t, f)
	first, last, n := map[int]time.Duration{}, map[int]time.Duration{}, map[int]int{}
	for _, r := range rs {
		at := r.Start.Sub(t0)
		if _, ok := first[r.Thread]; !ok {
			first[r.Thread] = at
		}
		last[r.Thread] = at
		n[r.Thread]++
	}
	slack := 120 * time.Millisecond // the run's own start after t0, and a busy machine
	for i, w := range windows {
		th := i + 1
		stop := w.Stop
		if stop == 0 {
			stop = 800 * time.Millisecond
		}
		if n[th] < 3 {
			t.Errorf("thread %d: %d requests", th, n[th])
			continue
		}
		if first[th] < w.Start || first[th] > w.Start+slack {
			t.Errorf("thread %d: first request at %v, its window starts at %v", th, first[th], w.Start)
		}
		if last[th] > stop+slack || last[th] < stop-slack-20*time.Millisecond {
			t.Errorf("thread %d: last request at %v, its window stops at %v", th, last[th], stop)
		}
	}
	bad := &Flow{Groups: []*ThreadGroup{{Workload: Workload{Threads: 2, Loops: 1}, Windows: windows, Steps: f.Groups[0].Steps}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "3 thread windows for 2 threads") {
		t.Errorf("Validate: %v", err)
	}
	bad.Groups[0].Workload = Workload{Threads: 3, Loops: 0, Duration: 0}
	if err := bad.Validate(); err == nil {
		t.Error("an unbounded window passed Validate")
	}
}
