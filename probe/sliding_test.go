package probe

import (
	"bufio"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// haproxyRate simulates HAProxy's http_req_rate(W) with "deny above q":
// the period opens at the first decision (and again at a request after two
// empty periods), a request at d is denied iff curr + 1 + ⌊prev·remain/W⌋
// > q in whole milliseconds, and denied requests are counted too.
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
	if d >= h.b+h.W {
		h.prev, h.curr, h.b = h.curr, 0, h.b+h.W
		if d >= h.b+h.W {
			h.prev, h.b = 0, d
		}
	}
	remain := math.Floor((h.b+h.W-d)*1000) / 1000
	adm := h.curr+1+int64(math.Floor(float64(h.prev)*remain/h.W)) <= h.q
	h.curr++
	return adm
}

// ratelabSliding simulates limit's sliding window: windows aligned to the
// epoch, admitted iff count + 1 + prev·(W − elapsed)/W ≤ q, only
// admissions counted.
type ratelabSliding struct {
	W, k       float64
	curr, prev int64
	q          int64
}

func (r *ratelabSliding) decide(d float64) bool {
	k := math.Floor(d / r.W)
	switch {
	case k == r.k:
	case k == r.k+1:
		r.prev, r.curr = r.curr, 0
	default:
		r.prev, r.curr = 0, 0
	}
	r.k = k
	b := k * r.W
	adm := float64(r.curr+1)+float64(r.prev)*(b+r.W-d)/r.W <= float64(r.q)
	if adm {
		r.curr++
	}
	return adm
}

// truthKept reports whether a cell of f with quota q, the variant cr and
// ceil holds the window W whose current window ends at end.
func truthKept(f *slideFit, W, end float64, q int64, cr, ceil bool) bool {
	for _, c := range f.cells {
		if c.q != q || c.cr != cr || c.ceil != ceil {
			continue
		}
		p := clip(clip(c.poly, 0, 1, W), 0, -1, -W)
		if end >= 0 {
			p = clip(clip(p, 1, 0, end-f.t0+1e-6), -1, 0, -(end - f.t0 + 1e-6))
		}
		if len(p) > 0 {
			return true
		}
	}
	return false
}

// A burst of q + 5 at 100/s, a pause of 3 s, then about one request per
// W/q (where the decisions sit on the threshold) for 3.5 windows, with
// decision instants anywhere in each request's interval.
func slideSequence(rng *rand.Rand, W float64, q int64, decide func(float64) bool) []event {
	var evs []event
	send := func(at float64) {
		rtt := 0.0002 + 0.003*rng.Float64()
		d := at + rtt*rng.Float64()
		evs = append(evs, event{t: at, adm: decide(d), lo: at, hi: at + rtt})
	}
	at := 1000.0 + 7*rng.Float64()
	for i := int64(0); i < q+5; i++ {
		send(at)
		at += 0.01
	}
	at += 3
	end := at + 3.5*W
	for at < end {
		send(at)
		at += W / float64(q) * (0.95 + 0.1*rng.Float64())
	}
	return evs
}

// TestSlideFitKeepsTruth feeds the fit HAProxy's and ratelab's sliding
// windows over window lengths that no grid holds (10.009 s, 2.0031 s),
// with decision instants anywhere in each request's interval: the truth
// must survive every answer, fitted at once and incrementally (a grid of
// window lengths 1 % apart and 200 phases ruled HAProxy's out at seed 2),
// and the fit must narrow the window to 15 % and the quota to one.
func TestSlideFitKeepsTruth(t *testing.T) {
	for _, c := range []struct {
		name     string
		W        float64
		q        int64
		cr, ceil bool
		newSim   func(W float64, q int64) func(float64) bool
	}{
		{"haproxy 50 per 10.009 s, 429s counted", 10.009, 50, true, false, func(W float64, q int64) func(float64) bool {
			h := &haproxyRate{W: W, q: q}
			return h.decide
		}},
		{"ratelab 20 per 2.0031 s", 2.0031, 20, false, true, func(W float64, q int64) func(float64) bool {
			r := &ratelabSliding{W: W, q: q, k: math.Inf(-1)}
			return r.decide
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for seed := int64(1); seed <= 8; seed++ {
				rng := rand.New(rand.NewSource(seed))
				evs := slideSequence(rng, c.W, c.q, c.newSim(c.W, c.q))
				qs := []int64{c.q - 1, c.q, c.q + 1}
				start := time.Now()
				whole := newSlideFit(evs, 0.1, 240, qs)
				took := time.Since(start)
				inc := newSlideFit(evs[:len(evs)/2], 0.1, 240, qs)
				inc.add(evs)
				for _, f := range []*slideFit{whole, inc} {
					s, ok := f.summary()
					if !truthKept(f, c.W, -1, c.q, c.cr, c.ceil) {
						t.Fatalf("seed %d: %d answers: the truth was ruled out (%d cells left, summary %+v, %v)", seed, len(evs), len(f.cells), s, ok)
					}
					// The stream is not planned (the probe's planner
					// separates what is left): the fit need only narrow
					// it to what such a stream can tell.
					if s.wHi/s.wLo > 1.15 || s.qHi-s.qLo > 1 || s.cr != nil && *s.cr != c.cr {
						t.Errorf("seed %d: not narrowed: %+v (%d cells)", seed, s, len(f.cells))
					}
				}
				if len(whole.cells) != len(inc.cells) {
					t.Errorf("seed %d: %d cells fitted at once, %d incrementally", seed, len(whole.cells), len(inc.cells))
				}
				s, _ := whole.summary()
				t.Logf("seed %d: %d answers, %d cells, W %.4f–%.4f, q %d–%d, cr %v, in %v", seed, len(evs), len(whole.cells), s.wLo, s.wHi, s.qLo, s.qHi, fmtCR(s.cr), took.Round(time.Millisecond))
			}
		})
	}
}

func fmtCR(b *bool) string {
	if b == nil {
		return "null"
	}
	return fmt.Sprint(*b)
}

// readRecorded reads a request log recorded against a real limiter
// (testdata/slide: send instant and time to the answer in seconds, and the
// status, one request a line) as fit events.
func readRecorded(t *testing.T, name string) []event {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "slide", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var at, took float64
		var status int
		if _, err := fmt.Sscan(sc.Text(), &at, &took, &status); err != nil {
			t.Fatalf("%s: %q: %v", name, sc.Text(), err)
		}
		at += 1000
		evs = append(evs, event{t: at, adm: status != 429, lo: at, hi: at + took})
	}
	return evs
}

// TestSlideFitRecordedHAProxy fits request logs of the probe against
// HAProxy's http_req_rate(10s) > 50 (TestProbeHAProxyRate; the fifth from
// a run that read it as a window every request restarts, the planner
// pausing 6.4 s between drains): the truth (50 per 10 s, 429s counted,
// the strict rounding) must survive.
func TestSlideFitRecordedHAProxy(t *testing.T) {
	for _, name := range []string{"haproxy-rate-1.txt", "haproxy-rate-2.txt", "haproxy-rate-3.txt", "haproxy-rate-4.txt", "haproxy-rate-5.txt"} {
		evs := readRecorded(t, name)
		start := time.Now()
		f := newSlideFit(evs, 0.1, 240, []int64{49, 50, 51})
		took := time.Since(start)
		s, ok := f.summary()
		if !truthKept(f, 10, -1, 50, true, false) {
			t.Errorf("%s: the truth was ruled out (%d cells left, summary %+v, %v)", name, len(f.cells), s, ok)
		}
		t.Logf("%s: %d answers, %d cells, W %.4f–%.4f, q %d–%d (most %d), cr %v, in %v", name, len(evs), len(f.cells), s.wLo, s.wHi, s.qLo, s.qHi, s.q, fmtCR(s.cr), took.Round(time.Millisecond))
	}
}

// TestSlidingAdvice checks the advice for a sliding window in its own
// terms: the quota per window, the trickle a spent quota comes back as,
// how long a burst weighs, and, when 429s count, to pause after one.
func TestSlidingAdvice(t *testing.T) {
	cr := true
	l := Limit{Algorithm: "sliding-window", Quota: 50, WindowS: 10, RatePerS: 5, CountsRejected: &cr}
	got := l.Advice()
	for _, want := range []string{"keep under 50 per 10 s (5/s)", "a trickle, about one per 200 ms", "up to 20 s", "pause instead of retrying"} {
		if !strings.Contains(got, want) {
			t.Errorf("advice %q lacks %q", got, want)
		}
	}
	l.CountsRejected = nil
	if got := l.Advice(); strings.Contains(got, "pause") {
		t.Errorf("advice %q tells to pause, but whether 429s count is not known", got)
	}
}
