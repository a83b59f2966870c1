package limit

import (
	"net/http"
	"strconv"
	"time"
)

// Header names written by SetHeaders, as the drafts spell them. Go's
// http.Header canonicalizes them ("Ratelimit-Policy"); Get and Set accept
// either spelling.
const (
	HeaderPolicy     = "RateLimit-Policy"
	HeaderRateLimit  = "RateLimit"
	HeaderXLimit     = "X-RateLimit-Limit"
	HeaderXRemaining = "X-RateLimit-Remaining"
	HeaderXReset     = "X-RateLimit-Reset"
	HeaderRetryAfter = "Retry-After"
)

// Canonical map keys of the header names, computed once.
var (
	keyPolicy     = http.CanonicalHeaderKey(HeaderPolicy)
	keyRateLimit  = http.CanonicalHeaderKey(HeaderRateLimit)
	keyXLimit     = http.CanonicalHeaderKey(HeaderXLimit)
	keyXRemaining = http.CanonicalHeaderKey(HeaderXRemaining)
	keyXReset     = http.CanonicalHeaderKey(HeaderXReset)
	keyRetryAfter = http.CanonicalHeaderKey(HeaderRetryAfter)
)

// SetHeaders writes the decision to h in the fields of the IETF httpapi
// draft (draft-ietf-httpapi-ratelimit-headers-11) and the common X- family:
//
//	RateLimit-Policy: "org-requests";q=1000;w=1, "script-writes-per-script";q=5;w=3
//	RateLimit: "script-writes-per-script";r=0;t=3
//	X-RateLimit-Limit: 5
//	X-RateLimit-Remaining: 0
//	X-RateLimit-Reset: 3
//	Retry-After: 1
//
// RateLimit-Policy lists every enforced tier: q is its quota
// (Policy.Quota) and w its window (Policy.Window) in seconds, rounded up.
// For GCRA that is the burst a full bucket holds and the time an empty
// bucket takes to refill; for a fixed or sliding window the count per
// window and the window; a concurrency tier has no window and says
// qu="concurrent-requests" instead, its quota being of requests in flight:
//
//	RateLimit-Policy: "org";q=300;w=60, "uploads";q=4;qu="concurrent-requests"
//
// RateLimit, X-RateLimit-* describe the decisive tier (Decision.Limiting):
// r the requests it admits now, t the whole seconds until it is full,
// rounded up. Retry-After, on a rejection only, is the
// exact retry-after rounded up to whole seconds, so a client that honours
// it is never early.
//
// Shadow tiers are left out: they never reject, and a client that paced
// itself by one would slow down for a limit that is not enforced. A policy
// name that is not a valid structured-field string is escaped (see
// QuoteString). SetHeaders does nothing for a decision without tiers.
func SetHeaders(h http.Header, d *Decision) {
	lim := d.Limit()
	if lim == nil || lim.Policy.Shadow {
		return
	}
	buf := make([]byte, 0, 64*len(d.Tiers))
	first := true
	for i := range d.Tiers {
		p := d.Tiers[i].Policy
		if p.Shadow {
			continue
		}
		if !first {
			buf = append(buf, ", "...)
		}
		first = false
		buf = AppendQuoted(buf, p.Name)
		buf = append(buf, ";q="...)
		buf = strconv.AppendInt(buf, p.Quota(), 10)
		if p.Algorithm == Concurrency {
			// No window: the quota is of requests in flight.
			buf = append(buf, `;qu="concurrent-requests"`...)
			continue
		}
		buf = append(buf, ";w="...)
		buf = strconv.AppendInt(buf, ceilSeconds(p.Window()), 10)
	}
	h[keyPolicy] = []string{string(buf)}

	buf = AppendQuoted(buf[:0], lim.Policy.Name)
	buf = append(buf, ";r="...)
	buf = strconv.AppendInt(buf, lim.Remaining, 10)
	buf = append(buf, ";t="...)
	reset := ceilSeconds(lim.ResetAfter)
	buf = strconv.AppendInt(buf, reset, 10)
	h[keyRateLimit] = []string{string(buf)}

	h[keyXLimit] = []string{strconv.FormatInt(lim.Policy.Quota(), 10)}
	h[keyXRemaining] = []string{strconv.FormatInt(lim.Remaining, 10)}
	h[keyXReset] = []string{strconv.FormatInt(reset, 10)}
	if !d.Allowed {
		h[keyRetryAfter] = []string{strconv.FormatInt(max(1, ceilSeconds(d.RetryAfter)), 10)}
	}
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// QuoteString returns s as a structured-field String (RFC 8941 §3.3.3):
// quoted, with `"` and `\` escaped. Bytes a String cannot hold (controls,
// DEL, non-ASCII) and '%' itself are written as %XX, so any name yields a
// valid field and distinct names stay distinct.
func QuoteString(s string) string { return string(AppendQuoted(nil, s)) }

// AppendQuoted appends QuoteString(s) to b.
func AppendQuoted(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c > 0x7e || c == '%':
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
