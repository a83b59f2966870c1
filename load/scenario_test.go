package load

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ratelab/limit"
)

const goodScenario = `name: script-updates
base_url: http://127.0.0.1:8080
threads: 20
ramp_up: 10s
loops: 100
throughput: 600/m
throughput_mode: all-threads
retry_after: honor
timeout: 5s
connections: 50
think: 100ms
data: {file: scripts.csv, mode: per-thread}
auth: {token_url: http://127.0.0.1:8080/oauth/token, client_id: c, client_secret: s, scopes: [a]}
headers:
  Content-Type: application/json
requests:
  - name: update
    method: put
    url: /api/v2/architect/scripts/{{.scriptId}}
    headers: {If-Match: "*"}
    body: '{"text": "v{{.Iteration}}"}'
    think: 50ms
  - url: /api/v2/users
`

func TestParseScenario(t *testing.T) {
	s, err := ParseScenario([]byte(goodScenario), "/plans")
	if err != nil {
		t.Fatal(err)
	}
	w := s.Workload
	if s.Name != "script-updates" || w.Threads != 20 || w.RampUp != 10*time.Second || w.Loops != 100 ||
		w.Throughput != limit.Per(600, time.Minute) || w.ThroughputMode != AllThreads ||
		s.RetryAfter != RetryHonor || s.Timeout != 5*time.Second || s.Connections != 50 ||
		s.Think != 100*time.Millisecond || s.Data != "/plans/scripts.csv" || s.DataMode != DataPerThread ||
		s.Auth.ClientID != "c" || len(s.Auth.Scopes) != 1 || len(s.Headers) != 1 {
		t.Fatalf("scenario %+v", s)
	}
	if len(s.Requests) != 2 || s.Requests[0].Method != "put" || s.Requests[0].Line != 17 ||
		s.Requests[0].Think != 50*time.Millisecond || s.Requests[0].Headers[0] != (Header{"If-Match", "*"}) {
		t.Fatalf("requests %+v", s.Requests)
	}
	data, err := ReadData(strings.NewReader("scriptId\ns-9\n"), DataShared)
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Compile(data)
	if err != nil {
		t.Fatal(err)
	}
	u, h, body, err := p.Targets[0].Build(&Vars{Iteration: 4, Row: []string{"s-9"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Targets[0].Method != "PUT" || u.String() != "http://127.0.0.1:8080/api/v2/architect/scripts/s-9" ||
		h.Get("Content-Type") != "application/json" || h.Get("If-Match") != "*" || string(body) != `{"text": "v4"}` {
		t.Fatalf("built %s %v %q", u, h, body)
	}
	if p.Targets[1].Name != "GET /api/v2/users" {
		t.Fatalf("default label %q", p.Targets[1].Name)
	}
}

func TestScenarioErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		src  string
		want string
	}{
		"unknown field":   {"threads: 2\nloop: 3\nrequests: [{url: http://x}]\n", "line 2: loop: unknown field"},
		"bad number":      {"threads: many\nrequests: [{url: http://x}]\n", `line 1: threads: "many": want a whole number`},
		"bad duration":    {"requests: [{url: http://x}]\nduration: forever\n", "line 2: duration:"},
		"bad rate":        {"rate: 10 per second\nrequests: [{url: http://x}]\n", "line 1: rate:"},
		"bad mode":        {"throughput_mode: everyone\nrequests: [{url: http://x}]\n", "line 1: throughput_mode:"},
		"no requests":     {"threads: 1\n", "requests: at least one request"},
		"request field":   {"requests:\n  - url: http://x\n    bodyy: x\n", "line 3: requests[0].bodyy: unknown field"},
		"missing url":     {"requests:\n  - name: a\n", "line 2: requests[0].url: required"},
		"nested data":     {"data: {file: a.csv, sep: ';'}\nrequests: [{url: http://x}]\n", "line 1: data.sep: unknown field"},
		"duplicate":       {"threads: 1\nthreads: 2\nrequests: [{url: http://x}]\n", "line 2: threads: given twice"},
		"not a mapping":   {"- a\n- b\n", "line 1: scenario: want a mapping"},
		"headers not map": {"headers: [a]\nrequests: [{url: http://x}]\n", "line 1: headers: want a mapping"},
		"yaml syntax":     {"threads: [1\n", "scenario: yaml:"},
	} {
		_, err := ParseScenario([]byte(tc.src), "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
}

// Template errors are found when the scenario compiles, before any
// request, with the request's line and field.
func TestScenarioTemplateErrors(t *testing.T) {
	src := "requests:\n  - url: http://x/a\n  - url: http://x/{{.Thread}}\n    headers: {X-Id: '{{.userId}}'}\n"
	s, err := ParseScenario([]byte(src), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Compile(nil)
	var se *ScenarioError
	if !errors.As(err, &se) || se.Line != 3 || se.Field != "requests[1].headers.X-Id" ||
		!strings.Contains(err.Error(), `unknown variable ".userId"`) {
		t.Fatalf("error %v", err)
	}
	s.Requests = []RequestSpec{{URL: "{{.Thread}}/x", Line: 7}}
	if _, err := s.Compile(nil); err == nil || !strings.Contains(err.Error(), "line 7: requests[0].url:") {
		t.Fatalf("a template that cannot make a URL: %v", err)
	}
	dir := t.TempDir()
	s.Requests = []RequestSpec{{URL: "http://x", BodyFile: filepath.Join(dir, "missing.json"), Line: 2}}
	if _, err := s.Compile(nil); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing body file: %v", err)
	}
}

func TestWorkloadValidate(t *testing.T) {
	for _, tc := range []struct {
		w    Workload
		want string
	}{
		{Workload{Threads: 5}, "unbounded run refused"},
		{Workload{Rate: limit.Per(10, time.Second)}, "unbounded run refused"},
		{Workload{Rate: limit.Per(10, time.Second), Duration: time.Second, Throughput: limit.Per(1, time.Second)}, "not with a rate"},
		{Workload{Threads: -1, Loops: 1}, "negative"},
		{Workload{Threads: 5, Loops: 1}, ""},
		{Workload{Stages: Stages{{time.Second, 0, 1}}}, ""},
	} {
		err := tc.w.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.w, err, tc.want)
		}
	}
}

func FuzzParseScenario(f *testing.F) {
	f.Add([]byte(goodScenario))
	f.Add([]byte("requests: [{url: 'http://x/{{.Thread}}'}]\nstages: '1s:0-5/s'\n"))
	f.Add([]byte("threads: 1\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := ParseScenario(src, "")
		if err != nil {
			return
		}
		if len(s.Requests) == 0 {
			t.Fatal("a scenario without requests parsed")
		}
		// Compiling must not panic either; errors are fine.
		_, _ = s.Compile(nil)
	})
}
