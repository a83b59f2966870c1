package load

import (
	"math"
	"testing"
	"time"

	"ratelab/limit"
)

func TestConstantRateExact(t *testing.T) {
	for _, tc := range []struct {
		rate string
		i    uint64
		want time.Duration
	}{
		{"0.5/s", 0, 0},
		{"0.5/s", 1, 2 * time.Second},
		{"0.5/s", 3600, 2 * time.Hour}, // no drift after an hour
		{"3/s", 1, 333333333},
		{"3/s", 2, 666666666},
		{"3/s", 3, time.Second},
		{"3/s", 3_000_000, 1_000_000 * time.Second},
		{"600/m", 10, time.Second},
		{"1/10s", 2, 20 * time.Second},
		{"2000/s", 20000, 10 * time.Second},
	} {
		r, err := limit.ParseRate(tc.rate)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ConstantRate{Rate: r}.At(tc.i)
		if !ok || got != tc.want {
			t.Errorf("%s arrival %d at %v, want %v", tc.rate, tc.i, got, tc.want)
		}
	}
	if _, ok := (ConstantRate{}).At(0); ok {
		t.Error("zero rate has arrivals")
	}
}

func TestStages(t *testing.T) {
	st, err := ParseStages("10s:0-10/s, 5s:10/s")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0] != (Stage{10 * time.Second, 0, 10}) || st[1] != (Stage{5 * time.Second, 10, 10}) {
		t.Fatalf("stages %+v", st)
	}
	// Ramp 0→10/s over 10 s: N(t) = t²/2, so arrival i is at √(2i) s;
	// 50 arrivals in the ramp, then one every 100 ms.
	for _, tc := range []struct {
		i    uint64
		want float64
	}{{0, 0}, {2, 2}, {8, 4}, {32, 8}, {50, 10}, {51, 10.1}, {99, 14.9}} {
		got, ok := st.At(tc.i)
		if !ok || math.Abs(got.Seconds()-tc.want) > 1e-6 {
			t.Errorf("arrival %d at %v, want %vs", tc.i, got, tc.want)
		}
	}
	if _, ok := st.At(100); ok {
		t.Error("arrival 100 is past the end (15 s: 50 + 50 arrivals)")
	}
	if r := st.RateAt(5 * time.Second); r != 5 {
		t.Errorf("rate at 5s %v", r)
	}
	if st.Duration() != 15*time.Second {
		t.Errorf("duration %v", st.Duration())
	}
	down, err := ParseStages("2s:600/m-0")
	if err != nil {
		t.Fatal(err)
	}
	// Ramp 10→0/s over 2 s: 10 arrivals, the last one at 2 s.
	if off, ok := down.At(9); !ok || off <= time.Second || off >= 2*time.Second {
		t.Errorf("ramp down arrival 9 at %v", off)
	}
	for _, bad := range []string{"", "10s", "x:10/s", "10s:fast", "10s:0-10", "-1s:10/s"} {
		if _, err := ParseStages(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A pause moves the arrival it covers to its end and every later arrival
// by the same amount; arrivals it does not cover keep their place.
func TestRetryPause(t *testing.T) {
	p := &retryPause{Schedule: ConstantRate{Rate: limit.Per(10, time.Second)}}
	at := func(i uint64) time.Duration { off, _ := p.At(i); return off }
	if at(3) != 300*time.Millisecond || p.hold(at(3)) != 0 || p.covers(at(3)) {
		t.Fatal("unpaused schedule moved")
	}
	p.pause(450 * time.Millisecond)
	p.pause(400 * time.Millisecond) // an earlier end does not shorten the pause
	if !p.covers(at(4)) || p.hold(at(4)) != 50*time.Millisecond || at(4) != 450*time.Millisecond {
		t.Fatalf("arrival 4 at %v, want the pause's end 450ms", at(4))
	}
	if at(5) != 550*time.Millisecond || p.covers(at(5)) || p.hold(at(5)) != 0 || p.shifted() != 50*time.Millisecond {
		t.Fatalf("arrival 5 at %v, want 550ms", at(5))
	}
	var none *retryPause
	if none.covers(time.Second) || none.hold(0) != 0 || none.shifted() != 0 {
		t.Fatal("nil pause paused")
	}
}
