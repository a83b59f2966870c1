// Package jmx reads JMeter test plans (.jmx files, JMeter 2.x to 5.6), turns them into
// ratelab load scenarios, and explains what load they really produce and
// which of JMeter's traps they fall into.
//
// Read parses a plan into a Plan: its thread groups, HTTP samplers,
// headers, timers and CSV data sets, with every element it does not
// support named in a warning (never silently dropped). Analyze computes the
// effective request rate as JMeter runs the plan, the start-up burst and
// the pitfalls, each with its fix. Flow translates the plan into the load
// engine's flow of virtual users (every thread group, controllers, timers,
// extractors, assertions, cookies, CSV sets), which "ratelab load --jmx"
// runs, with warnings naming what is not emulated; Scenario and
// FixedScenario give its requests as a flat request list, as written or
// corrected for its pitfalls (--fix).
//
// Which elements and functions are emulated, and how well real plans fare,
// is in CORPUS.md; the oracle package under jmx/oracle checks the
// emulation against a real JMeter 2.13.
package jmx

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"ratelab/load"
)

// Plan is a JMeter test plan as ratelab understands it.
type Plan struct {
	Name string
	// Variables are the Test Plan's user-defined variables, in order, with
	// their raw values (which may call functions such as __P).
	Variables []Variable
	Groups    []*ThreadGroup
	// Warnings name every element that is not run as JMeter would run it.
	Warnings []Warning

	cookieManager, cacheManager bool // at Test Plan level
	// root is the enabled Test Plan element, which Flow translates.
	root *element
}

// Variable is a user-defined variable.
type Variable struct{ Name, Value string }

// Warning names an element of the plan, by its path in the tree and its
// line, that ratelab does not run as JMeter would.
type Warning struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Message string `json:"message"`
	// Unfaithful is set when the difference changes the load the plan
	// produces; a listener that is ignored, say, does not.
	Unfaithful bool `json:"unfaithful"`
}

func (w Warning) String() string {
	return fmt.Sprintf("%s (line %d): %s", w.Path, w.Line, w.Message)
}

// ThreadGroup is a JMeter thread group and the samplers it runs.
type ThreadGroup struct {
	Name string
	Path string
	Line int
	// Kind is the thread group's class: thread, setUp, tearDown, or a
	// plugin's (stepping, ultimate, concurrency, arrivals, freeform,
	// openmodel).
	Kind string
	// Threads is the number of threads; RampUp the time over which they
	// start (thread i at i·RampUp/Threads); Loops the iterations per thread,
	// -1 for forever.
	Threads int
	RampUp  time.Duration
	Loops   int
	// Scheduler, when set, bounds the run by Duration after Delay.
	Scheduler bool
	Duration  time.Duration
	Delay     time.Duration
	// OnError is the action on a sampler error: continue, startnextloop,
	// stopthread, stoptest, stoptestnow.
	OnError  string
	Samplers []*Sampler
	CSV      []*CSVDataSet
	// Managers in scope that change how requests are sent.
	CookieManager    bool
	CacheManager     bool
	SaveResponseData bool
	// Open is set for an arrival-rate group (Arrivals, Free-Form Arrivals,
	// Open Model, or a Throughput Shaping Timer): Stages is its schedule in
	// requests per second, MaxWorkers its bound on concurrency (0: none).
	Open       bool
	Stages     load.Stages
	MaxWorkers int
	// Windows is the Stepping or Ultimate Thread Group's schedule per
	// thread, from the start of the test, Delay included (see
	// load.ThreadGroup);
	// Threads, RampUp and Duration are its linear approximation, for the
	// request list. windowed are the warnings about what only the
	// windows express, which a flow does not give.
	Windows  []load.ThreadWindow
	windowed map[string]bool

	el       *element
	env      *exprEnv
	warnings []Warning
	shaping  []*Timer
}

// Sampler is an HTTP request of a thread group, with everything in its
// scope: headers from every Header Manager above it, its timers.
type Sampler struct {
	Name string
	Path string // path of the element in the tree
	Line int
	// Raw JMeter strings, ${…} expressions unevaluated.
	Method    string
	Protocol  string
	Domain    string
	Port      string
	URLPath   string
	Body      string // the raw body, when HTTPSampler.postBodyRaw
	Encoding  string // HTTPSampler.contentEncoding
	Arguments []Argument
	Headers   []Header
	KeepAlive bool
	// ConnectTimeout and ResponseTimeout are 0 when unset.
	ConnectTimeout  time.Duration
	ResponseTimeout time.Duration
	Timers          []*Timer
	// Pause is set for a Flow Control Action: no request, a pause of
	// PauseFor (and its timers) before the next request.
	Pause    bool
	PauseFor time.Duration

	auth  []authEntry
	conds []string
}

// Argument is a query or form parameter of a sampler.
type Argument struct{ Name, Value string }

// Header is a request header from a Header Manager.
type Header struct{ Name, Value string }

// TimerKind is the kind of a JMeter timer.
type TimerKind int

// The timers ratelab reads.
const (
	ConstantThroughput TimerKind = iota
	Constant
	UniformRandom
	GaussianRandom
	PoissonRandom
	// ShapingTimer is the Throughput Shaping Timer plugin.
	ShapingTimer
	PreciseThroughput
	Synchronizing
)

// Timer is a timer in a sampler's scope.
type Timer struct {
	Kind TimerKind
	Path string
	Line int
	// PerMinute and Mode for a Constant Throughput Timer: the target in
	// samples per minute and JMeter's calcMode 0–4.
	PerMinute float64
	Mode      load.ThroughputMode
	// Delay (and Range, for a Uniform Random Timer) for the others.
	Delay time.Duration
	Range time.Duration
	// Stages is a Throughput Shaping Timer's schedule.
	Stages load.Stages

	el *element
}

// CSVDataSet is a CSV Data Set Config in a thread group's scope.
type CSVDataSet struct {
	Path      string
	Filename  string
	Variables []string // variableNames; empty means the file's header row
	Delimiter string
	Recycle   bool
	StopAtEOF bool
	// ShareMode is shareMode.all, shareMode.group or shareMode.thread.
	ShareMode string
}

// Calc modes of the Constant Throughput Timer, as stored in calcMode.
var calcModeNames = []string{
	"this thread only",
	"all active threads",
	"all active threads in current thread group",
	"all active threads (shared)",
	"all active threads in current thread group (shared)",
}

// CalcModeName returns JMeter's name for a calcMode, as its GUI shows it.
func CalcModeName(mode load.ThroughputMode) string {
	if mode >= 0 && int(mode) < len(calcModeNames) {
		return calcModeNames[mode]
	}
	return "mode " + strconv.Itoa(int(mode))
}

// parseCalcMode reads calcMode as an integer or, in plans saved by older
// JMeter versions, as its (English) name.
func parseCalcMode(s string) (load.ThroughputMode, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(calcModeNames) {
		return load.ThroughputMode(n), true
	}
	for i, name := range calcModeNames {
		if strings.EqualFold(s, name) {
			return load.ThroughputMode(i), true
		}
	}
	return 0, false
}

// Read parses a .jmx plan. Malformed XML and structures JMeter would not
// load are *SyntaxError values with line and column; unsupported elements
// become warnings.
func Read(r io.Reader) (*Plan, error) {
	roots, err := parseTree(r)
	if err != nil {
		return nil, err
	}
	p := &Plan{}
	b := &builder{plan: p}
	for _, e := range roots {
		if !e.enabled {
			continue
		}
		if e.tag != "TestPlan" {
			b.warn(e, false, "element outside the Test Plan is ignored")
			continue
		}
		p.Name, p.root = e.name, e
		if udv := e.props["TestPlan.user_defined_variables"]; udv != nil {
			for _, a := range arguments(udv) {
				p.Variables = append(p.Variables, Variable(a))
			}
		}
		b.walk(e.children, scope{})
	}
	if len(p.Groups) == 0 {
		return nil, &SyntaxError{Line: 1, Column: 1, Msg: "the plan has no enabled Thread Group"}
	}
	b.extractorUse()
	p.resolve(Options{})
	return p, nil
}

// extractorUse says, for each variable an extractor sets at run time,
// whether a request uses it: if one does, that request is sent with the
// literal ${name} by ratelab (unfaithful); if none does, the extractor
// changes nothing that is sent.
func (b *builder) extractorUse() {
	used := map[string]bool{}
	for _, g := range b.plan.Groups {
		for _, s := range g.Samplers {
			for _, name := range referencedVars(s) {
				used[name] = true
			}
		}
	}
	names := make([]string, 0, len(b.extracted))
	for n := range b.extracted {
		names = append(names, n)
	}
	sortStrings(names)
	for _, n := range names {
		e := b.extracted[n]
		if used[n] {
			b.warn(e, true, "%s sets ${%s} from a response at run time, which ratelab cannot do: requests using it send the text ${%s}", e.tag, n, n)
		} else {
			b.warn(e, false, "%s sets ${%s}, which no request uses: it changes nothing that is sent", e.tag, n)
		}
	}
}

var anyVarRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_.-]*)\}`)

// referencedVars lists the ${name} references in what a sampler sends.
func referencedVars(s *Sampler) []string {
	texts := []string{s.Domain, s.Port, s.Protocol, s.URLPath, s.Body}
	for _, h := range s.Headers {
		texts = append(texts, h.Value)
	}
	for _, a := range s.Arguments {
		texts = append(texts, a.Name, a.Value)
	}
	var out []string
	for _, t := range texts {
		for _, m := range anyVarRef.FindAllStringSubmatch(t, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

func sortStrings(s []string) { sort.Strings(s) }

func csvDataSet(e *element) *CSVDataSet {
	c := &CSVDataSet{
		Path:      e.path,
		Filename:  e.str("filename"),
		Delimiter: e.str("delimiter"),
		Recycle:   e.str("recycle") != "false",
		StopAtEOF: e.str("stopThread") == "true",
		ShareMode: e.str("shareMode"),
	}
	if c.Delimiter == "" {
		c.Delimiter = ","
	}
	if c.ShareMode == "" {
		c.ShareMode = "shareMode.all"
	}
	for _, v := range strings.Split(e.str("variableNames"), ",") {
		if v = strings.TrimSpace(v); v != "" {
			c.Variables = append(c.Variables, v)
		}
	}
	return c
}

func savesResponseData(e *element) bool {
	sc := e.props["saveConfig"]
	return sc != nil && sc.props["responseData"] != nil && strings.TrimSpace(sc.props["responseData"].value) == "true"
}

// arguments reads an Arguments elementProp: name/value pairs.
func arguments(p *prop) []Argument {
	if p == nil {
		return nil
	}
	var out []Argument
	for _, coll := range p.items {
		for _, it := range coll.items {
			if it.kind != "elementProp" {
				continue
			}
			a := Argument{}
			if n := it.props["Argument.name"]; n != nil {
				a.Name = n.value
			}
			if v := it.props["Argument.value"]; v != nil {
				a.Value = v.value
			}
			out = append(out, a)
		}
	}
	return out
}

func headers(e *element) []Header {
	var out []Header
	if hs := e.props["HeaderManager.headers"]; hs != nil {
		for _, it := range hs.items {
			if it.props == nil {
				continue
			}
			h := Header{}
			if n := it.props["Header.name"]; n != nil {
				h.Name = strings.TrimSpace(n.value)
			}
			if v := it.props["Header.value"]; v != nil {
				h.Value = v.value
			}
			if h.Name != "" {
				out = append(out, h)
			}
		}
	}
	return out
}

// mergeHeaders returns outer with inner's headers added, an inner header
// replacing an outer one of the same name (JMeter's Header Manager merge).
func mergeHeaders(outer, inner []Header) []Header {
	out := make([]Header, 0, len(outer)+len(inner))
	for _, h := range outer {
		replaced := false
		for _, in := range inner {
			if strings.EqualFold(in.Name, h.Name) {
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, h)
		}
	}
	return append(out, inner...)
}

func atoi(s string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		return n
	}
	return def
}

func seconds(s string) time.Duration {
	if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && f > 0 {
		return time.Duration(f * float64(time.Second))
	}
	return 0
}

func millis(s string) time.Duration {
	if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && f > 0 {
		return time.Duration(f * float64(time.Millisecond))
	}
	return 0
}
