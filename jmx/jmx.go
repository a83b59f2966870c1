// Package jmx reads JMeter 5.6 test plans (.jmx files), turns them into
// ratelab load scenarios, and explains what load they really produce and
// which of JMeter's traps they fall into.
//
// Read parses a plan into a Plan: its thread groups, HTTP samplers,
// headers, timers and CSV data sets, with every element it does not
// support named in a warning (never silently dropped). Analyze computes the
// effective request rate as JMeter runs the plan, the start-up burst and
// the pitfalls, each with its fix; Scenario and FixedScenario turn the plan
// into the load engine's scenario, faithful or corrected.
package jmx

import (
	"fmt"
	"io"
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
	Arguments []Argument
	Headers   []Header
	KeepAlive bool
	// ConnectTimeout and ResponseTimeout are 0 when unset.
	ConnectTimeout  time.Duration
	ResponseTimeout time.Duration
	Timers          []*Timer
}

// Argument is a query or form parameter of a sampler.
type Argument struct{ Name, Value string }

// Header is a request header from a Header Manager.
type Header struct{ Name, Value string }

// TimerKind is the kind of a JMeter timer.
type TimerKind int

// The timers ratelab runs.
const (
	ConstantThroughput TimerKind = iota
	Constant
	UniformRandom
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
		p.Name = e.name
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
	return p, nil
}

// scope is what elements above a sampler contribute to it.
type scope struct {
	group   *ThreadGroup
	headers []Header
	timers  []*Timer
	// repeat multiplies samplers inside nested Loop Controllers.
	repeat int
}

type builder struct {
	plan *Plan
}

func (b *builder) warn(e *element, unfaithful bool, format string, args ...any) {
	b.plan.Warnings = append(b.plan.Warnings, Warning{
		Path: e.path, Line: e.line, Message: fmt.Sprintf(format, args...), Unfaithful: unfaithful,
	})
}

// walk visits one hashTree level. JMeter applies config elements and
// timers to every sampler in their scope, wherever they appear in it, so
// those are gathered first and samplers visited after.
func (b *builder) walk(els []*element, sc scope) {
	for _, e := range els {
		if !e.enabled {
			continue
		}
		switch e.tag {
		case "HeaderManager":
			sc.headers = mergeHeaders(sc.headers, headers(e))
		case "ConstantThroughputTimer", "ConstantTimer", "UniformRandomTimer":
			if t := b.timer(e); t != nil {
				sc.timers = append(append([]*Timer{}, sc.timers...), t)
			}
		case "CSVDataSet":
			if sc.group == nil {
				b.warn(e, true, "CSV Data Set outside a thread group is not supported")
				continue
			}
			sc.group.CSV = append(sc.group.CSV, csvDataSet(e))
		case "CookieManager":
			if sc.group != nil {
				sc.group.CookieManager = true
			}
			b.warn(e, false, "HTTP Cookie Manager is not emulated: ratelab sends no cookies between requests")
		case "CacheManager":
			if sc.group != nil {
				sc.group.CacheManager = true
			}
			b.warn(e, false, "HTTP Cache Manager is not emulated: every request goes to the server")
		case "ResultCollector":
			if sc.group != nil && savesResponseData(e) {
				sc.group.SaveResponseData = true
			}
			b.warn(e, false, "listener ignored: ratelab writes its own results (--jtl, --json, --html)")
		case "ThreadGroup", "HTTPSamplerProxy", "LoopController":
			// Run in tree order below.
		default:
			b.warn(e, true, "%s is not supported and is not run", e.tag)
		}
	}
	// Samplers and controllers run in tree order; keep it.
	for _, e := range els {
		if !e.enabled {
			continue
		}
		switch e.tag {
		case "ThreadGroup":
			if sc.group != nil {
				b.warn(e, true, "a thread group inside a thread group is not supported")
				continue
			}
			g := b.threadGroup(e)
			b.plan.Groups = append(b.plan.Groups, g)
			inner := sc
			inner.group, inner.repeat = g, 1
			b.walk(e.children, inner)
		case "LoopController":
			if sc.group == nil {
				b.warn(e, true, "Loop Controller outside a thread group is not run")
				continue
			}
			n, err := strconv.Atoi(e.str("LoopController.loops"))
			if err != nil || n < 1 || n*sc.repeat > 1000 {
				b.warn(e, true, "Loop Controller with loops %q is not supported inside a thread group (1–1000 only)", e.str("LoopController.loops"))
				continue
			}
			inner := sc
			inner.repeat = sc.repeat * n
			b.walk(e.children, inner)
		case "HTTPSamplerProxy":
			if sc.group == nil {
				b.warn(e, true, "HTTP Request outside a thread group is not run")
				continue
			}
			s := b.sampler(e, sc)
			for range sc.repeat {
				sc.group.Samplers = append(sc.group.Samplers, s)
			}
		}
	}
}

func (b *builder) threadGroup(e *element) *ThreadGroup {
	g := &ThreadGroup{Name: e.name, Path: e.path, Line: e.line, Loops: 1, OnError: "continue"}
	g.Threads = atoi(e.str("ThreadGroup.num_threads"), 1)
	g.RampUp = seconds(e.str("ThreadGroup.ramp_time"))
	if mc := e.props["ThreadGroup.main_controller"]; mc != nil {
		if lp := mc.props["LoopController.loops"]; lp != nil {
			g.Loops = atoi(strings.TrimSpace(lp.value), 1)
		}
		if cf := mc.props["LoopController.continue_forever"]; cf != nil && strings.TrimSpace(cf.value) == "true" && g.Loops < 0 {
			g.Loops = -1
		}
	}
	g.Scheduler = e.str("ThreadGroup.scheduler") == "true"
	if g.Scheduler {
		g.Duration = seconds(e.str("ThreadGroup.duration"))
		g.Delay = seconds(e.str("ThreadGroup.delay"))
	}
	if v := e.str("ThreadGroup.on_sample_error"); v != "" {
		g.OnError = v
	}
	for _, bad := range []string{"num_threads", "ramp_time"} {
		if v := e.str("ThreadGroup." + bad); strings.Contains(v, "${") {
			b.warn(e, true, "ThreadGroup.%s %q uses an expression; ratelab reads only numbers here", bad, v)
		}
	}
	return g
}

func (b *builder) sampler(e *element, sc scope) *Sampler {
	s := &Sampler{
		Name: e.name, Path: e.path, Line: e.line,
		Method:    strings.ToUpper(e.str("HTTPSampler.method")),
		Protocol:  e.str("HTTPSampler.protocol"),
		Domain:    e.str("HTTPSampler.domain"),
		Port:      e.str("HTTPSampler.port"),
		URLPath:   e.str("HTTPSampler.path"),
		KeepAlive: e.str("HTTPSampler.use_keepalive") != "false",
		Headers:   sc.headers,
		Timers:    sc.timers,
	}
	if s.Method == "" {
		s.Method = "GET"
	}
	s.ConnectTimeout = millis(e.str("HTTPSampler.connect_timeout"))
	s.ResponseTimeout = millis(e.str("HTTPSampler.response_timeout"))
	args := arguments(e.props["HTTPsampler.Arguments"])
	if e.str("HTTPSampler.postBodyRaw") == "true" {
		for _, a := range args {
			s.Body += a.Value
		}
	} else {
		s.Arguments = args
	}
	// Timers and headers below the sampler apply to it alone.
	for _, c := range e.children {
		if !c.enabled {
			continue
		}
		switch c.tag {
		case "ConstantThroughputTimer", "ConstantTimer", "UniformRandomTimer":
			if t := b.timer(c); t != nil {
				s.Timers = append(append([]*Timer{}, s.Timers...), t)
			}
		case "HeaderManager":
			s.Headers = mergeHeaders(s.Headers, headers(c))
		case "ResultCollector":
			if savesResponseData(c) {
				sc.group.SaveResponseData = true
			}
			b.warn(c, false, "listener ignored: ratelab writes its own results (--jtl, --json, --html)")
		default:
			b.warn(c, true, "%s under an HTTP Request is not supported and is not run", c.tag)
		}
	}
	for _, f := range []string{"HTTPSampler.DO_MULTIPART_POST", "HTTPSampler.image_parser"} {
		if e.str(f) == "true" {
			b.warn(e, true, "%s is not supported", f)
		}
	}
	return s
}

func (b *builder) timer(e *element) *Timer {
	t := &Timer{Path: e.path, Line: e.line}
	switch e.tag {
	case "ConstantThroughputTimer":
		t.Kind = ConstantThroughput
		v, _ := e.raw("throughput")
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f < 0 {
			b.warn(e, true, "throughput %q is not a number; the timer is not run", v)
			return nil
		}
		t.PerMinute = f
		mode, ok := parseCalcMode(e.str("calcMode"))
		if !ok && e.str("calcMode") != "" {
			b.warn(e, true, "calcMode %q is unknown; using 0 (this thread only), JMeter's default", e.str("calcMode"))
		}
		t.Mode = mode
	case "ConstantTimer":
		t.Kind = Constant
		t.Delay = millis(e.str("ConstantTimer.delay"))
	case "UniformRandomTimer":
		t.Kind = UniformRandom
		t.Delay = millis(e.str("ConstantTimer.delay"))
		t.Range = millis(e.str("RandomTimer.range"))
	}
	return t
}

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
