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
	// advAt is when the advertised request was sent; advAdmitted whether
	// it was admitted.
	advAt       time.Time
	advTook     time.Duration
	advAdmitted bool
}

// found is a limit while it is being measured.
type found struct {
	lim Limit
	// refillAt is when the limit is surely full again (a bucket refilled,
	// a new window, nothing in flight).
	refillAt time.Time
}

func (p *prober) probe(ctx context.Context) error {
	if err := p.advertised(ctx); err != nil {
		return err
	}
	// The limit on the request as given (fixed variables).
	l1, err := p.measure(ctx, false, "", 0, nil)
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
			capN = max(4*int(l1.lim.Quota)+40, 100)
		}
		l2, err := p.measure(ctx, true, "scope-", capN, l1)
		switch {
		case l2 == nil && err == nil:
			p.rep.Limits[0].Scope = "resource"
			p.note(fmt.Sprintf("with %s varied, %d requests at up to %s met no 429: the limit is per resource, and no broader limit is below the maximum rate within that many requests",
				p.varyNames(), capN, p.cfg.MaxRate))
		case l2 == l1:
			p.rep.Limits[0].Scope = "endpoint"
			last := p.rep.Steps[len(p.rep.Steps)-1]
			p.rep.Limits[0].Evidence.Steps = append(p.rep.Limits[0].Evidence.Steps, last.Name)
			p.rep.Limits[0].Evidence.Notes = append(p.rep.Limits[0].Evidence.Notes,
				fmt.Sprintf("with %s varied, %d admitted before the first 429, as with it fixed (quota %d): not per resource", p.varyNames(), last.First429, l1.lim.Quota))
			p.nextWait = max(p.nextWait, time.Until(l1.refillAt))
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
		p.nextWait = max(p.nextWait, time.Until(broadest.refillAt))
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
	if res != nil && len(res.obs) > 0 {
		o := res.obs[0]
		p.advAt, p.advTook, p.advAdmitted = res.start.Add(o.at), o.end-o.at, o.admitted()
	}
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
		if adv.Reset > 0 && adv.Remaining == 0 {
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

// measure finds one limit in one step (see experiment): its family, its
// numbers and the evidence. vary selects fresh variable values per
// request; capN bounds the step's requests (0: half the remaining
// budget); same, when set, ends the step after its burst if the burst is
// that of a limit already measured (then measure returns that found with
// the step's name added). It returns nil when no 429 was met.
func (p *prober) measure(ctx context.Context, vary bool, prefix string, capN int, same *found) (*found, error) {
	remaining := p.cfg.Budget - int(p.s.used.Load())
	byBudget := capN <= 0 || capN > remaining/2
	if byBudget {
		// Half of what is left, so that the scope steps still have their
		// share.
		capN = max(remaining/2, 1)
	}
	waited, err := p.wait(ctx)
	if err != nil {
		return nil, err
	}
	e := &experiment{minGap: p.s.minGap, maxWait: p.cfg.maxWait()}
	if !vary && p.advAt != (time.Time{}) && len(p.rep.Limits) == 0 && waited == 0 {
		// The advertised request came from the same full bucket.
		t := float64(p.advAt.UnixNano()) / 1e9
		e.prior = []event{{t: t, adm: p.advAdmitted, lo: t, hi: t + p.advTook.Seconds()}}
	}
	if same != nil {
		e.same = sameBurst(same.lim)
	}
	if !byBudget && p.cfg.ScopeRequests <= 0 {
		// A cap sized for the limit already measured (the scope step's
		// four bursts of it and 40) is too small for a broader limit
		// found instead: it gets four of its own bursts and 120 (a bucket
		// takes 60 to 100 requests after its burst to pin its period to
		// 2 %), within the same half of the budget. nginx's two zones: a
		// cap of 100 for the per-$uri 6 left the per-address burst of 31
		// at confidence 0.05 in 1 run of 9; serve's mix left its endpoint
		// bucket of 20/s burst 10 at 21.1/s, confidence 0.45.
		e.grow = func(a int) int { return min(4*a+120, max(remaining/2, 1)) }
	}
	st := &step{name: prefix + "explore", vary: vary, maxRequests: capN, maxDur: p.cfg.maxStep(), plan: e.plan}
	res, err := p.s.run(ctx, st)
	p.addStep(res, waited)
	p.log.Info("step", "name", res.name, "requests", len(res.obs), "first_429", firstReject(res.obs), "ended", e.done)
	if firstReject(res.obs) < 0 {
		if err == nil && res.capped && !res.timedOut && byBudget {
			err = fmt.Errorf("%w: the step's share of it (%d of the %d requests; %d used in all) met no 429",
				ErrBudget, capN, p.cfg.Budget, p.s.used.Load())
		}
		return nil, err
	}
	if same != nil && e.done == "the limit already measured" {
		return same, err
	}
	f := p.conclude(e, res)
	p.finish(f)
	switch {
	case err != nil || !res.capped:
	case f.lim.Confidence >= 0.5:
		if res.timedOut {
			p.note(fmt.Sprintf("the step %s could not pin the limit within its %v: its numbers are the range that still stood (confidence %.2g)",
				res.name, p.cfg.maxStep(), f.lim.Confidence))
		}
	case res.timedOut:
		err = fmt.Errorf("%w: the step %s ran its %v (%d requests, %d of the %d used in all) before the limit was identified",
			ErrStepTime, res.name, p.cfg.maxStep(), len(res.obs), p.s.used.Load(), p.cfg.Budget)
	case byBudget:
		err = fmt.Errorf("%w: the step's share of it (%d of the %d requests; %d used in all) ended before the limit was identified",
			ErrBudget, capN, p.cfg.Budget, p.s.used.Load())
	default:
		p.note(fmt.Sprintf("the step %s ended at its cap of %d requests before the limit was identified (confidence %.2g)",
			res.name, len(res.obs), f.lim.Confidence))
	}
	p.nextWait = max(p.nextWait, time.Until(f.refillAt))
	return f, err
}

// sameBurst reports whether a burst that admitted a requests, sent from
// from to to (Unix seconds), is l's: its quota, give or take one, or, for
// a window aligned to the epoch, up to twice it across one of its
// boundaries (the rest of one window's quota and the next one's). Without
// the second, a scope step that started just before a boundary measured
// the same window again as a broader limit (own 20 per 4 s, two CPU hogs).
func sameBurst(l Limit) func(a int, from, to float64) bool {
	q := l.Quota
	W := math.Round(l.WindowS*10) / 10
	epoch := l.Algorithm == "fixed-window" && l.WindowStart == "epoch" && W > 0 && math.Abs(W-l.WindowS) <= 0.01*W
	return func(a int, from, to float64) bool {
		if absInt(int64(a)-q) <= 1 {
			return true
		}
		return epoch && int64(a) > q && int64(a) <= 2*q+1 && math.Floor(to/W) > math.Floor(from/W)
	}
}

// headerBurst reads the burst from what the server itself says: the first
// response of a step that started on a full bucket carries the quota left
// after it (RateLimit r, X-RateLimit-Remaining), so the burst is r + 1. It
// is used only when the response names the policy being measured and the
// measurement allows it: lo ≤ r + 1 ≤ hi, or up to two requests or 5 %
// above hi. Never below lo: a step that started on a bucket not quite full
// (a loaded machine that sent the previous step's last requests late)
// shows less remaining than the burst (remaining 95 against a measured
// 99–100 at 500/s), never more; a little above is the measurement's own
// bias at high rates (a measured 98–98 against remaining 99 on a full
// bucket of 100). before counts the admissions from the same bucket
// before the step (the advertised request).
func headerBurst(step []*obs, policy string, lo, hi, before int64) (int64, bool) {
	var first *obs
	for _, o := range step {
		if o.done && (first == nil || o.seq < first.seq) {
			first = o
		}
	}
	if first == nil || !first.admitted() || first.remaining < 0 || policy == "" || first.policy != policy {
		return 0, false
	}
	hb := first.remaining + 1 + before
	tol := max(2, int64(math.Round(0.05*float64(hb))))
	return hb, hb >= lo && hb <= hi+tol
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
	if f.lim.Quota <= 0 || f.lim.Algorithm == "unknown" {
		return "", nil
	}
	waited, err := p.wait(ctx)
	if err != nil {
		return "", err
	}
	b := int(f.lim.Quota)
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
	switch {
	case r.timedOut:
		st.Bound = "time"
	case r.capped:
		st.Bound = "requests"
	}
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
