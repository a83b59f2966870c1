package jmx

import (
	"os"
	"path/filepath"
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
	p := readPlan(t, reference(t))
	ids := filepath.Join(t.TempDir(), "ids.csv")
	s, changes, err := p.FixedScenario(refProps, FixOptions{DataFile: ids})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Workload
	if !w.Open() || w.Rate.PerSecond() != 10 || w.Loops != 2000 || s.RetryAfter != load.RetryHonor {
		t.Fatalf("fixed workload %+v retry %v", w, s.RetryAfter)
	}
	if got := s.Requests[0].URL; got != "http://127.0.0.1:8080/api/v2/architect/scripts/{{.scriptId}}" {
		t.Fatalf("fixed URL %q", got)
	}
	b, err := os.ReadFile(ids)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 21 || lines[0] != "scriptId" || lines[1] != "00000000-0000-0000-0000-000000000001" || lines[20] != "00000000-0000-0000-0000-000000000014" {
		t.Fatalf("ids file:\n%s", b)
	}
	if len(changes) != 3 {
		t.Fatalf("changes %q", changes)
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
