package jmx

import (
	"strconv"
	"strings"
	"time"

	"github.com/theory/jsonpath"

	"ratelab/load"
)

// jsonPath returns a JSON path as JSONPath (RFC 9535) reads it: the
// plugins' Jayway paths may leave out the leading "$." (Jayway adds it).
// ok is false for a path that does not compile, which JMeter reports at
// run time as a failed sample (an assertion) or the default (an
// extractor).
func jsonPath(p string) (string, bool) {
	p = strings.TrimSpace(p)
	if p != "" && !strings.HasPrefix(p, "$") {
		p = "$." + p
	}
	_, err := jsonpath.Parse(p)
	return p, err == nil
}

// The flow's post-processors, assertions and config elements, each from
// its JMeter element.

// fieldOf maps a Regular Expression or Boundary Extractor's useHeaders
// value to the part of the response it reads.
func fieldOf(useHeaders string) (load.ExtractField, bool) {
	switch strings.TrimSpace(useHeaders) {
	case "", "false", "unescaped":
		return load.FieldBody, true
	case "true":
		return load.FieldHeaders, true
	case "URL":
		return load.FieldURL, true
	case "code":
		return load.FieldCode, true
	case "message":
		return load.FieldMessage, true
	}
	return 0, false
}

// text translates a field that the flow evaluates at run time.
func (fb *flowBuilder) text(e *element, raw string) string {
	t := fb.env.translate(raw)
	fb.problems(e, t)
	return t.text
}

func (fb *flowBuilder) matchNumber(e *element, raw string, def int) int {
	if strings.TrimSpace(raw) == "" {
		return def
	}
	n, ok, _ := number(fb.fixed, raw)
	if !ok {
		fb.warnAt(e, true, "match number %q cannot be evaluated before the run; using %d", raw, def)
		return def
	}
	return int(n)
}

// extractors translates a post-processor that sets variables; the ones
// ratelab does not run are reported as unfaithful when anything reads a
// variable they set.
func (fb *flowBuilder) extractors(e *element) []*load.Extract {
	switch e.tag {
	case "RegexExtractor":
		field, ok := fieldOf(e.str("RegexExtractor.useHeaders"))
		if !ok {
			fb.warnAt(e, true, "Regular Expression Extractor on %q is not emulated", e.str("RegexExtractor.useHeaders"))
			return nil
		}
		x := &load.Extract{Kind: load.ExtractRegex, Var: e.str("RegexExtractor.refname"), Field: field,
			Expr: fb.text(e, rawOr(e, "RegexExtractor.regex")), Template: rawOr(e, "RegexExtractor.template"),
			Default: fb.text(e, rawOr(e, "RegexExtractor.default")), DefaultEmpty: e.str("RegexExtractor.default_empty_value") == "true",
			Match: fb.matchNumber(e, e.str("RegexExtractor.match_number"), 1)}
		if x.Template == "" {
			x.Template = "$1$"
		}
		return []*load.Extract{x}
	case "BoundaryExtractor":
		field, ok := fieldOf(e.str("BoundaryExtractor.useHeaders"))
		if !ok {
			fb.warnAt(e, true, "Boundary Extractor on %q is not emulated", e.str("BoundaryExtractor.useHeaders"))
			return nil
		}
		return []*load.Extract{{Kind: load.ExtractBoundary, Var: e.str("BoundaryExtractor.refname"), Field: field,
			Left: fb.text(e, rawOr(e, "BoundaryExtractor.lboundary")), Right: fb.text(e, rawOr(e, "BoundaryExtractor.rboundary")),
			Default: fb.text(e, rawOr(e, "BoundaryExtractor.default")), DefaultEmpty: e.str("BoundaryExtractor.default_empty_value") == "true",
			Match: fb.matchNumber(e, e.str("BoundaryExtractor.match_number"), 1)}}
	case "JSONPostProcessor":
		names := strings.Split(e.str("JSONPostProcessor.referenceNames"), ";")
		paths := strings.Split(rawOr(e, "JSONPostProcessor.jsonPathExprs"), ";")
		matches := strings.Split(e.str("JSONPostProcessor.match_numbers"), ";")
		defaults := strings.Split(rawOr(e, "JSONPostProcessor.defaultValues"), ";")
		if e.str("JSONPostProcessor.compute_concat") == "true" {
			fb.warnAt(e, true, "JSON Extractor's concatenation (_ALL) is not emulated")
		}
		var out []*load.Extract
		for i, n := range names {
			if n = strings.TrimSpace(n); n == "" {
				continue
			}
			at := func(list []string) string {
				if i < len(list) {
					return list[i]
				}
				if len(list) == 1 {
					return list[0]
				}
				return ""
			}
			path, ok := jsonPath(fb.text(e, at(paths)))
			if !ok {
				fb.warnAt(e, true, "JSON path %q of ${%s} is not one ratelab reads: the extractor is not run", at(paths), n)
				continue
			}
			out = append(out, &load.Extract{Kind: load.ExtractJSONPath, Var: n, Field: load.FieldBody,
				Expr: path, Match: fb.matchNumber(e, at(matches), 0),
				Default: fb.text(e, at(defaults)), DefaultEmpty: true})
		}
		return out
	case "com.atlantbh.jmeter.plugins.jsonutils.jsonpathextractor.JSONPathExtractor":
		if s := e.str("SUBJECT"); s != "" && s != "BODY" {
			fb.warnAt(e, true, "JSON Path Extractor on %q is not emulated", s)
			return nil
		}
		path, ok := jsonPath(fb.text(e, e.str("JSONPATH")))
		if !ok {
			fb.warnAt(e, true, "JSON path %q is not one ratelab reads: the extractor is not run", e.str("JSONPATH"))
			return nil
		}
		return []*load.Extract{{Kind: load.ExtractJSONPath, Var: e.str("VAR"), Field: load.FieldBody,
			Expr: path, Match: 1, Default: fb.text(e, rawOr(e, "DEFAULT")), DefaultEmpty: true}}
	}
	// XPath, CSS/JQuery, JMESPath: not run.
	var used []string
	for _, n := range strings.Split(e.str(extractorTags[e.tag]), ";") {
		if n = strings.TrimSpace(n); n != "" && fb.referenced(n, e) {
			used = append(used, n)
		}
	}
	if len(used) > 0 {
		fb.warnAt(e, true, "%s is not emulated, and ${%s} is used: requests send it unset", e.tag, strings.Join(used, "}, ${"))
	} else {
		fb.warnAt(e, false, "%s is not emulated; nothing reads the variables it sets", e.tag)
	}
	return nil
}

// rawOr is a property's text, untrimmed (patterns and boundaries keep
// their spaces).
func rawOr(e *element, name string) string {
	v, _ := e.raw(name)
	return v
}

// referenced reports whether any enabled element of the plan but except
// reads ${name}.
func (fb *flowBuilder) referenced(name string, except *element) bool {
	needle := "${" + name
	var walk func(els []*element) bool
	var inProps func(p *prop) bool
	inProps = func(p *prop) bool {
		if strings.Contains(p.value, needle) {
			return true
		}
		for _, c := range p.props {
			if inProps(c) {
				return true
			}
		}
		for _, c := range p.items {
			if inProps(c) {
				return true
			}
		}
		return false
	}
	walk = func(els []*element) bool {
		for _, e := range els {
			if !e.enabled || e == except {
				continue
			}
			for _, p := range e.props {
				if inProps(p) {
					return true
				}
			}
			if walk(e.children) {
				return true
			}
		}
		return false
	}
	return walk(fb.plan.root.children)
}

// assertion translates an assertion; nil (with a warning) for one ratelab
// does not evaluate.
func (fb *flowBuilder) assertion(e *element) *load.Assert {
	switch e.tag {
	case "ResponseAssertion":
		a := &load.Assert{Kind: load.AssertResponse, IgnoreStatus: e.str("Assertion.assume_success") == "true"}
		switch e.str("Assertion.test_field") {
		case "Assertion.response_data", "":
			a.Field = load.FieldBody
		case "Assertion.response_code":
			a.Field = load.FieldCode
		case "Assertion.response_message":
			a.Field = load.FieldMessage
		case "Assertion.response_headers":
			a.Field = load.FieldHeaders
		case "Assertion.sample_label":
			a.Field = load.FieldURL
		default:
			fb.warnAt(e, true, "Response Assertion on %s is not evaluated: samples it would fail are counted as passed", e.str("Assertion.test_field"))
			return nil
		}
		bits, _ := strconv.Atoi(e.str("Assertion.test_type"))
		switch {
		case bits&8 != 0:
			a.Match = load.MatchEquals
		case bits&16 != 0:
			a.Match = load.MatchSubstring
		case bits&1 != 0:
			a.Match = load.MatchMatches
		default:
			a.Match = load.MatchContains
		}
		a.Not, a.Or = bits&4 != 0, bits&32 != 0
		if list := e.props["Asserion.test_strings"]; list != nil {
			for _, it := range list.items {
				a.Patterns = append(a.Patterns, fb.text(e, it.value))
			}
		}
		if len(a.Patterns) == 0 {
			if a.Or {
				fb.warnAt(e, true, "Response Assertion with OR and no patterns is not evaluated")
				return nil
			}
			// JMeter checks nothing then, and fails nothing.
			fb.warnAt(e, false, "Response Assertion without patterns checks nothing")
			return nil
		}
		return a
	case "DurationAssertion":
		d, ok, _ := number(fb.fixed, e.str("DurationAssertion.duration"))
		if !ok {
			fb.warnAt(e, true, "Duration Assertion %q cannot be evaluated before the run: it is not evaluated", e.str("DurationAssertion.duration"))
			return nil
		}
		return &load.Assert{Kind: load.AssertDuration, Duration: time.Duration(d * float64(time.Millisecond))}
	case "SizeAssertion":
		if f := e.str("Assertion.test_field"); f != "SizeAssertion.response_data" {
			fb.warnAt(e, true, "Size Assertion on %q is not evaluated: ratelab measures the body only", f)
			return nil
		}
		n, ok, _ := number(fb.fixed, e.str("SizeAssertion.size"))
		op, _ := strconv.Atoi(e.str("SizeAssertion.operator"))
		if !ok || op < 1 || op > 6 {
			fb.warnAt(e, true, "Size Assertion %q (operator %q) cannot be evaluated before the run", e.str("SizeAssertion.size"), e.str("SizeAssertion.operator"))
			return nil
		}
		return &load.Assert{Kind: load.AssertSize, Size: int64(n), Compare: load.Comparison(op)}
	case "JSONPathAssertion", "com.atlantbh.jmeter.plugins.jsonutils.jsonpathassertion.JSONPathAssertion":
		path, ok := jsonPath(fb.text(e, e.str("JSON_PATH")))
		if !ok {
			if strings.Contains(path, "{{") {
				fb.warnAt(e, true, "JSON path %q is not evaluated", e.str("JSON_PATH"))
				return nil
			}
			// JMeter fails every sample the assertion checks, with the
			// path's error; so does a pattern no status code equals.
			return &load.Assert{Kind: load.AssertResponse, Field: load.FieldCode, Match: load.MatchEquals,
				Patterns: []string{"invalid JSON path " + path}}
		}
		return &load.Assert{Kind: load.AssertJSON, Path: path,
			Validate: e.str("JSONVALIDATION") == "true", Expected: fb.text(e, rawOr(e, "EXPECTED_VALUE")),
			Regex: e.str("ISREGEX") != "false", Null: e.str("EXPECT_NULL") == "true", Invert: e.str("INVERT") == "true"}
	}
	fb.warnAt(e, true, "%s is not evaluated: samples it would fail are counted as passed", e.tag)
	return nil
}

// counter translates a Counter config element.
func (fb *flowBuilder) counter(e *element) *load.Counter {
	get := func(field string, def int64) int64 {
		v, ok, msg := number(fb.fixed, e.str(field))
		if !ok {
			if msg != "" {
				fb.warnAt(e, true, "Counter %s %s; using %d", field, msg, def)
			}
			return def
		}
		return int64(v)
	}
	c := &load.Counter{Var: e.str("CounterConfig.name"), Start: get("CounterConfig.start", 0), Incr: get("CounterConfig.incr", 1),
		Max: get("CounterConfig.end", 0), Format: e.str("CounterConfig.format"),
		PerUser: e.str("CounterConfig.per_user") == "true", ResetOnGroupIteration: e.str("CounterConfig.reset_on_tg_iteration") == "true"}
	if c.Var == "" {
		fb.warnAt(e, false, "Counter without a variable name sets nothing")
		return nil
	}
	return c
}

// randomVar translates a Random Variable config element.
func (fb *flowBuilder) randomVar(e *element) *load.RandomVar {
	get := func(field string) (int64, bool) {
		v, ok, _ := number(fb.fixed, e.str(field))
		return int64(v), ok
	}
	lo, ok1 := get("minimumValue")
	hi, ok2 := get("maximumValue")
	if !ok1 || !ok2 || e.str("variableName") == "" {
		fb.warnAt(e, true, "Random Variable %q [%q, %q] cannot be evaluated before the run: it is not set", e.str("variableName"), e.str("minimumValue"), e.str("maximumValue"))
		return nil
	}
	r := &load.RandomVar{Var: e.str("variableName"), Min: lo, Max: hi, Format: e.str("outputFormat")}
	if seed, ok := get("randomSeed"); ok {
		r.Seed = seed
	}
	if e.str("perThread") != "true" && r.Seed != 0 {
		fb.warnAt(e, false, "Random Variable's seeded sequence shared by all threads is run per user")
	}
	return r
}
