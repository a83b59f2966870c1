package load

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"ratelab/limit"
)

// Scenario is a load test as a user describes it, in a YAML file or with
// flags: the workload, the requests of one iteration, and the options of
// the run. Compile turns its requests into a Plan. The zero Scenario has
// no requests and no bound: Validate rejects it.
type Scenario struct {
	Name string
	// BaseURL prefixes request URLs that start with "/".
	BaseURL  string
	Requests []RequestSpec
	// Headers are sent with every request.
	Headers []Header
	// Think is the pause after each iteration.
	Think    time.Duration
	Data     string
	DataMode DataMode
	Workload Workload
	// RetryAfter says whether to wait when a response says Retry-After.
	RetryAfter  RetryAfterMode
	Timeout     time.Duration
	Connections int
	Auth        Auth
}

// Workload is the shape of the load: the closed model (Threads, RampUp,
// Loops or Duration, optionally paced by a Constant Throughput Timer) or the
// open model (Rate or Stages, with MaxWorkers). The zero Workload is one
// thread with no bound, which Validate refuses.
type Workload struct {
	Threads  int
	RampUp   time.Duration
	Loops    int
	Duration time.Duration

	Rate       limit.Rate
	Stages     Stages
	MaxWorkers int

	Throughput     limit.Rate
	ThroughputMode ThroughputMode
}

// Open reports whether the workload is the open model (arrival rate).
func (w *Workload) Open() bool { return w.Rate.Count > 0 || len(w.Stages) > 0 }

// Validate checks the workload is well formed and bounded: an unbounded
// run (no loops, no duration, no stages) is refused.
func (w *Workload) Validate() error {
	if w.Threads < 0 || w.Loops < 0 || w.Duration < 0 || w.RampUp < 0 || w.MaxWorkers < 0 {
		return errors.New("threads, loops, duration, ramp-up and max-workers cannot be negative")
	}
	if w.Open() {
		if w.Rate.Count > 0 && len(w.Stages) > 0 {
			return errors.New("give a rate or stages, not both")
		}
		if w.Duration == 0 && len(w.Stages) == 0 && w.Loops == 0 {
			return errors.New("unbounded run refused: give a duration (or loops: a number of arrivals)")
		}
		if w.Throughput.Count > 0 {
			return errors.New("throughput (a JMeter timer) paces threads: use it with threads, not with a rate")
		}
		return nil
	}
	if w.Loops == 0 && w.Duration == 0 {
		return errors.New("unbounded run refused: give loops or a duration")
	}
	return nil
}

// Auth configures OAuth 2.0 client credentials: when TokenURL is set a
// bearer token is obtained before the first request and refreshed as it
// expires.
type Auth struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
}

// RetryAfterMode says what a thread does when a response says Retry-After.
type RetryAfterMode int

const (
	// RetryIgnore records Retry-After and carries on.
	RetryIgnore RetryAfterMode = iota
	// RetryHonor waits as told: a closed-model thread sleeps before its next
	// request; the open model pauses its schedule. It also waits for a
	// limit's reset when a response says the limit is spent (see the
	// package doc, "Holds"). The wait is recorded in Result.Waited.
	RetryHonor
)

// ParseRetryAfterMode reads "honor" or "ignore".
func ParseRetryAfterMode(s string) (RetryAfterMode, error) {
	switch s {
	case "honor", "honour":
		return RetryHonor, nil
	case "ignore", "":
		return RetryIgnore, nil
	}
	return 0, fmt.Errorf("retry-after %q: want honor or ignore", s)
}

// String returns the mode as ParseRetryAfterMode reads it.
func (m RetryAfterMode) String() string {
	if m == RetryHonor {
		return "honor"
	}
	return "ignore"
}

// ScenarioError locates an error in a scenario file.
type ScenarioError struct {
	Line  int
	Field string
	Err   error
}

func (e *ScenarioError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %v", e.Line, e.Field, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Field, e.Err)
}

func (e *ScenarioError) Unwrap() error { return e.Err }

// ParseScenario reads a YAML scenario. Every error names the line and the
// field; unknown fields are errors. dir resolves relative file names
// (data, body_file); "" leaves them as they are.
//
// The format:
//
//	name: script-updates
//	base_url: http://127.0.0.1:8080
//	threads: 20          # closed model
//	ramp_up: 10s
//	loops: 100           # or duration: 1m
//	throughput: 600/m    # JMeter Constant Throughput Timer
//	throughput_mode: all-threads
//	# rate: 10/s or stages: "30s:0-200/s,60s:200/s" for the open model
//	retry_after: honor
//	timeout: 10s
//	connections: 50
//	think: 100ms         # after each iteration
//	data: {file: scripts.csv, mode: per-thread}
//	auth: {token_url: ..., client_id: ..., client_secret: ...}
//	headers: {Content-Type: application/json}
//	requests:
//	  - name: update
//	    method: PUT
//	    url: /api/v2/architect/scripts/{{.scriptId}}
//	    headers: {If-Match: "*"}
//	    body: '{"text": "v{{.Iteration}}"}'
//	    think: 50ms
func ParseScenario(src []byte, dir string) (*Scenario, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("scenario: empty document")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &ScenarioError{Line: root.Line, Field: "scenario", Err: errors.New("want a mapping of fields")}
	}
	s := &Scenario{}
	requestsLine := root.Line
	err := eachField(root, "", func(key string, v *yaml.Node) error {
		var err error
		w := &s.Workload
		switch key {
		case "name":
			s.Name, err = str(v)
		case "base_url":
			s.BaseURL, err = str(v)
		case "throughput":
			w.Throughput, err = rate(v)
		case "throughput_mode":
			var t string
			if t, err = str(v); err == nil {
				w.ThroughputMode, err = ParseThroughputMode(t)
			}
		case "retry_after":
			var t string
			if t, err = str(v); err == nil {
				s.RetryAfter, err = ParseRetryAfterMode(t)
			}
		case "timeout":
			s.Timeout, err = duration(v)
		case "connections":
			s.Connections, err = integer(v)
		case "think":
			s.Think, err = duration(v)
		case "headers":
			s.Headers, err = headers(v)
		case "data":
			err = eachField(v, "data", func(k string, dv *yaml.Node) error {
				var err error
				switch k {
				case "file":
					s.Data, err = str(dv)
					s.Data = resolve(dir, s.Data)
				case "mode":
					var t string
					if t, err = str(dv); err == nil {
						s.DataMode, err = ParseDataMode(t)
					}
				default:
					return errUnknown
				}
				return err
			})
		case "auth":
			err = eachField(v, "auth", func(k string, av *yaml.Node) error {
				var err error
				switch k {
				case "token_url":
					s.Auth.TokenURL, err = str(av)
				case "client_id":
					s.Auth.ClientID, err = str(av)
				case "client_secret":
					s.Auth.ClientSecret, err = str(av)
				case "scopes":
					if av.Kind != yaml.SequenceNode {
						return errors.New("want a list")
					}
					for _, it := range av.Content {
						sc, err := str(it)
						if err != nil {
							return err
						}
						s.Auth.Scopes = append(s.Auth.Scopes, sc)
					}
				default:
					return errUnknown
				}
				return err
			})
		case "requests":
			requestsLine = v.Line
			err = s.parseRequests(v, dir)
		default:
			var ok bool
			if ok, err = workloadField(w, key, v); !ok {
				return errUnknown
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(s.Requests) == 0 {
		return nil, &ScenarioError{Line: requestsLine, Field: "requests", Err: errors.New("at least one request is required")}
	}
	return s, nil
}

var errUnknown = errors.New("unknown field")

func (s *Scenario) parseRequests(v *yaml.Node, dir string) error {
	if v.Kind != yaml.SequenceNode {
		return errors.New("want a list of requests")
	}
	for i, rn := range v.Content {
		field := fmt.Sprintf("requests[%d]", i)
		r := RequestSpec{Line: rn.Line}
		err := eachField(rn, field, func(k string, f *yaml.Node) error {
			var err error
			switch k {
			case "name":
				r.Name, err = str(f)
			case "method":
				r.Method, err = str(f)
			case "url":
				r.URL, err = str(f)
			case "headers":
				r.Headers, err = headers(f)
			case "body":
				r.Body, err = str(f)
			case "body_file":
				r.BodyFile, err = str(f)
				r.BodyFile = resolve(dir, r.BodyFile)
			case "think":
				r.Think, err = duration(f)
			default:
				return errUnknown
			}
			return err
		})
		if err != nil {
			return err
		}
		if r.URL == "" {
			return &ScenarioError{Line: rn.Line, Field: field + ".url", Err: errors.New("required")}
		}
		s.Requests = append(s.Requests, r)
	}
	return nil
}

// eachField calls fn for every key of mapping node m; errors are located
// at the key's value and named prefix.key.
func eachField(m *yaml.Node, prefix string, fn func(key string, v *yaml.Node) error) error {
	if m.Kind != yaml.MappingNode {
		name := prefix
		if name == "" {
			name = "scenario"
		}
		return &ScenarioError{Line: m.Line, Field: name, Err: errors.New("want a mapping of fields")}
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		field := k.Value
		if prefix != "" {
			field = prefix + "." + k.Value
		}
		if seen[k.Value] {
			return &ScenarioError{Line: k.Line, Field: field, Err: errors.New("given twice")}
		}
		seen[k.Value] = true
		if err := fn(k.Value, v); err != nil {
			var se *ScenarioError
			if errors.As(err, &se) {
				return err
			}
			line := v.Line
			if errors.Is(err, errUnknown) {
				line = k.Line
			}
			return &ScenarioError{Line: line, Field: field, Err: err}
		}
	}
	return nil
}

func str(v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode {
		return "", errors.New("want a single value")
	}
	return v.Value, nil
}

func integer(v *yaml.Node) (int, error) {
	s, err := str(v)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: want a whole number ≥ 0", s)
	}
	return n, nil
}

func duration(v *yaml.Node) (time.Duration, error) {
	s, err := str(v)
	if err != nil {
		return 0, err
	}
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration such as 500ms, 10s or 1m", s)
	}
	return d, nil
}

func rate(v *yaml.Node) (limit.Rate, error) {
	s, err := str(v)
	if err != nil {
		return limit.Rate{}, err
	}
	return limit.ParseRate(s)
}

func headers(v *yaml.Node) ([]Header, error) {
	var hs []Header
	err := eachField(v, "headers", func(k string, hv *yaml.Node) error {
		val, err := str(hv)
		if err != nil {
			return err
		}
		if strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t\r\n:") {
			return errors.New("invalid header name")
		}
		hs = append(hs, Header{Name: k, Value: val})
		return nil
	})
	return hs, err
}

func resolve(dir, name string) string {
	if dir == "" || name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(dir, name)
}

// Compile compiles the scenario's requests against its data set (nil when
// the scenario uses none). Template errors name the request's line and
// field.
func (s *Scenario) Compile(data *DataSet) (*Plan, error) {
	if len(s.Requests) == 0 {
		return nil, errors.New("no requests: give --url or a scenario with requests")
	}
	p := &Plan{Name: s.Name, Think: s.Think, Data: data}
	for i, r := range s.Requests {
		if strings.HasPrefix(r.URL, "/") && s.BaseURL != "" {
			r.URL = strings.TrimSuffix(s.BaseURL, "/") + r.URL
		}
		t, err := CompileTarget(r, s.Headers, data)
		if err != nil {
			field := fmt.Sprintf("requests[%d]", i)
			var fe *FieldError
			if errors.As(err, &fe) {
				field += "." + fe.Field
				err = fe.Err
			}
			return nil, &ScenarioError{Line: r.Line, Field: field, Err: err}
		}
		p.Targets = append(p.Targets, t)
	}
	return p, nil
}
