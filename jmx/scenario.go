package jmx

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"ratelab/limit"
	"ratelab/load"
)

// Scenario returns the load scenario that runs the plan as JMeter runs it:
// the same threads, ramp-up, loops or duration (or the same arrival
// schedule for the open-model thread groups), the same Constant Throughput
// Timer mode (emulated exactly by the load engine), the same requests with
// the timers in their scope before each, and Retry-After ignored. One
// thread group is run: the first that is not a setUp or tearDown group.
// What differs from JMeter is in Analyze's warnings (which decide
// Analysis.Faithful); the warnings returned here are always empty and kept
// for callers that print them.
func (p *Plan) Scenario(opts Options) (*load.Scenario, []Warning, error) {
	env, _ := p.resolve(opts)
	g := p.mainGroup()
	reqs := g.requests()
	if len(reqs) == 0 {
		return nil, nil, fmt.Errorf("thread group %q has no HTTP Request to run", g.Name)
	}
	s := &load.Scenario{Name: p.Name, RetryAfter: load.RetryIgnore}
	w := &s.Workload
	switch {
	case g.Open:
		if len(g.Stages) == 0 {
			return nil, nil, fmt.Errorf("thread group %q has an empty arrival schedule", g.Name)
		}
		w.Stages, w.MaxWorkers = g.Stages, g.MaxWorkers
	default:
		w.Threads, w.RampUp = g.Threads, g.RampUp
		switch {
		case g.Scheduler && g.Duration > 0:
			w.Duration = g.Duration
			if g.Loops > 0 {
				w.Loops = g.Loops
			}
		case g.Loops > 0:
			w.Loops = g.Loops
		default:
			return nil, nil, fmt.Errorf("thread group %q loops forever without a scheduler duration; ratelab refuses unbounded runs: set a loop count or a duration", g.Name)
		}
		if ctt := groupCTT(g); ctt != nil {
			r, err := limit.RateOf(ctt.PerMinute, time.Minute)
			if err != nil {
				return nil, nil, fmt.Errorf("constant throughput timer %s: %w", ctt.Path, err)
			}
			w.Throughput, w.ThroughputMode = r, ctt.Mode
		}
	}
	if len(g.CSV) > 0 {
		c := g.CSV[0]
		s.Data = env.translate(c.Filename).text
		if c.ShareMode == "shareMode.thread" {
			s.DataMode = load.DataPerThread
		}
	}
	for i, sm := range reqs {
		r, _, err := requestOf(sm.s, env)
		if err != nil {
			return nil, nil, err
		}
		if sm.s.ResponseTimeout > 0 {
			s.Timeout = sm.s.ResponseTimeout
		}
		// JMeter runs the timers in a sampler's scope before it: the pause
		// before request i+1 is the think after request i; the pause before
		// the first request ends the previous iteration.
		r.Think = reqs[(i+1)%len(reqs)].pre
		s.Requests = append(s.Requests, r)
	}
	return s, nil, nil
}

// runWarnings lists what the scenario of the plan does differently from
// JMeter beyond what the reader found: the thread groups not run, the CSV
// options not emulated, the delays not taken, the credentials not sent.
func (p *Plan) runWarnings(env *exprEnv) []Warning {
	var warns []Warning
	g := p.mainGroup()
	for _, other := range p.Groups {
		if other == g {
			continue
		}
		msg := "only one thread group is run; this one is not"
		switch other.Kind {
		case "setUp":
			msg = "setUp thread group is not run: ratelab runs one thread group, and the requests it sends before the test are not sent"
		case "tearDown":
			msg = "tearDown thread group is not run: ratelab runs one thread group"
		}
		warns = append(warns, Warning{Path: other.Path, Line: other.Line, Unfaithful: true, Message: msg})
	}
	if g.Delay > 0 {
		warns = append(warns, Warning{Path: g.Path, Line: g.Line, Unfaithful: false,
			Message: fmt.Sprintf("the start-up delay of %v is not applied: ratelab starts at once", g.Delay)})
	}
	if len(g.CSV) > 0 {
		c := g.CSV[0]
		if len(g.CSV) > 1 || len(c.Variables) > 0 || c.Delimiter != "," {
			warns = append(warns, Warning{Path: c.Path, Unfaithful: true,
				Message: "only the first CSV Data Set is read, with a header row naming its columns and ',' as delimiter"})
		}
		if !c.Recycle || c.StopAtEOF {
			warns = append(warns, Warning{Path: c.Path, Unfaithful: true,
				Message: "recycle=false / stopThread=true is not emulated: ratelab recycles the file's rows"})
		}
	}
	reqs := g.requests()
	if len(reqs) > 0 && reqs[0].pre > 0 {
		warns = append(warns, Warning{Path: reqs[0].s.Path, Line: reqs[0].s.Line, Unfaithful: false,
			Message: fmt.Sprintf("the %v pause JMeter takes before each thread's very first request is not taken: ratelab's think time follows a request", reqs[0].pre)})
	}
	for _, st := range reqs {
		if _, ws, err := requestOf(st.s, env); err == nil {
			warns = append(warns, ws...)
		}
	}
	return warns
}

// mainGroup is the thread group Scenario runs.
func (p *Plan) mainGroup() *ThreadGroup {
	for _, g := range p.Groups {
		if g.Kind != "setUp" && g.Kind != "tearDown" {
			return g
		}
	}
	return p.Groups[0]
}

// step is a request with the pause JMeter takes before it: the timers in
// its scope and the Flow Control Actions just before it.
type step struct {
	s   *Sampler
	pre time.Duration
}

func (g *ThreadGroup) requests() []step {
	var out []step
	var pending time.Duration
	for _, s := range g.Samplers {
		if !g.enabledByConditions(s) {
			continue
		}
		d := pending
		for _, t := range s.Timers {
			d += t.Mean()
		}
		if s.Pause {
			pending = d + s.PauseFor
			continue
		}
		out = append(out, step{s: s, pre: d})
		pending = 0
	}
	if pending > 0 && len(out) > 0 {
		// Pauses after the last request come before the next iteration's
		// first one.
		out[0].pre += pending
	}
	return out
}

// enabledByConditions reports whether the If Controllers above s, fixed
// for the run, let it run.
func (g *ThreadGroup) enabledByConditions(s *Sampler) bool {
	for _, c := range s.conds {
		if v, ok := evalCondition(c, g.env); ok && !v {
			return false
		}
	}
	return true
}

// FixOptions say how FixedScenario corrects a plan.
type FixOptions struct {
	// Resources is how many distinct resources to spread writes over;
	// default: the number of threads.
	Resources int
}

// Fixed is a plan corrected by FixedScenario.
type Fixed struct {
	Scenario *load.Scenario
	// Data holds the per-thread resource ids that the corrected requests
	// read ({{.scriptId}} and the like), in memory: pass it to
	// Scenario.Compile. It is nil when no write path is the same for every
	// thread.
	Data *load.DataSet
	// Changes lists what was changed, in words.
	Changes []string
}

// FixedScenario returns the plan corrected for its pitfalls: one global
// schedule at the rate the timer was meant to produce (an open model, so
// no start-up burst and no per-thread multiplication), the same number of
// requests, writes spread over per-thread resources (their ids in
// Fixed.Data), and Retry-After honoured. It writes no file.
func (p *Plan) FixedScenario(opts Options, fix FixOptions) (*Fixed, error) {
	s, _, err := p.Scenario(opts)
	if err != nil {
		return nil, err
	}
	g := p.mainGroup()
	a := Analyze(p, opts)
	out := &Fixed{Scenario: s}
	w := &s.Workload
	if a.IntendedRPS != nil && *a.IntendedRPS > 0 {
		rate, err := limit.RateOf(*a.IntendedRPS, time.Second)
		if err != nil {
			return nil, err
		}
		total := w.Loops * w.Threads * len(s.Requests)
		*w = load.Workload{Rate: rate, Duration: w.Duration, MaxWorkers: max(w.Threads, 1)}
		if total > 0 {
			w.Loops = total
		}
		out.Changes = append(out.Changes, fmt.Sprintf("one global schedule at %s req/s (the timer's target), no per-thread multiplication and no start-up burst", num(*a.IntendedRPS)))
	} else if g.RampUp == 0 && g.Threads > 1 {
		w.RampUp = time.Duration(g.Threads) * time.Second
		out.Changes = append(out.Changes, fmt.Sprintf("ramp-up %v instead of 0", w.RampUp))
	}
	s.RetryAfter = load.RetryHonor
	out.Changes = append(out.Changes, "Retry-After honoured")

	// Spread writes over resources: every fixed variable in a write path
	// becomes a column of a generated data set, one row per resource.
	env := planEnv(p, opts)
	vars := sameResourceVars(p, g, env)
	if len(vars) > 0 {
		n := fix.Resources
		if n <= 0 {
			n = max(g.Threads, 1)
		}
		var buf bytes.Buffer
		if err := writeResourceCSV(&buf, vars, env, n); err != nil {
			return nil, err
		}
		if out.Data, err = load.ReadData(&buf, load.DataShared); err != nil {
			return nil, fmt.Errorf("resource ids: %w", err)
		}
		// Re-translate the requests with the variables bound to the data.
		for _, v := range vars {
			delete(env.vars, v)
			env.csv[v] = true
		}
		reqs := g.requests()
		for i, sm := range reqs {
			r, _, err := requestOf(sm.s, env)
			if err != nil {
				return nil, err
			}
			r.Think = s.Requests[i].Think
			s.Requests[i] = r
		}
		s.Data, s.DataMode = "", load.DataShared
		out.Changes = append(out.Changes, fmt.Sprintf("writes spread over %d resources (%s, one per row of generated ids)", n, strings.Join(vars, ", ")))
	}
	return out, nil
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_.-]*)\}`)

// sameResourceVars returns the user-defined variables that make write
// paths identical for every thread.
func sameResourceVars(p *Plan, g *ThreadGroup, env *exprEnv) []string {
	seen := map[string]bool{}
	for _, s := range g.Samplers {
		if !writeMethods[s.Method] || env.translate(s.URLPath).varies {
			continue
		}
		for _, m := range varRef.FindAllStringSubmatch(s.URLPath, -1) {
			if _, ok := env.vars[m[1]]; ok {
				seen[m[1]] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// writeResourceCSV writes a header naming vars and n rows of ids derived
// from each variable's value: a UUID keeps its form with the row number in
// its last digits, anything else gets "-N" appended.
func writeResourceCSV(w io.Writer, vars []string, env *exprEnv, n int) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(vars)
	for i := 1; i <= n; i++ {
		row := make([]string, len(vars))
		for j, v := range vars {
			base := env.vars[v]
			if uuidRE.MatchString(base) {
				row[j] = fmt.Sprintf("%s%012x", base[:24], i)
			} else {
				row[j] = base + "-" + strconv.Itoa(i)
			}
		}
		_ = cw.Write(row)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write resource ids: %w", err)
	}
	return nil
}

func hasRandomTimer(g *ThreadGroup) bool {
	for _, s := range g.Samplers {
		for _, t := range s.Timers {
			if t.Kind == UniformRandom {
				return true
			}
		}
	}
	return false
}

// requestOf translates a sampler into a load request.
func requestOf(s *Sampler, env *exprEnv) (load.RequestSpec, []Warning, error) {
	var warns []Warning
	r := load.RequestSpec{Name: s.Name, Method: env.translate(s.Method).text}
	proto := strings.ToLower(env.translate(s.Protocol).text)
	host := env.translate(s.Domain).text
	path := env.translate(s.URLPath).text
	if host == "" && (strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://")) {
		// A full URL in the path field, as JMeter allows.
		r.URL = path
	} else {
		if proto == "" {
			proto = "http"
		}
		if host == "" {
			return r, warns, fmt.Errorf("%s (line %d): the HTTP Request has no server name, and no HTTP Request Defaults in its scope give one", s.Path, s.Line)
		}
		if port := env.translate(s.Port).text; port != "" && !(proto == "http" && port == "80") && !(proto == "https" && port == "443") {
			host += ":" + port
		}
		if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "{{") {
			path = "/" + path
		}
		r.URL = proto + "://" + host + path
	}
	for _, h := range s.Headers {
		r.Headers = append(r.Headers, load.Header{Name: h.Name, Value: env.translate(h.Value).text})
	}
	if value, bad := basicAuth(s.auth, r.URL, env); value != "" {
		if !hasHeader(r.Headers, "Authorization") {
			r.Headers = append(r.Headers, load.Header{Name: "Authorization", Value: value})
		}
	} else if bad != nil {
		warns = append(warns, Warning{Path: bad.path, Line: bad.line, Unfaithful: true,
			Message: fmt.Sprintf("Authorization Manager entry for %q is not emulated (only Basic credentials fixed before the run are)", bad.URL)})
	}
	r.Body = env.translate(s.Body).text
	if r.Body != "" && !hasHeader(r.Headers, "Content-Type") {
		// JMeter's HttpClient 4 sampler labels a raw body it has no
		// Content-Type header for: a POST as a form, any other method as
		// text in the sampler's encoding.
		ct := "application/x-www-form-urlencoded"
		if r.Method != "POST" {
			enc := env.translate(s.Encoding).text
			if enc == "" {
				enc = "ISO-8859-1"
			}
			ct = "text/plain; charset=" + enc
		}
		r.Headers = append(r.Headers, load.Header{Name: "Content-Type", Value: ct})
	}
	if len(s.Arguments) > 0 {
		q := make([]string, 0, len(s.Arguments))
		for _, a := range s.Arguments {
			q = append(q, url.QueryEscape(env.translate(a.Name).text)+"="+escapeKeepingActions(env.translate(a.Value).text))
		}
		enc := strings.Join(q, "&")
		if r.Method == "GET" || r.Method == "DELETE" || r.Method == "HEAD" {
			sep := "?"
			if strings.Contains(r.URL, "?") {
				sep = "&"
			}
			r.URL += sep + enc
		} else {
			r.Body = enc
			if !hasHeader(r.Headers, "Content-Type") {
				r.Headers = append(r.Headers, load.Header{Name: "Content-Type", Value: "application/x-www-form-urlencoded"})
			}
		}
	}
	return r, warns, nil
}

func hasHeader(hs []load.Header, name string) bool {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return true
		}
	}
	return false
}

// escapeKeepingActions query-escapes s but leaves {{…}} actions intact.
func escapeKeepingActions(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(url.QueryEscape(s))
			return b.String()
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			b.WriteString(url.QueryEscape(s))
			return b.String()
		}
		b.WriteString(url.QueryEscape(s[:i]))
		b.WriteString(s[i : i+j+2])
		s = s[i+j+2:]
	}
}

// scenarioDoc is a scenario in the file format of load.ParseScenario.
type scenarioDoc struct {
	Name           string       `yaml:"name,omitempty" json:"name,omitempty"`
	Threads        int          `yaml:"threads,omitempty" json:"threads,omitempty"`
	RampUp         string       `yaml:"ramp_up,omitempty" json:"ramp_up,omitempty"`
	Loops          int          `yaml:"loops,omitempty" json:"loops,omitempty"`
	Duration       string       `yaml:"duration,omitempty" json:"duration,omitempty"`
	Rate           string       `yaml:"rate,omitempty" json:"rate,omitempty"`
	MaxWorkers     int          `yaml:"max_workers,omitempty" json:"max_workers,omitempty"`
	Throughput     string       `yaml:"throughput,omitempty" json:"throughput,omitempty"`
	ThroughputMode string       `yaml:"throughput_mode,omitempty" json:"throughput_mode,omitempty"`
	RetryAfter     string       `yaml:"retry_after" json:"retry_after"`
	Timeout        string       `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Think          string       `yaml:"think,omitempty" json:"think,omitempty"`
	Data           *dataDoc     `yaml:"data,omitempty" json:"data,omitempty"`
	Requests       []requestDoc `yaml:"requests" json:"requests"`
}

type dataDoc struct {
	File string `yaml:"file" json:"file"`
	Mode string `yaml:"mode" json:"mode"`
}

type requestDoc struct {
	Name    string            `yaml:"name,omitempty" json:"name,omitempty"`
	Method  string            `yaml:"method" json:"method"`
	URL     string            `yaml:"url" json:"url"`
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	Body    string            `yaml:"body,omitempty" json:"body,omitempty"`
	Think   string            `yaml:"think,omitempty" json:"think,omitempty"`
}

// ScenarioDocument returns s as plain data in the scenario file format,
// for JSON output.
func ScenarioDocument(s *load.Scenario) any { return docOf(s) }

// ScenarioYAML writes s in the scenario file format that
// "ratelab load FILE" reads (see load.ParseScenario).
func ScenarioYAML(s *load.Scenario) ([]byte, error) {
	b, err := yaml.Marshal(docOf(s))
	if err != nil {
		return nil, fmt.Errorf("scenario yaml: %w", err)
	}
	return b, nil
}

func docOf(s *load.Scenario) *scenarioDoc {
	dur := func(d time.Duration) string {
		if d <= 0 {
			return ""
		}
		return d.String()
	}
	w := s.Workload
	out := &scenarioDoc{
		Name: s.Name, Threads: w.Threads, RampUp: dur(w.RampUp), Loops: w.Loops, Duration: dur(w.Duration),
		MaxWorkers: w.MaxWorkers, RetryAfter: s.RetryAfter.String(), Timeout: dur(s.Timeout), Think: dur(s.Think),
	}
	if w.Rate.Count > 0 {
		out.Rate = w.Rate.String()
	}
	if w.Throughput.Count > 0 {
		out.Throughput = w.Throughput.String()
		out.ThroughputMode = w.ThroughputMode.String()
	}
	if s.Data != "" {
		out.Data = &dataDoc{File: s.Data, Mode: s.DataMode.String()}
	}
	for _, r := range s.Requests {
		rq := requestDoc{Name: r.Name, Method: r.Method, URL: r.URL, Body: r.Body, Think: dur(r.Think)}
		for _, h := range r.Headers {
			if rq.Headers == nil {
				rq.Headers = map[string]string{}
			}
			rq.Headers[h.Name] = h.Value
		}
		out.Requests = append(out.Requests, rq)
	}
	return out
}
