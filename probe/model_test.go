package probe

import (
	"math"
	"testing"
)

// TestFitWindowsGridShrinks checks that the shrinking grid fitWindows
// keeps between calls finds, after every event, exactly the windows a
// fresh grid finds: against a fixed window of 5 per 1 s (which survives)
// and a token bucket of 5 per second, burst 5 (which rules windows out).
func TestFitWindowsGridShrinks(t *testing.T) {
	for _, c := range []struct {
		name  string
		admit func(evs []event, t float64) bool
	}{
		{"fixed window 5 per 1 s", func(evs []event, t float64) bool {
			n := 0
			for _, e := range evs {
				if e.adm && math.Floor(e.t) == math.Floor(t) {
					n++
				}
			}
			return n < 5
		}},
		{"token bucket 5/s burst 5", func(evs []event, t float64) bool {
			tat := math.Inf(-1)
			for _, e := range evs {
				if e.adm {
					tat = math.Max(tat, e.t) + 0.2
				}
			}
			return tat-4*0.2 <= t
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			grid := periodGrid(0.02, 4, 1.001)
			kept := newWinGrid(grid)
			var evs []event
			found := 0
			for i := 0; i < 120; i++ {
				// Sends 70 ms apart, with a pause now and then.
				at := 1000 + 0.07*float64(i) + 0.3*float64(i/20)
				evs = append(evs, event{t: at, adm: c.admit(evs, at), lo: at - fitTol, hi: at + 0.0005 + fitTol})
				cs := cycles(evs)
				fresh := newWinGrid(grid)
				got, want := fitWindows(cs, &kept), fitWindows(cs, &fresh)
				if len(got) != len(want) {
					t.Fatalf("after %d events: %d windows with the kept grid, %d with a fresh one", len(evs), len(got), len(want))
				}
				for j := range got {
					if got[j].kind != want[j].kind || got[j].W != want[j].W || got[j].nextLo != want[j].nextLo || got[j].nextHi != want[j].nextHi {
						t.Fatalf("after %d events: window %d is %+v, want %+v", len(evs), j, got[j], want[j])
					}
				}
				found = len(got)
			}
			t.Logf("%d windows at the end; grid kept %d of %d", found, len(kept), len(grid))
		})
	}
}

// alignedWindow is a fixed window of q per W with boundaries at phi + k·W,
// deciding each request at its send instant.
type alignedWindow struct {
	q       int64
	W, phi  float64
	k, used int64
}

func (a *alignedWindow) admit(t float64) bool {
	if k := int64(math.Floor((t - a.phi) / a.W)); k != a.k {
		a.k, a.used = k, 0
	}
	if a.used >= a.q {
		return false
	}
	a.used++
	return true
}

// TestFitAlignedStraddlingBurst: a first burst that starts 45 ms before a
// boundary admits what is left of one window and the whole next one (15 of
// a quota of 10); the fit keeps the true window and places that boundary
// inside the burst, between two requests, once a reopening shows the
// quota.
func TestFitAlignedStraddlingBurst(t *testing.T) {
	const W, phi = 2.0, 0.3
	lim := &alignedWindow{q: 10, W: W, phi: phi, k: math.MinInt64}
	var evs []event
	send := func(at float64) bool {
		ok := lim.admit(at)
		evs = append(evs, event{t: at, adm: ok, lo: at, hi: at + 0.0005})
		return ok
	}
	at := 1000 + phi - 0.045 // 45 ms before the boundary at 1000.3
	// The burst, at 100/s until the first 429.
	for send(at) {
		at += 0.01
	}
	if got := cycles(evs)[0].M; got != 15 {
		t.Fatalf("the burst admitted %d, want 15 (5 before the boundary, 10 after)", got)
	}
	// Three reopenings: probes 100 ms apart, doubling, then a drain.
	for reopen := 0; reopen < 3; reopen++ {
		for gap := 0.1; !send(at); gap *= 2 {
			at += gap
		}
		for at += 0.01; send(at); at += 0.01 {
		}
	}
	cs := cycles(evs)
	if q := windowQuota(cs); q != 10 {
		t.Fatalf("quota %d, want 10", q)
	}
	grid := newWinGrid(periodGrid(0.02, 4, 1.001))
	hs := fitWindows(cs, &grid)
	var truth *winHyp
	for i, h := range hs {
		if h.kind == kindFixedAligned && math.Abs(h.W-W) <= 0.001*W {
			truth = &hs[i]
		}
	}
	if truth == nil {
		t.Fatalf("no aligned window of %g s among %d windows", W, len(hs))
	}
	// The first boundary (1000.3) lies between the burst's 5th and 6th
	// requests: the phase is known to their 10 ms, mod W.
	want := math.Mod(1000+phi, truth.W)
	for _, iv := range truth.phases {
		if iv[0] < want-0.012 || iv[1] > want+0.012 {
			t.Errorf("phases %v of W %.4f, want within 12 ms of %.4f", truth.phases, truth.W, want)
		}
	}
	if len(hs) > 0 {
		s := summarizeWins(hs)
		t.Logf("windows %+v", s)
	}
}

// TestSameBurstAcrossABoundary: a scope step's burst that straddles a
// boundary of the epoch window already measured admits the rest of one
// window and the next one's quota: the same limit, not a broader one. A
// burst of that size within one window is another limit.
func TestSameBurstAcrossABoundary(t *testing.T) {
	win := Limit{Algorithm: "fixed-window", WindowStart: "epoch", Quota: 20, WindowS: 3.994}
	at := 1_796_000_000.0 // a multiple of 4 s
	for _, c := range []struct {
		lim      Limit
		a        int
		from, to float64
		want     bool
	}{
		{win, 20, at + 1, at + 1.2, true},
		{win, 21, at + 1, at + 1.2, true},
		{win, 31, at - 0.1, at + 0.1, true},
		{win, 40, at - 0.1, at + 0.1, true},
		{win, 42, at - 0.1, at + 0.1, false},
		{win, 31, at + 0.1, at + 0.3, false},
		{Limit{Algorithm: "fixed-window", WindowStart: "first request", Quota: 20, WindowS: 4}, 31, at - 0.1, at + 0.1, false},
		{Limit{Algorithm: "token-bucket", Quota: 20, WindowS: 4}, 31, at - 0.1, at + 0.1, false},
	} {
		if got := sameBurst(c.lim)(c.a, c.from, c.to); got != c.want {
			t.Errorf("%s %s q%d: burst %d from %+.1f to %+.1f s: same %v, want %v", c.lim.Algorithm, c.lim.WindowStart, c.lim.Quota, c.a, c.from-at, c.to-at, got, c.want)
		}
	}
}

// TestBoundaryQuantileWeighsPhases: after the first reopening of a fixed
// window of 30 per 10 s aligned to the epoch (a burst at phase 1.5 s, the
// backoff's 429s, a reopening 3 s after the boundary, its quota and the
// 429 that closes it), W is bounded only from below, by the dead time.
// Counted alike, the windows of the grid put the median next boundary
// tens of seconds away; weighed by their standing phases over W, the
// median aligned window is about twice the shortest standing, so the
// search after the closing 429 starts near the truth.
func TestBoundaryQuantileWeighsPhases(t *testing.T) {
	const t0, W = 1_000_000_001.5, 10.0
	var evs []event
	add := func(at float64) {
		n := 0
		for _, e := range evs {
			if e.adm && math.Floor(e.t/W) == math.Floor(at/W) {
				n++
			}
		}
		evs = append(evs, event{t: at, adm: n < 30, lo: at, hi: at + 0.002})
	}
	at := t0
	for i := 0; i < 31; i++ { // the burst and its first 429
		add(at)
		at += 0.01
	}
	at -= 0.01
	for gap := 0.1; !evs[len(evs)-1].adm; gap *= 2 { // the backoff, to past the boundary at t0+8.5
		at += gap
		add(at)
	}
	for i := 0; i < 30; i++ { // the rest of the quota and the closing 429
		at += 0.01
		add(at)
	}
	cs := cycles(evs)
	grid := newWinGrid(periodGrid(0.02, 240, 1.001))
	var al []winHyp
	for _, h := range fitWindows(cs, &grid) {
		if h.kind == kindFixedAligned {
			al = append(al, h)
		}
	}
	if len(al) == 0 {
		t.Fatal("no aligned window stands")
	}
	var hs []hyp
	for _, h := range al {
		hs = append(hs, hyp{kind: h.kind, next: h.nextLo}, hyp{kind: h.kind, next: h.nextHi})
	}
	next := math.Floor(at/W)*W + W // the truth's next boundary
	counted := nextQuantile(hs, 0.5) - next
	q25, q50 := boundaryQuantile(al, nil, 0.25)-next, boundaryQuantile(al, nil, 0.5)-next
	t.Logf("from the truth's next boundary: counted median %+.2f s, weighed quartile %+.2f s, median %+.2f s; shortest W %.2f s", counted, q25, q50, al[0].W)
	if q25 >= q50 {
		t.Errorf("weighed quartile %+.2f s not before the median %+.2f s", q25, q50)
	}
	if q50 > 2*al[0].W {
		t.Errorf("weighed median %+.2f s after the truth: want within twice the shortest W (%.2f s)", q50, al[0].W)
	}
	if counted < q50+10 {
		t.Errorf("counted alike the median is %+.2f s, weighed %+.2f s: the weights changed nothing", counted, q50)
	}
}

// TestFitAlignedStraddlingReopening: a reopening drained late (the late
// drain, or a client slowed by load) runs across the next boundary and
// admits 14 of a quota of 10 before its 429; the fit keeps the true
// window (it read none at all: "unknown, quota 24" for our own 20 per 4 s
// under two CPU hogs) and no window opened by the first request.
func TestFitAlignedStraddlingReopening(t *testing.T) {
	const W, phi = 2.0, 0.3
	lim := &alignedWindow{q: 10, W: W, phi: phi, k: math.MinInt64}
	var evs []event
	send := func(at float64) bool {
		ok := lim.admit(at)
		evs = append(evs, event{t: at, adm: ok, lo: at, hi: at + 0.0005})
		return ok
	}
	at := 1000 + phi + 0.7
	for send(at) {
		at += 0.01
	}
	for reopen := 0; reopen < 4; reopen++ {
		for gap := 0.1; !send(at); gap *= 2 {
			at += gap
		}
		if reopen == 1 {
			// Drained late: 40 ms before the next boundary.
			at = 1000 + phi + W*math.Ceil((at-1000-phi)/W) - 0.04
		}
		for at += 0.01; send(at); at += 0.01 {
		}
	}
	cs := cycles(evs)
	if cs[2].M <= 10 {
		t.Fatalf("the late drain admitted %d, want more than the quota of 10", cs[2].M)
	}
	grid := newWinGrid(periodGrid(0.02, 4, 1.001))
	hs := fitWindows(cs, &grid)
	found := false
	for _, h := range hs {
		if h.kind == kindFixedFirst {
			t.Errorf("a window opened by the first request stands: %+v", h)
		}
		if h.kind == kindFixedAligned && math.Abs(h.W-W) <= 0.001*W && h.q == 10 {
			found = true
		}
	}
	if !found {
		t.Errorf("no aligned window of 10 per %g s among %+v", W, summarizeWins(hs))
	}
}

func TestRoundestEpochWindow(t *testing.T) {
	al := func(W float64, epoch bool) winHyp { return winHyp{kind: kindFixedAligned, W: W, epoch: epoch} }
	for _, c := range []struct {
		name     string
		ws       []winHyp
		unique   bool
		roundest float64
		roundOK  bool
	}{
		{"one length", []winHyp{al(9.7, false), al(10.001, true), al(9.9995, true), al(10.3, false)}, true, 10, true},
		{"none aligned to the epoch", []winHyp{al(9.7, false), al(10, false)}, false, 0, false},
		{"a whole second among tenths", []winHyp{al(10, true), al(10.1, true), al(10.3, true)}, false, 10, true},
		{"two whole seconds", []winHyp{al(10, true), al(11, true)}, false, 0, false},
		{"tenths only", []winHyp{al(10.1, true), al(10.3, true)}, false, 0, false},
		{"not aligned", []winHyp{{kind: kindFixedFirst, W: 10, epoch: true}}, false, 0, false},
	} {
		if _, ok := epochWindow(c.ws); ok != c.unique {
			t.Errorf("%s: epochWindow ok %v, want %v", c.name, ok, c.unique)
		}
		if r, ok := roundestEpochWindow(c.ws); ok != c.roundOK || r != c.roundest && ok {
			t.Errorf("%s: roundestEpochWindow %v %v, want %v %v", c.name, r, ok, c.roundest, c.roundOK)
		}
	}
}
