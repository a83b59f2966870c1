package probe

import (
	"math"
	"math/rand"
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

// haproxyRate simulates HAProxy's http_req_rate(W) with "deny above q":
// the period opens at the first decision, a request at d is denied iff
// curr + 1 + ⌊prev·remain/W⌋ > q in whole milliseconds, and denied
// requests are counted too.
type haproxyRate struct {
	W, b       float64
	curr, prev int64
	q          int64
	started    bool
}

func (h *haproxyRate) decide(d float64) bool {
	if !h.started {
		h.b, h.started = d, true
	}
	for d >= h.b+h.W {
		h.prev, h.curr, h.b = h.curr, 0, h.b+h.W
		if d >= h.b+h.W {
			h.prev = 0
		}
	}
	remain := math.Floor((h.b+h.W-d)*1000) / 1000
	adm := h.curr+1+int64(math.Floor(float64(h.prev)*remain/h.W)) <= h.q
	h.curr++
	return adm
}

// TestSlideFitKeepsTruthBetweenGridPoints feeds the sliding fit an
// HAProxy-like sequence (50 per 10 s, denied requests counted) whose
// window length lies halfway between two of the fit's grid points, with
// decision instants anywhere in each request's interval: a burst, a pause,
// then sends about one per 200 ms for three windows, the rate at which
// the decisions sit on the threshold. A grid point stands for its cell,
// so the truth's cell must survive every answer, fitted at once and
// incrementally, while the fit still pins the window to a few per cent
// and the quota to 50.
func TestSlideFitKeepsTruthBetweenGridPoints(t *testing.T) {
	const wLo, wHi = 1.0, 40.0
	grid := periodGrid(wLo, wHi, 1.01)
	k := 0
	for grid[k+1] < 10 {
		k++
	}
	W := math.Sqrt(grid[k] * grid[k+1])
	for seed := int64(1); seed <= 8; seed++ {
		rng := rand.New(rand.NewSource(seed))
		h := &haproxyRate{W: W, q: 50}
		var evs []event
		send := func(at float64) {
			rtt := 0.0002 + 0.003*rng.Float64()
			d := at + rtt*rng.Float64()
			evs = append(evs, event{t: at, adm: h.decide(d), lo: at, hi: at + rtt})
		}
		at := 1000.0
		for i := 0; i < 55; i++ {
			send(at)
			at += 0.01
		}
		at += 3
		for at < 1000+3.5*W {
			send(at)
			at += 0.19 + 0.02*rng.Float64()
		}
		half := len(evs) / 2
		inc := newSlideFit(evs[:half], wLo, wHi, []int64{50, 51})
		inc.add(evs)
		for _, f := range []*slideFit{newSlideFit(evs, wLo, wHi, []int64{50, 51}), inc} {
			kept := false
			for _, g := range f.hs {
				if g.q == 50 && g.cr && math.Abs(math.Log(g.W/W)) <= math.Log(1.01)/2+1e-9 {
					kept = true
				}
			}
			s, ok := f.summary()
			if !kept {
				t.Fatalf("seed %d: %d answers, window %.4f s: the truth's cell was ruled out (%d hypotheses left, summary %+v, %v)", seed, len(evs), W, len(f.hs), s, ok)
			}
			if s.wHi/s.wLo > 1.04 || s.qLo != 50 || s.qHi != 50 || s.cr == nil || !*s.cr {
				t.Fatalf("seed %d: not pinned: %+v (%d hypotheses)", seed, s, len(f.hs))
			}
		}
	}
}
