package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"ratelab/limit"
)

// Run probes cfg's endpoint. The error is for a probe that cannot start
// (an invalid Config); a probe that stops early (budget, errors, Ctrl-C)
// returns its partial report with Stopped set and a nil error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := newSender(&cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &prober{cfg: &cfg, s: s, log: log, start: time.Now(), rep: &Report{
		URL: cfg.Request.URL, Method: s.target.Method, MaxRate: cfg.MaxRate.String(), Budget: cfg.Budget,
		Limits: []Limit{}}}
	if err := p.probe(ctx); err != nil {
		p.rep.Stopped = err.Error()
		log.Warn("probe stopped", "reason", err)
	}
	p.rep.RequestsUsed = s.used.Load()
	p.rep.DurationS = time.Since(p.start).Seconds()
	return p.rep, nil
}

type prober struct {
	cfg   *Config
	s     *sender
	log   *slog.Logger
	start time.Time
	rep   *Report
	// nextWait is the refill wait owed before the next step.
	nextWait time.Duration
}

// found is a limit while it is being measured.
type found struct {
	lim  Limit
	rate rateEst
	// full reports whether the burst was measured from a full bucket.
	full bool
	// refill is how long an empty bucket takes to fill: (b+1)·T.
	refill time.Duration
}

func (p *prober) probe(ctx context.Context) error {
	if err := p.advertised(ctx); err != nil {
		return err
	}
	// The limit on the request as given (fixed variables).
	l1, err := p.measure(ctx, false, "", 0)
	if l1 != nil {
		p.rep.Limits = append(p.rep.Limits, l1.lim)
	}
	if err != nil {
		return err
	}
	if l1 == nil {
		p.note(fmt.Sprintf("no 429 at up to %s: any limit is above the maximum rate or its burst above the requests sent", p.cfg.MaxRate))
		return nil
	}
	broadest, broadestIdx, broadestVary := l1, 0, false
	if len(p.cfg.Vary) > 0 {
		capN := p.cfg.ScopeRequests
		if capN <= 0 {
			capN = max(4*int(l1.lim.Burst)+40, 100)
		}
		p.nextWait = max(p.nextWait, l1.refill)
		l2, err := p.measure(ctx, true, "scope-", capN)
		switch {
		case l2 == nil && err == nil:
			p.rep.Limits[0].Scope = "resource"
			p.note(fmt.Sprintf("with %s varied, %d requests at up to %s met no 429: the limit is per resource, and no broader limit is below the maximum rate within that many requests",
				p.varyNames(), capN, p.cfg.MaxRate))
		case l2 != nil && sameLimit(l1, l2):
			p.rep.Limits[0].Scope = "endpoint"
			p.rep.Limits[0].Evidence.Steps = append(p.rep.Limits[0].Evidence.Steps, l2.lim.Evidence.Steps...)
			p.rep.Limits[0].Evidence.Notes = append(p.rep.Limits[0].Evidence.Notes,
				fmt.Sprintf("the same limit (%.3g/s, burst %d) with %s varied: not per resource", l2.lim.RatePerS, l2.lim.Burst, p.varyNames()))
		case l2 != nil:
			p.rep.Limits[0].Scope = "resource"
			l2.lim.Scope = "endpoint"
			p.rep.Limits = append(p.rep.Limits, l2.lim)
			broadest, broadestIdx, broadestVary = l2, 1, true
		}
		if err != nil {
			return err
		}
	}
	if p.cfg.Client2 != nil {
		p.nextWait = max(p.nextWait, broadest.refill)
		scope, err := p.clientScope(ctx, broadest, broadestVary)
		if scope != "" {
			l := &p.rep.Limits[broadestIdx]
			if l.Scope == "unknown" {
				l.Scope = "endpoint"
			}
			l.Scope += ", " + scope
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *prober) note(s string) {
	p.rep.Notes = append(p.rep.Notes, s)
	p.log.Info(s)
}

func (p *prober) varyNames() string {
	names := make([]string, len(p.cfg.Vary))
	for i, v := range p.cfg.Vary {
		names[i] = v.Name
	}
	return strings.Join(names, ", ")
}

// sameLimit reports whether two measurements are of one limit: the same
// policy name when both are named, else rates within 10 % and bursts
// within 1.
func sameLimit(a, b *found) bool {
	if a.lim.Policy != "" && b.lim.Policy != "" {
		return a.lim.Policy == b.lim.Policy
	}
	ra, rb := a.lim.RatePerS, b.lim.RatePerS
	return math.Abs(ra-rb) <= 0.1*math.Max(ra, rb) && absInt(a.lim.Burst-b.lim.Burst) <= 1
}

func absInt(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// advertised sends one request and reads the limits endpoint.
func (p *prober) advertised(ctx context.Context) error {
	res, err := p.s.run(ctx, &step{name: "advertised", control: func(st *stepState) (time.Duration, bool) {
		return 0, len(st.obs) >= 1
	}})
	p.addStep(res, 0)
	if err != nil {
		return err
	}
	a := &p.rep.Advertised
	a.Limit, a.Remaining, a.ResetS = -1, -1, -1
	if adv, hdr, status, ok := p.s.firstResponse(); ok {
		a.Status, a.Policy, a.Limit, a.Remaining = status, adv.Policy, adv.Limit, adv.Remaining
		if adv.Reset >= 0 {
			a.ResetS = adv.Reset.Seconds()
		}
		a.Headers = hdr
		for _, ap := range adv.Policies {
			c := Claim{Source: "RateLimit-Policy header", Policy: ap.Name, Burst: max(ap.Quota, 0)}
			if ap.Quota > 0 && ap.Window > 0 {
				c.RatePerS = float64(ap.Quota) / ap.Window.Seconds()
			}
			a.Claims = append(a.Claims, c)
		}
		if adv.Reset > 0 {
			p.nextWait = max(p.nextWait, adv.Reset)
		}
	}
	if p.cfg.LimitsURL != "" {
		claims, err := p.readLimits(ctx)
		if err != nil {
			if errors.Is(err, ErrBudget) || errors.Is(err, ErrInterrupted) {
				return err
			}
			p.note("limits endpoint: " + err.Error())
		}
		// The endpoint's claims are exact; they replace the header's.
		if len(claims) > 0 {
			a.Claims = claims
		}
	}
	return nil
}

// readLimits reads the limits endpoint: a JSON list of policies under
// "policies" or "limits" (or at the top level), each with a name
// ("policy" or "name"), "limit" per "window", "burst" and "scope".
func (p *prober) readLimits(ctx context.Context) ([]Claim, error) {
	status, data, err := p.s.get(ctx, p.cfg.LimitsURL)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("get %s: status %d", p.cfg.LimitsURL, status)
	}
	return parseClaims(data, p.cfg.LimitsURL)
}

// parseClaims reads a limits document (see readLimits).
func parseClaims(data []byte, source string) ([]Claim, error) {
	type item struct {
		Policy string          `json:"policy"`
		Name   string          `json:"name"`
		Scope  string          `json:"scope"`
		Limit  float64         `json:"limit"`
		Window json.RawMessage `json:"window"`
		Burst  int64           `json:"burst"`
		Key    string          `json:"key"`
	}
	var doc struct {
		Policies []item `json:"policies"`
		Limits   []item `json:"limits"`
	}
	var items []item
	if err := json.Unmarshal(data, &doc); err == nil {
		items = append(doc.Policies, doc.Limits...)
	} else if err := json.Unmarshal(data, &items); err != nil {
		return nil, fmt.Errorf("read limits: want JSON with a policies list: %w", err)
	}
	var out []Claim
	seen := map[string]bool{}
	for _, it := range items {
		name := it.Policy
		if name == "" {
			name = it.Name
		}
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		c := Claim{Source: source, Policy: name, Scope: it.Scope, Burst: it.Burst}
		if w := windowOf(it.Window); w > 0 && it.Limit > 0 {
			c.RatePerS = it.Limit / w.Seconds()
		}
		out = append(out, c)
	}
	return out, nil
}

// windowOf reads a window given as a Go duration string or as seconds.
func windowOf(raw json.RawMessage) time.Duration {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return time.Duration(f * float64(time.Second))
		}
		return 0
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return time.Duration(f * float64(time.Second))
	}
	return 0
}

// wait sleeps for the refill owed, honouring ctx.
func (p *prober) wait(ctx context.Context) (time.Duration, error) {
	d := p.nextWait
	p.nextWait = 0
	if d <= 0 {
		return 0, nil
	}
	if d > p.cfg.maxWait() {
		d = p.cfg.maxWait()
	}
	p.log.Info("waiting for the bucket to refill", "wait", d.Round(time.Millisecond))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return d, nil
	case <-ctx.Done():
		return 0, ErrInterrupted
	}
}

// drain returns a controller that sends at the maximum rate until the
// first 429, and then measures the rate. Once two admissions have given a
// first interval T, it predicts the next admission and sends sparsely (every
// T/10) until shortly before it and at the maximum rate around it: each
// admission is then seen within one maximum-rate interval, for about 20
// requests per admission whatever the rate.
func (p *prober) drain() func(st *stepState) (time.Duration, bool) {
	minGap := p.s.minGap
	return func(st *stepState) (time.Duration, bool) {
		if st.firstReject < 0 {
			return minGap, false
		}
		e, ok := estimateRate(st.obs)
		if !ok {
			return minGap, false
		}
		if precise(e) {
			return 0, true
		}
		times := admissionsAfterReject(st.obs)
		k := len(times)
		t := (times[k-1] - times[0]) / time.Duration(k-1)
		now := time.Since(st.start)
		window := times[k-1] + t - t/10 - 2*minGap
		if now >= window {
			return minGap, false
		}
		return max(minGap, min(t/10, window-now)), false
	}
}

// burstOnly returns a controller that sends at the maximum rate until the
// first 429.
func (p *prober) burstOnly() func(st *stepState) (time.Duration, bool) {
	minGap := p.s.minGap
	return func(st *stepState) (time.Duration, bool) { return minGap, st.firstReject >= 0 }
}

// measure finds one limit: explore (burst phase and rate), refill, burst.
// vary selects fresh variable values per request; capN bounds the explore
// step's requests (0: half the remaining budget). It returns nil when no
// 429 was met.
func (p *prober) measure(ctx context.Context, vary bool, prefix string, capN int) (*found, error) {
	mode := "fixed"
	if vary {
		mode = "vary " + p.varyNames()
	}
	remaining := p.cfg.Budget - int(p.s.used.Load())
	byBudget := capN <= 0 || capN > remaining/2
	if byBudget {
		// Half of what is left, so that the burst and scope steps still
		// have their share.
		capN = max(remaining/2, 1)
	}
	waited, err := p.wait(ctx)
	if err != nil {
		return nil, err
	}
	ex, err := p.s.run(ctx, &step{name: prefix + "explore", vary: vary, maxRequests: capN, maxDur: p.cfg.maxStep(), control: p.drain()})
	p.addStep(ex, waited)
	p.log.Info("step", "name", ex.name, "mode", mode, "requests", len(ex.obs), "first_429", firstReject(ex.obs))
	if firstReject(ex.obs) < 0 {
		return nil, err
	}
	f := &found{lim: Limit{Scope: "unknown", Evidence: Evidence{Steps: []string{ex.name}}}}
	re, ok := estimateRate(ex.obs)
	f.rate = re
	ev := &f.lim.Evidence
	ev.Admissions, ev.SpanS = re.Admissions, re.Span.Seconds()
	f.lim.Policy = policyOf(ex.obs)
	if !ok {
		// Too few admissions after the first 429 to time them (the step
		// hit a cap): the burst phase still bounds the limit.
		be, _ := estimateBurst(ex.obs, 0)
		f.lim.Burst = int64(be.Admitted)
		ev.Notes = append(ev.Notes, fmt.Sprintf("%d admissions after the first 429 within the step's bounds: too few to time the rate; burst %d is an upper bound", re.Admissions, be.Admitted))
		p.finish(f)
		if err == nil && ex.capped && byBudget {
			err = fmt.Errorf("%w: %d requests left the rate unmeasured", ErrBudget, p.cfg.Budget)
		}
		return f, err
	}
	f.lim.RatePerS, f.lim.RateLow, f.lim.RateHigh = re.Rate, re.Low, re.High
	be, _ := estimateBurst(ex.obs, re.Rate)
	f.lim.Burst = be.Burst
	f.setRate()
	f.refill = refillTime(be.Burst, re.Rate)
	ev.AdmittedBeforeFirst429, ev.BurstLow, ev.BurstHigh = be.Admitted, be.Low, be.High
	p.finish(f)
	if err != nil {
		return f, err
	}
	// The explore step may have started on a bucket that was not full;
	// measure the burst again from one that surely is.
	prevC := be.Admitted
	var ests []burstEst
	for try, steps := 0, 0; try < 3 && steps < 6; try, steps = try+1, steps+1 {
		p.nextWait = max(p.nextWait, f.refill, lastAdvertisedWait(ex.obs))
		if f.refill > p.cfg.maxWait() {
			ev.Notes = append(ev.Notes, fmt.Sprintf("refill takes %v, over the longest wait %v: burst from the explore step", f.refill.Round(time.Millisecond), p.cfg.maxWait()))
			p.finish(f)
			return f, nil
		}
		waited, err := p.wait(ctx)
		if err != nil {
			return f, err
		}
		name := prefix + "burst"
		if steps > 0 {
			name += strconv.Itoa(steps + 1)
		}
		bs, err := p.s.run(ctx, &step{name: name, vary: vary, maxRequests: 4*prevC + 40, maxDur: p.cfg.maxStep(), control: p.burstOnly()})
		p.addStep(bs, waited)
		ev.Steps = append(ev.Steps, bs.name)
		b, ok := estimateBurst(bs.obs, re.Rate)
		if ok {
			f.full = true
			ests = append(ests, b)
			if err == nil && len(ests) < 3 && re.Rate*b.LastAdmit.Seconds() > 2 && b.Admitted <= prevC+1 {
				// Many tokens came back during the step, so the estimate
				// leans on the timing of its ends: take the median of three.
				p.nextWait = max(p.nextWait, refillTime(b.Burst, re.Rate))
				try--
				continue
			}
			b = medianBurst(ests)
			f.lim.Burst = b.Burst
			if hb, ok := headerBurst(bs.obs, f.lim.Policy, b); ok {
				f.lim.Burst = hb
				ev.Notes = append(ev.Notes, fmt.Sprintf("burst %d as the server advertised it on the first response from a full bucket (remaining %d + 1), which the measurement (%.1f–%.1f) confirms", hb, hb-1, b.Low, b.High))
			}
			f.setRate()
			f.refill = refillTime(b.Burst, re.Rate)
			ev.AdmittedBeforeFirst429, ev.BurstLow, ev.BurstHigh = b.Admitted, b.Low, b.High
			if pol := policyOf(bs.obs); pol != "" {
				f.lim.Policy = pol
			}
		}
		p.log.Info("step", "name", bs.name, "mode", mode, "admitted_before_429", b.Admitted, "burst", f.lim.Burst)
		p.nextWait = max(p.nextWait, f.refill)
		p.finish(f)
		if err != nil || !ok || b.Admitted <= prevC+1 {
			return f, err
		}
		// More was admitted than the wait assumed: the bucket may be
		// bigger still, so wait for the larger one and measure again.
		prevC = b.Admitted
		ex = bs
		ests = ests[:0]
	}
	return f, nil
}

// headerBurst reads the burst from what the server itself says: the first
// response of a step that started on a full bucket carries the quota left
// after it (RateLimit r, X-RateLimit-Remaining), so the burst is r + 1. It
// is used only when the response names the policy being measured and the
// timing measurement agrees with it within its error (two requests or 5 %,
// the lag that a loaded machine adds at high rates); otherwise the
// measurement stands on its own.
func headerBurst(step []*obs, policy string, measured burstEst) (int64, bool) {
	var first *obs
	for _, o := range step {
		if o.done && (first == nil || o.seq < first.seq) {
			first = o
		}
	}
	if first == nil || !first.admitted() || first.remaining < 0 || policy == "" || first.policy != policy {
		return 0, false
	}
	hb := first.remaining + 1
	tol := max(2, 0.05*float64(hb))
	if math.Abs(float64(hb)-float64(measured.Burst)) > tol {
		return 0, false
	}
	return hb, true
}

// medianBurst returns the estimate with the median burst.
func medianBurst(ests []burstEst) burstEst {
	s := append([]burstEst(nil), ests...)
	sort.Slice(s, func(i, j int) bool { return s[i].Burst < s[j].Burst })
	return s[len(s)/2]
}

// setRate sets the limit's rate from the measurement, for the burst
// found: a burst of 1 accumulates lags (see unitBurst).
func (f *found) setRate() {
	e := f.rate
	if f.lim.Burst == 1 {
		e = unitBurst(e)
	}
	f.lim.RatePerS, f.lim.RateLow, f.lim.RateHigh = e.Rate, e.Low, e.High
}

// finish attaches the claim and headers to f's evidence.
func (p *prober) finish(f *found) {
	f.lim.Evidence.Headers = p.s.headerLines()
	f.lim.Evidence.Claimed = nil
	for i := range p.rep.Advertised.Claims {
		if c := &p.rep.Advertised.Claims[i]; c.Policy != "" && c.Policy == f.lim.Policy {
			cc := *c
			f.lim.Evidence.Claimed = &cc
		}
	}
}

// refillTime is how long an emptied bucket of burst b at rate r takes to
// be full again, with one interval and a little margin to spare.
func refillTime(b int64, r float64) time.Duration {
	if r <= 0 {
		return 0
	}
	return time.Duration(float64(b+1)/r*float64(time.Second)) + 50*time.Millisecond
}

// lastAdvertisedWait is the longest Retry-After or reset the last
// responses of a step advertised: a server that says when it refills is
// believed.
func lastAdvertisedWait(obs []*obs) time.Duration {
	var d time.Duration
	for i := len(obs) - 1; i >= 0 && i >= len(obs)-5; i-- {
		d = max(d, obs[i].retryAfter, obs[i].reset)
	}
	return d
}

// policyOf returns the policy named most often by the step's 429s.
func policyOf(obs []*obs) string {
	n := map[string]int{}
	for _, o := range obs {
		if o.rejected() && o.policy != "" {
			n[o.policy]++
		}
	}
	best, bestN := "", 0
	for name, c := range n {
		if c > bestN || (c == bestN && name < best) {
			best, bestN = name, c
		}
	}
	return best
}

// clientScope tells whether f is per client or shared by the clients:
// from a full bucket, a burst step alternating the two credentials.
func (p *prober) clientScope(ctx context.Context, f *found, vary bool) (string, error) {
	if f.lim.Burst <= 0 || f.lim.RatePerS <= 0 {
		return "", nil
	}
	waited, err := p.wait(ctx)
	if err != nil {
		return "", err
	}
	b := int(f.lim.Burst)
	seen := [2]bool{}
	res, err := p.s.run(ctx, &step{name: "scope-clients", vary: vary, clients: 2, maxRequests: 3*b + 20, maxDur: p.cfg.maxStep(),
		control: func(st *stepState) (time.Duration, bool) {
			for _, o := range st.obs {
				if o.rejected() {
					seen[o.client] = true
				}
			}
			return p.s.minGap, seen[0] && seen[1]
		}})
	p.addStep(res, waited)
	p.nextWait = max(p.nextWait, f.refill)
	// Count each client's admissions before its own first 429.
	var adm [2]int
	var stopped [2]bool
	for _, o := range res.obs {
		switch {
		case o.rejected():
			stopped[o.client] = true
		case o.admitted() && !stopped[o.client]:
			adm[o.client]++
		}
	}
	refill := f.lim.RatePerS * res.duration.Seconds()
	total := float64(adm[0]+adm[1]) - refill
	scope := "shared by clients"
	if total >= 1.5*float64(b) {
		scope = "per client"
	}
	i := len(p.rep.Limits) - 1
	for j := range p.rep.Limits {
		if p.rep.Limits[j].Policy == f.lim.Policy && p.rep.Limits[j].RatePerS == f.lim.RatePerS {
			i = j
		}
	}
	ev := &p.rep.Limits[i].Evidence
	ev.Steps = append(ev.Steps, res.name)
	ev.Notes = append(ev.Notes, fmt.Sprintf("two clients alternating from a full bucket: %d and %d admitted before each one's first 429 (burst %d): %s",
		adm[0], adm[1], b, scope))
	p.log.Info("step", "name", res.name, "admitted", adm, "scope", scope)
	if !stopped[0] || !stopped[1] {
		return "", err
	}
	return scope, err
}

// addStep summarizes a step into the report.
func (p *prober) addStep(r *stepResult, waited time.Duration) {
	if r == nil {
		return
	}
	st := Step{Name: r.name, Mode: "fixed", Requests: len(r.obs), DurationS: r.duration.Seconds(),
		First429: firstReject(r.obs), WaitS: waited.Seconds()}
	if r.vary {
		st.Mode = "vary " + p.varyNames()
	}
	if r.clients > 1 {
		st.Mode += ", two clients"
	}
	pol := map[string]bool{}
	for _, o := range r.obs {
		switch {
		case o.rejected():
			st.Rejected++
		case o.admitted():
			st.Admitted++
		default:
			st.Errors++
		}
		if o.policy != "" && !pol[o.policy] {
			pol[o.policy] = true
			st.Policies = append(st.Policies, o.policy)
		}
	}
	sort.Strings(st.Policies)
	if n := len(r.obs); n > 1 {
		if span := r.obs[n-1].at - r.obs[0].at; span > 0 {
			st.SentPerS = float64(n-1) / span.Seconds()
		}
	}
	p.rep.Steps = append(p.rep.Steps, st)
}

// firstResponse returns what the probe's first response advertised.
func (s *sender) firstResponse() (limit.Advertised, []string, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstAdv, s.firstHdr, s.firstStatus, s.firstSet
}
