package jmx

import (
	"os"
	"strings"
	"testing"
	"time"

	"ratelab/load"
)

var refProps = Options{Properties: map[string]string{"host": "127.0.0.1", "port": "8080", "accessToken": "tok"}}

func TestScenarioGolden(t *testing.T) {
	p := readPlan(t, reference(t))
	s, warns, err := p.Scenario(refProps)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("warnings for the reference plan: %v", warns)
	}
	y, err := ScenarioYAML(s)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "scenario-reference.golden", y)

	// The YAML is a scenario the load engine reads back to the same thing.
	back, err := load.ParseScenario(y, "")
	if err != nil {
		t.Fatalf("load cannot read the scenario: %v\n%s", err, y)
	}
	w := back.Workload
	if w.Threads != 20 || w.Loops != 100 || w.RampUp != 0 || w.Throughput.PerSecond() != 10 || w.ThroughputMode != load.ThisThread {
		t.Fatalf("workload %+v", w)
	}
	r := back.Requests[0]
	if r.Method != "PUT" || r.URL != "http://127.0.0.1:8080/api/v2/architect/scripts/00000000-0000-0000-0000-000000000001" {
		t.Fatalf("request %+v", r)
	}
	if !strings.Contains(r.Body, "Hello {{.Thread}}") || !strings.Contains(r.Body, "{{counter}}") {
		t.Fatalf("body %q", r.Body)
	}
	// Every template the translation produced is one the engine runs.
	if _, err := back.Compile(nil); err != nil {
		t.Fatalf("the scenario does not compile: %v", err)
	}
}

func TestFixedScenario(t *testing.T) {
	// FixedScenario writes no file: the ids it generates come back in
	// memory (it used to write a CSV that callers had to clean up).
	p := readPlan(t, reference(t))
	t.Chdir(t.TempDir())
	fixed, err := p.FixedScenario(refProps, FixOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir("."); len(left) != 0 {
		t.Fatalf("FixedScenario wrote %v", left)
	}
	s := fixed.Scenario
	w := s.Workload
	if !w.Open() || w.Rate.PerSecond() != 10 || w.Loops != 2000 || s.RetryAfter != load.RetryHonor {
		t.Fatalf("fixed workload %+v retry %v", w, s.RetryAfter)
	}
	if got := s.Requests[0].URL; got != "http://127.0.0.1:8080/api/v2/architect/scripts/{{.scriptId}}" {
		t.Fatalf("fixed URL %q", got)
	}
	if s.Data != "" {
		t.Fatalf("fixed scenario names a data file %q", s.Data)
	}
	d := fixed.Data
	if d.Len() != 20 || d.Columns()["scriptId"] != 0 {
		t.Fatalf("ids: %d rows, columns %v", d.Len(), d.Columns())
	}
	var ids []string
	for range d.Len() {
		ids = append(ids, d.Next(0)[0])
	}
	if ids[0] != "00000000-0000-0000-0000-000000000001" || ids[19] != "00000000-0000-0000-0000-000000000014" {
		t.Fatalf("ids %q", ids)
	}
	if len(fixed.Changes) != 3 {
		t.Fatalf("changes %q", fixed.Changes)
	}
	if _, err := s.Compile(d); err != nil {
		t.Fatalf("the fixed scenario does not compile with its ids: %v", err)
	}
	y, err := ScenarioYAML(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := load.ParseScenario(y, ""); err != nil {
		t.Fatalf("load cannot read the fixed scenario: %v\n%s", err, y)
	}
}

func TestScenarioRefusesUnbounded(t *testing.T) {
	src := strings.Replace(reference(t), `<stringProp name="LoopController.loops">100</stringProp>`, `<stringProp name="LoopController.loops">-1</stringProp>`, 1)
	_, _, err := readPlan(t, src).Scenario(refProps)
	if err == nil || !strings.Contains(err.Error(), "unbounded") {
		t.Fatalf("err = %v", err)
	}
	src = strings.Replace(src, `<boolProp name="ThreadGroup.scheduler">false</boolProp>`, `<boolProp name="ThreadGroup.scheduler">true</boolProp>`, 1)
	src = strings.Replace(src, `<stringProp name="ThreadGroup.duration"></stringProp>`, `<stringProp name="ThreadGroup.duration">30</stringProp>`, 1)
	s, _, err := readPlan(t, src).Scenario(refProps)
	if err != nil || s.Workload.Duration != 30*time.Second {
		t.Fatalf("scheduler duration: %v %+v", err, s)
	}
}
