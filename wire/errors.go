package wire

import (
	"net/http"

	"ratelab"
)

// codes maps each application error code to its HTTP status: the one
// table of the API. An unknown code is a 500.
var codes = map[string]int{
	ratelab.EINVALID:       http.StatusBadRequest,
	ratelab.EUNPROCESSABLE: http.StatusUnprocessableEntity,
	ratelab.EUNAUTHORIZED:  http.StatusUnauthorized,
	ratelab.ENOTFOUND:      http.StatusNotFound,
	ratelab.ECONFLICT:      http.StatusConflict,
	ratelab.EPRECONDITION:  http.StatusPreconditionFailed,
	ratelab.ETOOLARGE:      http.StatusRequestEntityTooLarge,
	ratelab.EMEDIATYPE:     http.StatusUnsupportedMediaType,
	ratelab.ERATELIMITED:   http.StatusTooManyRequests,
	ratelab.EUNAVAILABLE:   http.StatusServiceUnavailable,
	ratelab.EINTERNAL:      http.StatusInternalServerError,
	CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	CodeRequestTimeout:     http.StatusRequestTimeout,
	CodeURITooLong:         http.StatusRequestURITooLong,
	CodeHeaderTooLarge:     http.StatusRequestHeaderFieldsTooLarge,
}

// Codes of the HTTP layer, which the domain has no use for.
const (
	// CodeMethodNotAllowed is the code of a 405.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeRequestTimeout is the code of a 408: the body did not arrive in time.
	CodeRequestTimeout = "request_timeout"
	// CodeURITooLong is the code of a 414.
	CodeURITooLong = "uri_too_long"
	// CodeHeaderTooLarge is the code of a 431.
	CodeHeaderTooLarge = "header_too_large"
)

// Status returns the HTTP status of an application error code, and false
// for a code the table does not know (which the server answers as a 500).
func Status(code string) (int, bool) {
	st, ok := codes[code]
	return st, ok
}

// CodeOf maps a status back to an application code, for error responses
// without the API's body (a proxy's 502, say). A status the table does
// not know is EINTERNAL.
func CodeOf(status int) string {
	for code, st := range codes {
		if st == status && code != CodeMethodNotAllowed {
			return code
		}
	}
	return ratelab.EINTERNAL
}

// ErrorBody is the one error shape of the API. Limit and ViolatedPolicies
// are set on a 429 only; Error on OAuth token-endpoint errors only (RFC
// 6749 §5.2, for OAuth client libraries).
type ErrorBody struct {
	Message          string      `json:"message"`
	Code             string      `json:"code"`
	Status           int         `json:"status"`
	Error            string      `json:"error,omitempty"`
	Limit            *LimitState `json:"limit,omitempty"`
	ViolatedPolicies []string    `json:"violatedPolicies,omitempty"`
}

// LimitState describes one policy's state for one caller, in 429 bodies
// and GET /api/v2/ratelimits, in the terms of the policy's algorithm:
//
//	gcra (Algorithm absent)  Limit per Window sustained, Burst at once
//	fixed-window             Limit (the quota) per Window; Align "first"
//	                         when windows start at a key's first request
//	sliding-window           Limit per Window, weighted over two windows
//	concurrency              Limit requests in flight; Lease, the time a
//	                         slot that is never released is held
type LimitState struct {
	Policy string `json:"policy"`
	// Algorithm is fixed-window, sliding-window or concurrency; absent
	// for gcra, the default.
	Algorithm string `json:"algorithm,omitempty"`
	Scope     Scope  `json:"scope"`
	// Key is the partition the state belongs to (org id, client id, route
	// class or script id).
	Key string `json:"key,omitempty"`
	// Limit requests per Window is the sustained rate of a gcra policy
	// and the quota of a window; Burst the most a gcra policy admits at
	// once. A concurrency policy's Limit is its requests in flight.
	Limit  int64  `json:"limit"`
	Window string `json:"window,omitempty"`
	Burst  int64  `json:"burst,omitempty"`
	Align  string `json:"align,omitempty"`
	Lease  string `json:"lease,omitempty"`
	// CountRejected: rejected requests consume from this policy too.
	CountRejected bool `json:"countRejected,omitempty"`
	Shadow        bool `json:"shadow,omitempty"`
	// Remaining is how many requests the policy admits now.
	Remaining int64 `json:"remaining"`
	// ResetAfterMs is the time until the policy's quota is full again
	// (for a concurrency policy: until the last held slot expires).
	ResetAfterMs int64 `json:"resetAfterMs"`
	// RetryAfterMs is, on a 429, the exact wait before a retry is admitted.
	RetryAfterMs int64 `json:"retryAfterMs,omitempty"`
}

// Scope says what partitions a policy's quota: each distinct key has its
// own bucket.
type Scope string

// The scopes a policy may have.
const (
	// ScopeOrg keeps one bucket per org.
	ScopeOrg Scope = "org"
	// ScopeClient keeps one bucket per OAuth client. On the token endpoint
	// the client is the client id the request presents; a request without
	// one (or an API request without valid credentials) is keyed by its
	// remote address instead.
	ScopeClient Scope = "client"
	// ScopeOrgRouteClass keeps one bucket per org and route class (the
	// primary class of the route: script-writes, script-reads, users, …).
	ScopeOrgRouteClass Scope = "org+route-class"
	// ScopeOrgScript keeps one bucket per org and script id: the
	// per-resource tier. It applies only to requests that name scripts.
	ScopeOrgScript Scope = "org+script"
)

// Scopes lists every scope, in the order the documentation gives them.
func Scopes() []Scope { return []Scope{ScopeOrg, ScopeClient, ScopeOrgRouteClass, ScopeOrgScript} }
