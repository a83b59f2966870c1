package httpapi

// Header dialects and 429 bodies: how the server tells a client about its
// limits. The default (ietf) is the most transparent; the others make the
// server answer as real APIs do, so that a client can be rehearsed against
// what it will meet.

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"ratelab"
	"ratelab/limit"
	"ratelab/wire"
)

// The header dialects (Config.Headers).
const (
	// HeadersIETF is draft-ietf-httpapi-ratelimit-headers-11 plus
	// X-RateLimit-* (limit.SetHeaders): the default.
	HeadersIETF = "ietf"
	// HeadersXRateLimit is X-RateLimit-Limit, -Remaining and -Reset
	// (seconds until the quota is full again) alone.
	HeadersXRateLimit = "x-ratelimit"
	// HeadersGitHub is GitHub's: x-ratelimit-limit, -remaining, -used,
	// -reset (the reset instant in Unix seconds) and -resource (the
	// policy's name).
	HeadersGitHub = "github"
	// HeadersInin is the reference platform's: inin-ratelimit-allowed
	// (the quota), -count (used) and -reset (seconds until reset).
	HeadersInin = "inin"
	// HeadersNone sends no rate-limit header but Retry-After on a 429:
	// the reference scenario's complaint.
	HeadersNone = "none"
)

// The 429 bodies (Config.RejectBody).
const (
	// RejectDetailed names the policy, its scope and its exact numbers
	// (wire.ErrorBody with Limit): the default.
	RejectDetailed = "detailed"
	// RejectTerse is the reference platform's body, which names nothing:
	// {"message":"Rate limit exceeded.","code":"too_many_requests"}.
	RejectTerse = "terse"
)

// HeaderDialects lists the values of Config.Headers.
func HeaderDialects() []string {
	return []string{HeadersIETF, HeadersXRateLimit, HeadersGitHub, HeadersInin, HeadersNone}
}

// checkDialects validates Config.Headers and Config.RejectBody, returning
// them with their defaults filled in.
func checkDialects(headers, body string) (string, string, error) {
	switch headers {
	case "":
		headers = HeadersIETF
	case HeadersIETF, HeadersXRateLimit, HeadersGitHub, HeadersInin, HeadersNone:
	default:
		return "", "", fmt.Errorf("httpapi: headers %q: want ietf, x-ratelimit, github, inin or none", headers)
	}
	switch body {
	case "":
		body = RejectDetailed
	case RejectDetailed, RejectTerse:
	default:
		return "", "", fmt.Errorf("httpapi: reject body %q: want detailed or terse", body)
	}
	return headers, body, nil
}

// Header names of the github and inin dialects, spelled as those
// platforms send them (lower case, as HTTP/2 requires). They are set
// as given, not canonicalized: an HTTP/1.1 client reads names without
// regard to case.
const (
	ghLimit     = "x-ratelimit-limit"
	ghRemaining = "x-ratelimit-remaining"
	ghUsed      = "x-ratelimit-used"
	ghReset     = "x-ratelimit-reset"
	ghResource  = "x-ratelimit-resource"
	ininAllowed = "inin-ratelimit-allowed"
	ininCount   = "inin-ratelimit-count"
	ininReset   = "inin-ratelimit-reset"
)

// setHeaders writes the decision's rate-limit headers in the server's
// dialect. Every dialect describes the decisive tier (Decision.Limiting)
// and sends Retry-After, in whole seconds rounded up, on a rejection;
// shadow tiers are never advertised.
func (s *Server) setHeaders(h http.Header, d *limit.Decision) {
	if s.headers == HeadersIETF {
		limit.SetHeaders(h, d)
		return
	}
	lim := d.Limit()
	if lim == nil || lim.Policy.Shadow {
		return
	}
	quota := lim.Policy.Quota()
	reset := ceilSeconds(lim.ResetAfter)
	set := func(k string, v int64) { h[k] = []string{strconv.FormatInt(v, 10)} }
	switch s.headers {
	case HeadersXRateLimit:
		set("X-Ratelimit-Limit", quota)
		set("X-Ratelimit-Remaining", lim.Remaining)
		set("X-Ratelimit-Reset", reset)
	case HeadersGitHub:
		set(ghLimit, quota)
		set(ghRemaining, lim.Remaining)
		set(ghUsed, max(0, quota-lim.Remaining))
		set(ghReset, s.resetEpoch(d, lim))
		h[ghResource] = []string{lim.Policy.Name}
	case HeadersInin:
		set(ininAllowed, quota)
		set(ininCount, max(0, quota-lim.Remaining))
		set(ininReset, reset)
	}
	if !d.Allowed {
		set("Retry-After", max(1, ceilSeconds(d.RetryAfter)))
	}
}

// resetEpoch is the instant tier lim of decision d is full again, in
// Unix seconds rounded up: from the instant of the decision (d.At), not
// of the headers, which are written a little later, so that a window
// ending on a whole second reads as that second. A store that does not
// report its instant gets the server's clock now.
func (s *Server) resetEpoch(d *limit.Decision, lim *limit.TierState) int64 {
	at := d.At
	if at.IsZero() {
		at = s.now()
	}
	t := at.Add(lim.ResetAfter)
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// terseRejection is the reference platform's 429 body.
type terseRejection struct {
	Message string `json:"message"`
	Code    string `json:"code"`
}

// writeRejection writes the 429 with body, or the terse body when the
// server is configured so.
func (s *Server) writeRejection(w http.ResponseWriter, body *wire.ErrorBody) {
	if s.rejectBody == RejectTerse {
		writeJSON(w, http.StatusTooManyRequests, terseRejection{Message: "Rate limit exceeded.", Code: ratelab.ERATELIMITED})
		return
	}
	writeJSON(w, http.StatusTooManyRequests, body)
}
