package jmx

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"ratelab/load"
)

// plan wraps thread-group children (and Test Plan level elements) into a
// minimal plan of one thread group with the given loops.
func plan(top, group string, loops int) string {
	return fmt.Sprintf(`<jmeterTestPlan version="1.2"><hashTree>
<TestPlan testname="P"/><hashTree>%s
<ThreadGroup testname="G">
  <stringProp name="ThreadGroup.num_threads">2</stringProp>
  <stringProp name="ThreadGroup.ramp_time">1</stringProp>
  <elementProp name="ThreadGroup.main_controller" elementType="LoopController">
    <stringProp name="LoopController.loops">%d</stringProp>
  </elementProp>
</ThreadGroup><hashTree>%s</hashTree>
</hashTree></hashTree></jmeterTestPlan>`, top, loops, group)
}

func sampler(name, domain, path string, inner string) string {
	return fmt.Sprintf(`<HTTPSamplerProxy testname="%s">
  <stringProp name="HTTPSampler.domain">%s</stringProp>
  <stringProp name="HTTPSampler.path">%s</stringProp>
  <stringProp name="HTTPSampler.method">GET</stringProp>
</HTTPSamplerProxy><hashTree>%s</hashTree>`, name, domain, path, inner)
}

func scenarioOf(t *testing.T, src string, opts Options) (*load.Scenario, []Warning) {
	t.Helper()
	p := readPlan(t, src)
	s, _, err := p.Scenario(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, Analyze(p, opts).Warnings
}

func urls(s *load.Scenario) string {
	var out []string
	for _, r := range s.Requests {
		out = append(out, r.URL)
	}
	return strings.Join(out, " ")
}

func unfaithful(ws []Warning) []string {
	var out []string
	for _, w := range ws {
		if w.Unfaithful {
			out = append(out, w.Message)
		}
	}
	return out
}

func TestHTTPDefaultsByScope(t *testing.T) {
	defaults := func(domain, port, proto string) string {
		return fmt.Sprintf(`<ConfigTestElement guiclass="HttpDefaultsGui" testclass="ConfigTestElement" testname="D">
  <elementProp name="HTTPsampler.Arguments" elementType="Arguments"><collectionProp name="Arguments.arguments"/></elementProp>
  <stringProp name="HTTPSampler.domain">%s</stringProp><stringProp name="HTTPSampler.port">%s</stringProp>
  <stringProp name="HTTPSampler.protocol">%s</stringProp></ConfigTestElement><hashTree/>`, domain, port, proto)
	}
	src := plan(defaults("outer.test", "8080", ""),
		sampler("a", "", "/a", "")+
			`<GenericController testname="S"/><hashTree>`+defaults("inner.test", "", "https")+sampler("b", "", "/b", "")+sampler("c", "own.test", "/c", "")+`</hashTree>`, 1)
	s, ws := scenarioOf(t, src, Options{})
	if got, want := urls(s), "http://outer.test:8080/a https://inner.test:8080/b https://own.test:8080/c"; got != want {
		t.Errorf("urls %q, want %q", got, want)
	}
	if u := unfaithful(ws); len(u) != 0 {
		t.Errorf("unfaithful: %v", u)
	}
}

func TestControllersFlatten(t *testing.T) {
	ifc := func(cond, inner string) string {
		return `<IfController testname="If"><stringProp name="IfController.condition">` + cond + `</stringProp></IfController><hashTree>` + inner + `</hashTree>`
	}
	src := plan(`<Arguments testname="UDV"><collectionProp name="Arguments.arguments">
  <elementProp name="env" elementType="Argument"><stringProp name="Argument.name">env</stringProp><stringProp name="Argument.value">${__P(env,prod)}</stringProp></elementProp>
</collectionProp></Arguments><hashTree/>`,
		`<TransactionController testname="T"/><hashTree>`+sampler("a", "h", "/a", "")+
			`<LoopController testname="L"><stringProp name="LoopController.loops">2</stringProp></LoopController><hashTree>`+sampler("b", "h", "/b", "")+`</hashTree></hashTree>`+
			ifc(`${__jexl3("${env}" == "prod")}`, sampler("p", "h", "/prod", ""))+
			ifc(`${__groovy("${env}" != "prod")}`, sampler("q", "h", "/other", ""))+
			ifc(`false`, sampler("n", "h", "/never", "")), 1)
	s, ws := scenarioOf(t, src, Options{})
	if got, want := urls(s), "http://h/a http://h/b http://h/b http://h/prod"; got != want {
		t.Errorf("urls %q, want %q", got, want)
	}
	if u := unfaithful(ws); len(u) != 0 {
		t.Errorf("unfaithful: %v", u)
	}
	// -J env=dev flips both conditions.
	s, _ = scenarioOf(t, src, Options{Properties: map[string]string{"env": "dev"}})
	if got, want := urls(s), "http://h/a http://h/b http://h/b http://h/other"; got != want {
		t.Errorf("with -J env=dev: urls %q, want %q", got, want)
	}
	// A run-time condition or an unemulated controller is unfaithful.
	src = plan("", ifc(`${token} != ""`, sampler("x", "h", "/x", ""))+`<RandomController testname="R"/><hashTree>`+sampler("y", "h", "/y", "")+`</hashTree>`, 1)
	_, ws = scenarioOf(t, src, Options{})
	if u := unfaithful(ws); len(u) != 2 {
		t.Errorf("unfaithful %v, want the If and the Random Controller", u)
	}
}

func TestTimersBeforeEachSampler(t *testing.T) {
	timer := func(ms int) string {
		return fmt.Sprintf(`<ConstantTimer testname="C"><stringProp name="ConstantTimer.delay">%d</stringProp></ConstantTimer><hashTree/>`, ms)
	}
	pause := `<TestAction testname="Pause"><intProp name="ActionProcessor.action">1</intProp><stringProp name="ActionProcessor.duration">300</stringProp></TestAction><hashTree/>`
	// A 100 ms timer for the whole group, a 50 ms one on b alone, a 300 ms
	// pause before c.
	src := plan("", timer(100)+sampler("a", "h", "/a", "")+sampler("b", "h", "/b", timer(50))+pause+sampler("c", "h", "/c", ""), 3)
	s, _ := scenarioOf(t, src, Options{})
	var got []time.Duration
	for _, r := range s.Requests {
		got = append(got, r.Think)
	}
	// Think after a = pause before b (150 ms); after b = before c: the
	// group's timer runs before the Flow Control Action too (it is a
	// sampler), then its 300 ms, then the timer before c (100 + 300 + 100);
	// after c = before the next iteration's a (100).
	want := []time.Duration{150 * time.Millisecond, 500 * time.Millisecond, 100 * time.Millisecond}
	if fmt.Sprint(got) != fmt.Sprint(want) || s.Think != 0 {
		t.Errorf("think %v (scenario %v), want %v", got, s.Think, want)
	}
}

func TestThreadGroupFieldsTakeProperties(t *testing.T) {
	src := strings.Replace(plan("", sampler("a", "h", "/a", ""), 1), `<stringProp name="ThreadGroup.num_threads">2</stringProp>`,
		`<stringProp name="ThreadGroup.num_threads">${__P(threads,3)}</stringProp>`, 1)
	src = strings.Replace(src, `<stringProp name="LoopController.loops">1</stringProp>`, `<stringProp name="LoopController.loops">${__P(loops,4)}</stringProp>`, 1)
	s, _ := scenarioOf(t, src, Options{})
	if s.Workload.Threads != 3 || s.Workload.Loops != 4 {
		t.Errorf("defaults: %+v", s.Workload)
	}
	s, _ = scenarioOf(t, src, Options{Properties: map[string]string{"threads": "7", "loops": "9"}})
	if s.Workload.Threads != 7 || s.Workload.Loops != 9 {
		t.Errorf("with -J: %+v", s.Workload)
	}
}

func TestPluginThreadGroups(t *testing.T) {
	wrap := func(tg string) string {
		return `<jmeterTestPlan><hashTree><TestPlan testname="P"/><hashTree>` + tg + `<hashTree>` + sampler("a", "h", "/a", "") + `</hashTree></hashTree></hashTree></jmeterTestPlan>`
	}
	cases := map[string]struct {
		tg    string
		check func(w load.Workload) bool
		exact bool
	}{
		"concurrency": {`<com.blazemeter.jmeter.threads.concurrency.ConcurrencyThreadGroup testname="C">
  <stringProp name="TargetLevel">${__P(c,5)}</stringProp><stringProp name="RampUp">10</stringProp><stringProp name="Hold">20</stringProp><stringProp name="Unit">S</stringProp>
</com.blazemeter.jmeter.threads.concurrency.ConcurrencyThreadGroup>`, func(w load.Workload) bool {
			return w.Threads == 5 && w.RampUp == 10*time.Second && w.Duration == 30*time.Second
		}, true},
		"ultimate": {`<kg.apc.jmeter.threads.UltimateThreadGroup testname="U"><collectionProp name="ultimatethreadgroupdata">
  <collectionProp name="1"><stringProp name="1">4</stringProp><stringProp name="2">0</stringProp><stringProp name="3">2</stringProp><stringProp name="4">8</stringProp><stringProp name="5">0</stringProp></collectionProp>
</collectionProp></kg.apc.jmeter.threads.UltimateThreadGroup>`, func(w load.Workload) bool {
			return w.Threads == 4 && w.RampUp == 2*time.Second && w.Duration == 10*time.Second
		}, true},
		"free-form arrivals": {`<com.blazemeter.jmeter.threads.arrivals.FreeFormArrivalsThreadGroup testname="F"><stringProp name="Unit">S</stringProp>
<collectionProp name="Schedule"><collectionProp name="1"><stringProp name="1">1</stringProp><stringProp name="2">10</stringProp><stringProp name="3">20</stringProp></collectionProp></collectionProp>
</com.blazemeter.jmeter.threads.arrivals.FreeFormArrivalsThreadGroup>`, func(w load.Workload) bool {
			return len(w.Stages) == 1 && w.Stages[0] == load.Stage{Duration: 20 * time.Second, From: 1, To: 10}
		}, true},
		"open model": {`<OpenModelThreadGroup testname="O"><stringProp name="OpenModelThreadGroup.schedule">rate(0/s) even_arrivals(10 s) rate(6/min) even_arrivals(1 min) pause(5s)</stringProp></OpenModelThreadGroup>`,
			func(w load.Workload) bool {
				return len(w.Stages) == 3 && w.Stages[0].To == 0.1 && w.Stages[1].From == 0.1 && w.Stages[2].To == 0
			}, true},
		"stepping": {`<kg.apc.jmeter.threads.SteppingThreadGroup testname="S"><stringProp name="ThreadGroup.num_threads">10</stringProp>
<stringProp name="Start users count">5</stringProp><stringProp name="Start users period">3</stringProp><stringProp name="flighttime">60</stringProp></kg.apc.jmeter.threads.SteppingThreadGroup>`,
			func(w load.Workload) bool {
				return w.Threads == 10 && w.RampUp == 6*time.Second && w.Duration == 63*time.Second
			}, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s, ws := scenarioOf(t, wrap(c.tg), Options{})
			if !c.check(s.Workload) {
				t.Errorf("workload %+v", s.Workload)
			}
			if u := unfaithful(ws); (len(u) == 0) != c.exact {
				t.Errorf("unfaithful %v, exact mapping %v", u, c.exact)
			}
		})
	}
}

func TestShapingTimerIsAnArrivalSchedule(t *testing.T) {
	shaping := `<kg.apc.jmeter.timers.VariableThroughputTimer testname="Shape"><collectionProp name="load_profile">
<collectionProp name="1"><stringProp name="1">1</stringProp><stringProp name="2">10</stringProp><stringProp name="3">30</stringProp></collectionProp>
<collectionProp name="2"><stringProp name="1">10</stringProp><stringProp name="2">10</stringProp><stringProp name="3">60</stringProp></collectionProp>
</collectionProp></kg.apc.jmeter.timers.VariableThroughputTimer><hashTree/>`
	s, _ := scenarioOf(t, plan(shaping, sampler("a", "h", "/a", ""), -1), Options{})
	w := s.Workload
	if len(w.Stages) != 2 || w.Stages[0] != (load.Stage{Duration: 30 * time.Second, From: 1, To: 10}) || w.MaxWorkers != 2 {
		t.Errorf("workload %+v", w)
	}
}

func TestAuthManagerBasic(t *testing.T) {
	auth := `<AuthManager testname="A"><collectionProp name="AuthManager.auth_list"><elementProp name="" elementType="Authorization">
<stringProp name="Authorization.url">http://h/private</stringProp><stringProp name="Authorization.username">u</stringProp><stringProp name="Authorization.password">p</stringProp>
</elementProp></collectionProp></AuthManager><hashTree/>`
	s, _ := scenarioOf(t, plan("", auth+sampler("pub", "h", "/public", "")+sampler("priv", "h", "/private/x", ""), 1), Options{})
	if len(s.Requests[0].Headers) != 0 {
		t.Errorf("public request got %v", s.Requests[0].Headers)
	}
	if h := s.Requests[1].Headers; len(h) != 1 || h[0].Value != "Basic dTpw" {
		t.Errorf("private request headers %v, want Basic dTpw", h)
	}
}

func TestExtractorsAndScriptsAreNamed(t *testing.T) {
	extract := `<RegexExtractor testname="X"><stringProp name="RegexExtractor.refname">token</stringProp></RegexExtractor><hashTree/>`
	unused := `<RegexExtractor testname="Y"><stringProp name="RegexExtractor.refname">spare</stringProp></RegexExtractor><hashTree/>`
	script := `<JSR223PreProcessor testname="Groovy"><stringProp name="script">vars.put("a","b")</stringProp></JSR223PreProcessor><hashTree/>`
	p := readPlan(t, plan("", sampler("login", "h", "/login", extract+unused)+sampler("use", "h", "/items/${token}", script), 1))
	var got []string
	for _, w := range p.Warnings {
		got = append(got, fmt.Sprintf("%v %s line %d: %s", w.Unfaithful, w.Path[strings.LastIndex(w.Path, "/")+2:], w.Line, w.Message))
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"true X line", "${token}", "false Y line", "which no request uses", "true Groovy line", "JSR223PreProcessor is not supported"} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
}

func TestMoreFunctions(t *testing.T) {
	env := &exprEnv{props: map[string]string{}, vars: map[string]string{"n": "2", "item_2": "two"}, csv: map[string]bool{}}
	for in, want := range map[string]string{
		"${__intSum(2,3,4)}":        "9",
		"${__longSum(1,2,total)}":   "3",
		"${__V(item_${n})}":         "two",
		"${__urlencode(a b&c)}":     "a+b%26c",
		"${__split(a|b,list,|)}":    "a|b",
		"${__property(missing,,d)}": "d",
	} {
		if got := env.translate(in).text; got != want {
			t.Errorf("translate(%q) = %q, want %q", in, got, want)
		}
	}
	for cond, want := range map[string]bool{`true`: true, `${__jexl3("a" == "a")}`: true, `${__groovy("${n}".equals("3"))}`: false, `"${n}" !== "2"`: false,
		`${__jexl3(${n} > 1 && ("${n}" != "3" || false))}`: true, `${__groovy(!(${n} <= 2))}`: false} {
		if v, ok := evalCondition(cond, env); !ok || v != want {
			t.Errorf("evalCondition(%q) = %v, %v; want %v", cond, v, ok, want)
		}
	}
	if _, ok := evalCondition(`${__jexl3(${__Random(1,2)} == 1)}`, env); ok {
		t.Error("a random condition was evaluated before the run")
	}
}

// TestRecordedExample keeps the README's recorded plan and its flow in step:
// the plan reads, the request list says what it cannot do (the cookie jar,
// the token), the plan's flow (what ratelab load --jmx runs) does all of it,
// and the YAML flow beside it parses to the same shape.
func TestRecordedExample(t *testing.T) {
	f, err := os.Open("../examples/jmx/recorded.jmx")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	a := Analyze(p, Options{})
	var msgs []string
	for _, w := range a.Warnings {
		if w.Unfaithful {
			msgs = append(msgs, w.Message)
		}
	}
	all := strings.Join(msgs, "\n")
	if a.Faithful || !strings.Contains(all, "Cookie Manager") || !strings.Contains(all, "${token}") {
		t.Errorf("unfaithful warnings: %q", msgs)
	}
	pf, ws, err := p.Flow(Options{Dir: "../examples/jmx"})
	if err != nil || len(unfaithful(ws)) > 0 {
		t.Fatalf("the plan's flow: %v, unfaithful %v", err, unfaithful(ws))
	}
	if err := pf.Validate(); err != nil {
		t.Errorf("the plan's flow does not validate: %v", err)
	}
	flow, isFlow, err := load.ReadFlowFile("../examples/jmx/recorded.yaml")
	if err != nil || !isFlow {
		t.Fatalf("recorded.yaml: flow %v, %v", isFlow, err)
	}
	pw, yw := pf.Groups[0].Workload, flow.Groups[0].Workload
	if len(pf.Groups) != 1 || pw.Threads != yw.Threads || pw.RampUp != yw.RampUp || pw.Loops != yw.Loops || (pf.Cookies == nil) != (flow.Cookies == nil) {
		t.Errorf("the plan's flow %+v and recorded.yaml's %+v differ", pw, yw)
	}
	if len(flow.Groups) != 1 || flow.Groups[0].Workload.Threads != 5 || flow.Cookies == nil {
		t.Errorf("recorded.yaml: %+v", flow)
	}
}
