package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"ratelab"
	"ratelab/wire"
)

// unavailableRetrySeconds is the Retry-After of a 503: about how long a
// limiter store takes to notice that its backend is back (the Redis
// store's health check runs every 500 ms).
const unavailableRetrySeconds = 1

// StatusOf returns the HTTP status for an error's application code.
func StatusOf(err error) int {
	if st, ok := wire.Status(ratelab.ErrorCode(err)); ok {
		return st
	}
	return http.StatusInternalServerError
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
	if _, ok := wire.Status(code); !ok {
		code = ratelab.EINTERNAL
	}
	body := wire.ErrorBody{Message: ratelab.ErrorMessage(err), Code: code, Status: status}
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
