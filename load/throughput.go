package load

import (
	"fmt"
	"math"
	"sync"
	"time"

	"ratelab/limit"
)

// ThroughputMode is JMeter's Constant Throughput Timer calcMode, with the
// same numbers as a .jmx file stores them.
type ThroughputMode int

// The modes of JMeter's Constant Throughput Timer. ratelab runs one thread
// group, so AllThreads and Group behave alike, as do their shared forms.
const (
	// ThisThread paces every thread to the target on its own: N threads
	// make N times the target (JMeter's default, and the usual trap).
	ThisThread ThroughputMode = 0
	// AllThreads delays each thread by activeThreads × 60000/T ms.
	AllThreads ThroughputMode = 1
	// Group is AllThreads counting the threads of the current group.
	Group ThroughputMode = 2
	// AllThreadsShared schedules every sample of any thread on one shared
	// timeline, 60000/T ms apart.
	AllThreadsShared ThroughputMode = 3
	// GroupShared is AllThreadsShared for the current group.
	GroupShared ThroughputMode = 4
)

var throughputModeNames = [...]string{"this-thread", "all-threads", "group", "all-threads-shared", "group-shared"}

// ParseThroughputMode reads a mode by name ("this-thread", "all-threads",
// "group", "all-threads-shared", "group-shared") or by its calcMode number.
func ParseThroughputMode(s string) (ThroughputMode, error) {
	for i, n := range throughputModeNames {
		if s == n || s == fmt.Sprint(i) {
			return ThroughputMode(i), nil
		}
	}
	if s == "" {
		return ThisThread, nil
	}
	return 0, fmt.Errorf("throughput mode %q: want this-thread, all-threads, group, all-threads-shared or group-shared", s)
}

// String returns the mode's name as ParseThroughputMode reads it.
func (m ThroughputMode) String() string {
	if m >= 0 && int(m) < len(throughputModeNames) {
		return throughputModeNames[m]
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Shared reports whether the mode uses one schedule for all threads.
func (m ThroughputMode) Shared() bool { return m == AllThreadsShared || m == GroupShared }

// ThroughputTimer emulates JMeter 5.6's Constant Throughput Timer exactly,
// so that a plan's pacing, traps included, can be reproduced:
//
//   - The target T is in samples per minute. The per-sample interval is
//     computed in microseconds, rounded (Java's Math.round), and the delay
//     handed to the thread is truncated to whole milliseconds.
//   - Every thread keeps a previous target time (ms). Before a sample the
//     timer computes target = previous + delay(mode); if now is past the
//     target the thread is behind: previous = now and the delay is 0 (missed
//     slots are dropped, never caught up); otherwise previous = target and
//     the thread sleeps target − now. The first sample therefore runs at
//     once.
//   - delay(mode) is 60000/T ms in ThisThread mode, activeThreads × 60000/T
//     in AllThreads and Group, and in the shared modes the time until the
//     next slot of one shared schedule (lastScheduled = max(now,
//     lastScheduled + 60000/T), kept in µs under a lock) — which the
//     per-thread rule above then adds to the thread's own previous target.
//
// Both of JMeter's clocks (currentTimeMillis and nanoTime) are read from
// the one instant passed in. The zero ThroughputTimer has no target and
// never delays. Delay is safe for concurrent use; each thread must pass its
// own ThroughputThread.
type ThroughputTimer struct {
	Mode ThroughputMode
	// PerMinute is the target in samples per minute.
	PerMinute float64

	mu         sync.Mutex
	sharedLast int64 // µs, JMeter's lastScheduledTime
}

// ThroughputThread is one thread's state for a ThroughputTimer (JMeter
// clones the timer per thread). The zero value is a thread that has not
// sampled yet.
type ThroughputThread struct {
	previous int64 // ms, JMeter's previousTime
}

// NewThroughputTimer returns a timer for a rate ("600/m", "10/s") and mode.
func NewThroughputTimer(rate limit.Rate, mode ThroughputMode) *ThroughputTimer {
	return &ThroughputTimer{Mode: mode, PerMinute: rate.PerSecond() * 60}
}

// Delay returns how long a thread waits before its next sample at now,
// with active threads in the timer's scope, and updates the thread's and
// the shared state.
func (t *ThroughputTimer) Delay(th *ThroughputThread, now time.Time, active int) time.Duration {
	if t == nil || t.PerMinute <= 0 {
		return 0
	}
	current := now.UnixMilli()
	target := th.previous + t.modeDelay(now, active)
	if current > target {
		th.previous = current
		return 0
	}
	th.previous = target
	return time.Duration(target-current) * time.Millisecond
}

// modeDelay is JMeter's calculateDelay: whole milliseconds.
func (t *ThroughputTimer) modeDelay(now time.Time, active int) int64 {
	usPerSample := 60_000_000.0 / t.PerMinute
	var us int64
	switch t.Mode {
	case AllThreads, Group:
		us = javaRound(float64(active) * usPerSample)
	case AllThreadsShared, GroupShared:
		us = t.sharedDelay(now.UnixMicro(), javaRound(usPerSample))
	default:
		us = javaRound(usPerSample)
	}
	return us / 1000
}

func (t *ThroughputTimer) sharedDelay(nowUS, interval int64) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sharedLast = max(nowUS, t.sharedLast+interval)
	return max(t.sharedLast-nowUS, 0)
}

// javaRound is Java's Math.round(double): floor(x + 0.5).
func javaRound(x float64) int64 { return int64(math.Floor(x + 0.5)) }

// SimulateThroughput runs the timer's rules over virtual time for threads
// threads that each take sampleTime per sample, for duration d from start,
// and returns the samples per minute they achieve. It is how ratelab says
// what a plan really does (the per-thread default multiplies the rate; the
// millisecond truncation changes high rates). It uses a fresh copy of the
// timer's configuration; t itself is not modified.
func SimulateThroughput(t *ThroughputTimer, threads int, sampleTime, d time.Duration) float64 {
	if threads <= 0 || d <= 0 {
		return 0
	}
	sim := &ThroughputTimer{Mode: t.Mode, PerMinute: t.PerMinute}
	start := time.Unix(1_700_000_000, 0)
	state := make([]ThroughputThread, threads)
	next := make([]time.Duration, threads) // when each thread asks the timer
	samples := 0
	const maxSamples = 10_000_000
	for samples < maxSamples {
		k := 0
		for i := range next {
			if next[i] < next[k] {
				k = i
			}
		}
		at := next[k] + sim.Delay(&state[k], start.Add(next[k]), threads)
		if at >= d {
			break
		}
		samples++
		next[k] = at + max(sampleTime, time.Microsecond)
	}
	return float64(samples) / d.Minutes()
}

// ThroughputNote explains what a Constant Throughput Timer setting really
// does for threads threads taking sampleTime per sample: the achieved rate
// against the target, and why they differ. It returns "" when the plan
// achieves its target within 1%.
func ThroughputNote(t *ThroughputTimer, threads int, sampleTime time.Duration) string {
	if t == nil || t.PerMinute <= 0 {
		return ""
	}
	got := SimulateThroughput(t, threads, sampleTime, time.Minute)
	want := t.PerMinute
	if math.Abs(got-want) <= want/100 {
		return ""
	}
	why := "JMeter truncates each delay to whole milliseconds"
	if t.Mode == ThisThread && threads > 1 {
		why = fmt.Sprintf("mode this-thread paces each of the %d threads to the target on its own", threads)
	} else if sampleTime > 0 && got < want {
		why = "the threads cannot keep up: missed slots are dropped, not caught up"
	}
	return fmt.Sprintf("constant throughput timer: target %.6g/min (%.6g/s) but %s: about %.6g/min (%.6g/s)",
		want, want/60, why, got, got/60)
}
