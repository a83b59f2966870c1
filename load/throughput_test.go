package load

import (
	"math"
	"strings"
	"testing"
	"time"

	"ratelab/limit"
)

// at returns the instant ms milliseconds after a fixed origin.
func at(ms float64) time.Time {
	return time.Unix(1_700_000_000, 0).Add(time.Duration(ms * float64(time.Millisecond)))
}

type timerStep struct {
	thread int     // which thread asks
	nowMS  float64 // when, in ms from the origin
	active int
	want   time.Duration
}

func runSteps(t *testing.T, tm *ThroughputTimer, threads int, steps []timerStep) {
	t.Helper()
	state := make([]ThroughputThread, threads)
	for i, s := range steps {
		got := tm.Delay(&state[s.thread], at(s.nowMS), s.active)
		if got != s.want {
			t.Fatalf("step %d (thread %d at %vms): delay %v, want %v", i, s.thread, s.nowMS, got, s.want)
		}
	}
}

// Worked examples from JMeter's rules (ConstantThroughputTimer.delay and
// calculateDelay): target = previous + interval; behind schedule resets to
// now and returns 0.
func TestThroughputThisThread(t *testing.T) {
	tm := NewThroughputTimer(limit.Per(600, time.Minute), ThisThread) // 100 ms per sample per thread
	runSteps(t, tm, 2, []timerStep{
		{0, 1000, 2, 0},                      // first sample: no delay
		{0, 1030, 2, 70 * time.Millisecond},  // target 1100
		{1, 1030, 2, 0},                      // thread 1's first sample: its own schedule
		{1, 1040, 2, 90 * time.Millisecond},  // target 1130: two threads, twice the rate
		{0, 1130, 2, 70 * time.Millisecond},  // target 1200
		{0, 1450, 2, 0},                      // behind (target 1300): reset to now, no catch-up
		{0, 1460, 2, 90 * time.Millisecond},  // target 1550, from the reset
		{0, 1550, 2, 100 * time.Millisecond}, // exactly on the target: not behind
	})
}

func TestThroughputAllThreads(t *testing.T) {
	tm := NewThroughputTimer(limit.Per(600, time.Minute), AllThreads)
	runSteps(t, tm, 2, []timerStep{
		{0, 0 + 5000, 20, 0},                        // first sample of each thread runs at once:
		{1, 0 + 5000, 20, 0},                        // ramp-up 0 is a burst
		{0, 10 + 5000, 20, 1990 * time.Millisecond}, // 20 × 100 ms
		{1, 10 + 5000, 4, 390 * time.Millisecond},   // the active count is read each time
	})
	// Group counts the group's threads: the same in ratelab's one group.
	g := NewThroughputTimer(limit.Per(600, time.Minute), Group)
	runSteps(t, g, 1, []timerStep{{0, 5000, 3, 0}, {0, 5000, 3, 300 * time.Millisecond}})
}

func TestThroughputShared(t *testing.T) {
	tm := NewThroughputTimer(limit.Per(600, time.Minute), AllThreadsShared)
	runSteps(t, tm, 2, []timerStep{
		{0, 10000, 2, 0},                      // schedule starts at now
		{1, 10000, 2, 0},                      // slot at +100 ms, but a thread's first sample never waits
		{0, 10010, 2, 180 * time.Millisecond}, // slot 10200: previous 10000 + 190 ms − now
		{1, 10020, 2, 260 * time.Millisecond}, // slot 10300: previous 10000 + 280 ms − now
		{0, 10200, 2, 190 * time.Millisecond}, // slot 10400: previous 10190 + 200 ms − now
		{1, 10290, 2, 200 * time.Millisecond}, // slot 10500: previous 10280 + 210 ms − now
	})
	// A lagging shared schedule restarts at now: missed slots are dropped.
	s := NewThroughputTimer(limit.Per(600, time.Minute), GroupShared)
	runSteps(t, s, 1, []timerStep{
		{0, 10000, 1, 0},
		{0, 10050, 1, 0}, // slot 10100, counted from the previous target 10000: 50 ms already passed
		{0, 20000, 1, 0}, // far behind: slot = now
		{0, 20000, 1, 100 * time.Millisecond},
	})
}

// The delay is truncated to whole milliseconds: 7000/min is 8.571 ms per
// sample, which JMeter turns into 8 ms.
func TestThroughputQuantization(t *testing.T) {
	tm := &ThroughputTimer{Mode: ThisThread, PerMinute: 7000}
	runSteps(t, tm, 1, []timerStep{{0, 1000, 1, 0}, {0, 1000, 1, 8 * time.Millisecond}})
	got := SimulateThroughput(tm, 1, 0, time.Minute)
	if got != 7500 {
		t.Fatalf("simulated %v/min, want 7500 (60000/8)", got)
	}
	if note := ThroughputNote(tm, 1, 0); !strings.Contains(note, "whole milliseconds") {
		t.Fatalf("note %q does not explain the truncation", note)
	}
	// Our own open-model pacer does not quantize: 7000/min is exact.
	c := ConstantRate{Rate: limit.Per(7000, time.Minute)}
	if off, _ := c.At(7000); off != time.Minute {
		t.Fatalf("arrival 7000 at %v, want 1m", off)
	}
}

func TestSimulateThroughputModes(t *testing.T) {
	target := limit.Per(600, time.Minute)
	for _, tc := range []struct {
		mode ThroughputMode
		want float64
		tol  float64
	}{
		{ThisThread, 12000, 0}, // 20 threads × 600/min: the reference scenario's trap
		{AllThreads, 600, 0},   // 20 × 30 samples, starting with a burst of 20
		{Group, 600, 0},
		{AllThreadsShared, 600, 0.02},
		{GroupShared, 600, 0.02},
	} {
		tm := NewThroughputTimer(target, tc.mode)
		got := SimulateThroughput(tm, 20, 10*time.Millisecond, time.Minute)
		if math.Abs(got-tc.want) > tc.want*tc.tol {
			t.Errorf("%v: %v/min, want %v", tc.mode, got, tc.want)
		}
	}
	note := ThroughputNote(NewThroughputTimer(target, ThisThread), 20, 10*time.Millisecond)
	if !strings.Contains(note, "each of the 20 threads") || !strings.Contains(note, "12000/min") {
		t.Fatalf("note %q", note)
	}
	if note := ThroughputNote(NewThroughputTimer(target, AllThreads), 20, 10*time.Millisecond); note != "" {
		t.Fatalf("all-threads at its target: note %q", note)
	}
}

func TestParseThroughputMode(t *testing.T) {
	for i, n := range []string{"this-thread", "all-threads", "group", "all-threads-shared", "group-shared"} {
		m, err := ParseThroughputMode(n)
		if err != nil || int(m) != i || m.String() != n {
			t.Errorf("%s: %v %v", n, m, err)
		}
		if m2, _ := ParseThroughputMode(string(rune('0' + i))); m2 != m {
			t.Errorf("calcMode %d: %v", i, m2)
		}
	}
	if _, err := ParseThroughputMode("all"); err == nil {
		t.Error("bad mode accepted")
	}
}
