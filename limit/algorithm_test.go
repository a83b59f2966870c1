package limit

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestEvaluateWindowMatchesTiers pins EvaluateStates' one-tier window paths
// (evaluateFixed, evaluateSliding) to the general path (evaluateTiers) that every other
// request takes: on random policies, stored states, instants and costs,
// including late instants (a window that opened after now), shadow and
// count-rejected tiers, costs of 0 and above the quota, both must leave
// the same decision and the same state.
func TestEvaluateWindowMatchesTiers(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 2026))
	var fast, slow Decision
	for i := range 200_000 {
		w := time.Duration(1+r.IntN(1000)) * time.Millisecond
		p := &Policy{Name: "p", Algorithm: FixedWindow, Rate: Per(1+r.Int64N(8), w)}
		if r.IntN(2) == 0 {
			p.Algorithm = SlidingWindow
		} else {
			p.AlignFirst = r.IntN(3) == 0
		}
		p.Shadow = r.IntN(4) == 0
		p.CountRejected = r.IntN(3) == 0
		q := p.Rate.Count
		cost := r.Int64N(q + 1)
		if p.Shadow && r.IntN(4) == 0 {
			cost = q + 1 + r.Int64N(3) // only a shadow tier may see it
		}
		req := &Request{Tiers: []Tier{{Policy: p, Key: "k"}}, Cost: cost}
		if err := req.Validate(); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		now := r.Int64N(1e12)
		// Until over (−w, 3w]: missing, past, current and late states.
		s := State{Until: time.Duration(r.Int64N(int64(4*w))) - w, Count: r.Int64N(q + 3), Prev: r.Int64N(q + 3)}
		if p.Algorithm == FixedWindow {
			s.Prev = 0
		}
		stFast, stSlow := []State{s}, []State{s}
		EvaluateStates(req, now, stFast, &fast)
		evaluateTiers(req, now, stSlow, &slow)
		if !reflect.DeepEqual(fast, slow) || stFast[0] != stSlow[0] {
			t.Fatalf("case %d: %v, cost %d, now %d, state %+v:\none-tier path %+v, state %+v\ngeneral path  %+v, state %+v",
				i, p, cost, now, s, fast, stFast[0], slow, stSlow[0])
		}
	}
}
