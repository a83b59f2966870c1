package jmx

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"ratelab/limit"
	"ratelab/load"
)

// Flow translates the plan into the load package's flow of virtual users:
// every thread group (setUp and tearDown included) with its workload,
// startup delay and on_sample_error action; its tree of samplers and
// controllers as steps; timers, extractors, assertions, counters and
// random variables in the scope of the element that holds them; CSV Data
// Sets, the Cookie Manager and the user-defined variables. HTTP Request
// Defaults, Header Managers and Authorization Managers are applied to each
// request by tree scope, as JMeter applies them.
//
// The warnings name every enabled element that the flow does not run as
// JMeter would (Unfaithful) or that changes nothing that is sent (listeners
// and the like); a plan is faithful when none is Unfaithful. The error is
// for a plan that gives no flow: no request to send, a request with no
// server, an unbounded thread group.
func (p *Plan) Flow(opts Options) (*load.Flow, []Warning, error) {
	if p.root == nil {
		return nil, nil, errors.New("the plan has no Test Plan element")
	}
	fixed, rw := p.resolve(opts)
	fb := &flowBuilder{plan: p, opts: opts, fixed: fixed, flow: &load.Flow{Name: p.Name, RetryAfter: load.RetryIgnore}}
	fb.env = &exprEnv{props: fixed.props, vars: fixed.vars, csv: fixed.csv, runtime: true, dyn: map[string]bool{}}
	// The thread groups' fields as resolve evaluated them (the timers'
	// are the flow's own, below).
	groupPath := map[string]bool{}
	for _, g := range p.Groups {
		groupPath[g.Path] = true
	}
	windowed := map[string]bool{}
	for _, g := range p.Groups {
		for m := range g.windowed {
			windowed[g.Path+"\x00"+m] = true
		}
	}
	for _, w := range rw {
		// What a group's thread windows express is no warning here.
		if groupPath[w.Path] && !windowed[w.Path+"\x00"+w.Message] {
			fb.warns = append(fb.warns, w)
		}
	}
	fb.runtimeNames(p.root.children)
	for _, v := range p.Variables {
		if fb.env.dyn[v.Name] {
			fb.flow.Vars = append(fb.flow.Vars, load.Var{Name: v.Name, Value: fixed.vars[v.Name]})
		}
	}
	fb.level(p.root.children, fscope{}, &fb.flow.Scope, nil)
	if fb.cookieGroups > 0 && fb.cookieGroups < fb.groups {
		fb.warnAt(fb.cookieEl, true, "HTTP Cookie Manager is in scope of some thread groups only: ratelab gives every group's users a cookie jar")
	}
	if err := fb.err; err != nil {
		return nil, fb.warns, err
	}
	var normal int
	for _, g := range fb.flow.Groups {
		if g.Kind == load.GroupNormal {
			normal++
		}
	}
	if normal == 0 {
		return nil, fb.warns, errors.New("the plan has no thread group with an HTTP Request to run")
	}
	return fb.flow, fb.warns, nil
}

// ValidateShape checks that f can run, as load.Flow.Validate does, except
// that its CSV files are not read (they may be absent where the plan is
// only explained).
func ValidateShape(f *load.Flow) error {
	c := *f
	c.Data = nil
	c.Groups = make([]*load.ThreadGroup, len(f.Groups))
	for i, g := range f.Groups {
		cg := *g
		cg.Data = nil
		c.Groups[i] = &cg
	}
	return c.Validate()
}

type flowBuilder struct {
	plan  *Plan
	opts  Options
	fixed *exprEnv // the numbers' environment: fixed values only
	env   *exprEnv // the requests': run-time variables kept
	flow  *load.Flow
	warns []Warning
	err   error
	// groups counts the thread groups, cookieGroups those with a Cookie
	// Manager in scope; cookieEl is one such manager.
	groups, cookieGroups int
	cookieManagers       int
	cookieEl             *element
}

// fscope is what the levels above an element give the requests below it.
type fscope struct {
	group    *load.ThreadGroup
	tg       *ThreadGroup
	headers  []Header
	defaults []httpDefaults
	auth     []authEntry
	cookies  bool
	// loose is set below a controller that repeats its children within
	// an iteration (CSV Data Sets there read more often in JMeter).
	loose bool
}

func (fb *flowBuilder) warnAt(e *element, unfaithful bool, format string, args ...any) {
	fb.warns = append(fb.warns, Warning{Path: e.path, Line: e.line, Message: fmt.Sprintf(format, args...), Unfaithful: unfaithful})
}

func (fb *flowBuilder) fail(e *element, format string, args ...any) {
	if fb.err == nil {
		fb.err = fmt.Errorf("%s (line %d): %s", e.path, e.line, fmt.Sprintf(format, args...))
	}
}

// runtimeNames marks the user-defined variables that elements set at run
// time: they are read from the user, not inlined.
func (fb *flowBuilder) runtimeNames(els []*element) {
	for _, e := range els {
		if !e.enabled {
			continue
		}
		var names []string
		switch {
		case extractorTags[e.tag] != "":
			names = strings.Split(e.str(extractorTags[e.tag]), ";")
		case e.tag == "CSVDataSet":
			names = strings.Split(e.str("variableNames"), ",")
		case e.tag == "CounterConfig":
			names = []string{e.str("CounterConfig.name")}
		case e.tag == "RandomVariableConfig":
			names = []string{e.str("variableName")}
		case e.tag == "ForeachController":
			names = []string{e.str("ForeachController.returnVal")}
		}
		for _, n := range names {
			if n = strings.TrimSpace(n); n != "" {
				fb.env.dyn[n] = true
			}
		}
		fb.runtimeNames(e.children)
	}
}

// level translates one hashTree level: what it puts in scope goes into sc
// (the scope of the step that holds the level), its samplers and
// controllers become steps, returned in tree order.
func (fb *flowBuilder) level(els []*element, outer fscope, sc *load.Scope, data *[]*load.CSVData) []load.Step {
	in := outer
	for _, e := range els {
		if e.enabled {
			fb.config(e, &in, sc, data)
		}
	}
	var steps []load.Step
	for _, e := range els {
		if !e.enabled {
			continue
		}
		if st := fb.step(e, in); st != nil {
			steps = append(steps, st)
		}
	}
	return steps
}

// config adds what a non-sampler, non-controller element contributes.
func (fb *flowBuilder) config(e *element, in *fscope, sc *load.Scope, data *[]*load.CSVData) {
	if kind, ok := timerTags[e.tag]; ok {
		if kind == ShapingTimer {
			return // the group's schedule (resolve)
		}
		if t := fb.timer(e, kind); t != nil {
			sc.Timers = append(sc.Timers, t)
		}
		return
	}
	switch {
	case e.tag == "HeaderManager":
		in.headers = mergeHeaders(in.headers, headers(e))
	case e.tag == "ConfigTestElement" && (e.props["HTTPsampler.Arguments"] != nil || e.str("HTTPSampler.domain") != ""):
		in.defaults = append([]httpDefaults{defaultsOf(e)}, in.defaults...)
	case e.tag == "ConfigTestElement":
		fb.warnAt(e, false, "config element ignored: it sets nothing ratelab sends")
	case e.tag == "AuthManager":
		in.auth = append(authEntries(e), in.auth...)
	case e.tag == "Arguments":
		// Read with the Test Plan's variables (Read).
	case e.tag == "CSVDataSet":
		fb.csv(e, in, data)
	case e.tag == "CookieManager":
		in.cookies = true
		fb.cookieManagers++
		if fb.cookieEl == nil {
			fb.cookieEl = e
		}
		c := &load.Cookies{ClearEachIteration: e.str("CookieManager.clearEachIteration") == "true"}
		if fb.flow.Cookies == nil || c.ClearEachIteration {
			fb.flow.Cookies = c
		}
		if list := e.props["CookieManager.cookies"]; list != nil && len(list.items) > 0 {
			fb.warnAt(e, true, "the Cookie Manager's predefined cookies are not sent (only cookies the server sets are kept)")
		}
	case e.tag == "CacheManager":
		fb.warnAt(e, false, "HTTP Cache Manager is not emulated: every request goes to the server")
	case listenerTags[e.tag] || strings.HasPrefix(e.tag, "kg.apc.jmeter.vizualizers.") || strings.HasPrefix(e.tag, "kg.apc.jmeter.listener"):
		fb.warnAt(e, false, "listener ignored: ratelab writes its own results (--jtl, --json, --html)")
	case assertionTags[e.tag]:
		if a := fb.assertion(e); a != nil {
			sc.Assert = append(sc.Assert, a)
		}
	case extractorTags[e.tag] != "":
		sc.Extract = append(sc.Extract, fb.extractors(e)...)
	case e.tag == "CounterConfig":
		if c := fb.counter(e); c != nil {
			sc.Counters = append(sc.Counters, c)
		}
	case e.tag == "RandomVariableConfig":
		if r := fb.randomVar(e); r != nil {
			sc.Random = append(sc.Random, r)
		}
	case ignoredTags[e.tag] != "":
		fb.warnAt(e, false, "%s is ignored", ignoredTags[e.tag])
	case threadGroupTags[e.tag] != "", samplerTags[e.tag], isController(e.tag), e.tag == "TestAction":
		// Steps.
	case scriptTag(e.tag):
		fb.warnAt(e, true, "%s is a script, which ratelab cannot run: it is not run", e.tag)
	default:
		fb.warnAt(e, true, "%s is not supported and is not run", e.tag)
	}
}

// scriptTag reports the elements that run code: JSR223, BeanShell, BSF
// and JavaScript samplers, pre- and post-processors, timers, assertions,
// listeners.
func scriptTag(tag string) bool {
	for _, p := range []string{"JSR223", "BeanShell", "BSF", "JavaScript"} {
		if strings.HasPrefix(tag, p) {
			return true
		}
	}
	return false
}

// step translates a thread group, a controller, a sampler or a Flow
// Control Action; nil for anything else.
func (fb *flowBuilder) step(e *element, in fscope) load.Step {
	if kind := threadGroupTags[e.tag]; kind != "" {
		if in.group != nil {
			fb.warnAt(e, true, "a thread group inside a thread group is not supported")
			return nil
		}
		fb.threadGroup(e, in)
		return nil
	}
	switch {
	case samplerTags[e.tag]:
		if in.group == nil {
			fb.warnAt(e, true, "HTTP Request outside a thread group is not run")
			return nil
		}
		return fb.request(e, in)
	case e.tag == "TestAction":
		if in.group == nil {
			return nil
		}
		return fb.pause(e, in)
	case isController(e.tag):
		if in.group == nil {
			fb.warnAt(e, true, "%s outside a thread group is not run", e.tag)
			return nil
		}
		return fb.controller(e, in)
	}
	return nil
}

func (fb *flowBuilder) threadGroup(e *element, in fscope) {
	var tg *ThreadGroup
	for _, g := range fb.plan.Groups {
		if g.el == e {
			tg = g
		}
	}
	if tg == nil {
		return
	}
	fb.groups++
	g := &load.ThreadGroup{Name: tg.Name, Delay: tg.Delay}
	switch tg.Kind {
	case "setUp":
		g.Kind = load.GroupSetUp
	case "tearDown":
		g.Kind = load.GroupTearDown
	}
	switch tg.OnError {
	case "continue", "":
	case "startnextloop", "startnextthreadloop":
		g.OnSampleError = load.ErrorStartNextLoop
	case "stopthread":
		g.OnSampleError = load.ErrorStopThread
	case "stoptest":
		g.OnSampleError = load.ErrorStopTest
	case "stoptestnow":
		g.OnSampleError = load.ErrorStopTestNow
	default:
		fb.warnAt(e, true, "on_sample_error %q is unknown; ratelab continues after a failed sample", tg.OnError)
	}
	w := &g.Workload
	switch {
	case tg.Open:
		if len(tg.Stages) == 0 {
			fb.fail(e, "thread group %q has an empty arrival schedule", tg.Name)
			return
		}
		w.Stages, w.MaxWorkers = tg.Stages, tg.MaxWorkers
	case len(tg.Windows) > 0:
		// The plugin's schedule per thread, its delays included.
		g.Delay, g.Windows = 0, tg.Windows
		w.Threads, w.Duration = len(tg.Windows), lastStop(tg.Windows)
		if tg.Loops > 0 {
			w.Loops = tg.Loops
		}
	default:
		w.Threads, w.RampUp = tg.Threads, tg.RampUp
		switch {
		case tg.Scheduler && tg.Duration > 0:
			w.Duration = tg.Duration
			if tg.Loops > 0 {
				w.Loops = tg.Loops
			}
		case tg.Loops > 0:
			w.Loops = tg.Loops
		default:
			fb.fail(e, "thread group %q loops forever without a scheduler duration; ratelab refuses unbounded runs: set a loop count or a duration", tg.Name)
			return
		}
	}
	in.group, in.tg = g, tg
	seen := fb.cookieManagers
	g.Steps = fb.level(e.children, in, &g.Scope, &g.Data)
	if in.cookies || fb.cookieManagers > seen {
		fb.cookieGroups++
	}
	if len(g.Steps) == 0 {
		if g.Kind == load.GroupNormal {
			fb.warnAt(e, false, "thread group %q has no HTTP Request: it sends nothing", tg.Name)
		}
		return
	}
	fb.flow.Groups = append(fb.flow.Groups, g)
}

// csv translates a CSV Data Set Config into the data of its scope: the
// thread group's, or every group's at Test Plan level.
func (fb *flowBuilder) csv(e *element, in *fscope, data *[]*load.CSVData) {
	c := csvDataSet(e)
	name := fb.fixed.translate(c.Filename)
	if len(name.problems) > 0 || name.varies {
		fb.warnAt(e, true, "CSV file name %q is not fixed before the run: the data set is not read", c.Filename)
		return
	}
	file := name.text
	if !filepath.IsAbs(file) && fb.opts.Dir != "" {
		file = filepath.Join(fb.opts.Dir, file)
	}
	d := &load.CSVData{File: file, Vars: c.Variables, IgnoreFirstLine: e.str("ignoreFirstLine") == "true",
		Quoted: e.str("quotedData") == "true", NoRecycle: !c.Recycle, StopThread: c.StopAtEOF}
	switch delim := c.Delimiter; delim {
	case `\t`, "\t":
		d.Delimiter = '\t'
	default:
		r := []rune(fb.fixed.translate(delim).text)
		if len(r) != 1 {
			fb.warnAt(e, true, "CSV delimiter %q is not one character; using ','", delim)
			r = []rune{','}
		}
		d.Delimiter = r[0]
	}
	switch strings.ToLower(c.ShareMode) {
	case "shareMode.all", "sharemode.all", "all threads", "":
		d.Share = load.ShareAll
	case "sharemode.group", "current thread group":
		d.Share = load.ShareGroup
	case "sharemode.thread", "current thread":
		d.Share = load.ShareThread
	default:
		fb.warnAt(e, true, "CSV sharing mode %q (an identifier) is run as all threads", c.ShareMode)
	}
	if in.loose {
		fb.warnAt(e, true, "CSV Data Set below a repeating controller: JMeter reads a line each time its scope runs, ratelab once per iteration")
	}
	if data == nil {
		fb.flow.Data = append(fb.flow.Data, d)
		return
	}
	*data = append(*data, d)
}

// controller translates a logic controller and its children.
func (fb *flowBuilder) controller(e *element, in fscope) load.Step {
	var sc load.Scope
	var s load.Step
	children := func(loose bool) []load.Step {
		inner := in
		inner.loose = in.loose || loose
		return fb.level(e.children, inner, &sc, &in.group.Data)
	}
	switch e.tag {
	case "GenericController", "RecordingController":
		c := &load.Simple{Name: e.name}
		c.Steps, s = children(false), c
		c.Scope = sc
	case "TransactionController":
		c := &load.Transaction{Name: e.name, Parent: e.str("TransactionController.parent") == "true",
			IncludeTimers: e.str("TransactionController.includeTimers") != "false"}
		c.Steps, s = children(false), c
		c.Scope = sc
	case "LoopController":
		c := &load.Loop{Name: e.name, Count: 1}
		raw := e.str("LoopController.loops")
		if e.str("LoopController.continue_forever") == "true" && raw == "-1" {
			raw = "-1"
		}
		if n, ok, _ := number(fb.fixed, raw); ok {
			c.Count = int(n)
			if c.Count < -1 {
				c.Count = -1
			}
			if c.Count < 0 && in.group.Workload.Duration <= 0 {
				fb.fail(e, "Loop Controller loops forever and its thread group has no scheduler duration: ratelab refuses unbounded runs")
				return nil
			}
		} else {
			t := fb.env.translate(raw)
			fb.problems(e, t)
			c.CountExpr = t.text
		}
		c.Steps, s = children(c.Count != 1 || c.CountExpr != ""), c
		c.Scope = sc
	case "IfController":
		cond, ok := fb.condition(e, e.str("IfController.condition"), e.str("IfController.useExpression") == "true")
		if !ok {
			return nil
		}
		c := &load.If{Name: e.name, Condition: cond, EvaluateAll: e.str("IfController.evaluateAll") == "true"}
		c.Steps, s = children(false), c
		c.Scope = sc
	case "WhileController":
		raw := e.str("WhileController.condition")
		c := &load.While{Name: e.name}
		switch strings.TrimSpace(raw) {
		case "", "LAST":
			c.Condition = strings.TrimSpace(raw)
		default:
			cond, ok := fb.condition(e, raw, true)
			if !ok {
				return nil
			}
			c.Condition = cond
		}
		if in.group.Workload.Duration <= 0 {
			fb.warnAt(e, false, "While Controller: the run ends when its condition does (the thread group has no duration)")
		}
		c.Steps, s = children(true), c
		c.Scope = sc
	case "ForeachController":
		c := &load.ForEach{Name: e.name, Input: e.str("ForeachController.inputVal"), Output: e.str("ForeachController.returnVal"),
			NoSeparator: e.str("ForeachController.useSeparator") == "false"}
		if v, ok, _ := number(fb.fixed, e.str("ForeachController.startIndex")); ok {
			c.Start = int(v)
		}
		if v, ok, _ := number(fb.fixed, e.str("ForeachController.endIndex")); ok {
			c.End = int(v)
		}
		if c.Input == "" || c.Output == "" {
			fb.warnAt(e, true, "ForEach Controller without an input prefix or an output variable is not run")
			return nil
		}
		c.Steps, s = children(true), c
		c.Scope = sc
	case "OnceOnlyController":
		c := &load.OnceOnly{Name: e.name}
		c.Steps, s = children(false), c
		c.Scope = sc
	case "RunTime":
		c := &load.Runtime{Name: e.name}
		if v, ok, msg := number(fb.fixed, e.str("RunTime.seconds")); ok {
			c.Duration = time.Duration(v * float64(time.Second))
		} else if msg != "" {
			fb.warnAt(e, true, "Runtime Controller seconds %s; taken as 0", msg)
		}
		c.Steps, s = children(true), c
		c.Scope = sc
	case "ThroughputController":
		c := &load.Throughput{Name: e.name, PerUser: e.str("ThroughputController.perThread") == "true"}
		field := "ThroughputController.maxThroughput"
		if e.str("ThroughputController.style") == "1" {
			c.Percent, field = true, "ThroughputController.percentThroughput"
		}
		v, ok, msg := number(fb.fixed, e.str(field))
		if !ok {
			if msg == "" {
				msg = "is empty"
			}
			fb.warnAt(e, true, "Throughput Controller %s %s: its children are not run", field, msg)
			return nil
		}
		c.Value = v
		c.Steps, s = children(false), c
		c.Scope = sc
	case "RandomController":
		c := &load.RandomChoice{Name: e.name}
		c.Steps, s = children(false), c
		c.Scope = sc
	case "InterleaveControl":
		if e.str("InterleaveControl.accrossThreads") == "true" {
			fb.warnAt(e, true, "Interleave Controller across threads is run per user")
		}
		c := &load.Interleave{Name: e.name}
		c.Steps, s = children(false), c
		c.Scope = sc
	case "SwitchController":
		v := fb.env.translate(e.str("SwitchController.value"))
		fb.problems(e, v)
		c := &load.Switch{Name: e.name, Value: v.text}
		c.Steps, s = children(false), c
		c.Scope = sc
	default:
		fb.warnAt(e, true, "%s is not emulated: its requests are not sent", e.tag)
		return nil
	}
	return s
}

// condition translates an If or While Controller's condition into a flow
// template whose text load.Cond decides at run time: a variable
// expression (useExpression: ${__jexl3(…)}, ${__groovy(…)}, a variable
// holding true or false) or a JavaScript one, within the subset of
// comparisons load.Cond knows. ok is false (with a warning) when the
// condition is outside it.
func (fb *flowBuilder) condition(e *element, raw string, expression bool) (string, bool) {
	c := strings.TrimSpace(raw)
	for _, fn := range []string{"__jexl3", "__jexl2", "__groovy", "__javaScript"} {
		prefix := "${" + fn + "("
		if strings.HasPrefix(c, prefix) && strings.HasSuffix(c, ")}") {
			args := splitArgs(c[len(prefix) : len(c)-2])
			if len(args) >= 1 {
				c = args[0]
				expression = false
			}
			break
		}
	}
	if v, ok := evalCondition(raw, fb.fixed); ok && !strings.Contains(raw, "${") {
		return strconv.FormatBool(v), true
	}
	t := fb.env.translate(c)
	if len(t.problems) > 0 {
		fb.warnAt(e, true, "condition %q: %s; its children are not run", raw, strings.Join(t.problems, "; "))
		return "", false
	}
	text := normalizeCond(t.text)
	if !condShape(text) {
		fb.warnAt(e, true, "condition %q is outside the comparisons ratelab evaluates (==, !=, <, >, &&, ||, ! of variables, numbers and quoted strings): its children are not run", raw)
		return "", false
	}
	return text, true
}

// normalizeCond rewrites the JavaScript and Groovy forms load.Cond does
// not read: === and !==, and a.equals(b).
func normalizeCond(s string) string {
	s = strings.ReplaceAll(s, "===", "==")
	s = strings.ReplaceAll(s, "!==", "!=")
	for {
		i := strings.Index(s, ".equals(")
		if i < 0 {
			return s
		}
		j := strings.Index(s[i:], ")")
		if j < 0 {
			return s
		}
		s = s[:i] + " == " + s[i+len(".equals("):i+j] + s[i+j+1:]
	}
}

// condShape reports whether a condition template is one load.Cond decides
// whatever the values of its variables: it is checked with each action
// replaced by a boolean, then by a number.
func condShape(text string) bool {
	for _, v := range []string{"true", "1"} {
		var b strings.Builder
		rest := text
		for {
			i := strings.Index(rest, "{{")
			if i < 0 {
				b.WriteString(rest)
				break
			}
			j := strings.Index(rest[i:], "}}")
			if j < 0 {
				return false
			}
			b.WriteString(rest[:i])
			b.WriteString(v)
			rest = rest[i+j+2:]
		}
		if _, ok := load.Cond(b.String()); ok {
			return true
		}
	}
	return false
}

// problems reports a translation's problems as unfaithful warnings.
func (fb *flowBuilder) problems(e *element, t translation) {
	for _, p := range t.problems {
		fb.warnAt(e, true, "%s", p)
	}
}

// request translates an HTTP Request with what its scope gives it.
func (fb *flowBuilder) request(e *element, in fscope) load.Step {
	b := &builder{plan: &Plan{}}
	s := b.sampler(e, scope{headers: in.headers, defaults: in.defaults, auth: in.auth})
	for _, w := range b.plan.Warnings {
		// The sampler's own checks (uploads); what its children are is
		// decided below, and the flow fetches embedded resources.
		if w.Path == e.path && !strings.Contains(w.Message, "HTTPSampler.image_parser") {
			fb.warns = append(fb.warns, w)
		}
	}
	r := &load.Request{Name: s.Name, Embedded: fb.embedded(e, in.defaults)}
	own := in
	for _, c := range e.children {
		if !c.enabled {
			continue
		}
		if samplerTags[c.tag] || isController(c.tag) || threadGroupTags[c.tag] != "" {
			fb.warnAt(c, true, "%s under an HTTP Request is not run", c.tag)
			continue
		}
		fb.config(c, &own, &r.Scope, &in.group.Data)
	}
	s.Headers, s.auth = own.headers, own.auth
	spec, ws, err := requestOf(s, fb.env)
	fb.warns = append(fb.warns, ws...)
	if err != nil {
		if fb.err == nil {
			fb.err = err
		}
		return nil
	}
	for _, text := range samplerTexts(s) {
		fb.problems(e, fb.env.translate(text))
	}
	r.Method, r.URL, r.Body = spec.Method, spec.URL, spec.Body
	for _, h := range spec.Headers {
		r.Headers = append(r.Headers, load.Header{Name: h.Name, Value: h.Value})
	}
	if s.ResponseTimeout > fb.flow.Timeout {
		fb.flow.Timeout = s.ResponseTimeout
	}
	return r
}

// embedded is what a sampler's "Retrieve All Embedded Resources" and its
// fields say, its own or, when empty, those of the nearest HTTP Request
// Defaults in scope that set them (JMeter merges them so); nil when it
// does not retrieve them.
func (fb *flowBuilder) embedded(e *element, defaults []httpDefaults) *load.Embedded {
	on, set := e.raw("HTTPSampler.image_parser")
	on = strings.TrimSpace(on)
	if !set {
		for _, d := range defaults {
			if d.Embedded != "" {
				on = d.Embedded
				break
			}
		}
	}
	if !strings.EqualFold(on, "true") {
		return nil
	}
	field := func(name string) string {
		if v := e.str(name); v != "" {
			return v
		}
		for _, d := range defaults {
			if v := d.embed[name]; v != "" {
				return v
			}
		}
		return ""
	}
	emb := &load.Embedded{}
	pattern := func(name string) string {
		raw := field(name)
		if raw == "" {
			return ""
		}
		t := fb.env.translate(raw)
		if strings.Contains(t.text, "{{") || len(t.problems) > 0 {
			fb.warnAt(e, true, "%s %q depends on run-time values: the resources it selects are fetched unfiltered", name, raw)
			return ""
		}
		if _, err := regexp.Compile(t.text); err != nil {
			fb.warnAt(e, true, "%s %q is not a pattern ratelab can read (%v): the resources it selects are fetched unfiltered", name, raw, err)
			return ""
		}
		return t.text
	}
	emb.Match = pattern("HTTPSampler.embedded_url_re")
	emb.Exclude = pattern("HTTPSampler.embedded_url_exclude_re")
	if strings.EqualFold(field("HTTPSampler.concurrentDwn"), "true") {
		emb.Concurrent = 6 // JMeter's default pool
		if raw := field("HTTPSampler.concurrentPool"); raw != "" {
			if n, ok, _ := number(fb.env, raw); ok && n >= 1 && n == float64(int(n)) {
				emb.Concurrent = int(n)
			} else {
				fb.warnAt(e, false, "HTTPSampler.concurrentPool %q is not a number ratelab can evaluate before the run; using 6", raw)
			}
		}
	}
	return emb
}

// samplerTexts are the fields of a sampler that are sent.
func samplerTexts(s *Sampler) []string {
	texts := []string{s.Method, s.Protocol, s.Domain, s.Port, s.URLPath, s.Body}
	for _, h := range s.Headers {
		texts = append(texts, h.Value)
	}
	for _, a := range s.Arguments {
		texts = append(texts, a.Name, a.Value)
	}
	return texts
}

// pause translates a Flow Control Action: a pause, with the timers in its
// scope before it.
func (fb *flowBuilder) pause(e *element, in fscope) load.Step {
	action := e.str("ActionProcessor.action")
	if action != "" && action != "1" {
		fb.warnAt(e, true, "Flow Control Action %s (stop, restart, break) is not emulated", action)
		return nil
	}
	p := &load.Pause{Name: e.name}
	raw := e.str("ActionProcessor.duration")
	v := fb.fixed.translate(raw)
	var lo, hi int64
	switch {
	case strings.TrimSpace(raw) == "":
	case len(v.problems) == 0 && strings.HasPrefix(v.text, "{{random ") && func() bool {
		n, err := fmt.Sscanf(v.text, "{{random %d %d}}", &lo, &hi)
		return n == 2 && err == nil && lo >= 0
	}():
		// ${__Random(a,b)} milliseconds: a uniform timer of the same
		// distribution.
		p.Timers = append(p.Timers, &load.Timer{Kind: load.TimerUniform, Delay: time.Duration(lo) * time.Millisecond,
			Range: time.Duration(hi-lo+1) * time.Millisecond})
	default:
		d, err := strconv.ParseFloat(strings.TrimSpace(v.text), 64)
		if err != nil || len(v.problems) > 0 || d < 0 {
			fb.warnAt(e, true, "pause %q is not a number ratelab can evaluate; no pause is taken", raw)
		} else {
			p.Duration = time.Duration(d * float64(time.Millisecond))
		}
	}
	own := in
	for _, c := range e.children {
		if c.enabled {
			fb.config(c, &own, &p.Scope, &in.group.Data)
		}
	}
	if len(p.Scope.Extract) > 0 || len(p.Scope.Assert) > 0 {
		fb.warnAt(e, false, "extractors and assertions under a Flow Control Action have no sample to read")
		p.Scope.Extract, p.Scope.Assert = nil, nil
	}
	return p
}

// timer translates a timer; nil (with a warning) when its fields cannot
// be evaluated before the run.
func (fb *flowBuilder) timer(e *element, kind TimerKind) *load.Timer {
	ms := func(field string) (time.Duration, bool) {
		f, ok, msg := number(fb.fixed, e.str(field))
		if !ok && msg != "" {
			fb.warnAt(e, true, "%s %s: the timer is not run", field, msg)
			return 0, false
		}
		return time.Duration(f * float64(time.Millisecond)), true
	}
	switch kind {
	case Constant:
		d, ok := ms("ConstantTimer.delay")
		if !ok {
			return nil
		}
		return &load.Timer{Kind: load.TimerConstant, Delay: d}
	case UniformRandom, GaussianRandom, PoissonRandom:
		d, ok1 := ms("ConstantTimer.delay")
		r, ok2 := ms("RandomTimer.range")
		if !ok1 || !ok2 || d < 0 || r < 0 {
			return nil
		}
		t := &load.Timer{Kind: load.TimerUniform, Delay: d, Range: r}
		switch kind {
		case GaussianRandom:
			t.Kind = load.TimerGaussian
		case PoissonRandom:
			t.Kind, t.Range, t.Lambda = load.TimerPoisson, 0, float64(r.Milliseconds())
		}
		return t
	case ConstantThroughput:
		v, _ := e.raw("throughput")
		f, ok, msg := number(fb.fixed, v)
		if !ok || f <= 0 {
			if msg == "" {
				msg = "is not positive"
			}
			fb.warnAt(e, true, "throughput %s; the timer is not run", msg)
			return nil
		}
		rate, err := limit.RateOf(f, time.Minute)
		if err != nil {
			fb.warnAt(e, true, "throughput %v: %v; the timer is not run", f, err)
			return nil
		}
		mode, _ := parseCalcMode(e.str("calcMode"))
		return &load.Timer{Kind: load.TimerConstantThroughput, Rate: rate, Mode: mode}
	case PreciseThroughput:
		tp, ok1, _ := number(fb.fixed, e.str("throughput"))
		period, ok2, _ := number(fb.fixed, e.str("throughputPeriod"))
		if !ok2 {
			period, ok2 = 3600, true
		}
		if !ok1 || tp <= 0 || period <= 0 {
			fb.warnAt(e, true, "Precise Throughput Timer throughput %q per %q s cannot be evaluated: the timer is not run", e.str("throughput"), e.str("throughputPeriod"))
			return nil
		}
		rate, err := limit.RateOf(tp, time.Duration(period*float64(time.Second)))
		if err != nil {
			fb.warnAt(e, true, "Precise Throughput Timer: %v", err)
			return nil
		}
		if b, ok, _ := number(fb.fixed, e.str("batchSize")); ok && b > 1 {
			fb.warnAt(e, true, "Precise Throughput Timer batches of %g are run one by one", b)
		}
		return &load.Timer{Kind: load.TimerPreciseThroughput, Rate: rate}
	case Synchronizing:
		n, _, _ := number(fb.fixed, e.str("groupSize"))
		to, _, _ := number(fb.fixed, e.str("timeoutInMs"))
		return &load.Timer{Kind: load.TimerSynchronizing, GroupSize: int(n), Timeout: time.Duration(to * float64(time.Millisecond))}
	}
	return nil
}
