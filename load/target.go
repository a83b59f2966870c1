package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Header is one request header, its value a template.
type Header struct {
	Name, Value string
}

// RequestSpec describes one request of an iteration before compilation:
// the text of its templates as the user wrote them.
type RequestSpec struct {
	// Name labels the request in results; default "METHOD path".
	Name   string
	Method string
	URL    string
	// Headers are sent in order, after the scenario's common headers (a
	// request header replaces a common one of the same name).
	Headers []Header
	// Body is the body template; BodyFile names a file holding it.
	Body     string
	BodyFile string
	// Think is the pause after this request, before the next one.
	Think time.Duration
	// Line is where the request was declared in a scenario file (0 when
	// it came from flags), for error messages.
	Line int
}

// FieldError names the field of a request that failed to compile.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// Target is a compiled request: templates parsed once, static parts
// prepared once, so that building a request costs what its variable parts
// cost. A Target is immutable and safe for concurrent use.
type Target struct {
	Name    string
	Method  string
	URL     *Template
	Body    *Template
	Think   time.Duration
	headers []compiledHeader

	staticURL    *url.URL    // when URL is static
	staticURLStr string      // its text, for results
	staticHeader http.Header // when every header is static; shared, read-only
	staticBody   []byte      // when Body is static
	// wire is the whole request as sent on an HTTP/1.1 keep-alive
	// connection, when URL, headers and body are all static.
	wire []byte
}

type compiledHeader struct {
	name  string // canonical
	value *Template
}

// CompileTarget compiles spec, with common headers sent on every request,
// against the columns of data (nil for none). Errors name the field that
// failed.
func CompileTarget(spec RequestSpec, common []Header, data *DataSet) (*Target, error) {
	return compileTarget(spec, common, data, false)
}

// compileTarget compiles spec; with named, its templates are a flow's (see
// compileFlowTemplate) and data is nil.
func compileTarget(spec RequestSpec, common []Header, data *DataSet, named bool) (*Target, error) {
	cols := data.Columns()
	compile := func(src string) (*Template, error) { return compileTemplate(src, cols, named) }
	method := strings.ToUpper(strings.TrimSpace(spec.Method))
	if method == "" {
		method = http.MethodGet
	}
	if spec.URL == "" {
		return nil, &FieldError{Field: "url", Err: errors.New("required")}
	}
	t := &Target{Method: method, Think: spec.Think}
	var err error
	if t.URL, err = compile(spec.URL); err != nil {
		return nil, &FieldError{Field: "url", Err: err}
	}
	if t.URL.Static() {
		u, err := parseTargetURL(spec.URL)
		if err != nil {
			return nil, &FieldError{Field: "url", Err: err}
		}
		t.staticURL = u
		t.staticURLStr = u.String()
	} else if !named {
		// Check the URL a first request would use, so that a template that
		// cannot make a valid URL fails before any request is sent.
		sample := &Vars{Thread: 1}
		if data.Len() > 0 {
			sample.Row = data.rows[0]
		}
		if _, err := parseTargetURL(t.URL.Execute(sample)); err != nil {
			return nil, &FieldError{Field: "url", Err: err}
		}
	}
	body := spec.Body
	if spec.BodyFile != "" {
		if spec.Body != "" {
			return nil, &FieldError{Field: "body_file", Err: errors.New("give body or body_file, not both")}
		}
		b, err := os.ReadFile(spec.BodyFile)
		if err != nil {
			return nil, &FieldError{Field: "body_file", Err: err}
		}
		body = string(b)
	}
	if t.Body, err = compile(body); err != nil {
		return nil, &FieldError{Field: "body", Err: err}
	}
	if t.Body.Static() {
		t.staticBody = []byte(body)
	}
	merged := make([]Header, 0, len(common)+len(spec.Headers))
	for _, h := range common {
		if !hasHeader(spec.Headers, h.Name) {
			merged = append(merged, h)
		}
	}
	merged = append(merged, spec.Headers...)
	allStatic := true
	for _, h := range merged {
		name := strings.TrimSpace(h.Name)
		if name == "" || strings.ContainsAny(name, " \t\r\n:") {
			return nil, &FieldError{Field: "headers", Err: fmt.Errorf("%q: invalid name", h.Name)}
		}
		v, err := compile(h.Value)
		if err != nil {
			return nil, &FieldError{Field: "headers." + name, Err: err}
		}
		allStatic = allStatic && v.Static()
		t.headers = append(t.headers, compiledHeader{name: http.CanonicalHeaderKey(name), value: v})
	}
	if allStatic {
		t.staticHeader = t.buildHeader(nil)
	}
	if t.staticURL != nil && t.staticHeader != nil && t.Body.Static() {
		t.wire = t.appendWire(nil, t.staticURL, t.staticHeader, t.staticBody, false)
	}
	t.Name = spec.Name
	if t.Name == "" {
		path := spec.URL
		if u, err := url.Parse(spec.URL); err == nil && !strings.Contains(spec.URL, "{{") {
			path = u.Path
		}
		t.Name = method + " " + path
	}
	return t, nil
}

func hasHeader(hs []Header, name string) bool {
	for _, h := range hs {
		if strings.EqualFold(strings.TrimSpace(h.Name), strings.TrimSpace(name)) {
			return true
		}
	}
	return false
}

func parseTargetURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: want an http:// or https:// URL", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q: no host", s)
	}
	return u, nil
}

func (t *Target) buildHeader(v *Vars) http.Header {
	h := make(http.Header, len(t.headers))
	for _, ch := range t.headers {
		h[ch.name] = append(h[ch.name], ch.value.Execute(v))
	}
	return h
}

// appendWire appends the request for u, h and body to buf in HTTP/1.1
// wire format, as net/http's Transport writes it (Request.Write: Host,
// default User-Agent, Content-Length; header values with line breaks
// flattened), with "Connection: close" when close is set. It returns nil
// when net/http cannot write the request (an invalid host, say), so that
// the request goes through net/http and fails there with its error.
func (t *Target) appendWire(buf []byte, u *url.URL, h http.Header, body []byte, close bool) []byte {
	req := &http.Request{Method: t.Method, URL: u, Host: u.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Close: close}
	if len(body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	w := bytes.NewBuffer(buf)
	if err := req.Write(w); err != nil {
		return nil
	}
	return w.Bytes()
}

// URLString returns the text of u, built by Build for this target,
// without formatting it again when the URL is static.
func (t *Target) URLString(u *url.URL) string {
	if u == t.staticURL {
		return t.staticURLStr
	}
	return u.String()
}

// Build returns the URL, header and body of the request for v. The header
// of a target whose headers are all static is shared: callers must not
// modify it.
func (t *Target) Build(v *Vars, buf []byte) (u *url.URL, h http.Header, body []byte, err error) {
	u = t.staticURL
	if u == nil {
		if u, err = parseTargetURL(t.URL.Execute(v)); err != nil {
			return nil, nil, nil, &FieldError{Field: "url", Err: err}
		}
	}
	h = t.staticHeader
	if h == nil {
		h = t.buildHeader(v)
	}
	body = t.staticBody
	if body == nil && !t.Body.Static() {
		body = t.Body.Append(buf[:0], v)
	}
	return u, h, body, nil
}

// Plan is a compiled scenario: the requests of one iteration, in order.
type Plan struct {
	Name    string
	Targets []*Target
	// Think is the pause after each iteration.
	Think time.Duration
	// Data supplies CSV rows, one per thread iteration; nil for none.
	Data *DataSet
}
