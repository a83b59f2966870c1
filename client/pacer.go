package client

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"ratelab/limit"
	"ratelab/wire"
)

// The pacer is the client's picture of the server's rate limits, learned
// from the server itself and nothing else.
//
// Design. Every response of a rate-limited route names, in
// RateLimit-Policy, every enforced policy that applied to it (q = burst,
// w = the seconds an empty bucket takes to refill, rounded up), and in
// RateLimit the decisive one with its remaining quota r. The pacer keeps:
//
//   - per operation kind ("PUT script", "POST bulk", …) the policy names
//     its last response listed, so it knows which buckets a request of
//     that kind draws from;
//   - per policy its parameters: exact ones (rate, burst, scope) from
//     GET /api/v2/ratelimits or a 429 body, else the header's q and w
//     (rate q/w per second, which is never faster than the real rate since
//     w is rounded up);
//   - per (policy, scope key) the client side of the policy's algorithm
//     (the key is the script id for org+script policies and "" for the
//     others: one client only ever sees its own org, client and route
//     classes):
//   - for a token bucket (gcra, and a policy known only from the
//     header's q and w, whose algorithm the header does not say), a
//     limit.Bucket, the client side of GCRA;
//   - for a window (fixed-window, sliding-window, known from
//     GET /api/v2/ratelimits), and for a limit that responses advertise
//     without RateLimit-Policy (the x-ratelimit, github and inin
//     dialects: known by the name X-RateLimit-Resource gives, else by its
//     quota), a limit.ResetTracker: no pacing at a rate, but when the
//     last responses say nothing is left, with the requests in flight
//     counted, the client waits for the reset they give;
//   - for a concurrency policy, which is not a rate, the number of this
//     client's requests in flight under it: a request waits while its
//     limit's slots are all taken by this client, until one of them ends
//     (other clients' requests it cannot see; their 429s are retried
//     after Retry-After).
//
// A request is sent only when everything it draws from admits it,
// all-or-nothing like the server. The buckets keep the margin unused
// (limit.Bucket.Margin): the server decides a little later than the
// client (network, authentication), and that delay varies; the margin
// absorbs the variation, so a request the client admits is one the server
// admits too. The margin costs no throughput, only a phase shift.
//
// Local state only ever errs towards waiting: a response whose r is below
// the local remaining quota (another client of the same org used some)
// pushes the bucket forward (SetRemaining), and a 429 sets it so that the
// next admission is exactly the server's retry delay (plus jitter) from
// now (SetRetryAfter).
// A change of q or w in a response means the server's policies changed:
// the header values take over at once and a refresh of the exact values
// is requested.
//
// A kind never seen before borrows the policies of another write kind
// when it is a write (POST bulk learns from PUT), and otherwise is
// learned by letting one request of that kind through alone: the others
// wait for its response.
//
// All methods take the current time as a parameter; the pacer is safe for
// concurrent use.
type pacer struct {
	margin time.Duration

	mu       sync.Mutex
	policies map[string]*pacedPolicy
	kinds    map[string][]string
	learning map[string]chan struct{}
	buckets  map[tierKey]*limit.Bucket
	trackers map[tierKey]*limit.ResetTracker
	inflight map[tierKey]int64
	// freed is closed, and replaced, when a concurrency slot is released.
	freed chan struct{}
	// blocked holds, per kind, a time before which no request of the kind
	// is sent: a 429 that named no policy the pacer knows.
	blocked map[string]time.Time
	// refresh is set when the exact policy values should be fetched again.
	refresh bool
}

// pacedPolicy is one server policy as the client knows it.
type pacedPolicy struct {
	limit.Policy
	scope wire.Scope
	// exact is set when Rate and Burst came from the server's own numbers
	// rather than from the rounded header values.
	exact bool
}

type tierKey struct{ policy, key string }

// Operation kinds: a request's method and route pattern.
const (
	kindListScripts  = "GET " + wire.ScriptsPath
	kindCreateScript = "POST " + wire.ScriptsPath
	kindBulk         = "POST " + wire.BulkPath
	kindGetScript    = "GET " + wire.ScriptPath
	kindPutScript    = "PUT " + wire.ScriptPath
	kindDeleteScript = "DELETE " + wire.ScriptPath
	kindVersions     = "GET " + wire.VersionsPath
	kindUsers        = "GET " + wire.UsersPath
)

// writeKinds share the script-write policies, so an unseen one borrows
// what another has taught.
var writeKinds = [...]string{kindPutScript, kindBulk, kindCreateScript, kindDeleteScript}

func newPacer(margin time.Duration) *pacer {
	return &pacer{
		margin:   margin,
		policies: map[string]*pacedPolicy{},
		kinds:    map[string][]string{},
		learning: map[string]chan struct{}{},
		buckets:  map[tierKey]*limit.Bucket{},
		trackers: map[tierKey]*limit.ResetTracker{},
		inflight: map[tierKey]int64{},
		freed:    make(chan struct{}),
		blocked:  map[string]time.Time{},
	}
}

// paceOf says how the pacer follows a policy it may not know (pp nil).
type pace int

const (
	paceBucket pace = iota // a local GCRA
	paceReset              // wait for the reset of a spent quota
	paceSlots              // count the requests in flight
)

func paceOf(pp *pacedPolicy) pace {
	switch {
	case pp == nil:
		return paceReset
	case pp.Algorithm == limit.FixedWindow || pp.Algorithm == limit.SlidingWindow:
		return paceReset
	case pp.Algorithm == limit.Concurrency:
		return paceSlots
	}
	return paceBucket
}

// draw is what one request took from one tier, given back or settled by
// its response.
type draw struct {
	tk  tierKey
	how pace
	n   uint64 // the tracker's number (paceReset)
}

// ticket is the pacer's answer to a request that wants to go.
type ticket struct {
	// wait > 0: try again after wait; nothing was reserved.
	wait time.Duration
	// learn != nil: another request is teaching the pacer this kind; try
	// again when the channel closes.
	learn <-chan struct{}
	// teacher: the request may go, alone, and must report its response
	// with learn or abandon.
	teacher bool
	// draws are what the request took from trackers and concurrency
	// slots: learn or abandon settles them.
	draws []draw
}

// goes reports whether the ticket lets its request go now, as any but
// the kind's teacher.
func (t ticket) goes() bool { return t.wait == 0 && t.learn == nil && !t.teacher }

// reserve asks whether a request of kind touching scriptIDs may be sent
// at now. When it may, the quota is taken from every bucket it draws from
// and the zero ticket (or a teacher ticket) is returned.
func (p *pacer) reserve(kind string, scriptIDs []string, now time.Time) ticket {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until, ok := p.blocked[kind]; ok {
		if now.Before(until) {
			return ticket{wait: until.Sub(now)}
		}
		delete(p.blocked, kind)
	}
	names, ok := p.policiesOf(kind)
	if !ok {
		if ch, busy := p.learning[kind]; busy {
			return ticket{learn: ch}
		}
		p.learning[kind] = make(chan struct{})
		return ticket{teacher: true}
	}
	var keys []tierKey
	var pols []*pacedPolicy
	var draws []draw
	var wait time.Duration
	full := false
	for _, name := range names {
		pp := p.policies[name]
		if pp != nil && pp.Shadow {
			continue
		}
		how := paceOf(pp)
		scope := wire.Scope("")
		if pp != nil {
			scope = pp.scope
		}
		for _, key := range scopeKeys(scope, scriptIDs) {
			tk := tierKey{name, key}
			switch how {
			case paceReset:
				wait = max(wait, p.trackerLocked(tk).Wait(now))
			case paceSlots:
				full = full || p.inflight[tk] >= pp.Concurrency
			default:
				wait = max(wait, p.bucketLocked(tk, pp).Wait(now, 1))
				keys = append(keys, tk)
				pols = append(pols, pp)
				continue
			}
			draws = append(draws, draw{tk: tk, how: how})
		}
	}
	if wait > 0 {
		return ticket{wait: wait}
	}
	if full {
		return ticket{learn: p.freed}
	}
	for i, tk := range keys {
		p.bucketLocked(tk, pols[i]).Take(now, 1)
	}
	for i := range draws {
		d := &draws[i]
		if d.how == paceReset {
			d.n = p.trackerLocked(d.tk).Take(now)
		} else {
			p.inflight[d.tk]++
		}
	}
	return ticket{draws: draws}
}

// trackerLocked returns the reset tracker of a tier, made on first use.
func (p *pacer) trackerLocked(tk tierKey) *limit.ResetTracker {
	tr := p.trackers[tk]
	if tr == nil {
		tr = new(limit.ResetTracker)
		p.trackers[tk] = tr
	}
	return tr
}

// settleLocked settles the draws of a request: its slots are released;
// its tracker draws are applied with the response (when there is one, the
// decisive tier's), counted as spent (another tier was decisive and the
// request was admitted) or given back (no response, or a 429).
func (p *pacer) settleLocked(draws []draw, o *observed, decisive tierKey, now time.Time) {
	for _, d := range draws {
		if d.how == paceSlots {
			p.inflight[d.tk]--
			close(p.freed)
			p.freed = make(chan struct{})
			continue
		}
		tr := p.trackerLocked(d.tk)
		switch {
		case o == nil:
			tr.Abandon(d.n)
		case d.tk == decisive:
			tr.Observe(d.n, o.header, &o.adv, now)
		case o.status == http.StatusTooManyRequests:
			tr.Abandon(d.n)
		default:
			tr.Spent(d.n)
		}
	}
}

// bucketLocked returns the bucket of a policy and scope key, made on first
// use, with the policy's interval and tolerance as the pacer knows them
// now (a policy learned anew keeps its bucket's history).
func (p *pacer) bucketLocked(tk tierKey, pp *pacedPolicy) *limit.Bucket {
	b := p.buckets[tk]
	if b == nil {
		b = new(limit.Bucket)
		p.buckets[tk] = b
	}
	b.Interval, b.Tolerance, b.Margin = pp.Interval(), pp.Tolerance(), p.margin
	return b
}

// policiesOf returns the policies a kind draws from, borrowing another
// write kind's for an unseen write kind. The lock is held.
func (p *pacer) policiesOf(kind string) ([]string, bool) {
	if names, ok := p.kinds[kind]; ok {
		return names, true
	}
	for _, wk := range writeKinds {
		if wk == kind {
			for _, other := range writeKinds {
				if names, ok := p.kinds[other]; ok {
					return names, true
				}
			}
		}
	}
	return nil, false
}

// scriptWait returns how long the per-script buckets of kind hold back a
// write of the script id at now, without reserving anything.
func (p *pacer) scriptWait(kind, id string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	names, _ := p.policiesOf(kind)
	var wait time.Duration
	for _, name := range names {
		pp := p.policies[name]
		if pp == nil || pp.Shadow || pp.scope != wire.ScopeOrgScript {
			continue
		}
		switch tk := (tierKey{name, id}); paceOf(pp) {
		case paceBucket:
			wait = max(wait, p.bucketLocked(tk, pp).Wait(now, 1))
		case paceReset:
			wait = max(wait, p.trackerLocked(tk).Wait(now))
		}
	}
	return wait
}

// scopeKeys returns the bucket keys of a policy with the scope for a
// request touching ids: one per script for org+script, else one.
func scopeKeys(s wire.Scope, ids []string) []string {
	if s == wire.ScopeOrgScript {
		return ids
	}
	return []string{""}
}

// abandon reports that a request of kind, sent with tk, got no response.
func (p *pacer) abandon(kind string, tk ticket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch, ok := p.learning[kind]; ok && tk.teacher {
		close(ch)
		delete(p.learning, kind)
	}
	p.settleLocked(tk.draws, nil, tierKey{}, time.Time{})
}

// observed is what one response says, for learn.
type observed struct {
	status int
	header http.Header
	// adv is what the response says about rate limits, read by
	// limit.ParseResponse: its headers and, on a 429, its body (the
	// policy, scope, key and exact retry delay in adv.Stated).
	adv limit.Advertised
	// jitter is added to a retry delay so that clients do not retry in
	// lockstep.
	jitter time.Duration
}

// learn updates the pacer from a response to a request of kind that
// touched scriptIDs, sent with tk and received at now.
func (p *pacer) learn(kind string, scriptIDs []string, tk ticket, o observed, now time.Time) {
	adv := &o.adv
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, teacher := p.learning[kind]
	if teacher && tk.teacher {
		defer func() { close(ch); delete(p.learning, kind) }()
	}
	// The decisive limit, as the headers name it (X-RateLimit-Resource,
	// RateLimit's item), else by its quota when they name none.
	decisive := ""
	if adv.Remaining >= 0 || adv.Reset >= 0 {
		decisive = adv.Policy
		if o.status == http.StatusTooManyRequests {
			// A 429 body may name the policy that the headers leave
			// unnamed: the headers say which limit this is.
			decisive = limit.ParseHeaders(o.header, now).Policy
		}
		if decisive == "" {
			decisive = "quota " + strconv.FormatInt(adv.Limit, 10)
		}
	}
	if len(adv.Policies) > 0 {
		names := make([]string, 0, len(adv.Policies))
		for _, ap := range adv.Policies {
			// A bulk lists a per-script policy once per script: keep one.
			if !slices.Contains(names, ap.Name) {
				names = append(names, ap.Name)
			}
			p.learnPolicyLocked(ap)
		}
		p.kinds[kind] = names
		if tk.teacher && o.status != http.StatusTooManyRequests {
			// The teacher went without a reservation: charge it now to
			// every bucket it drew from.
			for _, name := range names {
				if pp := p.policies[name]; pp != nil && !pp.Shadow && paceOf(pp) == paceBucket {
					for _, key := range scopeKeys(pp.scope, scriptIDs) {
						p.bucketLocked(tierKey{name, key}, pp).Take(now, 1)
					}
				}
			}
		}
	} else if decisive != "" {
		// A dialect without RateLimit-Policy: the kind draws from the
		// limit its responses advertise.
		if names := p.kinds[kind]; !slices.Contains(names, decisive) {
			p.kinds[kind] = append(slices.Clip(names), decisive)
		}
	} else if o.status != http.StatusTooManyRequests && o.status < 500 {
		// A rate-limited route always advertises its policies; one that
		// does not is not limited.
		if _, ok := p.kinds[kind]; !ok {
			p.kinds[kind] = nil
		}
	}
	st := adv.Stated
	if st != nil && st.Complete() {
		// The body gave the policy whole, its algorithm too.
		p.learnExactLocked(st.Policy, wire.Scope(st.Scope))
	}
	// The decisive tier's key: the script for a per-script policy, when
	// the request touched one script (which of a bulk's is unknown).
	dk := tierKey{policy: decisive}
	pp := p.policies[decisive]
	perScript := pp != nil && pp.scope == wire.ScopeOrgScript
	if perScript {
		switch {
		case st != nil && st.Key != "" && wire.Scope(st.Scope) == wire.ScopeOrgScript:
			dk.key = st.Key
		case len(scriptIDs) == 1:
			dk.key = scriptIDs[0]
		default:
			dk.policy = "" // unknown: no tier is decisive
		}
	}
	p.settleLocked(tk.draws, &o, dk, now)
	if dk.policy != "" && paceOf(pp) == paceReset && !slices.ContainsFunc(tk.draws, func(d draw) bool { return d.tk == dk }) {
		// A response to a request that drew nothing from the decisive
		// tracker (a teacher, a first response): the newest news of it.
		tr := p.trackerLocked(dk)
		tr.Observe(tr.Take(now), o.header, adv, now)
	}
	if o.status == http.StatusTooManyRequests {
		p.refresh = true
		name, key := adv.Policy, ""
		if st != nil && wire.Scope(st.Scope) == wire.ScopeOrgScript {
			key = st.Key
		}
		retry := adv.RetryAfter
		if retry < 0 {
			retry = time.Second
		}
		retry += o.jitter
		pp := p.policies[name]
		if pp == nil || paceOf(pp) != paceBucket {
			// A tracker holds until the reset the headers gave, if they
			// gave one; a retry delay of a limit that is no bucket, or one
			// the pacer does not know, holds the kind.
			p.blocked[kind] = now.Add(retry)
			return
		}
		if pp.scope == wire.ScopeOrgScript && key == "" && len(scriptIDs) == 1 {
			key = scriptIDs[0]
		}
		// The server admits the next request retry from now: so does the
		// local bucket.
		p.bucketLocked(tierKey{name, key}, pp).SetRetryAfter(now, retry)
		return
	}
	if adv.Policy == "" || adv.Remaining < 0 || pp == nil || paceOf(pp) != paceBucket {
		return
	}
	key := ""
	if pp.scope == wire.ScopeOrgScript {
		if len(scriptIDs) != 1 {
			return // which script's bucket is decisive is unknown
		}
		key = scriptIDs[0]
	}
	p.bucketLocked(tierKey{adv.Policy, key}, pp).SetRemaining(now, adv.Remaining)
}

// learnPolicyLocked checks an advertised policy against what the pacer
// knows, and takes the header's values when they disagree.
func (p *pacer) learnPolicyLocked(ap limit.AdvertisedPolicy) {
	if ap.Quota < 1 || ap.Window == 0 {
		return
	}
	pp := p.policies[ap.Name]
	if pp != nil && ap.Describes(&pp.Policy) {
		return
	}
	np := &pacedPolicy{Policy: limit.Policy{Name: ap.Name, Rate: limit.Per(ap.Quota, ap.Window), Burst: ap.Quota}}
	if ap.Window < 0 {
		// A quota without a window is requests in flight, as ratelab
		// advertises a concurrency policy.
		np.Policy = limit.Policy{Name: ap.Name, Algorithm: limit.Concurrency, Concurrency: ap.Quota, Lease: time.Minute}
	}
	if pp != nil {
		np.scope = pp.scope
	}
	// A new policy, or one that changed on the server: fetch its exact
	// values and its scope.
	p.refresh = true
	if np.Validate() != nil {
		return
	}
	p.policies[ap.Name] = np
}

// learnExactLocked takes a policy's exact values from the server's own
// description of it (a 429 body, GET /api/v2/ratelimits).
func (p *pacer) learnExactLocked(pol limit.Policy, scope wire.Scope) {
	if pol.Validate() != nil {
		return
	}
	p.policies[pol.Name] = &pacedPolicy{Policy: pol, scope: scope, exact: true}
}

// learnAll takes the body of GET /api/v2/ratelimits: every policy that
// applies to the caller, exactly, and the state of the buckets that are
// not per script.
func (p *pacer) learnAll(states []wire.LimitState, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refresh = false
	for i := range states {
		ls := &states[i]
		if pol, ok := statePolicy(ls); ok {
			p.learnExactLocked(pol, ls.Scope)
		}
		pp := p.policies[ls.Policy]
		if pp == nil || !pp.exact || pp.Shadow || ls.Scope == wire.ScopeOrgScript || paceOf(pp) != paceBucket {
			continue
		}
		p.bucketLocked(tierKey{ls.Policy, ""}, pp).SetRemaining(now, ls.Remaining)
	}
}

// statePolicy rebuilds a policy, with its algorithm, from the server's
// own description of it.
func statePolicy(ls *wire.LimitState) (limit.Policy, bool) {
	alg, err := limit.ParseAlgorithm(ls.Algorithm)
	if err != nil {
		return limit.Policy{}, false
	}
	switch alg {
	case limit.GCRA:
		return limit.StatedPolicy(ls.Policy, ls.Limit, ls.Window, ls.Burst, ls.Shadow)
	case limit.Concurrency:
		p := limit.Policy{Name: ls.Policy, Algorithm: alg, Concurrency: ls.Limit, Shadow: ls.Shadow}
		if ls.Lease != "" {
			if d, err := time.ParseDuration(ls.Lease); err == nil {
				p.Lease = d
			}
		}
		return p, p.Validate() == nil
	}
	period, err := time.ParseDuration(ls.Window)
	if err != nil {
		return limit.Policy{}, false
	}
	p := limit.Policy{Name: ls.Policy, Algorithm: alg, Rate: limit.Per(ls.Limit, period), Shadow: ls.Shadow,
		AlignFirst: ls.Align == "first", CountRejected: ls.CountRejected}
	return p, p.Validate() == nil
}

// wantsRefresh reports whether the exact policy values should be fetched
// again, and clears the flag: one caller fetches.
func (p *pacer) wantsRefresh() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.refresh
	p.refresh = false
	return r
}

// policy returns a copy of what the pacer knows about a policy.
func (p *pacer) policy(name string) (pacedPolicy, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pp := p.policies[name]
	if pp == nil {
		return pacedPolicy{}, false
	}
	return *pp, true
}
