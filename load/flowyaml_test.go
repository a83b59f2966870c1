package load

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseFlowExample(t *testing.T) {
	src, err := os.ReadFile("../examples/flows/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFlow(src, "../examples/flows")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Groups) != 3 || f.Groups[0].Kind != GroupSetUp || f.Groups[2].Kind != GroupTearDown || f.Cookies == nil || !f.Cookies.ClearEachIteration {
		t.Fatalf("groups %+v", f.Groups)
	}
	users := f.Groups[1]
	if users.Workload.Threads != 5 || users.Workload.RampUp != 5*time.Second || users.OnSampleError != ErrorStartNextLoop ||
		len(users.Timers) != 1 || users.Timers[0].Kind != TimerUniform || users.Timers[0].Range != 300*time.Millisecond ||
		len(users.Counters) != 1 || users.Counters[0].Format != "00000" {
		t.Fatalf("users %+v", users)
	}
	if len(users.Steps) != 5 {
		t.Fatalf("%d steps", len(users.Steps))
	}
	tx := users.Steps[1].(*Transaction)
	login := tx.Steps[0].(*Request)
	if tx.Name != "login" || login.Method != "POST" || login.Extract[0].Kind != ExtractJSONPath || login.Extract[0].Default != "NOTOKEN" ||
		login.Assert[0].Match != MatchEquals || login.Assert[0].Patterns[0] != "200" {
		t.Fatalf("login %+v", login)
	}
	cat := users.Steps[2].(*Request)
	if cat.Extract[0].Match != -1 || cat.Extract[0].Template != "$1$" {
		t.Fatalf("category extract %+v", cat.Extract[0])
	}
	if fe := users.Steps[3].(*ForEach); fe.Input != "item" || fe.Output != "id" || fe.End != 3 {
		t.Fatalf("foreach %+v", fe)
	}
	th := users.Steps[4].(*Throughput)
	if !th.Percent || th.Value != 30 {
		t.Fatalf("throughput %+v", th)
	}
	if f.Data[0].File != "../examples/flows/users.csv" || f.Data[0].NoRecycle {
		t.Fatalf("data %+v", f.Data[0])
	}
}

// The top level may hold one group's fields.
func TestParseFlowSingleGroup(t *testing.T) {
	f, err := ParseFlow([]byte("threads: 2\nloops: 3\nsteps:\n  - request: {url: http://127.0.0.1:1/}\n  - loop: {count: 2, steps: [{request: {url: /x}}]}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Groups) != 1 || f.Groups[0].Workload.Threads != 2 || len(f.Groups[0].Steps) != 2 || f.Groups[0].Steps[1].(*Loop).Count != 2 {
		t.Fatalf("%+v", f.Groups)
	}
}

func TestParseFlowErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"loops: 1\n", "line 1: flow.steps: at least one step is required"},
		{"steps: [{request: {url: /}}]\n", "unbounded run refused"},
		{"loops: 1\nsteps:\n  - fetch: {url: /}\n", "line 3: steps[0].fetch: unknown step"},
		{"loops: 1\nsteps:\n  - request: {name: x}\n", "steps[0].request.url: required"},
		{"loops: 1\nsteps:\n  - request: {url: /, timers: [{sleepy: 1s}]}\n", "unknown timer"},
		{"loops: 1\nsteps:\n  - request: {url: /, extract: [{regex: {expr: x}}]}\n", "extract[0].regex.var: required"},
		{"loops: 1\nsteps:\n  - loop: {count: lots, steps: []}\n", `"lots": want a whole number`},
		{"loops: 1\non_sample_error: explode\nsteps: [{request: {url: /}}]\n", "on_sample_error"},
		{"loops: 1\nsteps: [{request: {url: /}}]\ngroups: []\n", "not both"},
		{"groups:\n  - {loops: 1, steps: [{if: {condition: x}}]}\n", "groups[0].steps[0].if.steps: required"},
		{"loops: 1\ndata: [{file: a.csv, share: world}]\nsteps: [{request: {url: /}}]\n", `"world": want all, group or thread`},
	} {
		_, err := ParseFlow([]byte(tc.src), "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}

// FuzzParseFlow checks that no input makes ParseFlow panic and that what
// it accepts compiles or fails with an error.
func FuzzParseFlow(f *testing.F) {
	for _, s := range []string{
		"loops: 1\nsteps: [{request: {url: http://127.0.0.1:1/}}]\n",
		"groups:\n  - {loops: 1, steps: [{if: {condition: 'true', steps: [{request: {url: /x}}]}}]}\n",
		"loops: 1\nsteps: [{switch: {value: '{{.a}}', steps: [{request: {url: /x, extract: [{regex: {var: v, expr: '(a'}}]}}]}}]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		fl, err := ParseFlow([]byte(src), "")
		if err != nil {
			return
		}
		_, _ = compileFlow(fl, &flowRun{flow: fl})
	})
}

// Validate finds what ParseFlow cannot: bad patterns, paths and files.
func TestFlowValidate(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"loops: 1\nsteps: [{request: {url: 'http://127.0.0.1:1/x', extract: [{regex: {var: v, expr: '(a'}}]}}]\n", "group 1 (thread group), step 1: extract v: error parsing regexp"},
		{"loops: 1\nsteps: [{simple: {steps: [{request: {url: 'http://127.0.0.1:1/x', extract: [{jsonpath: {var: v, expr: '$[?'}}]}}]}}]\n", "step 1, step 1: extract v"},
		{"loops: 1\ndata: [{file: /nonexistent.csv}]\nsteps: [{request: {url: /x}}]\n", "flow data[0]: open data"},
		{"loops: 1\nsteps: [{request: {url: '/x/{{.}}'}}]\n", "line 2: group 1 (thread group), step 1: url"},
		{"loops: 1\nsteps: [{request: {url: /x}}]\n", `url: "/x": want an http:// or https:// URL`},
		{"loops: 1\nsteps: [{throughput: {percent: 150, steps: [{request: {url: /x}}]}}]\n", "throughput 150 out of range"},
	} {
		f, err := ParseFlow([]byte(tc.src), "")
		if err == nil {
			err = f.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}
