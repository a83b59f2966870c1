package limit

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// MaxBodyRead is how much of a 429 body a client should read for
// ParseResponse: ratelab's body is a few hundred bytes, and a client
// should not buffer an arbitrary page to find a policy name.
const MaxBodyRead = 64 << 10

// Stated is a limit as a server states it in a JSON body: the "limit"
// object of ratelab's 429 body, which names the policy that rejected the
// request and gives its exact numbers.
type Stated struct {
	// Policy is the policy: Name always; the rest (algorithm, rate,
	// burst, concurrency, lease, alignment, count-rejected, shadow) when
	// the body gave valid numbers for its algorithm (see Complete), and
	// only the name otherwise.
	Policy Policy
	// Scope is what partitions the policy ("org", "org+script", …) and
	// Key the partition the request fell in; empty when not stated.
	Scope string
	Key   string
	// RetryAfter is the exact delay before a retry is admitted
	// (retryAfterMs); -1 when not stated.
	RetryAfter time.Duration
}

// Complete reports whether the body gave the policy whole, whatever its
// algorithm: Policy is then a valid policy.
func (s *Stated) Complete() bool { return s.Policy.Validate() == nil }

// Exact reports whether the body gave a GCRA policy's rate and burst: a
// policy that a client's Bucket can copy. A window or concurrency policy
// may be Complete but is never Exact.
func (s *Stated) Exact() bool { return s.Policy.Algorithm == GCRA && s.Policy.Rate.Count > 0 }

// StatedPolicy returns the policy a server states as count requests per
// window with a burst, as ratelab writes it (window a Go duration such as
// "1s" or "1m0s", or whole seconds), or false when the numbers do not make
// a valid policy.
func StatedPolicy(name string, count int64, window string, burst int64, shadow bool) (Policy, bool) {
	period, ok := statedDuration(window)
	if !ok {
		return Policy{}, false
	}
	p := Policy{Name: name, Rate: Per(count, period), Burst: burst, Shadow: shadow}
	if p.Validate() != nil {
		return Policy{}, false
	}
	return p, true
}

// statedDuration reads a window or lease as ratelab writes it: a Go
// duration ("1s", "1m0s") or whole seconds.
func statedDuration(s string) (time.Duration, bool) {
	d, err := time.ParseDuration(s)
	if err == nil {
		return d, true
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > int64(MaxWindow/time.Second) {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// rawString returns a JSON member that is a string, or else its text (a
// number, say), so that "60" and 60 read alike.
func rawString(m json.RawMessage) string {
	var s string
	if json.Unmarshal(m, &s) != nil {
		return string(m)
	}
	return s
}

// statedLimit is the "limit" object of ratelab's 429 body (wire.LimitState
// in package wire, whose members ParseBody reads by name).
type statedLimit struct {
	Policy        string          `json:"policy"`
	Algorithm     string          `json:"algorithm"`
	Scope         string          `json:"scope"`
	Key           string          `json:"key"`
	Limit         int64           `json:"limit"`
	Window        json.RawMessage `json:"window"`
	Burst         int64           `json:"burst"`
	Align         string          `json:"align"`
	Lease         json.RawMessage `json:"lease"`
	CountRejected bool            `json:"countRejected"`
	Shadow        bool            `json:"shadow"`
	RetryAfterMs  *float64        `json:"retryAfterMs"`
}

// policy rebuilds the stated policy in its algorithm's terms, as
// wire.LimitState gives them: a GCRA policy is limit per window with a
// burst (no algorithm member), a window policy limit per window with an
// optional align "first", a concurrency policy limit in flight with a
// lease. It reports false when the members do not make a valid policy.
func (l *statedLimit) policy() (Policy, bool) {
	alg, err := ParseAlgorithm(l.Algorithm)
	if err != nil {
		return Policy{}, false
	}
	// Every member stated goes into the policy, so that Validate refuses
	// one its algorithm does not take (a window with a burst, say).
	p := Policy{Name: l.Policy, Algorithm: alg, Burst: l.Burst, CountRejected: l.CountRejected, Shadow: l.Shadow}
	switch alg {
	case GCRA, FixedWindow, SlidingWindow:
		period, ok := statedDuration(rawString(l.Window))
		if !ok {
			return Policy{}, false
		}
		p.Rate = Per(l.Limit, period)
		switch l.Align {
		case "", "epoch":
		case "first":
			p.AlignFirst = true
		default:
			return Policy{}, false
		}
	case Concurrency:
		lease, ok := statedDuration(rawString(l.Lease))
		if !ok {
			return Policy{}, false
		}
		p.Concurrency, p.Lease = l.Limit, lease
	}
	if p.Validate() != nil {
		return Policy{}, false
	}
	return p, true
}

// rejectionBody is the part of a 429 body ParseBody reads.
type rejectionBody struct {
	Limit *statedLimit `json:"limit"`
	// ratelab's spelling, and RFC 9457 problem details' (the IETF draft
	// names this member for 429 problems).
	Violated  []string `json:"violatedPolicies"`
	Violated2 []string `json:"violated-policies"`
}

// ParseBody reads a 429 body: ratelab's {"limit": {"policy", "algorithm",
// "scope", "key", "limit", "window", "burst", "align", "lease",
// "countRejected", "shadow", "retryAfterMs", …}}, from which it rebuilds
// the policy of any algorithm, or a problem document's violated-policies
// (the first is taken as the decisive one).
// It returns nil for a body that states no policy, such as an empty,
// non-JSON or foreign one; it never fails.
func ParseBody(body []byte) *Stated {
	if len(body) == 0 {
		return nil
	}
	var b rejectionBody
	if json.Unmarshal(body, &b) != nil {
		// Not JSON, or a member of an unexpected type (a string limit,
		// say): not a body this parser knows.
		return nil
	}
	switch {
	case b.Limit != nil && b.Limit.Policy != "":
		l := b.Limit
		s := &Stated{Policy: Policy{Name: l.Policy}, Scope: l.Scope, Key: l.Key, RetryAfter: -1}
		if p, ok := l.policy(); ok {
			s.Policy = p
		}
		if ms := l.RetryAfterMs; ms != nil && *ms >= 0 && *ms < float64(MaxWindow/time.Millisecond) {
			s.RetryAfter = time.Duration(*ms * float64(time.Millisecond))
		}
		return s
	case len(b.Violated) > 0 && b.Violated[0] != "":
		return &Stated{Policy: Policy{Name: b.Violated[0]}, RetryAfter: -1}
	case len(b.Violated2) > 0 && b.Violated2[0] != "":
		return &Stated{Policy: Policy{Name: b.Violated2[0]}, RetryAfter: -1}
	}
	return nil
}

// ParseResponse reads everything a response says about rate limits: its
// headers (see ParseHeaders) and, when body is not nil, a 429 body (see
// ParseBody; read at most MaxBodyRead bytes of it). The body is the more
// exact source and wins: its policy becomes Policy, and its retry delay,
// in milliseconds where Retry-After has whole seconds, becomes RetryAfter
// when positive. now resolves HTTP dates and epoch resets. It never
// fails.
func ParseResponse(h http.Header, body []byte, now time.Time) Advertised {
	a := ParseHeaders(h, now)
	if body == nil {
		return a
	}
	s := ParseBody(body)
	if s == nil {
		return a
	}
	a.Stated = s
	a.Policy = s.Policy.Name
	if s.RetryAfter > 0 {
		a.RetryAfter = s.RetryAfter
	}
	return a
}
