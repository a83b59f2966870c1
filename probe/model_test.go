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
