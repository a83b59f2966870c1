package jmx

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The tree walk. JMeter applies config elements, timers, assertions and
// post-processors to every sampler in their scope (the element's parent and
// everything below it), wherever they stand in it; samplers and controllers
// run in tree order. The builder mirrors that: it gathers what a level
// contributes to the scope first, then visits samplers and controllers in
// order, flattening the controllers it can emulate with the load engine's
// per-iteration request list.

// scope is what elements above a sampler contribute to it.
type scope struct {
	group    *ThreadGroup
	headers  []Header
	timers   []*Timer
	defaults []httpDefaults
	auth     []authEntry
	// repeat multiplies samplers inside nested Loop Controllers.
	repeat int
	// once is set inside a Once Only Controller.
	once bool
	// cookieManager is set when an HTTP Cookie Manager is in scope.
	cookieManager bool
	// csv holds Test Plan level CSV Data Sets, applied to every group.
	csv []*CSVDataSet
	// ctl names the controllers a sampler sits in, for messages.
	ctl []string
	// conds are the If Controller conditions a sampler sits under; they
	// are fixed for the run (else reported) and evaluated with -J.
	conds []string
}

// httpDefaults is an HTTP Request Defaults element: values used by the
// samplers in its scope whose own field is empty (the nearest one wins).
type httpDefaults struct {
	Protocol, Domain, Port, Path   string
	ConnectTimeout, ResponseTimout string
	Arguments                      []Argument
	// Embedded is the defaults' "retrieve all embedded resources"
	// (HTTPSampler.image_parser), "" when they do not set it.
	Embedded string
	// embed holds the defaults' other embedded-resource fields that are
	// set (concurrentDwn, concurrentPool, embedded_url_re, …_exclude_re).
	embed map[string]string
}

// embedFields are the embedded-resource fields a sampler takes from the
// HTTP Request Defaults in its scope when its own are empty.
var embedFields = []string{"HTTPSampler.concurrentDwn", "HTTPSampler.concurrentPool",
	"HTTPSampler.embedded_url_re", "HTTPSampler.embedded_url_exclude_re"}

// authEntry is one row of an HTTP Authorization Manager.
type authEntry struct {
	URL, User, Password, Mechanism string
	path                           string
	line                           int
}

type builder struct {
	plan *Plan
	// planCSV are CSV Data Sets at Test Plan level, given to each group.
	planCSV []*CSVDataSet
	// extracted lists the variables extractors set at run time.
	extracted map[string]*element
	// planShaping are Throughput Shaping Timers at Test Plan level.
	planShaping []*Timer
}

func (b *builder) warn(e *element, unfaithful bool, format string, args ...any) {
	b.plan.Warnings = append(b.plan.Warnings, Warning{
		Path: e.path, Line: e.line, Message: fmt.Sprintf(format, args...), Unfaithful: unfaithful,
	})
}

// Element classes, by the tag JMeter saves.
var (
	samplerTags = map[string]bool{"HTTPSamplerProxy": true, "HTTPSampler": true, "HTTPSampler2": true}
	timerTags   = map[string]TimerKind{
		"ConstantThroughputTimer": ConstantThroughput, "ConstantTimer": Constant, "UniformRandomTimer": UniformRandom,
		"GaussianRandomTimer": GaussianRandom, "PoissonRandomTimer": PoissonRandom,
		"kg.apc.jmeter.timers.VariableThroughputTimer": ShapingTimer,
		"PreciseThroughputTimer":                       PreciseThroughput, "SyncTimer": Synchronizing,
	}
	threadGroupTags = map[string]string{
		"ThreadGroup": "thread", "SetupThreadGroup": "setUp", "PostThreadGroup": "tearDown",
		"kg.apc.jmeter.threads.SteppingThreadGroup":                          "stepping",
		"kg.apc.jmeter.threads.UltimateThreadGroup":                          "ultimate",
		"com.blazemeter.jmeter.threads.concurrency.ConcurrencyThreadGroup":   "concurrency",
		"com.blazemeter.jmeter.threads.arrivals.ArrivalsThreadGroup":         "arrivals",
		"com.blazemeter.jmeter.threads.arrivals.FreeFormArrivalsThreadGroup": "freeform",
		"OpenModelThreadGroup":                                               "openmodel",
	}
	assertionTags = map[string]bool{
		"ResponseAssertion": true, "DurationAssertion": true, "SizeAssertion": true, "JSONPathAssertion": true,
		"XPathAssertion": true, "XPath2Assertion": true, "HTMLAssertion": true, "MD5HexAssertion": true,
		"com.atlantbh.jmeter.plugins.jsonutils.jsonpathassertion.JSONPathAssertion": true,
	}
	// extractorTags maps an extractor to the property naming its variable.
	extractorTags = map[string]string{
		"RegexExtractor": "RegexExtractor.refname", "JSONPostProcessor": "JSONPostProcessor.referenceNames",
		"BoundaryExtractor": "BoundaryExtractor.refname", "HtmlExtractor": "HtmlExtractor.refname",
		"XPathExtractor": "XPathExtractor.refname", "XPath2Extractor": "XPathExtractor2.refname",
		"JMESPathExtractor": "JMESExtractor.referenceName",
		"com.atlantbh.jmeter.plugins.jsonutils.jsonpathextractor.JSONPathExtractor": "VAR",
	}
	listenerTags = map[string]bool{"ResultCollector": true, "BackendListener": true, "Summariser": true}
	// ignoredTags change nothing about the requests sent.
	ignoredTags = map[string]string{
		"DebugPostProcessor": "a debug post-processor", "ProxyControl": "the recorder", "WorkBench": "the workbench",
		"DNSCacheManager": "a DNS cache manager (ratelab resolves names itself)", "TestFragmentController": "a test fragment (run only through a Module Controller)",
	}
	// transparentControllers run their children once, in order.
	transparentControllers = map[string]string{
		"GenericController": "Simple Controller", "TransactionController": "Transaction Controller", "RecordingController": "Recording Controller",
	}
)

// walk visits one hashTree level.
func (b *builder) walk(els []*element, sc scope) {
	for _, e := range els {
		if !e.enabled {
			continue
		}
		b.gather(e, &sc)
	}
	for _, e := range els {
		if !e.enabled {
			continue
		}
		b.visit(e, sc)
	}
}

// gather adds what a config element, timer or manager contributes to the
// scope of its level, and reports the elements ratelab does not run.
func (b *builder) gather(e *element, sc *scope) {
	if kind, ok := timerTags[e.tag]; ok {
		if kind == ShapingTimer {
			t := b.timer(e, kind)
			if sc.group != nil {
				sc.group.shaping = append(sc.group.shaping, t)
			} else {
				b.planShaping = append(b.planShaping, t)
			}
			return
		}
		if t := b.timer(e, kind); t != nil {
			sc.timers = append(append([]*Timer{}, sc.timers...), t)
		}
		return
	}
	switch {
	case e.tag == "HeaderManager":
		sc.headers = mergeHeaders(sc.headers, headers(e))
	case e.tag == "ConfigTestElement" && e.props["HTTPsampler.Arguments"] != nil || e.tag == "ConfigTestElement" && e.str("HTTPSampler.domain") != "":
		sc.defaults = append([]httpDefaults{defaultsOf(e)}, sc.defaults...)
	case e.tag == "ConfigTestElement":
		b.warn(e, false, "config element ignored: it sets nothing ratelab sends")
	case e.tag == "AuthManager":
		sc.auth = append(authEntries(e), sc.auth...)
	case e.tag == "Arguments":
		// A User Defined Variables element: JMeter sets its variables once,
		// at the start, whatever its place in the tree.
		for _, a := range arguments(&prop{items: []*prop{e.props["Arguments.arguments"]}}) {
			b.plan.Variables = append(b.plan.Variables, Variable(a))
		}
	case e.tag == "CSVDataSet":
		c := csvDataSet(e)
		if sc.group == nil {
			b.planCSV = append(b.planCSV, c)
			return
		}
		sc.group.CSV = append(sc.group.CSV, c)
	case e.tag == "CookieManager":
		sc.cookieManager = true
		if sc.group != nil {
			sc.group.CookieManager = true
		} else {
			b.plan.cookieManager = true
		}
		b.warn(e, true, "HTTP Cookie Manager is not emulated: ratelab keeps no cookie jar, so cookies the server sets are not sent back (the load differs only when the server sets cookies)")
	case e.tag == "CacheManager":
		if sc.group != nil {
			sc.group.CacheManager = true
		} else {
			b.plan.cacheManager = true
		}
		b.warn(e, false, "HTTP Cache Manager is not emulated: every request goes to the server")
	case listenerTags[e.tag] || strings.HasPrefix(e.tag, "kg.apc.jmeter.vizualizers.") || strings.HasPrefix(e.tag, "kg.apc.jmeter.listener"):
		if sc.group != nil && e.tag == "ResultCollector" && savesResponseData(e) {
			sc.group.SaveResponseData = true
		}
		b.warn(e, false, "listener ignored: ratelab writes its own results (--jtl, --json, --html)")
	case assertionTags[e.tag]:
		b.assertion(e, sc)
	case extractorTags[e.tag] != "":
		b.extractor(e)
	case ignoredTags[e.tag] != "":
		b.warn(e, false, "%s is ignored", ignoredTags[e.tag])
	case threadGroupTags[e.tag] != "", samplerTags[e.tag], isController(e.tag), e.tag == "TestAction":
		// Run in tree order by visit.
	default:
		b.warn(e, true, "%s is not supported and is not run", e.tag)
	}
}

func isController(tag string) bool {
	switch tag {
	case "LoopController", "IfController", "OnceOnlyController", "GenericController", "TransactionController",
		"RecordingController", "WhileController", "ForeachController", "InterleaveControl", "RandomController",
		"RandomOrderController", "SwitchController", "ThroughputController", "RunTime", "ModuleController",
		"IncludeController", "CriticalSectionController":
		return true
	}
	return strings.HasPrefix(tag, "kg.apc.jmeter.control.") || strings.HasPrefix(tag, "com.blazemeter.jmeter.control")
}

// visit runs a thread group, a controller or a sampler in tree order.
func (b *builder) visit(e *element, sc scope) {
	if kind := threadGroupTags[e.tag]; kind != "" {
		if sc.group != nil {
			b.warn(e, true, "a thread group inside a thread group is not supported")
			return
		}
		g := b.threadGroup(e, kind)
		b.plan.Groups = append(b.plan.Groups, g)
		inner := sc
		inner.group, inner.repeat = g, 1
		inner.cookieManager = sc.cookieManager || b.plan.cookieManager
		g.CookieManager = g.CookieManager || b.plan.cookieManager
		g.CacheManager = g.CacheManager || b.plan.cacheManager
		b.walk(e.children, inner)
		// Test Plan level CSV Data Sets feed every group; they are listed
		// after the group's own so that the group's own come first.
		g.CSV = append(g.CSV, b.planCSV...)
		g.shaping = append(g.shaping, b.planShaping...)
		g.resolve(g.env)
		return
	}
	switch {
	case samplerTags[e.tag]:
		if sc.group == nil {
			b.warn(e, true, "HTTP Request outside a thread group is not run")
			return
		}
		s := b.sampler(e, sc)
		for range sc.repeat {
			sc.group.Samplers = append(sc.group.Samplers, s)
		}
	case e.tag == "TestAction":
		b.testAction(e, sc)
	case isController(e.tag):
		if sc.group == nil {
			b.warn(e, true, "%s outside a thread group is not run", e.tag)
			return
		}
		b.controller(e, sc)
	}
}

// controller flattens a logic controller into the thread group's request
// list where the load engine can run it as JMeter does, and says so where
// it cannot.
func (b *builder) controller(e *element, sc scope) {
	inner := sc
	inner.ctl = append(append([]string{}, sc.ctl...), e.tag)
	if name, ok := transparentControllers[e.tag]; ok {
		if e.tag == "TransactionController" {
			b.warn(e, false, "Transaction Controller: its requests run in order; the transaction's own sample (%q, their total time) is not written by ratelab", e.name)
		}
		_ = name
		b.walk(e.children, inner)
		return
	}
	switch e.tag {
	case "LoopController":
		raw := e.str("LoopController.loops")
		n, err := strconv.Atoi(sc.group.env.translate(raw).text)
		if err != nil || n < 1 || n*sc.repeat > 1000 {
			b.warn(e, true, "Loop Controller with loops %q is run once: ratelab repeats requests inside a thread group only a fixed 1–1000 times", raw)
			n = 1
		}
		inner.repeat = sc.repeat * n
	case "OnceOnlyController":
		inner.once = true
		if sc.group.Loops != 1 || sc.repeat > 1 {
			b.warn(e, true, "Once Only Controller: its requests run on every iteration, not only the first (ratelab's request list is the same in every iteration)")
		}
	case "IfController":
		cond := e.str("IfController.condition")
		if _, ok := evalCondition(cond, sc.group.env); ok {
			// Fixed for the run: evaluated again with the -J properties
			// when the request list is made.
			inner.conds = append(append([]string{}, sc.conds...), cond)
		} else {
			b.warn(e, true, "If Controller condition %q depends on run-time values: its requests are sent on every iteration", cond)
		}
	default:
		b.warn(e, true, "%s is not emulated: its requests run once per iteration, in tree order", e.tag)
	}
	b.walk(e.children, inner)
}

func (b *builder) threadGroup(e *element, kind string) *ThreadGroup {
	g := &ThreadGroup{Name: e.name, Path: e.path, Line: e.line, Loops: 1, OnError: "continue", Kind: kind, el: e}
	g.env = b.env()
	if v := e.str("ThreadGroup.on_sample_error"); v != "" {
		g.OnError = v
	}
	if g.OnError != "continue" {
		b.warn(e, true, "on_sample_error %q is not emulated: after a failed sample ratelab carries on as with \"continue\"", g.OnError)
	}
	g.resolve(g.env)
	return g
}

// env returns the expression environment of the plan so far: its
// properties and the user-defined variables seen before this point.
func (b *builder) env() *exprEnv {
	env := &exprEnv{props: map[string]string{}, vars: map[string]string{}, csv: map[string]bool{}}
	for _, v := range b.plan.Variables {
		env.vars[v.Name] = env.translate(v.Value).text
	}
	return env
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
	connect, response := e.str("HTTPSampler.connect_timeout"), e.str("HTTPSampler.response_timeout")
	args := arguments(e.props["HTTPsampler.Arguments"])
	// The nearest HTTP Request Defaults fill what the sampler leaves empty,
	// and add their arguments (JMeter merges them, the sampler's first).
	for _, d := range sc.defaults {
		fill := func(dst *string, v string) {
			if *dst == "" {
				*dst = v
			}
		}
		fill(&s.Protocol, d.Protocol)
		fill(&s.Domain, d.Domain)
		fill(&s.Port, d.Port)
		fill(&s.URLPath, d.Path)
		fill(&connect, d.ConnectTimeout)
		fill(&response, d.ResponseTimout)
		args = append(args, d.Arguments...)
	}
	s.ConnectTimeout = millis(connect)
	s.ResponseTimeout = millis(response)
	s.Encoding = e.str("HTTPSampler.contentEncoding")
	if e.str("HTTPSampler.postBodyRaw") == "true" {
		for _, a := range args {
			s.Body += a.Value
		}
	} else {
		s.Arguments = args
	}
	if files := e.props["HTTPsampler.Files"]; files != nil && len(files.items) > 0 && len(files.items[0].items) > 0 {
		b.warn(e, true, "file upload is not supported: the files are not sent")
	}
	for _, f := range []string{"HTTPSampler.DO_MULTIPART_POST", "HTTPSampler.image_parser"} {
		if e.str(f) == "true" {
			b.warn(e, true, "%s is not supported", f)
		}
	}
	s.auth, s.conds = sc.auth, sc.conds
	// Elements below the sampler apply to it alone.
	own := sc
	own.headers, own.timers = s.Headers, s.Timers
	for _, c := range e.children {
		if !c.enabled {
			continue
		}
		if samplerTags[c.tag] || isController(c.tag) || threadGroupTags[c.tag] != "" {
			b.warn(c, true, "%s under an HTTP Request is not run", c.tag)
			continue
		}
		b.gather(c, &own)
	}
	s.Headers, s.Timers = own.headers, own.timers
	if len(own.defaults) > len(sc.defaults) {
		b.warn(e, false, "HTTP Request Defaults below a sampler have no effect in JMeter either")
	}
	s.auth = own.auth
	return s
}

// testAction is a Flow Control Action: its pause, and the timers in its
// scope, delay the next request.
func (b *builder) testAction(e *element, sc scope) {
	if sc.group == nil {
		return
	}
	action := e.str("ActionProcessor.action")
	if action != "" && action != "1" {
		b.warn(e, true, "Flow Control Action %s (stop, restart, break) is not emulated", action)
		return
	}
	p := &Sampler{Name: e.name, Path: e.path, Line: e.line, Pause: true, Timers: sc.timers, conds: sc.conds}
	raw := e.str("ActionProcessor.duration")
	if v := sc.group.env.translate(raw); strings.Contains(v.text, "{{random ") {
		lo, hi := 0, 0
		if _, err := fmt.Sscanf(v.text, "{{random %d %d}}", &lo, &hi); err == nil {
			p.PauseFor = time.Duration(lo+hi) * time.Millisecond / 2
			b.warn(e, true, "a random pause %q is run as its mean, %v", raw, p.PauseFor)
		}
	} else if d, err := strconv.ParseFloat(strings.TrimSpace(v.text), 64); err == nil {
		p.PauseFor = time.Duration(d * float64(time.Millisecond))
	} else if raw != "" {
		b.warn(e, true, "pause %q is not a number ratelab can evaluate", raw)
	}
	own := sc
	for _, c := range e.children {
		if c.enabled {
			b.gather(c, &own)
		}
	}
	p.Timers = own.timers
	for range sc.repeat {
		sc.group.Samplers = append(sc.group.Samplers, p)
	}
}

// assertion reports an assertion: ratelab does not check responses, which
// changes the load only when a failed sample changes what a thread does.
func (b *builder) assertion(e *element, sc *scope) {
	if sc.group != nil && sc.group.OnError != "continue" {
		b.warn(e, true, "%s is not evaluated, and the thread group acts on failed samples (%s)", e.tag, sc.group.OnError)
		return
	}
	b.warn(e, false, "%s is not evaluated: samples it would fail are counted by status code alone (the requests sent are the same)", e.tag)
}

// extractor records the variable an extractor sets; whether that changes
// the load depends on a request using it, checked once the plan is read.
func (b *builder) extractor(e *element) {
	for _, name := range strings.Split(e.str(extractorTags[e.tag]), ";") {
		if name = strings.TrimSpace(name); name != "" {
			if b.extracted == nil {
				b.extracted = map[string]*element{}
			}
			if _, seen := b.extracted[name]; !seen {
				b.extracted[name] = e
			}
		}
	}
}

func (b *builder) timer(e *element, kind TimerKind) *Timer {
	t := &Timer{Kind: kind, Path: e.path, Line: e.line, el: e}
	switch kind {
	case PreciseThroughput, Synchronizing:
		b.warn(e, true, "%s is not emulated", e.tag)
		return nil
	case UniformRandom, GaussianRandom, PoissonRandom:
		b.warn(e, true, "%s is run as its mean delay: ratelab's think time is fixed", e.tag)
	}
	return t
}

// Mean is the mean delay a timer adds before a sample.
func (t *Timer) Mean() time.Duration {
	switch t.Kind {
	case Constant:
		return t.Delay
	case UniformRandom:
		return t.Delay + t.Range/2
	case GaussianRandom:
		return t.Delay
	case PoissonRandom:
		return t.Delay + t.Range
	}
	return 0
}

func defaultsOf(e *element) httpDefaults {
	return httpDefaults{
		Protocol: e.str("HTTPSampler.protocol"), Domain: e.str("HTTPSampler.domain"),
		Port: e.str("HTTPSampler.port"), Path: e.str("HTTPSampler.path"),
		ConnectTimeout: e.str("HTTPSampler.connect_timeout"), ResponseTimout: e.str("HTTPSampler.response_timeout"),
		Arguments: arguments(e.props["HTTPsampler.Arguments"]),
		Embedded:  e.str("HTTPSampler.image_parser"),
		embed:     embedProps(e),
	}
}

func embedProps(e *element) map[string]string {
	m := map[string]string{}
	for _, f := range embedFields {
		if v := e.str(f); v != "" {
			m[f] = v
		}
	}
	return m
}

func authEntries(e *element) []authEntry {
	var out []authEntry
	if list := e.props["AuthManager.auth_list"]; list != nil {
		for _, it := range list.items {
			if it.props == nil {
				continue
			}
			get := func(n string) string {
				if p := it.props[n]; p != nil {
					return strings.TrimSpace(p.value)
				}
				return ""
			}
			out = append(out, authEntry{URL: get("Authorization.url"), User: get("Authorization.username"),
				Password: get("Authorization.password"), Mechanism: get("Authorization.mechanism"), path: e.path, line: e.line})
		}
	}
	return out
}

// basicAuth returns the Authorization header JMeter sends for url from the
// first matching Authorization Manager row (JMeter sends Basic credentials
// pre-emptively), and whether a row matched that ratelab cannot emulate.
func basicAuth(entries []authEntry, url string, env *exprEnv) (value string, unsupported *authEntry) {
	for i := range entries {
		a := &entries[i]
		if a.URL != "" && !strings.HasPrefix(url, env.translate(a.URL).text) {
			continue
		}
		if a.Mechanism != "" && a.Mechanism != "BASIC" && a.Mechanism != "BASIC_DIGEST" {
			return "", a
		}
		user, pass := env.translate(a.User), env.translate(a.Password)
		if user.varies || pass.varies || strings.Contains(user.text, "${") || strings.Contains(pass.text, "${") {
			return "", a
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user.text+":"+pass.text)), nil
	}
	return "", nil
}
