package load

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// ParseFlow reads a flow from YAML. Every error names the line and the
// field; unknown fields are errors. dir resolves relative file names
// (CSV files); "" leaves them as they are.
//
// A flow with one thread group may give the group's fields (threads,
// loops, steps, …) at the top level instead of under groups. The format:
//
//	name: shop
//	base_url: http://127.0.0.1:8080
//	vars: {user: ann}               # JMeter's User Defined Variables, in order
//	cookies: {clear_each_iteration: true}   # or cookies: true
//	headers: {Accept: application/json}
//	data:                            # CSV Data Set Config
//	  - {file: users.csv, vars: [user, pass], ignore_first_line: true,
//	     delimiter: ",", quoted: true, share: all, recycle: false, stop_thread: true}
//	plan_timers: [...]               # and plan_extract, plan_assert, plan_counters,
//	                                 # plan_random: in scope of every group
//	retry_after: honor
//	timeout: 10s
//	connections: 50
//	groups:
//	  - name: users
//	    kind: normal                 # setup, normal or teardown
//	    threads: 10
//	    ramp_up: 10s
//	    loops: 5                     # and/or duration: 1m (the scheduler's)
//	    delay: 2s                    # the scheduler's startup delay
//	    on_sample_error: continue    # start_next_loop, stop_thread, stop_test, stop_test_now
//	    # rate: 10/s or stages: ... and max_workers: the open model
//	    timers:     [{constant: 100ms}]          # in scope of every request below
//	    extract:    [...]
//	    assert:     [...]
//	    counters:   [{var: n, start: 1, incr: 1, max: 100, format: "000", per_user: true}]
//	    random:     [{var: r, min: 1, max: 9}]
//	    steps:
//	      - request: {name: home, url: /, embedded: true}   # or embedded:
//	                   # {match: '.*/static/.*', exclude: '.*\.mp4', concurrent: 6}
//	      - transaction:
//	          name: login
//	          steps:
//	            - request:
//	                name: login
//	                method: POST
//	                url: /login
//	                body: 'user={{.user}}'
//	                extract: [{regex: {var: token, expr: 'token=(\w+)'}}]
//	                assert: [{response: {field: code, match: equals, patterns: ["200"]}}]
//	      - loop: {count: 3, steps: [...]}
//	      - while: {condition: '"{{.more}}" == "true"', steps: [...]}
//	      - foreach: {input: ids, output: id, steps: [...]}
//	      - if: {condition: '{{.n}} > 3', steps: [...]}
//	      - once_only: {steps: [...]}
//	      - runtime: {duration: 5s, steps: [...]}
//	      - throughput: {percent: 25, per_user: true, steps: [...]}   # or executions: 10
//	      - random: {steps: [...]}
//	      - interleave: {steps: [...]}
//	      - switch: {value: '{{.kind}}', steps: [...]}
//	      - pause: {duration: 1s, timers: [...]}   # Flow Control Action: no request
//	      - simple: {steps: [...]}
//
// headers may be given wherever timers may: on the flow, a group, a
// controller or a request.
//
// Timers: {constant: 100ms}, {uniform: {delay: 100ms, range: 50ms}},
// {gaussian: {delay: 100ms, deviation: 20ms}}, {poisson: {delay: 0, lambda: 100}},
// {constant_throughput: {rate: 60/m, mode: all-threads}},
// {precise_throughput: {rate: 10/s}}, {synchronizing: {group_size: 5, timeout: 1s}}.
//
// Extractors: {regex: {var, expr, template: "$1$", match: 1, default, default_empty, field}},
// {jsonpath: {var, expr, match, default, default_empty}}, {boundary: {var, left, right, match,
// default, default_empty, field}}; field is body, headers, url, code or message; match 0 is
// random, -1 all (var_1 … var_N, var_matchNr).
//
// Assertions: {response: {field, match: contains|matches|equals|substring, patterns, not,
// or, ignore_status}}, {duration: 500ms}, {size: {bytes: 100, compare: "<="}},
// {json: {path, expected, regex, null, invert}}.
func ParseFlow(src []byte, dir string) (*Flow, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(src)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("flow: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("flow: empty document")
	}
	root := doc.Content[0]
	f := &Flow{}
	single := &ThreadGroup{Name: "thread group"}
	singleUsed, groupsGiven := false, false
	groupsLine := root.Line
	err := eachField(root, "", func(key string, v *yaml.Node) error {
		var err error
		switch key {
		case "name":
			f.Name, err = str(v)
		case "base_url":
			f.BaseURL, err = str(v)
		case "vars":
			f.Vars, err = vars(v, "vars")
		case "cookies":
			f.Cookies, err = cookies(v)
		case "headers":
			f.Headers, err = headers(v)
		case "data":
			f.Data, err = csvList(v, "data", dir)
		case "retry_after":
			var t string
			if t, err = str(v); err == nil {
				f.RetryAfter, err = ParseRetryAfterMode(t)
			}
		case "timeout":
			f.Timeout, err = duration(v)
		case "connections":
			f.Connections, err = integer(v)
		case "groups":
			groupsLine, groupsGiven = v.Line, true
			if v.Kind != yaml.SequenceNode {
				return errors.New("want a list of thread groups")
			}
			for i, gn := range v.Content {
				g := &ThreadGroup{Name: fmt.Sprintf("thread group %d", i+1)}
				if err := eachField(gn, fmt.Sprintf("groups[%d]", i), func(k string, gv *yaml.Node) error {
					return groupField(g, k, gv, fmt.Sprintf("groups[%d].%s", i, k), dir)
				}); err != nil {
					return err
				}
				if err := checkGroup(g, gn.Line, fmt.Sprintf("groups[%d]", i)); err != nil {
					return err
				}
				f.Groups = append(f.Groups, g)
			}
		case "plan_timers", "plan_extract", "plan_assert", "plan_counters", "plan_random":
			_, err = scopeField(&f.Scope, strings.TrimPrefix(key, "plan_"), v, key)
		default:
			singleUsed = true
			return groupField(single, key, v, key, dir)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if singleUsed {
		if groupsGiven {
			return nil, &ScenarioError{Line: groupsLine, Field: "groups", Err: errors.New("give groups, or one group's fields at the top level, not both")}
		}
		if err := checkGroup(single, root.Line, "flow"); err != nil {
			return nil, err
		}
		f.Groups = []*ThreadGroup{single}
	}
	if len(f.Groups) == 0 {
		return nil, &ScenarioError{Line: groupsLine, Field: "groups", Err: errors.New("at least one thread group with steps is required")}
	}
	return f, nil
}

func checkGroup(g *ThreadGroup, line int, field string) error {
	if len(g.Steps) == 0 {
		return &ScenarioError{Line: line, Field: field + ".steps", Err: errors.New("at least one step is required")}
	}
	if err := g.Workload.Validate(); err != nil {
		return &ScenarioError{Line: line, Field: field, Err: err}
	}
	return nil
}

// groupField sets field k of a thread group.
func groupField(g *ThreadGroup, k string, v *yaml.Node, field, dir string) error {
	var err error
	switch k {
	case "name":
		g.Name, err = str(v)
	case "kind":
		var t string
		if t, err = str(v); err == nil {
			switch t {
			case "normal", "":
				g.Kind = GroupNormal
			case "setup", "set_up":
				g.Kind = GroupSetUp
			case "teardown", "tear_down":
				g.Kind = GroupTearDown
			default:
				err = fmt.Errorf("%q: want setup, normal or teardown", t)
			}
		}
	case "delay":
		g.Delay, err = duration(v)
	case "on_sample_error":
		var t string
		if t, err = str(v); err == nil {
			g.OnSampleError, err = ParseSampleErrorAction(t)
		}
	case "vars":
		g.Vars, err = vars(v, field)
	case "data":
		g.Data, err = csvList(v, field, dir)
	case "steps":
		g.Steps, err = steps(v, field)
	default:
		var ok bool
		if ok, err = workloadField(&g.Workload, k, v); ok {
			break
		}
		if ok, err = scopeField(&g.Scope, k, v, field); !ok {
			return errUnknown
		}
	}
	return err
}

// workloadField sets the workload fields that a scenario and a flow's
// thread groups share (threads, ramp_up, loops, duration, rate, stages,
// max_workers); ok is false for any other key.
func workloadField(w *Workload, k string, v *yaml.Node) (ok bool, err error) {
	switch k {
	case "threads":
		w.Threads, err = integer(v)
	case "ramp_up":
		w.RampUp, err = duration(v)
	case "loops":
		w.Loops, err = integer(v)
	case "duration":
		w.Duration, err = duration(v)
	case "rate":
		w.Rate, err = rate(v)
	case "stages":
		var t string
		if t, err = str(v); err == nil {
			w.Stages, err = ParseStages(t)
		}
	case "max_workers":
		w.MaxWorkers, err = integer(v)
	default:
		return false, nil
	}
	return true, err
}

// ParseSampleErrorAction reads an on_sample_error action: continue,
// start_next_loop, stop_thread, stop_test or stop_test_now (JMeter's
// names, with "startnextloop", "stopthread", "stoptest" and "stoptestnow",
// are read too).
func ParseSampleErrorAction(s string) (SampleErrorAction, error) {
	switch strings.ReplaceAll(strings.ToLower(s), "_", "") {
	case "continue", "":
		return ErrorContinue, nil
	case "startnextloop", "startnextthreadloop":
		return ErrorStartNextLoop, nil
	case "stopthread":
		return ErrorStopThread, nil
	case "stoptest":
		return ErrorStopTest, nil
	case "stoptestnow":
		return ErrorStopTestNow, nil
	}
	return 0, fmt.Errorf("on_sample_error %q: want continue, start_next_loop, stop_thread, stop_test or stop_test_now", s)
}

// scopeField sets the scope fields (timers, extract, assert, counters,
// random); ok is false for any other key.
func scopeField(sc *Scope, k string, v *yaml.Node, field string) (ok bool, err error) {
	switch k {
	case "headers":
		sc.Headers, err = headers(v)
	case "timers":
		err = eachItem(v, field, func(n *yaml.Node, f string) error {
			t, err := timer(n, f)
			sc.Timers = append(sc.Timers, t)
			return err
		})
	case "extract":
		err = eachItem(v, field, func(n *yaml.Node, f string) error {
			e, err := extract(n, f)
			sc.Extract = append(sc.Extract, e)
			return err
		})
	case "assert":
		err = eachItem(v, field, func(n *yaml.Node, f string) error {
			a, err := assertion(n, f)
			sc.Assert = append(sc.Assert, a)
			return err
		})
	case "counters":
		err = eachItem(v, field, func(n *yaml.Node, f string) error {
			c := &Counter{Incr: 1}
			sc.Counters = append(sc.Counters, c)
			return eachField(n, f, func(k string, cv *yaml.Node) error {
				var err error
				switch k {
				case "var":
					c.Var, err = str(cv)
				case "start":
					c.Start, err = int64Of(cv)
				case "incr":
					c.Incr, err = int64Of(cv)
				case "max":
					c.Max, err = int64Of(cv)
				case "format":
					c.Format, err = str(cv)
				case "per_user":
					c.PerUser, err = boolean(cv)
				case "reset_on_group_iteration":
					c.ResetOnGroupIteration, err = boolean(cv)
				default:
					return errUnknown
				}
				return err
			})
		})
	case "random":
		err = eachItem(v, field, func(n *yaml.Node, f string) error {
			r := &RandomVar{}
			sc.Random = append(sc.Random, r)
			return eachField(n, f, func(k string, rv *yaml.Node) error {
				var err error
				switch k {
				case "var":
					r.Var, err = str(rv)
				case "min":
					r.Min, err = int64Of(rv)
				case "max":
					r.Max, err = int64Of(rv)
				case "format":
					r.Format, err = str(rv)
				case "seed":
					r.Seed, err = int64Of(rv)
				default:
					return errUnknown
				}
				return err
			})
		})
	default:
		return false, nil
	}
	return true, err
}

// eachItem calls fn for every item of sequence v, named field[i].
func eachItem(v *yaml.Node, field string, fn func(n *yaml.Node, field string) error) error {
	if v.Kind != yaml.SequenceNode {
		return errors.New("want a list")
	}
	for i, n := range v.Content {
		if err := fn(n, fmt.Sprintf("%s[%d]", field, i)); err != nil {
			var se *ScenarioError
			if errors.As(err, &se) {
				return err
			}
			return &ScenarioError{Line: n.Line, Field: fmt.Sprintf("%s[%d]", field, i), Err: err}
		}
	}
	return nil
}

// oneKey reads a mapping of one key, {kind: value}.
func oneKey(n *yaml.Node, field string) (string, *yaml.Node, error) {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return "", nil, &ScenarioError{Line: n.Line, Field: field, Err: errors.New("want a mapping of one key, such as {request: {...}}")}
	}
	return n.Content[0].Value, n.Content[1], nil
}

func steps(v *yaml.Node, field string) ([]Step, error) {
	var out []Step
	err := eachItem(v, field, func(n *yaml.Node, f string) error {
		s, err := step(n, f)
		out = append(out, s)
		return err
	})
	return out, err
}

func step(n *yaml.Node, field string) (Step, error) {
	kind, v, err := oneKey(n, field)
	if err != nil {
		return nil, err
	}
	field += "." + kind
	if kind == "request" {
		r := &Request{Line: n.Line}
		err := eachField(v, field, func(k string, f *yaml.Node) error {
			var err error
			switch k {
			case "name":
				r.Name, err = str(f)
			case "method":
				r.Method, err = str(f)
			case "url":
				r.URL, err = str(f)
			case "headers":
				r.Headers, err = headers(f)
			case "body":
				r.Body, err = str(f)
			case "think":
				r.Think, err = duration(f)
			case "embedded":
				r.Embedded, err = embedded(f, field+".embedded")
			default:
				var ok bool
				if ok, err = scopeField(&r.Scope, k, f, field+"."+k); !ok {
					return errUnknown
				}
			}
			return err
		})
		if err == nil && r.URL == "" {
			err = &ScenarioError{Line: v.Line, Field: field + ".url", Err: errors.New("required")}
		}
		return r, err
	}
	if kind == "pause" {
		p := &Pause{}
		err := eachField(v, field, func(k string, f *yaml.Node) error {
			var err error
			switch k {
			case "name":
				p.Name, err = str(f)
			case "duration":
				p.Duration, err = duration(f)
			default:
				var ok bool
				if ok, err = scopeField(&p.Scope, k, f, field+"."+k); !ok {
					return errUnknown
				}
			}
			return err
		})
		return p, err
	}
	var name string
	var sc Scope
	var children []Step
	// extra reads the controller's own fields.
	var extra func(k string, f *yaml.Node) error
	var s Step
	switch kind {
	case "simple", "group":
		c := &Simple{}
		s, extra = c, nil
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "transaction":
		c := &Transaction{}
		s = c
		extra = func(k string, f *yaml.Node) (err error) {
			switch k {
			case "parent":
				c.Parent, err = boolean(f)
			case "include_timers":
				c.IncludeTimers, err = boolean(f)
			default:
				return errUnknown
			}
			return err
		}
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "loop":
		c := &Loop{Count: 1}
		s = c
		extra = func(k string, f *yaml.Node) (err error) {
			if k != "count" {
				return errUnknown
			}
			t, err := str(f)
			if err != nil {
				return err
			}
			if n, err := strconv.Atoi(t); err == nil && n >= -1 {
				c.Count = n
				return nil
			}
			if strings.Contains(t, "{{") {
				c.CountExpr = t
				return nil
			}
			return fmt.Errorf("%q: want a whole number, -1 for forever, or a template", t)
		}
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "while":
		c := &While{}
		s = c
		extra = func(k string, f *yaml.Node) (err error) {
			if k != "condition" {
				return errUnknown
			}
			c.Condition, err = str(f)
			return err
		}
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "foreach":
		c := &ForEach{}
		s = c
		extra = func(k string, f *yaml.Node) (err error) {
			switch k {
			case "input":
				c.Input, err = str(f)
			case "output":
				c.Output, err = str(f)
			case "start":
				c.Start, err = integer(f)
			case "end":
				c.End, err = integer(f)
			case "no_separator":
				c.NoSeparator, err = boolean(f)
			default:
				return errUnknown
			}
			return err
		}
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "if":
		c := &If{}
		s = c
		extra = func(k string, f *yaml.Node) (err error) {
			switch k {
			case "condition":
				c.Condition, err = str(f)
			case "evaluate_all":
				c.EvaluateAll, err = boolean(f)
			default:
				return errUnknown
			}
			return err
		}
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "once_only":
		c := &OnceOnly{}
		s = c
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "runtime":
		c := &Runtime{}
		s = c
		extra = func(k string, f *yaml.Node) (err error) {
			if k != "duration" {
				return errUnknown
			}
			c.Duration, err = duration(f)
			return err
		}
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "throughput":
		c := &Throughput{}
		s = c
		extra = func(k string, f *yaml.Node) (err error) {
			switch k {
			case "percent":
				c.Percent = true
				c.Value, err = float(f)
			case "executions":
				c.Value, err = float(f)
			case "per_user":
				c.PerUser, err = boolean(f)
			default:
				return errUnknown
			}
			return err
		}
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "random":
		c := &RandomChoice{}
		s = c
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "interleave":
		c := &Interleave{}
		s = c
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	case "switch":
		c := &Switch{}
		s = c
		extra = func(k string, f *yaml.Node) (err error) {
			if k != "value" {
				return errUnknown
			}
			c.Value, err = str(f)
			return err
		}
		defer func() { c.Name, c.Scope, c.Steps = name, sc, children }()
	default:
		return nil, &ScenarioError{Line: n.Content[0].Line, Field: field, Err: errors.New("unknown step: want request, transaction, simple, loop, while, foreach, if, once_only, runtime, throughput, random, interleave or switch")}
	}
	stepsSeen := false
	err = eachField(v, field, func(k string, f *yaml.Node) error {
		var err error
		switch k {
		case "name":
			name, err = str(f)
		case "steps":
			stepsSeen = true
			children, err = steps(f, field+".steps")
		default:
			var ok bool
			if ok, err = scopeField(&sc, k, f, field+"."+k); ok {
				return err
			}
			if extra == nil {
				return errUnknown
			}
			return extra(k, f)
		}
		return err
	})
	if err == nil && !stepsSeen {
		err = &ScenarioError{Line: v.Line, Field: field + ".steps", Err: errors.New("required")}
	}
	return s, err
}

func timer(n *yaml.Node, field string) (*Timer, error) {
	kind, v, err := oneKey(n, field)
	if err != nil {
		return nil, err
	}
	t := &Timer{}
	field += "." + kind
	fields := func(fn func(k string, f *yaml.Node) error) error { return eachField(v, field, fn) }
	switch kind {
	case "constant":
		t.Kind = TimerConstant
		if v.Kind == yaml.ScalarNode {
			t.Delay, err = duration(v)
			break
		}
		err = fields(func(k string, f *yaml.Node) (err error) {
			if k != "delay" {
				return errUnknown
			}
			t.Delay, err = duration(f)
			return err
		})
	case "uniform", "gaussian", "poisson":
		t.Kind = map[string]TimerKind{"uniform": TimerUniform, "gaussian": TimerGaussian, "poisson": TimerPoisson}[kind]
		err = fields(func(k string, f *yaml.Node) (err error) {
			switch {
			case k == "delay":
				t.Delay, err = duration(f)
			case k == "range" && kind == "uniform", k == "deviation" && kind == "gaussian":
				t.Range, err = duration(f)
			case k == "lambda" && kind == "poisson":
				t.Lambda, err = float(f)
			default:
				return errUnknown
			}
			return err
		})
	case "constant_throughput", "precise_throughput":
		t.Kind = TimerConstantThroughput
		if kind == "precise_throughput" {
			t.Kind = TimerPreciseThroughput
		}
		err = fields(func(k string, f *yaml.Node) (err error) {
			switch {
			case k == "rate":
				t.Rate, err = rate(f)
			case k == "mode" && kind == "constant_throughput":
				var s string
				if s, err = str(f); err == nil {
					t.Mode, err = ParseThroughputMode(s)
				}
			default:
				return errUnknown
			}
			return err
		})
		if err == nil && t.Rate.Count <= 0 {
			err = &ScenarioError{Line: v.Line, Field: field + ".rate", Err: errors.New("required, such as 60/m")}
		}
	case "synchronizing":
		t.Kind = TimerSynchronizing
		err = fields(func(k string, f *yaml.Node) (err error) {
			switch k {
			case "group_size":
				t.GroupSize, err = integer(f)
			case "timeout":
				t.Timeout, err = duration(f)
			default:
				return errUnknown
			}
			return err
		})
	default:
		return nil, &ScenarioError{Line: n.Content[0].Line, Field: field, Err: errors.New("unknown timer: want constant, uniform, gaussian, poisson, constant_throughput, precise_throughput or synchronizing")}
	}
	return t, err
}

func fieldOf(f *yaml.Node) (ExtractField, error) {
	s, err := str(f)
	if err != nil {
		return 0, err
	}
	switch s {
	case "body", "":
		return FieldBody, nil
	case "headers":
		return FieldHeaders, nil
	case "url":
		return FieldURL, nil
	case "code":
		return FieldCode, nil
	case "message":
		return FieldMessage, nil
	}
	return 0, fmt.Errorf("%q: want body, headers, url, code or message", s)
}

func extract(n *yaml.Node, field string) (*Extract, error) {
	kind, v, err := oneKey(n, field)
	if err != nil {
		return nil, err
	}
	e := &Extract{Match: 1}
	field += "." + kind
	switch kind {
	case "regex":
		e.Kind, e.Template = ExtractRegex, "$1$"
	case "jsonpath", "json":
		e.Kind = ExtractJSONPath
	case "boundary":
		e.Kind = ExtractBoundary
	default:
		return nil, &ScenarioError{Line: n.Content[0].Line, Field: field, Err: errors.New("unknown extractor: want regex, jsonpath or boundary")}
	}
	err = eachField(v, field, func(k string, f *yaml.Node) (err error) {
		switch {
		case k == "var":
			e.Var, err = str(f)
		case k == "expr" && e.Kind != ExtractBoundary:
			e.Expr, err = str(f)
		case k == "template" && e.Kind == ExtractRegex:
			e.Template, err = str(f)
		case k == "left" && e.Kind == ExtractBoundary:
			e.Left, err = str(f)
		case k == "right" && e.Kind == ExtractBoundary:
			e.Right, err = str(f)
		case k == "match":
			var t string
			if t, err = str(f); err == nil {
				if e.Match, err = strconv.Atoi(t); err != nil || e.Match < -1 {
					err = fmt.Errorf("%q: want n ≥ 1, 0 for random or -1 for all", t)
				}
			}
		case k == "default":
			e.Default, err = str(f)
		case k == "default_empty":
			e.DefaultEmpty, err = boolean(f)
		case k == "field" && e.Kind != ExtractJSONPath:
			e.Field, err = fieldOf(f)
		default:
			return errUnknown
		}
		return err
	})
	if err == nil && e.Var == "" {
		err = &ScenarioError{Line: v.Line, Field: field + ".var", Err: errors.New("required")}
	}
	if err == nil && e.Kind != ExtractBoundary && e.Expr == "" {
		err = &ScenarioError{Line: v.Line, Field: field + ".expr", Err: errors.New("required")}
	}
	return e, err
}

func assertion(n *yaml.Node, field string) (*Assert, error) {
	kind, v, err := oneKey(n, field)
	if err != nil {
		return nil, err
	}
	a := &Assert{}
	field += "." + kind
	switch kind {
	case "response":
		a.Kind = AssertResponse
		err = eachField(v, field, func(k string, f *yaml.Node) (err error) {
			switch k {
			case "field":
				a.Field, err = fieldOf(f)
			case "match":
				var s string
				if s, err = str(f); err == nil {
					m, ok := map[string]MatchRule{"contains": MatchContains, "matches": MatchMatches, "equals": MatchEquals, "substring": MatchSubstring}[s]
					if !ok {
						return fmt.Errorf("%q: want contains, matches, equals or substring", s)
					}
					a.Match = m
				}
			case "patterns":
				if f.Kind == yaml.ScalarNode {
					a.Patterns = []string{f.Value}
					return nil
				}
				err = eachItem(f, field+".patterns", func(p *yaml.Node, _ string) error {
					s, err := str(p)
					a.Patterns = append(a.Patterns, s)
					return err
				})
			case "not":
				a.Not, err = boolean(f)
			case "or":
				a.Or, err = boolean(f)
			case "ignore_status":
				a.IgnoreStatus, err = boolean(f)
			default:
				return errUnknown
			}
			return err
		})
		if err == nil && len(a.Patterns) == 0 {
			err = &ScenarioError{Line: v.Line, Field: field + ".patterns", Err: errors.New("required")}
		}
	case "duration":
		a.Kind = AssertDuration
		a.Duration, err = duration(v)
	case "size":
		a.Kind, a.Compare = AssertSize, CompareEqual
		err = eachField(v, field, func(k string, f *yaml.Node) (err error) {
			switch k {
			case "bytes":
				a.Size, err = int64Of(f)
			case "compare":
				var s string
				if s, err = str(f); err == nil {
					c, ok := map[string]Comparison{"=": CompareEqual, "==": CompareEqual, "!=": CompareNotEqual, ">": CompareGreater, "<": CompareLess, ">=": CompareGreaterEqual, "<=": CompareLessEqual}[s]
					if !ok {
						return fmt.Errorf("%q: want =, !=, >, <, >= or <=", s)
					}
					a.Compare = c
				}
			default:
				return errUnknown
			}
			return err
		})
	case "json":
		a.Kind = AssertJSON
		err = eachField(v, field, func(k string, f *yaml.Node) (err error) {
			switch k {
			case "path":
				a.Path, err = str(f)
			case "expected":
				a.Validate = true
				a.Expected, err = str(f)
			case "regex":
				a.Regex, err = boolean(f)
			case "null":
				a.Validate = true
				a.Null, err = boolean(f)
			case "invert":
				a.Invert, err = boolean(f)
			default:
				return errUnknown
			}
			return err
		})
		if err == nil && a.Path == "" {
			err = &ScenarioError{Line: v.Line, Field: field + ".path", Err: errors.New("required")}
		}
	default:
		return nil, &ScenarioError{Line: n.Content[0].Line, Field: field, Err: errors.New("unknown assertion: want response, duration, size or json")}
	}
	return a, err
}

func csvList(v *yaml.Node, field, dir string) ([]*CSVData, error) {
	var out []*CSVData
	err := eachItem(v, field, func(n *yaml.Node, f string) error {
		c := &CSVData{}
		out = append(out, c)
		err := eachField(n, f, func(k string, cv *yaml.Node) (err error) {
			switch k {
			case "file":
				c.File, err = str(cv)
				c.File = resolve(dir, c.File)
			case "vars":
				if cv.Kind == yaml.ScalarNode {
					for _, name := range strings.Split(cv.Value, ",") {
						c.Vars = append(c.Vars, strings.TrimSpace(name))
					}
					return nil
				}
				err = eachItem(cv, f+".vars", func(p *yaml.Node, _ string) error {
					s, err := str(p)
					c.Vars = append(c.Vars, s)
					return err
				})
			case "delimiter":
				var s string
				if s, err = str(cv); err == nil {
					if s == `\t` {
						s = "\t"
					}
					r, size := utf8.DecodeRuneInString(s)
					if size != len(s) || s == "" || r == '"' || r == '\n' || r == '\r' {
						return fmt.Errorf("%q: want one character", s)
					}
					c.Delimiter = r
				}
			case "ignore_first_line":
				c.IgnoreFirstLine, err = boolean(cv)
			case "quoted":
				c.Quoted, err = boolean(cv)
			case "recycle":
				var b bool
				b, err = boolean(cv)
				c.NoRecycle = !b
			case "stop_thread":
				c.StopThread, err = boolean(cv)
			case "share":
				var s string
				if s, err = str(cv); err == nil {
					sh, ok := map[string]DataShare{"all": ShareAll, "group": ShareGroup, "thread": ShareThread}[s]
					if !ok {
						return fmt.Errorf("%q: want all, group or thread", s)
					}
					c.Share = sh
				}
			default:
				return errUnknown
			}
			return err
		})
		if err == nil && c.File == "" {
			err = &ScenarioError{Line: n.Line, Field: f + ".file", Err: errors.New("required")}
		}
		return err
	})
	return out, err
}

func cookies(v *yaml.Node) (*Cookies, error) {
	if v.Kind == yaml.ScalarNode {
		on, err := boolean(v)
		if err != nil || !on {
			return nil, err
		}
		return &Cookies{}, nil
	}
	c := &Cookies{}
	err := eachField(v, "cookies", func(k string, f *yaml.Node) (err error) {
		if k != "clear_each_iteration" {
			return errUnknown
		}
		c.ClearEachIteration, err = boolean(f)
		return err
	})
	return c, err
}

// embedded reads a request's embedded: true, or a mapping of match,
// exclude and concurrent.
func embedded(v *yaml.Node, field string) (*Embedded, error) {
	if v.Kind == yaml.ScalarNode {
		on, err := boolean(v)
		if err != nil || !on {
			return nil, err
		}
		return &Embedded{}, nil
	}
	e := &Embedded{}
	err := eachField(v, field, func(k string, f *yaml.Node) (err error) {
		switch k {
		case "match":
			e.Match, err = str(f)
		case "exclude":
			e.Exclude, err = str(f)
		case "concurrent":
			e.Concurrent, err = integer(f)
		default:
			return errUnknown
		}
		return err
	})
	return e, err
}

func vars(v *yaml.Node, field string) ([]Var, error) {
	var out []Var
	err := eachField(v, field, func(k string, f *yaml.Node) error {
		s, err := str(f)
		out = append(out, Var{Name: k, Value: s})
		return err
	})
	return out, err
}

func boolean(v *yaml.Node) (bool, error) {
	s, err := str(v)
	if err != nil {
		return false, err
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%q: want true or false", s)
	}
	return b, nil
}

func float(v *yaml.Node) (float64, error) {
	s, err := str(v)
	if err != nil {
		return 0, err
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || x < 0 {
		return 0, fmt.Errorf("%q: want a number ≥ 0", s)
	}
	return x, nil
}

func int64Of(v *yaml.Node) (int64, error) {
	s, err := str(v)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a whole number", s)
	}
	return n, nil
}

// ReadFlowFile reads path as a flow when it is one: a YAML mapping with a
// steps or groups field (a scenario has requests instead). isFlow is
// false, with no error, for any other file, which the caller reads as a
// scenario.
func ReadFlowFile(path string) (f *Flow, isFlow bool, err error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, false, fmt.Errorf("read scenario: %w", err)
	}
	var doc yaml.Node
	if yaml.Unmarshal(src, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, false, nil
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i].Value; k == "steps" || k == "groups" {
			f, err := ParseFlow(src, filepath.Dir(path))
			if err != nil {
				return nil, true, fmt.Errorf("%s: %w", path, err)
			}
			return f, true, nil
		}
	}
	return nil, false, nil
}
