package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

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
	codeMethodNotAllowed:   http.StatusMethodNotAllowed,
}

// unavailableRetrySeconds is the Retry-After of a 503: about how long a
// limiter store takes to notice that its backend is back (the Redis
// store's health check runs every 500 ms).
const unavailableRetrySeconds = 1

// codeMethodNotAllowed is the code of a 405; the domain has no use for it.
const codeMethodNotAllowed = "method_not_allowed"

// StatusOf returns the HTTP status for an error's application code.
func StatusOf(err error) int {
	if st, ok := codes[ratelab.ErrorCode(err)]; ok {
		return st
	}
	return http.StatusInternalServerError
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
// and GET /api/v2/ratelimits.
type LimitState struct {
	Policy string `json:"policy"`
	Scope  Scope  `json:"scope"`
	// Key is the partition the state belongs to (org id, client id, route
	// class or script id).
	Key string `json:"key,omitempty"`
	// Limit requests per Window is the sustained rate; Burst the most
	// admitted at once.
	Limit  int64  `json:"limit"`
	Window string `json:"window"`
	Burst  int64  `json:"burst"`
	Shadow bool   `json:"shadow,omitempty"`
	// Remaining is how many requests the bucket admits now.
	Remaining int64 `json:"remaining"`
	// ResetAfterMs is the time until the bucket is full again.
	ResetAfterMs int64 `json:"resetAfterMs"`
	// RetryAfterMs is, on a 429, the exact wait before a retry is admitted.
	RetryAfterMs int64 `json:"retryAfterMs,omitempty"`
}

// writeJSON writes v as JSON with the status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"message":"Internal error.","code":"internal","status":500}`)
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeError writes err in the one error shape. Internal errors are
// logged by the caller (Server.fail) and shown only as "Internal error.".
func writeError(w http.ResponseWriter, err error) {
	status := StatusOf(err)
	code := ratelab.ErrorCode(err)
	if _, ok := codes[code]; !ok {
		code = ratelab.EINTERNAL
	}
	body := ErrorBody{Message: ratelab.ErrorMessage(err), Code: code, Status: status}
	var oe *oauthError
	if errors.As(err, &oe) {
		body.Error = oe.kind
	}
	if status == http.StatusUnauthorized {
		v := `Bearer realm="ratelab"`
		if oe != nil && oe.kind == "invalid_client" {
			v = `Basic realm="ratelab"`
		} else if oe != nil {
			v += `, error="` + oe.kind + `"`
		}
		w.Header().Set("WWW-Authenticate", v)
	}
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// A dependency is down (the limiter failing closed, the database):
		// a client should come back, not give up, and not hammer.
		w.Header().Set("Retry-After", strconv.Itoa(unavailableRetrySeconds))
	}
	writeJSON(w, status, body)
}

// oauthError is an application error that also carries an OAuth error
// kind ("invalid_client", "invalid_token", …).
type oauthError struct {
	kind string
	err  *ratelab.Error
}

func (e *oauthError) Error() string { return e.err.Error() }
func (e *oauthError) Unwrap() error { return e.err }

func oauthErr(kind, code, msg string) error {
	return &oauthError{kind: kind, err: &ratelab.Error{Code: code, Message: msg}}
}
