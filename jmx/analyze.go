package jmx

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"ratelab/load"
)

// Analysis is what a plan really does when JMeter runs it, and what is
// wrong with it. Its JSON form is the output of "ratelab jmx --json".
type Analysis struct {
	Threads int     `json:"threads"`
	RampUpS float64 `json:"ramp_up_s"`
	// Loops per thread; -1 means forever (bounded only by DurationS).
	Loops int `json:"loops"`
	// DurationS is the scheduler's duration; null when the run is bounded
	// by loops alone.
	DurationS *float64 `json:"duration_s"`
	// EffectiveRPS is the steady-state request rate the plan produces as
	// JMeter runs it, with an instant server; null when nothing paces the
	// threads (the rate is then whatever the server's latency allows).
	EffectiveRPS *float64 `json:"effective_rps"`
	// IntendedRPS is the rate a reader of the plan would expect from its
	// timers: a Constant Throughput Timer's target, read as a total.
	IntendedRPS *float64 `json:"intended_rps"`
	// StartupBurst is the number of requests sent in the first second.
	StartupBurst int `json:"startup_burst"`
	// TotalRequests is the number of requests the plan sends when bounded
	// by loops; null when bounded by time.
	TotalRequests *int64 `json:"total_requests"`
	// Effective explains the load in sentences.
	Effective []string  `json:"effective"`
	Pitfalls  []Pitfall `json:"pitfalls"`
	Warnings  []Warning `json:"warnings"`
	// Faithful is false when ratelab cannot run the plan as JMeter would;
	// Warnings with Unfaithful set say why.
	Faithful bool `json:"faithful"`
}

// Pitfall is a trap the plan falls into, with the fix.
type Pitfall struct {
	ID      string `json:"id"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

// Options are the run-time inputs of a plan: JMeter properties (-J).
type Options struct {
	Properties map[string]string
	// Dir is the plan's directory: a CSV Data Set's relative file name is
	// relative to it, as in JMeter. Empty: the current directory.
	Dir string
}

// writeMethods are the methods that change a resource.
var writeMethods = map[string]bool{"PUT": true, "POST": true, "PATCH": true, "DELETE": true}

// Analyze explains the plan.
func Analyze(p *Plan, opts Options) *Analysis {
	a := &Analysis{Warnings: append([]Warning{}, p.Warnings...), Faithful: true, Pitfalls: []Pitfall{}}
	env, rw := p.resolve(opts)
	a.Warnings = append(a.Warnings, rw...)
	a.Warnings = append(a.Warnings, p.runWarnings(env)...)
	var effective, intended float64
	paced, anyTimer := true, false
	var total int64
	bounded := true
	for _, g := range p.Groups {
		if g.Kind == "setUp" || g.Kind == "tearDown" {
			continue
		}
		a.Threads += g.Threads
		a.RampUpS = math.Max(a.RampUpS, g.RampUp.Seconds())
		if a.Loops == 0 || g.Loops < 0 {
			a.Loops = g.Loops
		}
		if g.Scheduler && g.Duration > 0 {
			d := g.Duration.Seconds()
			a.DurationS = &d
		}
		if g.Loops >= 0 && !(g.Scheduler && g.Duration > 0) {
			total += int64(g.Threads) * int64(g.Loops) * int64(len(g.Samplers))
		} else {
			bounded = false
		}
		gs := analyzeGroup(g, env)
		a.StartupBurst += gs.burst
		a.Effective = append(a.Effective, gs.lines...)
		a.Pitfalls = append(a.Pitfalls, gs.pitfalls...)
		a.Warnings = append(a.Warnings, gs.warnings...)
		if gs.rps < 0 {
			paced = false
		} else {
			effective += gs.rps
		}
		if gs.intended > 0 {
			intended += gs.intended
			anyTimer = true
		}
	}
	if paced {
		a.EffectiveRPS = &effective
	}
	if anyTimer {
		a.IntendedRPS = &intended
	}
	if bounded {
		a.TotalRequests = &total
	}
	for _, w := range a.Warnings {
		if w.Unfaithful {
			a.Faithful = false
		}
	}
	a.Pitfalls = dedupePitfalls(a.Pitfalls)
	return a
}

// SetWarnings replaces the analysis' warnings with ws (those of the flow
// that "ratelab load --jmx" runs, from Plan.Flow) and judges Faithful by
// them.
func (a *Analysis) SetWarnings(ws []Warning) {
	a.Warnings, a.Faithful = append([]Warning{}, ws...), true
	for _, w := range ws {
		if w.Unfaithful {
			a.Faithful = false
		}
	}
}

// planEnv evaluates the user-defined variables once, as JMeter does when
// the test starts.
func planEnv(p *Plan, opts Options) *exprEnv {
	env := &exprEnv{props: opts.Properties, vars: map[string]string{}, csv: map[string]bool{}}
	if env.props == nil {
		env.props = map[string]string{}
	}
	for _, v := range p.Variables {
		env.vars[v.Name] = env.translate(v.Value).text
	}
	for _, g := range p.Groups {
		for _, c := range g.CSV {
			names := c.Variables
			if len(names) == 0 {
				// No variableNames: JMeter takes them from the file's first
				// line; so does ratelab, when the file is there to read.
				names = csvHeader(env.translate(c.Filename).text, c.Delimiter)
			}
			for _, name := range names {
				env.csv[name] = true
			}
		}
	}
	return env
}

type groupAnalysis struct {
	rps      float64 // -1: unpaced
	intended float64
	burst    int
	lines    []string
	pitfalls []Pitfall
	warnings []Warning
}

func analyzeGroup(g *ThreadGroup, env *exprEnv) groupAnalysis {
	var ga groupAnalysis
	ctt := groupCTT(g)
	label := fmt.Sprintf("thread group %q", g.Name)

	// The effective rate: the timer's rules simulated over a minute with an
	// instant server (what JMeter does when the server keeps up).
	switch {
	case g.Open:
		var peak float64
		for _, st := range g.Stages {
			peak = math.Max(peak, math.Max(st.From, st.To))
		}
		ga.rps = peak
		ga.lines = append(ga.lines, fmt.Sprintf("%s: an arrival schedule (open model) of %d stages over %v, at most %s req/s", label, len(g.Stages), g.Duration, num(peak)))
	case ctt != nil:
		timer := &load.ThroughputTimer{Mode: ctt.Mode, PerMinute: ctt.PerMinute}
		// Steady state: the second minute's samples, so the undelayed
		// first samples of every thread do not count.
		twoMin := load.SimulateThroughput(timer, g.Threads, 0, 2*time.Minute) * 2
		oneMin := load.SimulateThroughput(timer, g.Threads, 0, time.Minute)
		ga.rps = (twoMin - oneMin) / 60
		ga.intended = ctt.PerMinute / 60
		ga.lines = append(ga.lines, fmt.Sprintf("Constant Throughput Timer %s/min in mode '%s' × %d threads = %s req/s, not %s req/s",
			num(ctt.PerMinute), CalcModeName(ctt.Mode), g.Threads, num(ga.rps), num(ga.intended)))
		if math.Abs(ga.rps-ga.intended) <= ga.intended/100 {
			ga.lines[len(ga.lines)-1] = fmt.Sprintf("Constant Throughput Timer %s/min in mode '%s' with %d threads = %s req/s in all",
				num(ctt.PerMinute), CalcModeName(ctt.Mode), g.Threads, num(ga.rps))
		}
	case constantDelay(g) > 0:
		d := constantDelay(g)
		ga.rps = float64(g.Threads) / d.Seconds()
		ga.lines = append(ga.lines, fmt.Sprintf("timers pause %v before each request: %d threads × 1/%v = %s req/s at most",
			d, g.Threads, d, num(ga.rps)))
	default:
		ga.rps = -1
		ga.lines = append(ga.lines, fmt.Sprintf("%s: no timer paces the %d threads: each sends its next request as soon as the last one returns, so the rate is whatever the server's latency allows", label, g.Threads))
	}

	ga.burst = startupBurst(g, ctt)
	if g.RampUp == 0 && g.Threads > 1 {
		ga.lines = append(ga.lines, fmt.Sprintf("ramp-up 0: all %d threads send their first request at t=0 with no delay", g.Threads))
	} else if g.Threads > 1 {
		ga.lines = append(ga.lines, fmt.Sprintf("ramp-up %v: a new thread starts every %v", g.RampUp, g.RampUp/time.Duration(g.Threads)))
	}
	ga.lines = append(ga.lines, fmt.Sprintf("%d requests in the first second", ga.burst))

	// Pitfalls.
	if ctt != nil {
		if ctt.Mode == load.ThisThread && g.Threads > 1 {
			ga.pitfalls = append(ga.pitfalls, Pitfall{
				ID: "ctt-per-thread",
				Message: fmt.Sprintf("the Constant Throughput Timer's mode 'this thread only' (JMeter's default) paces each of the %d threads to %s/min on its own: %s req/s in all, not %s req/s",
					g.Threads, num(ctt.PerMinute), num(ga.rps), num(ga.intended)),
				Fix: fmt.Sprintf("set 'Calculate Throughput based on' to 'all active threads in current thread group (shared)' (calcMode 4), or run ratelab load --rate %s/s, which paces all threads from one schedule", num(ga.intended)),
			})
		}
		ga.pitfalls = append(ga.pitfalls, Pitfall{
			ID: "ctt-units",
			Message: fmt.Sprintf("the Constant Throughput Timer's target is in samples per MINUTE: %s means %s req/s",
				num(ctt.PerMinute), num(ctt.PerMinute/60)),
			Fix: fmt.Sprintf("state rates per second where you can: ratelab load --rate %s/s", num(ctt.PerMinute/60)),
		})
		if ctt.Mode.Shared() {
			us := 60_000_000 / ctt.PerMinute
			if ms := math.Floor(math.Floor(us+0.5) / 1000); ms > 0 && math.Abs(ms*1000-us) > us/100 {
				ga.pitfalls = append(ga.pitfalls, Pitfall{
					ID: "ctt-quantized",
					Message: fmt.Sprintf("JMeter's shared modes truncate the %.3f ms interval to %v ms (apache/jmeter#6278): %s req/s instead of %s",
						us/1000, ms, num(1000/ms), num(ctt.PerMinute/60)),
					Fix: "ratelab's own pacer (--rate) keeps nanosecond precision",
				})
			}
		}
	}
	// A start-up burst is a first second busier than the steady state: only
	// a paced plan has a steady rate to exceed (an unpaced one runs as fast
	// as the server answers from the first second on).
	if !g.Open && g.Threads > 1 && ga.rps > 0 && float64(ga.burst) > ga.rps+1 {
		ga.pitfalls = append(ga.pitfalls, Pitfall{
			ID: "startup-burst",
			Message: fmt.Sprintf("ramp-up %v: %d requests in the first second against a steady %s req/s, a burst that trips burst limits before any pacing starts",
				g.RampUp, ga.burst, num(ga.rps)),
			Fix: "use a ramp-up of at least threads ÷ rate seconds, or ratelab's open model (--rate), which has no start-up burst",
		})
	}
	for _, st := range g.requests() {
		s := st.s
		path := env.translate(s.URLPath)
		if res, ok := itemResource(s.Method, path); ok && (g.Threads > 1 || g.Open) {
			ga.pitfalls = append(ga.pitfalls, Pitfall{
				ID: "same-resource",
				Message: fmt.Sprintf("%q: every thread sends %s %s: all of them write the one resource %s, and APIs limit writes per resource, so this limit is hit long before the plan's total rate",
					s.Name, s.Method, path.text, res),
				Fix: "give each thread its own resource: a CSV Data Set of ids, ${__threadNum} or ${__UUID()} in the path (ratelab load --data ids.csv, {{.Thread}} or {{uuid}}), or batch the updates through a bulk endpoint",
			})
		}
		for _, pr := range append(path.problems, samplerProblems(s, env)...) {
			ga.warnings = append(ga.warnings, Warning{Path: s.Path, Line: s.Line, Message: pr, Unfaithful: true})
		}
		if countersPerIteration(s, env) && len(g.requests()) > 1 {
			ga.warnings = append(ga.warnings, Warning{Path: s.Path, Line: s.Line, Unfaithful: true,
				Message: "__counter advances on every call in JMeter but per iteration in ratelab; with several samplers the values differ"})
		}
	}
	if len(g.requests()) > 0 {
		ga.pitfalls = append(ga.pitfalls, Pitfall{
			ID:      "no-retry-after",
			Message: "JMeter does not read Retry-After or rate-limit headers (apache/jmeter#6009): after a 429 every thread keeps sending at full speed and collects more 429s",
			Fix:     "ratelab load --retry-after honor waits as the server says and reports each wait; ratelab records every rate-limit header either way",
		})
	}
	if g.CookieManager && cookiesUnused(g, env) {
		ga.pitfalls = append(ga.pitfalls, Pitfall{ID: "cookie-manager",
			Message: "an HTTP Cookie Manager is enabled, but every request carries its own Authorization header and none posts a login form: the API is token-authenticated, and the per-thread cookie jar only costs memory (and can carry a stale session across iterations)",
			Fix:     "disable it unless the API uses cookie sessions"})
	}
	if g.CacheManager {
		ga.pitfalls = append(ga.pitfalls, Pitfall{ID: "cache-manager",
			Message: "an HTTP Cache Manager is enabled: cached responses are counted as samples but never reach the server",
			Fix:     "disable it for API load tests"})
	}
	if g.SaveResponseData {
		ga.pitfalls = append(ga.pitfalls, Pitfall{ID: "response-data-saved",
			Message: "a listener saves response data: JMeter keeps every body, which costs memory and skews results at load",
			Fix:     "turn off 'Save response data'; ratelab keeps no per-request data in memory"})
	}
	if g.Loops < 0 && !(g.Scheduler && g.Duration > 0) {
		ga.pitfalls = append(ga.pitfalls, Pitfall{ID: "unbounded",
			Message: "the thread group loops forever with no scheduler duration: the test only stops by hand",
			Fix:     "set a loop count or a duration; ratelab refuses unbounded runs"})
	}
	return ga
}

// groupCTT returns the Constant Throughput Timer that paces a group's
// samplers (the first found), or nil.
func groupCTT(g *ThreadGroup) *Timer {
	for _, s := range g.Samplers {
		for _, t := range s.Timers {
			if t.Kind == ConstantThroughput && t.PerMinute > 0 {
				return t
			}
		}
	}
	return nil
}

// constantDelay returns the mean pause the timers and Flow Control
// Actions add before each request.
func constantDelay(g *ThreadGroup) time.Duration {
	reqs := g.requests()
	if len(reqs) == 0 {
		return 0
	}
	var sum time.Duration
	for _, r := range reqs {
		sum += r.pre
	}
	return sum / time.Duration(len(reqs))
}

// startupBurst simulates the first second as JMeter runs the group with an
// instant server: thread i starts at i·RampUp/N, and the timer spaces its
// samples.
func startupBurst(g *ThreadGroup, ctt *Timer) int {
	if g.Open {
		// The arrivals of the schedule's first second.
		n, _ := 0, 0
		for i := uint64(0); i < 1_000_000; i++ {
			at, ok := g.Stages.At(i)
			if !ok || at >= time.Second {
				break
			}
			n++
		}
		return n
	}
	if g.Threads <= 0 || len(g.requests()) == 0 {
		return 0
	}
	start := time.Unix(1_700_000_000, 0)
	var timer *load.ThroughputTimer
	if ctt != nil {
		timer = &load.ThroughputTimer{Mode: ctt.Mode, PerMinute: ctt.PerMinute}
	}
	delay := constantDelay(g)
	state := make([]load.ThroughputThread, g.Threads)
	next := make([]time.Duration, g.Threads)
	sent := make([]int, g.Threads)
	for i := range next {
		next[i] = g.Delay + g.RampUp*time.Duration(i)/time.Duration(g.Threads)
	}
	limitPerThread := -1
	if g.Loops >= 0 {
		limitPerThread = g.Loops * len(g.requests())
	}
	count := 0
	for count < 1_000_000 {
		k := -1
		for i := range next {
			if (limitPerThread < 0 || sent[i] < limitPerThread) && (k < 0 || next[i] < next[k]) {
				k = i
			}
		}
		if k < 0 {
			break
		}
		at := next[k]
		if timer != nil {
			active := 0
			for i := range next {
				if next[i] <= at || sent[i] > 0 {
					active++
				}
			}
			at += timer.Delay(&state[k], start.Add(at), active)
		} else if sent[k] > 0 {
			at += delay
		}
		if at >= time.Second {
			break
		}
		sent[k]++
		count++
		next[k] = at + time.Microsecond
		if timer == nil && delay == 0 {
			// Unpaced: an instant server would allow infinitely many; count
			// one per thread, the burst the ramp-up produces.
			sent[k] = max(sent[k], limitPerThread)
			next[k] = time.Second
		}
	}
	return count
}

// samplerProblems lists the parts of a sampler that ratelab cannot send
// as JMeter would.
func samplerProblems(s *Sampler, env *exprEnv) []string {
	var out []string
	for _, text := range []string{s.Domain, s.Port, s.Protocol, s.Body} {
		out = append(out, env.translate(text).problems...)
	}
	for _, h := range s.Headers {
		out = append(out, env.translate(h.Value).problems...)
	}
	for _, a := range s.Arguments {
		out = append(out, env.translate(a.Value).problems...)
	}
	return dedupe(out)
}

var counterRE = regexp.MustCompile(`\$\{__counter\(`)

func countersPerIteration(s *Sampler, env *exprEnv) bool {
	all := s.URLPath + s.Body
	for _, h := range s.Headers {
		all += h.Value
	}
	for _, v := range env.vars {
		all += v
	}
	return counterRE.MatchString(all)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// dedupePitfalls keeps the first pitfall of each id and sorts by the
// order that explains a throttled run best.
func dedupePitfalls(in []Pitfall) []Pitfall {
	order := map[string]int{"ctt-per-thread": 0, "ctt-units": 1, "startup-burst": 2, "same-resource": 3, "no-retry-after": 4}
	seen := map[string]bool{}
	out := []Pitfall{}
	for _, p := range in {
		if !seen[p.ID] {
			seen[p.ID] = true
			out = append(out, p)
		}
	}
	rank := func(id string) int {
		if r, ok := order[id]; ok {
			return r
		}
		return len(order)
	}
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i].ID) < rank(out[j].ID) })
	return out
}

// num formats a rate without trailing zeros: 10, 0.5, 166.667.
func num(f float64) string {
	s := fmt.Sprintf("%.3f", f)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		s = "0"
	}
	return s
}

// itemResource reports whether method and path write one item resource —
// the same one for every thread: PUT, PATCH or DELETE of a fixed path, or
// a POST to a path whose last segment is an id (a number, a UUID or a
// fixed variable) rather than a collection, a login or a search. It
// returns the resource, as sent.
func itemResource(method string, path translation) (string, bool) {
	if path.varies || len(path.problems) > 0 {
		return "", false
	}
	p := strings.TrimRight(path.text, "/")
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	last := p[strings.LastIndex(p, "/")+1:]
	switch method {
	case "PUT", "PATCH", "DELETE":
		return p, p != ""
	case "POST":
		return p, idSegment.MatchString(last)
	}
	return "", false
}

var idSegment = regexp.MustCompile(`^([0-9]+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{16,})$`)

// cookiesUnused reports whether a group with a Cookie Manager has no use
// for cookies: every request sends an Authorization header (a token API)
// and none posts a form (the usual way to open a cookie session).
func cookiesUnused(g *ThreadGroup, env *exprEnv) bool {
	reqs := g.requests()
	if len(reqs) == 0 {
		return false
	}
	for _, st := range reqs {
		auth := false
		for _, h := range st.s.Headers {
			if strings.EqualFold(h.Name, "Authorization") {
				auth = true
			}
		}
		if v, _ := basicAuth(st.s.auth, "", env); v != "" {
			auth = true
		}
		if !auth || st.s.Method == "POST" && len(st.s.Arguments) > 0 {
			return false
		}
	}
	return true
}

// csvHeader returns the column names on the first line of a CSV file, or
// none when it cannot be read.
func csvHeader(path, delim string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, 1<<16)).ReadString('\n')
	if err != nil && line == "" {
		return nil
	}
	var out []string
	for _, n := range strings.Split(strings.TrimRight(line, "\r\n"), delim) {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
