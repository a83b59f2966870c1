package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"unicode/utf8"

	"ratelab"
	"ratelab/wire"
)

// decodeJSON reads a request's JSON body into v, bounded by MaxBodyBytes.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if err := checkContentType(r.Header.Get("Content-Type"), "application/json"); err != nil {
		return err
	}
	return decodeBody(http.MaxBytesReader(w, r.Body, MaxBodyBytes), v)
}

// checkContentType returns an EMEDIATYPE error unless ct is want (or, for
// JSON, a +json type), with any parameters.
func checkContentType(ct, want string) error {
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == want || want == "application/json" && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	if ct == "" {
		return ratelab.Errorf(ratelab.EMEDIATYPE, "Content-Type is missing; want %s.", want)
	}
	return ratelab.Errorf(ratelab.EMEDIATYPE, "Content-Type %q is not supported; want %s.", ct, want)
}

// decodeBody decodes exactly one JSON value from body into v, rejecting
// unknown fields and trailing data. Every error is an *ratelab.Error: 413
// for a body over the limit, 400 otherwise, with a message that says what
// is wrong and where.
//
// Invalid UTF-8 is a 400 as well: encoding/json would silently replace it
// with U+FFFD, so what is stored would not be what was sent.
func decodeBody(body io.Reader, v any) error {
	data, err := io.ReadAll(body)
	if maxErr := (*http.MaxBytesError)(nil); errors.As(err, &maxErr) {
		return ratelab.Errorf(ratelab.ETOOLARGE, "Request body is larger than %d bytes.", maxErr.Limit)
	} else if err != nil {
		return bodyReadError(err)
	}
	if !utf8.Valid(data) {
		at := 0
		for at < len(data) {
			r, n := utf8.DecodeRune(data[at:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			at += n
		}
		return ratelab.Errorf(ratelab.EINVALID, "Malformed JSON: invalid UTF-8 at byte %d.", at)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, dec)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err, dec)
		}
		return ratelab.Errorf(ratelab.EINVALID, "Malformed JSON: data after the value at byte %d.", dec.InputOffset())
	}
	return nil
}

// bodyReadError is the answer to a body that could not be read: a 408
// when it did not arrive within the server's read timeout, else a 400
// (the connection broke; the client is likely gone).
func bodyReadError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ratelab.Errorf(wire.CodeRequestTimeout, "The request body did not arrive within the server's read timeout.")
	}
	return ratelab.Errorf(ratelab.EINVALID, "Reading the request body failed.")
}

func decodeError(err error, dec *json.Decoder) error {
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return ratelab.Errorf(ratelab.ETOOLARGE, "Request body is larger than %d bytes.", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return ratelab.Errorf(ratelab.EINVALID, "Request body is empty; want a JSON object.")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return ratelab.Errorf(ratelab.EINVALID, "Malformed JSON: unexpected end of the body.")
	case errors.As(err, &syntaxErr):
		return ratelab.Errorf(ratelab.EINVALID, "Malformed JSON at byte %d: %s.", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: "))
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return ratelab.Errorf(ratelab.EINVALID, "Malformed JSON at byte %d: want %s, not %s.", typeErr.Offset, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
		}
		return ratelab.Errorf(ratelab.EINVALID, "Field %q: want %s, not %s.", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return ratelab.Errorf(ratelab.EINVALID, "Unknown field %s.", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return ratelab.Errorf(ratelab.EINVALID, "Malformed JSON at byte %d.", dec.InputOffset())
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int64", "int", "float64":
		return "a number"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	}
	return goKind
}
