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
// the same threads, ramp-up, loops or duration, the same Constant
// Throughput Timer mode (emulated exactly by the load engine), the same
// requests, and Retry-After ignored. Only the first thread group is run;
// further ones are reported by Analyze as unfaithful.
func (p *Plan) Scenario(opts Options) (*load.Scenario, []Warning, error) {
	g := p.Groups[0]
	env := planEnv(p, opts)
	var warns []Warning
	if len(p.Groups) > 1 {
		for _, other := range p.Groups[1:] {
			warns = append(warns, Warning{Path: other.Path, Line: other.Line, Unfaithful: true,
				Message: "only the first thread group is run; this one is not"})
		}
	}
	if len(g.Samplers) == 0 {
		return nil, warns, fmt.Errorf("thread group %q has no HTTP Request to run", g.Name)
	}
	s := &load.Scenario{Name: p.Name, RetryAfter: load.RetryIgnore}
	w := &s.Workload
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
		return nil, warns, fmt.Errorf("thread group %q loops forever without a scheduler duration; ratelab refuses unbounded runs: set a loop count or a duration", g.Name)
	}
	if g.Delay > 0 {
		warns = append(warns, Warning{Path: g.Path, Line: g.Line, Unfaithful: false,
			Message: fmt.Sprintf("the scheduler's start-up delay of %v is not applied", g.Delay)})
	}
	if ctt := groupCTT(g); ctt != nil {
		r, err := limit.RateOf(ctt.PerMinute, time.Minute)
		if err != nil {
			return nil, warns, fmt.Errorf("constant throughput timer %s: %w", ctt.Path, err)
		}
		w.Throughput, w.ThroughputMode = r, ctt.Mode
	}
	if len(g.CSV) > 0 {
		c := g.CSV[0]
		s.Data = env.translate(c.Filename).text
		if c.ShareMode == "shareMode.thread" {
			s.DataMode = load.DataPerThread
		}
		if len(g.CSV) > 1 || len(c.Variables) > 0 || c.Delimiter != "," {
			warns = append(warns, Warning{Path: c.Path, Unfaithful: true,
				Message: "only the first CSV Data Set is read, with a header row naming its columns and ',' as delimiter"})
		}
	}
	for _, sm := range g.Samplers {
		r, err := requestOf(sm, env)
		if err != nil {
			return nil, warns, err
		}
		if sm.ResponseTimeout > 0 {
			s.Timeout = sm.ResponseTimeout
		}
		s.Requests = append(s.Requests, r)
	}
	if d := constantDelay(g); d > 0 {
		s.Think = d * time.Duration(len(g.Samplers))
		if hasRandomTimer(g) {
			warns = append(warns, Warning{Path: g.Path, Line: g.Line, Unfaithful: true,
				Message: "a Uniform Random Timer is run as its mean delay"})
		}
	}
	return s, warns, nil
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
	g := p.Groups[0]
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
		s.Requests = s.Requests[:0]
		for _, sm := range g.Samplers {
			r, err := requestOf(sm, env)
			if err != nil {
				return nil, err
			}
			s.Requests = append(s.Requests, r)
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
func requestOf(s *Sampler, env *exprEnv) (load.RequestSpec, error) {
	r := load.RequestSpec{Name: s.Name, Method: s.Method}
	proto := strings.ToLower(env.translate(s.Protocol).text)
	if proto == "" {
		proto = "http"
	}
	host := env.translate(s.Domain).text
	if host == "" {
		return r, fmt.Errorf("%s (line %d): the HTTP Request has no server name (HTTP Request Defaults are not supported)", s.Path, s.Line)
	}
	if port := env.translate(s.Port).text; port != "" {
		host += ":" + port
	}
	path := env.translate(s.URLPath).text
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "{{") {
		path = "/" + path
	}
	r.URL = proto + "://" + host + path
	for _, h := range s.Headers {
		r.Headers = append(r.Headers, load.Header{Name: h.Name, Value: env.translate(h.Value).text})
	}
	r.Body = env.translate(s.Body).text
	if len(s.Arguments) > 0 {
		q := make([]string, 0, len(s.Arguments))
		for _, a := range s.Arguments {
			q = append(q, url.QueryEscape(env.translate(a.Name).text)+"="+escapeKeepingActions(env.translate(a.Value).text))
		}
		enc := strings.Join(q, "&")
		if s.Method == "GET" || s.Method == "DELETE" || s.Method == "HEAD" {
			sep := "?"
			if strings.Contains(r.URL, "?") {
				sep = "&"
			}
			r.URL += sep + enc
		} else {
			r.Body = enc
			r.Headers = append(r.Headers, load.Header{Name: "Content-Type", Value: "application/x-www-form-urlencoded"})
		}
	}
	return r, nil
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
