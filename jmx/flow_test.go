package jmx

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ratelab/load"
)

// flowServer answers the paths of testdata/flow-elements.jmx and records
// what each user (by its X-User header) sent.
type flowServer struct {
	mu   sync.Mutex
	sent map[string][]string
}

func (s *flowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	line := r.Method + " " + r.URL.RequestURI()
	if c, err := r.Cookie("sid"); err == nil {
		line += " cookie=" + c.Value
	}
	if r.Method == "POST" {
		_ = r.ParseForm()
		if p := r.PostForm.Get("pass"); p != "" {
			line += " pass=" + p
		}
	}
	s.mu.Lock()
	s.sent[r.Header.Get("X-User")] = append(s.sent[r.Header.Get("X-User")], line)
	s.mu.Unlock()
	if r.URL.Path == "/api/login" {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s-" + r.Header.Get("X-User")})
		w.Write([]byte(`{"token":"t-42","items":["a","b"]}`))
	}
}

// A plan's logic runs as JMeter runs it: the setUp group first, CSV rows
// by a header line, extractors feeding a ForEach and an If, the Cookie
// Manager's jar, Once Only, a Loop, a pause with its timer, and a
// Transaction's own sample.
func TestFlowRunsThePlansLogic(t *testing.T) {
	srv := &flowServer{sent: map[string][]string{}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	u, _ := url.Parse(hs.URL)
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "users.csv")
	if err := os.WriteFile(csvFile, []byte("user;pass\nada;pa\nbob;pb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("testdata/flow-elements.jmx")
	if err != nil {
		t.Fatal(err)
	}
	p := readPlan(t, string(src))
	opts := Options{Properties: map[string]string{"port": u.Port(), "csv": csvFile}}
	f, ws, err := p.Flow(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := unfaithful(ws); len(got) > 0 {
		t.Fatalf("unfaithful: %v", got)
	}
	var mu sync.Mutex
	var labels []string
	_, err = load.Run(context.Background(), load.Config{Flow: f, Sink: func(r *load.Result) {
		mu.Lock()
		labels = append(labels, r.Label)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := srv.sent[""]; len(got) != 1 || got[0] != "POST /api/setup" {
		t.Errorf("setUp group sent %v", got)
	}
	// Two users, two iterations each, one CSV row each iteration, shared:
	// the four rows go ada, bob, ada, bob in some order of the users.
	var all []string
	for _, user := range []string{"ada", "bob"} {
		got := srv.sent[user]
		all = append(all, got...)
		want := 2*6 + 1 // login, 2 items, check, 2 polls per iteration; once
		if len(got) != want {
			t.Errorf("%s: %d requests, want %d: %v", user, len(got), want, got)
			continue
		}
		if got[0] != "POST /api/login pass=p"+user[:1] {
			t.Errorf("%s: first request %q", user, got[0])
		}
		text := strings.Join(got, "\n")
		for _, want := range []string{"GET /api/item/a?tok=t-42&n=1", "GET /api/item/b?tok=t-42&n=1", "GET /api/check cookie=s-" + user} {
			if !strings.Contains(text, want) {
				t.Errorf("%s: no %q in\n%s", user, want, text)
			}
		}
	}
	text := strings.Join(all, "\n")
	if n := strings.Count(text, "GET /api/once"); n != 2 {
		t.Errorf("once only: %d requests, want one per user", n)
	}
	if strings.Contains(text, "/never") {
		t.Error("the If Controller whose condition is false ran")
	}
	if n := strings.Count(text, "GET /api/poll"); n != 8 {
		t.Errorf("loop: %d polls, want 2 per iteration", n)
	}
	var tx int
	for _, l := range labels {
		if l == "tx-login" {
			tx++
		}
	}
	if tx != 4 {
		t.Errorf("transaction samples: %d, want 4", tx)
	}
}

// Scripts are reported with their path and line, and never called
// faithful; an element that is not emulated is named.
func TestFlowReportsScripts(t *testing.T) {
	src := plan("", `<JSR223PreProcessor testname="prep"><stringProp name="script">vars.put("a","b")</stringProp></JSR223PreProcessor><hashTree/>
`+sampler("s", "h", "/x/${a}", ""), 1)
	p := readPlan(t, src)
	_, ws, err := p.Flow(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, w := range ws {
		if w.Unfaithful && strings.Contains(w.Message, "JSR223PreProcessor is a script") && w.Line > 0 && strings.HasSuffix(w.Path, "prep") {
			found = true
		}
	}
	if !found {
		t.Errorf("no warning for the script with its path and line: %v", ws)
	}
}

// A condition outside the subset is refused with a warning, not run
// another way; one inside it is a template the flow decides at run time.
func TestFlowConditions(t *testing.T) {
	for _, c := range []struct {
		cond, want string
		ok         bool
	}{
		{`${__jexl3("${x}" == "y")}`, `"{{.x}}" == "y"`, true},
		{`${__groovy(${n} > 5 && ${n} < 9)}`, `{{.n}} > 5 && {{.n}} < 9`, true},
		{`"${x}".equals("y")`, `"{{.x}}" == "y"`, true},
		{`${JMeterThread.last_sample_ok}`, `{{.JMeterThread.last_sample_ok}}`, true},
		{`${__groovy(vars.get("x").length() > 2)}`, "", false},
	} {
		fb := &flowBuilder{plan: &Plan{}, fixed: &exprEnv{props: map[string]string{}, vars: map[string]string{}, csv: map[string]bool{}}}
		fb.env = &exprEnv{props: fb.fixed.props, vars: fb.fixed.vars, csv: fb.fixed.csv, runtime: true, dyn: map[string]bool{}}
		got, ok := fb.condition(&element{path: "P / If", line: 3}, c.cond, true)
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %q %v, want %q %v", c.cond, got, ok, c.want, c.ok)
		}
		if !ok && (len(fb.warns) != 1 || !fb.warns[0].Unfaithful) {
			t.Errorf("%s: warnings %v", c.cond, fb.warns)
		}
	}
}

// HTTP Request Defaults that retrieve embedded resources make the samplers
// in their scope fetch them, with the defaults' pool and pattern unless
// the sampler sets its own; a sampler's own image_parser, false included,
// wins. A Response Assertion with no pattern checks nothing, in JMeter as
// here.
func TestFlowDefaultsEmbeddedAndEmptyAssertion(t *testing.T) {
	defaults := `<ConfigTestElement testname="D"><elementProp name="HTTPsampler.Arguments" elementType="Arguments"/>
  <stringProp name="HTTPSampler.domain">h</stringProp><boolProp name="HTTPSampler.image_parser">true</boolProp>
  <boolProp name="HTTPSampler.concurrentDwn">true</boolProp><stringProp name="HTTPSampler.concurrentPool">${__P(pool,3)}</stringProp>
  <stringProp name="HTTPSampler.embedded_url_re">.*/static/.*</stringProp></ConfigTestElement><hashTree/>`
	own := func(name, props string) string {
		return `<HTTPSamplerProxy testname="` + name + `"><stringProp name="HTTPSampler.path">/` + name + `</stringProp>` + props + `</HTTPSamplerProxy><hashTree/>`
	}
	samplers := own("inherits", "") +
		own("off", `<boolProp name="HTTPSampler.image_parser">false</boolProp>`) +
		own("mine", `<stringProp name="HTTPSampler.embedded_url_re">.*\.png</stringProp><boolProp name="HTTPSampler.concurrentDwn">false</boolProp>
  <stringProp name="HTTPSampler.embedded_url_exclude_re">.*/ads/.*</stringProp>`) +
		own("runtime", `<stringProp name="HTTPSampler.embedded_url_re">${site}.*</stringProp>`)
	p := readPlan(t, plan(defaults, samplers, 1))
	f, ws, err := p.Flow(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []*load.Embedded
	for _, st := range f.Groups[0].Steps {
		got = append(got, st.(*load.Request).Embedded)
	}
	want := []*load.Embedded{{Match: ".*/static/.*", Concurrent: 3}, nil, {Match: `.*\.png`, Exclude: ".*/ads/.*"}, {Concurrent: 3}}
	if len(got) != len(want) {
		t.Fatalf("%d requests", len(got))
	}
	for i := range want {
		if (got[i] == nil) != (want[i] == nil) || (got[i] != nil && *got[i] != *want[i]) {
			t.Errorf("request %d: embedded %+v, want %+v", i, got[i], want[i])
		}
	}
	if u := unfaithful(ws); len(u) != 1 || !strings.Contains(u[0], "embedded_url_re \"${site}.*\" depends on run-time values") {
		t.Errorf("unfaithful: %q", u)
	}
	if err := ValidateShape(f); err != nil {
		t.Errorf("the flow does not validate: %v", err)
	}
	empty := `<ResponseAssertion testname="A"><collectionProp name="Asserion.test_strings"/>
  <stringProp name="Assertion.test_field">Assertion.response_data</stringProp><intProp name="Assertion.test_type">2</intProp></ResponseAssertion><hashTree/>`
	p = readPlan(t, plan("", sampler("s", "h", "/x", empty), 1))
	f, ws, err = p.Flow(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := unfaithful(ws); len(got) > 0 {
		t.Errorf("unfaithful: %v", got)
	}
	if err := ValidateShape(f); err != nil {
		t.Errorf("the flow does not validate: %v", err)
	}
}

// Jayway paths without "$." are read as Jayway reads them; a path that
// does not compile fails the samples it asserts, as in JMeter.
func TestFlowJSONPaths(t *testing.T) {
	for in, want := range map[string]string{"slideshow.author": "$.slideshow.author", "$.a[0]": "$.a[0]"} {
		if got, ok := jsonPath(in); !ok || got != want {
			t.Errorf("jsonPath(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	if _, ok := jsonPath("$."); ok {
		t.Error(`"$." compiles`)
	}
	bad := `<JSONPathAssertion testname="A"><stringProp name="JSON_PATH">$.</stringProp></JSONPathAssertion><hashTree/>`
	p := readPlan(t, plan("", sampler("s", "h", "/x", bad), 1))
	f, ws, err := p.Flow(Options{})
	if err != nil || len(unfaithful(ws)) > 0 {
		t.Fatalf("%v %v", err, unfaithful(ws))
	}
	a := f.Groups[0].Steps[0].(*load.Request).Assert
	if len(a) != 1 || a[0].Kind != load.AssertResponse || a[0].Field != load.FieldCode {
		t.Errorf("assertion %+v, want one that fails every sample", a)
	}
	if err := ValidateShape(f); err != nil {
		t.Error(err)
	}
}

// __time formats become Go layouts that write what SimpleDateFormat
// writes; what Go cannot write is a warning.
func TestTimeFormats(t *testing.T) {
	at := time.Date(2026, 12, 3, 7, 4, 5, 678_000_000, time.Local)
	env := &exprEnv{props: map[string]string{}, vars: map[string]string{}, csv: map[string]bool{}}
	for in, want := range map[string]string{
		"${__time(yyyy-MM-dd'T'HH:mm:ss.SSS,)}": "2026-12-03T07:04:05.678",
		"${__time(dd/MM/yy,)}":                  "03/12/26",
		"${__time(YMD,)}":                       "20261203",
		"${__time(YMDHMS,)}":                    "20261203-070405",
		"${__time(EEE MMM d,)}":                 "Thu Dec 3",
		"${__time(/1000,)}":                     strconv.FormatInt(at.UnixMilli()/1000, 10),
	} {
		tr := env.translate(in)
		if len(tr.problems) > 0 {
			t.Errorf("%s: %v", in, tr.problems)
			continue
		}
		tm, err := load.CompileTemplate(tr.text, nil)
		if err != nil {
			t.Errorf("%s → %s: %v", in, tr.text, err)
			continue
		}
		if got := tm.Execute(&load.Vars{Now: at}); got != want {
			t.Errorf("%s → %s = %q, want %q", in, tr.text, got, want)
		}
	}
	for _, bad := range []string{"${__time(H:mm,)}", "${__time('at 5' HH,)}", "${__time(SSS,)}", "${__time(ww,)}"} {
		if tr := env.translate(bad); len(tr.problems) == 0 {
			t.Errorf("%s: no warning (%s)", bad, tr.text)
		}
	}
}

// The Stepping and Ultimate Thread Groups run in the flow as the plugins
// schedule each thread: no warning for their steps, rows and shutdowns.
func TestFlowPluginThreadWindows(t *testing.T) {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	stepping := `<kg.apc.jmeter.threads.SteppingThreadGroup testname="S"><stringProp name="ThreadGroup.num_threads">15</stringProp>
<stringProp name="Threads initial delay">5</stringProp><stringProp name="Start users count">5</stringProp>
<stringProp name="Start users count burst">10</stringProp><stringProp name="Start users period">30</stringProp>
<stringProp name="Stop users count">4</stringProp><stringProp name="Stop users period">2</stringProp>
<stringProp name="flighttime">60</stringProp><stringProp name="rampUp">10</stringProp>
<elementProp name="ThreadGroup.main_controller" elementType="LoopController"><intProp name="LoopController.loops">-1</intProp></elementProp>
</kg.apc.jmeter.threads.SteppingThreadGroup><hashTree>` + sampler("s", "h", "/x", "") + `</hashTree>`
	ultimate := `<kg.apc.jmeter.threads.UltimateThreadGroup testname="U"><collectionProp name="ultimatethreadgroupdata">
<collectionProp name="1"><stringProp name="1">2</stringProp><stringProp name="2">1</stringProp><stringProp name="3">4</stringProp><stringProp name="4">10</stringProp><stringProp name="5">6</stringProp></collectionProp>
<collectionProp name="2"><stringProp name="1">1</stringProp><stringProp name="2">0</stringProp><stringProp name="3">0</stringProp><stringProp name="4">3</stringProp><stringProp name="5">0</stringProp></collectionProp>
</collectionProp><elementProp name="ThreadGroup.main_controller" elementType="LoopController"><intProp name="LoopController.loops">-1</intProp></elementProp>
</kg.apc.jmeter.threads.UltimateThreadGroup><hashTree>` + sampler("s", "h", "/x", "") + `</hashTree>`
	src := `<jmeterTestPlan version="1.2"><hashTree><TestPlan testname="P"/><hashTree>` + stepping + ultimate + `</hashTree></hashTree></jmeterTestPlan>`
	f, ws, err := readPlan(t, src).Flow(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if u := unfaithful(ws); len(u) > 0 {
		t.Errorf("unfaithful: %q", u)
	}
	if len(f.Groups) != 2 {
		t.Fatalf("%d groups", len(f.Groups))
	}
	// The plugin's own test's figures: a burst of 10 threads 1 s apart
	// from 5 s, then 5 more 2 s apart 31 s after the 10th; the last step
	// ends at 5 + 30 + 10 s, the flight 60 s later, and then 4 threads
	// stop every 2 s.
	var want []load.ThreadWindow
	for k := range int64(15) {
		start := 5000 + 1000*k
		if k >= 10 {
			start = 5000 + 40000 + 2000*(k-10)
		}
		want = append(want, load.ThreadWindow{Start: ms(start), Stop: ms(5000 + 40000 + 10000 + 60000 + 2000*(k/4))})
	}
	if g := f.Groups[0]; !slices.Equal(g.Windows, want) || g.Workload.Threads != 15 || g.Delay != 0 || g.Workload.Duration != ms(121000) {
		t.Errorf("stepping: %+v\nwant windows %v", g, want)
	}
	// Row 1's thread k of n starts at delay + rampUp·(n−k)/n and stops at
	// delay + rampUp + hold + shutdown·(n−k)/n; row 2 after it.
	want = []load.ThreadWindow{{Start: ms(5000), Stop: ms(21000)}, {Start: ms(3000), Stop: ms(18000)}, {Start: 0, Stop: ms(3000)}}
	if g := f.Groups[1]; !slices.Equal(g.Windows, want) || g.Workload.Threads != 3 || g.Workload.Duration != ms(21000) {
		t.Errorf("ultimate: %+v\nwant windows %v", g, want)
	}
	if err := ValidateShape(f); err != nil {
		t.Error(err)
	}
}
