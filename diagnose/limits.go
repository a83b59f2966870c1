package diagnose

import (
	"errors"
	"strings"
	"time"

	"ratelab/limit"
	"ratelab/wire"
)

// ScriptLimit returns the tightest per-script policy among the advertised
// policies (GET /api/v2/ratelimits?scriptId=id): the one whose key names
// the script with the lowest sustained rate. Shadow policies, which never
// reject, and policies whose window does not parse are skipped.
func ScriptLimit(policies []wire.LimitState, scriptID string) (*limit.Policy, error) {
	var best *limit.Policy
	for _, p := range policies {
		if p.Key == "" || !strings.Contains(p.Key, scriptID) || p.Shadow {
			continue
		}
		w, err := time.ParseDuration(p.Window)
		if err != nil || p.Limit <= 0 {
			continue // a concurrency policy has no window: it limits no rate
		}
		// A window admits its whole quota at once: as a bucket, its burst
		// is the quota.
		burst := p.Burst
		if p.Algorithm == limit.FixedWindow.String() || p.Algorithm == limit.SlidingWindow.String() {
			burst = p.Limit
		}
		pol := &limit.Policy{Name: p.Policy, Rate: limit.Per(p.Limit, w), Burst: burst}
		if best == nil || pol.Rate.PerSecond() < best.Rate.PerSecond() {
			best = pol
		}
	}
	if best == nil {
		return nil, errors.New("the server advertises no per-script limit")
	}
	return best, nil
}

// settleMargin is added to Settle's refill time so that a run started
// after it finds every bucket full despite timer and clock granularity.
const settleMargin = 100 * time.Millisecond

// Settle returns how long to wait for every advertised bucket to refill
// from empty: the longest burst·window/limit, plus a small margin. A fixed
// window is empty again after its window, a sliding one after two; a
// concurrency limit holds nothing once its requests are done. Runs
// separated by it do not inherit each other's backlog.
func Settle(policies []wire.LimitState) time.Duration {
	var d time.Duration
	for _, p := range policies {
		w, err := time.ParseDuration(p.Window)
		if err != nil || p.Limit <= 0 {
			continue
		}
		switch p.Algorithm {
		case limit.FixedWindow.String():
			d = max(d, w)
		case limit.SlidingWindow.String():
			d = max(d, 2*w)
		default:
			d = max(d, w*time.Duration(p.Burst)/time.Duration(p.Limit))
		}
	}
	return d + settleMargin
}
