package jmx

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ratelab/load"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./jmx -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}

func readPlan(t *testing.T, src string) *Plan {
	t.Helper()
	p, err := Read(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func reference(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/script-updates.jmx")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withCalcMode returns the reference plan with its timer's calcMode set.
func withCalcMode(t *testing.T, mode string) string {
	src := reference(t)
	const orig = `<intProp name="calcMode">0</intProp>`
	if !strings.Contains(src, orig) {
		t.Fatal("reference plan changed: no calcMode 0")
	}
	return strings.Replace(src, orig, mode, 1)
}

func TestAnalyzeGolden(t *testing.T) {
	cases := map[string]string{
		"reference":  reference(t),
		"calcmode-1": withCalcMode(t, `<intProp name="calcMode">1</intProp>`),
		"calcmode-2": withCalcMode(t, `<intProp name="calcMode">2</intProp>`),
		"calcmode-3": withCalcMode(t, `<intProp name="calcMode">3</intProp>`),
		"calcmode-4": withCalcMode(t, `<intProp name="calcMode">4</intProp>`),
		// Plans saved by old JMeter versions store the mode's name.
		"calcmode-string": withCalcMode(t, `<stringProp name="calcMode">all active threads (shared)</stringProp>`),
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			a := Analyze(readPlan(t, src), Options{Properties: map[string]string{"host": "127.0.0.1", "port": "8080"}})
			b, err := json.MarshalIndent(a, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "analysis-"+name+".golden", append(b, '\n'))
		})
	}
}

// TestTimerModeIsThroughputMode checks that a timer's calcMode is read as
// the load engine's mode, one type for one idea (it was a plain int).
func TestTimerModeIsThroughputMode(t *testing.T) {
	for src, want := range map[string]load.ThroughputMode{
		`<intProp name="calcMode">0</intProp>`:                                 load.ThisThread,
		`<intProp name="calcMode">1</intProp>`:                                 load.AllThreads,
		`<intProp name="calcMode">4</intProp>`:                                 load.GroupShared,
		`<stringProp name="calcMode">all active threads (shared)</stringProp>`: load.AllThreadsShared,
	} {
		var got []load.ThroughputMode
		for _, sm := range readPlan(t, withCalcMode(t, src)).Groups[0].Samplers {
			for _, tm := range sm.Timers {
				if tm.Kind == ConstantThroughput {
					got = append(got, tm.Mode)
				}
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: timer modes %v, want [%v]", src, got, want)
		}
		if CalcModeName(want) == "" || strings.HasPrefix(CalcModeName(want), "mode ") {
			t.Errorf("%v has no JMeter name", want)
		}
	}
}

// TestEffectiveRates checks the rates the golden files hold against the
// rules of JMeter's documentation, computed by hand: 600/min is 10/s.
func TestEffectiveRates(t *testing.T) {
	for mode, want := range map[string]struct {
		rps   float64
		burst int
	}{
		// Mode 0: every thread 10/s → 200/s; each thread samples at
		// 0, 100, …, 900 ms → 10 × 20 in the first second.
		`<intProp name="calcMode">0</intProp>`: {200, 200},
		// Mode 1: each thread waits 20 × 100 ms = 2 s; the first samples
		// are undelayed, so all 20 go at t=0 and none after in the first
		// second.
		`<intProp name="calcMode">1</intProp>`: {10, 20},
		`<intProp name="calcMode">2</intProp>`: {10, 20},
		// Mode 3: one schedule, 100 ms apart; each thread's first sample is
		// undelayed (20 at t=0), then the schedule runs 100 ms after its
		// last slot.
		`<intProp name="calcMode">3</intProp>`: {10, 20},
	} {
		a := Analyze(readPlan(t, withCalcMode(t, mode)), Options{})
		if a.EffectiveRPS == nil || *a.EffectiveRPS < want.rps*0.99 || *a.EffectiveRPS > want.rps*1.01 {
			t.Errorf("%s: effective rps %v, want %v", mode, a.EffectiveRPS, want.rps)
		}
		if a.StartupBurst < want.burst {
			t.Errorf("%s: startup burst %d, want at least %d", mode, a.StartupBurst, want.burst)
		}
	}
}

func TestReferencePitfalls(t *testing.T) {
	a := Analyze(readPlan(t, reference(t)), Options{})
	var ids []string
	for _, p := range a.Pitfalls {
		ids = append(ids, p.ID)
		if p.Message == "" || p.Fix == "" {
			t.Errorf("pitfall %s lacks a message or a fix", p.ID)
		}
	}
	if got, want := strings.Join(ids, ","), "ctt-per-thread,ctt-units,same-resource,no-retry-after"; got != want {
		t.Fatalf("pitfalls %s, want %s", got, want)
	}
	if a.Threads != 20 || a.Loops != 100 || a.RampUpS != 0 || *a.TotalRequests != 2000 || !a.Faithful {
		t.Fatalf("analysis %+v", a)
	}
}

// TestStartupBurstOnlyAboveSteadyRate: the reference plan's first second
// (200 requests) equals its steady rate (200 req/s, the per-thread timer ×
// 20 threads), so it has no start-up burst; with the shared mode the
// steady rate is 10 req/s and the 20 threads' first requests at t=0 are one.
func TestStartupBurstOnlyAboveSteadyRate(t *testing.T) {
	has := func(a *Analysis) bool {
		for _, p := range a.Pitfalls {
			if p.ID == "startup-burst" {
				return true
			}
		}
		return false
	}
	if a := Analyze(readPlan(t, reference(t)), Options{}); has(a) {
		t.Errorf("reference plan: startup-burst with %d requests in the first second at a steady %v req/s", a.StartupBurst, *a.EffectiveRPS)
	}
	a := Analyze(readPlan(t, withCalcMode(t, `<intProp name="calcMode">4</intProp>`)), Options{})
	if !has(a) {
		t.Errorf("calcMode 4: no startup-burst with %d requests in the first second at a steady %v req/s", a.StartupBurst, *a.EffectiveRPS)
	}
}

func TestPerThreadPathIsNotSameResource(t *testing.T) {
	src := strings.Replace(reference(t), "/api/v2/architect/scripts/${scriptId}", "/api/v2/architect/scripts/${__threadNum}", 1)
	for _, p := range Analyze(readPlan(t, src), Options{}).Pitfalls {
		if p.ID == "same-resource" {
			t.Fatal("a path with ${__threadNum} was reported as the same resource")
		}
	}
}

func TestTranslate(t *testing.T) {
	env := &exprEnv{
		props: map[string]string{"host": "example.test"},
		vars:  map[string]string{"id": "42"},
		csv:   map[string]bool{"scriptId": true},
	}
	for in, want := range map[string]string{
		"${__P(host,localhost)}":        "example.test",
		"${__P(port,8080)}":             "8080",
		"${__property(host,,x)}":        "example.test",
		"/s/${id}":                      "/s/42",
		"/s/${scriptId}":                "/s/{{.scriptId}}",
		"t${__threadNum}":               "t{{.Thread}}",
		"${__time(,)}":                  "{{timems}}",
		"${__counter(TRUE,)}":           "{{counter}}",
		"${__counter(FALSE,)}":          "{{gcounter}}",
		"${__UUID()}":                   "{{uuid}}",
		"${__Random(1,10)}":             "{{random 1 10}}",
		`${__RandomString(5,ab)}`:       `{{randomString 5 "ab"}}`,
		"${__P(missing,${__P(host,)})}": "example.test",
		"no expressions":                "no expressions",
		"${undefined}":                  "${undefined}",
	} {
		if got := env.translate(in).text; got != want {
			t.Errorf("translate(%q) = %q, want %q", in, got, want)
		}
	}
	if tr := env.translate("${__unknownFn(1)}"); len(tr.problems) == 0 {
		t.Error("unknown function not reported")
	}
}

func TestMalformedPlans(t *testing.T) {
	for name, c := range map[string]struct {
		src  string
		line int
		msg  string
	}{
		"not xml":     {"hello", 1, "not a JMeter plan"},
		"unclosed":    {"<jmeterTestPlan>\n<hashTree>\n<TestPlan testname=\"x\">\n</hashTree>", 4, "TestPlan"},
		"wrong root":  {"<project/>", 1, "not a JMeter plan"},
		"no group":    {"<jmeterTestPlan><hashTree><TestPlan testname=\"x\"/><hashTree/></hashTree></jmeterTestPlan>", 1, "no enabled Thread Group"},
		"orphan tree": {"<jmeterTestPlan><hashTree><hashTree/></hashTree></jmeterTestPlan>", 1, "the plan is empty"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Read(strings.NewReader(c.src))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SyntaxError", err)
			}
			if se.Line != c.line || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want line %d and %q", err, c.line, c.msg)
			}
		})
	}
}

func TestUnsupportedElementsAreNamed(t *testing.T) {
	src := strings.Replace(reference(t), "<CookieManager ", `<WhileController testname="Forever">
<stringProp name="WhileController.condition">true</stringProp></WhileController><hashTree/>
<CookieManager `, 1)
	a := Analyze(readPlan(t, src), Options{})
	found := false
	for _, w := range a.Warnings {
		if strings.Contains(w.Path, "Forever") && strings.Contains(w.Message, "WhileController") && w.Unfaithful {
			found = true
		}
	}
	if !found || a.Faithful {
		t.Fatalf("unsupported element not reported: faithful=%v warnings=%v", a.Faithful, a.Warnings)
	}
}

func FuzzRead(f *testing.F) {
	b, err := os.ReadFile("testdata/script-updates.jmx")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("<jmeterTestPlan><hashTree><TestPlan/><hashTree><ThreadGroup/><hashTree/></hashTree></hashTree></jmeterTestPlan>")
	f.Add("<jmeterTestPlan><hashTree><hashTree>")
	// Plans of the kinds the corpus holds: plugin groups, controllers,
	// defaults, timers, extractors (see jmx/CORPUS.md).
	for _, src := range []string{
		plan(`<ConfigTestElement testname="D"><stringProp name="HTTPSampler.domain">h</stringProp></ConfigTestElement><hashTree/>`,
			`<TransactionController testname="T"/><hashTree>`+sampler("a", "", "/a", `<RegexExtractor testname="X"><stringProp name="RegexExtractor.refname">v</stringProp></RegexExtractor><hashTree/>`)+`</hashTree>`+
				`<IfController testname="I"><stringProp name="IfController.condition">${__jexl3("${v}" == "1")}</stringProp></IfController><hashTree>`+sampler("b", "", "/b/${v}", "")+`</hashTree>`, 2),
		`<jmeterTestPlan><hashTree><TestPlan/><hashTree><OpenModelThreadGroup testname="O"><stringProp name="OpenModelThreadGroup.schedule">rate(5/s) random_arrivals(1 min) pause(1 s)</stringProp></OpenModelThreadGroup><hashTree>` + sampler("a", "h", "/", "") + `</hashTree></hashTree></hashTree></jmeterTestPlan>`,
	} {
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := Read(strings.NewReader(src))
		if err != nil {
			if p != nil {
				t.Fatal("a plan and an error")
			}
			return
		}
		a := Analyze(p, Options{})
		if _, err := json.Marshal(a); err != nil {
			t.Fatal(fmt.Errorf("analysis does not marshal: %w", err))
		}
		// The scenario of any plan that reads is made or refused, never a
		// panic; a scenario that is made compiles or says why not.
		if s, _, err := p.Scenario(Options{}); err == nil {
			if _, err := ScenarioYAML(s); err != nil {
				t.Fatal(err)
			}
		}
	})
}
