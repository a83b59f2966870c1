package jmx

import (
	"fmt"
	"strconv"
	"strings"

	"ratelab/load"
)

// Expressions: JMeter strings hold ${name} variable references and
// ${__function(args)} calls. ratelab evaluates what is fixed for the run
// (properties from -J, user-defined variables) once, and translates what
// varies per request into the load engine's template actions:
//
//	${__threadNum}             {{.Thread}}
//	${__time(,)}               {{timems}}      (epoch milliseconds)
//	${__time(FORMAT,)}         {{time "LAYOUT"}} (the SimpleDateFormat as a Go layout)
//	${__time(/N,)}             {{timediv N}}
//	${__counter(TRUE,)}        {{counter}}     (per thread, from 1)
//	${__counter(FALSE,)}       {{gcounter}}    (whole test, from 1)
//	${__UUID()}                {{uuid}}
//	${__Random(a,b)}           {{random a b}}
//	${__RandomString(n,chars)} {{randomString n "chars"}}
//	${__P(name,default)}       the -J property, else default
//	${__property(name,,def)}   the same
//	${csvColumn}               {{.csvColumn}}
//
// JMeter's counters advance on every call; ratelab's count iterations
// (counter) and requests (gcounter), which is the same whenever a counter
// is called once per request, as in the reference plan.

// exprEnv is what expressions are evaluated against.
type exprEnv struct {
	props map[string]string // -J name=value
	vars  map[string]string // user-defined variables, already translated
	csv   map[string]bool   // CSV Data Set variable names
	// runtime is set when translating for a flow, whose users keep
	// variables: a ${name} that nothing fixes before the run (an
	// extractor's, a counter's, a CSV header's) becomes {{.name}}, which
	// the flow sends as ${name} while it is unset, as JMeter does; and a
	// user-defined variable in dyn (one that something sets at run time)
	// is read from the user too, not inlined.
	runtime bool
	dyn     map[string]bool
}

// translation is a JMeter string turned into a ratelab template.
type translation struct {
	text string
	// varies is set when the text differs between threads or iterations,
	// which tells whether a path names one resource for every thread.
	varies   bool
	problems []string
}

func (env *exprEnv) translate(s string) translation {
	var t translation
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		end := matchBrace(s, i+2)
		if end < 0 {
			t.problems = append(t.problems, fmt.Sprintf("unterminated ${ in %q", s))
			b.WriteString(s[i:])
			break
		}
		b.WriteString(env.expr(s[i+2:end], &t))
		s = s[end+1:]
	}
	t.text = b.String()
	return t
}

// matchBrace returns the index of the } closing a ${ whose content starts
// at from, allowing nested ${…}; -1 when there is none.
func matchBrace(s string, from int) int {
	depth := 1
	for i := from; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '$' && i+1 < len(s) && s[i+1] == '{':
			depth++
			i++
		case s[i] == '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// expr translates the inside of one ${…}.
func (env *exprEnv) expr(e string, t *translation) string {
	name, argText, isCall := strings.Cut(e, "(")
	name = strings.TrimSpace(name)
	if !strings.HasPrefix(name, "__") {
		if v, ok := env.vars[name]; ok && !env.dyn[name] {
			return v
		}
		if env.csv[name] || env.runtime && !isCall && templateName(name) {
			t.varies = true
			return "{{." + name + "}}"
		}
		// JMeter leaves an undefined variable as it is.
		t.problems = append(t.problems, fmt.Sprintf("variable ${%s} is not defined; sent as is", name))
		return "${" + e + "}"
	}
	var args []string
	if isCall {
		argText = strings.TrimSuffix(strings.TrimSpace(argText), ")")
		args = splitArgs(argText)
		for i, a := range args {
			// Arguments may themselves hold expressions (fixed ones).
			sub := env.translate(a)
			args[i] = sub.text
			t.problems = append(t.problems, sub.problems...)
		}
	}
	arg := func(i int) string {
		if i < len(args) {
			return strings.TrimSpace(args[i])
		}
		return ""
	}
	switch name {
	case "__P", "__property":
		def := arg(1)
		if name == "__property" {
			def = arg(2)
		}
		if v, ok := env.props[arg(0)]; ok {
			return v
		}
		return def
	case "__threadNum":
		t.varies = true
		return "{{.Thread}}"
	case "__time":
		t.varies = true
		f := arg(0)
		switch f {
		case "":
			return "{{timems}}"
		case "YMD", "HMS", "YMDHMS":
			f = map[string]string{"YMD": "yyyyMMdd", "HMS": "HHmmss", "YMDHMS": "yyyyMMdd-HHmmss"}[f]
		}
		if d, ok := strings.CutPrefix(f, "/"); ok {
			if n, err := strconv.ParseInt(d, 10, 64); err == nil && n > 0 {
				return fmt.Sprintf("{{timediv %d}}", n)
			}
		}
		if layout, ok := javaLayout(f); ok {
			return "{{time " + strconv.Quote(layout) + "}}"
		}
		t.problems = append(t.problems, fmt.Sprintf("__time format %q has a pattern ratelab cannot write; it sends RFC 3339 ({{now}})", arg(0)))
		return "{{now}}"
	case "__counter":
		t.varies = true
		if strings.EqualFold(arg(0), "FALSE") {
			return "{{gcounter}}"
		}
		return "{{counter}}"
	case "__UUID":
		t.varies = true
		return "{{uuid}}"
	case "__Random":
		lo, err1 := strconv.ParseInt(arg(0), 10, 64)
		hi, err2 := strconv.ParseInt(arg(1), 10, 64)
		if err1 != nil || err2 != nil || lo > hi {
			t.problems = append(t.problems, fmt.Sprintf("__Random(%s) needs two integers, min ≤ max", argText))
			return "${" + e + "}"
		}
		t.varies = true
		return fmt.Sprintf("{{random %d %d}}", lo, hi)
	case "__RandomString":
		n, err := strconv.Atoi(arg(0))
		if err != nil || n < 0 || n > 1<<16 {
			t.problems = append(t.problems, fmt.Sprintf("__RandomString(%s) needs a length", argText))
			return "${" + e + "}"
		}
		chars := arg(1)
		if chars == "" {
			chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		}
		t.varies = true
		return fmt.Sprintf("{{randomString %d %s}}", n, strconv.Quote(chars))
	case "__V":
		// ${__V(prefix_${n})}: the variable whose name the argument builds.
		inner := arg(0)
		if v, ok := env.vars[inner]; ok && !env.dyn[inner] {
			return v
		}
		if env.csv[inner] || env.runtime && templateName(inner) {
			t.varies = true
			return "{{." + inner + "}}"
		}
		t.problems = append(t.problems, fmt.Sprintf("__V(%s): variable %s is not defined before the run", argText, inner))
		return "${" + e + "}"
	case "__intSum", "__longSum":
		// The last argument names a variable to store the sum in when it is
		// not a number; the sum itself is what the call returns.
		var sum int64
		n := len(args)
		if n >= 3 {
			if _, err := strconv.ParseInt(arg(n-1), 10, 64); err != nil {
				n--
			}
		}
		for i := 0; i < n; i++ {
			v, err := strconv.ParseInt(arg(i), 10, 64)
			if err != nil {
				t.problems = append(t.problems, fmt.Sprintf("%s(%s): %q is not a number before the run", name, argText, arg(i)))
				return "${" + e + "}"
			}
			sum += v
		}
		return strconv.FormatInt(sum, 10)
	case "__urlencode":
		return escapeKeepingActions(arg(0))
	case "__split":
		// ${__split(a,b,c,VAR,sep)} sets VAR_1… and returns the string.
		return arg(0)
	case "__machineName", "__machineIP":
		t.problems = append(t.problems, fmt.Sprintf("%s is the load generator's host: ratelab sends its own value as is", name))
		return "${" + e + "}"
	}
	t.problems = append(t.problems, fmt.Sprintf("function %s is not supported; sent as is", name))
	return "${" + e + "}"
}

// javaLayout translates a SimpleDateFormat pattern (JMeter's __time
// formats) into a Go time layout; ok is false for a pattern Go cannot
// write: a letter it has no form for (H unpadded, week numbers, …), or
// literal text Go would read as part of a layout (digits, "Jan", "PM", …).
func javaLayout(f string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(f); {
		c := f[i]
		if c == '\'' {
			j := strings.IndexByte(f[i+1:], '\'')
			if j < 0 {
				return "", false
			}
			lit := f[i+1 : i+1+j]
			if j == 0 {
				lit = "'"
			}
			if !plainLiteral(lit) {
				return "", false
			}
			b.WriteString(lit)
			i += j + 2
			continue
		}
		n := 1
		for i+n < len(f) && f[i+n] == c {
			n++
		}
		i += n
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			lit := strings.Repeat(string(c), n)
			if !plainLiteral(lit) {
				return "", false
			}
			b.WriteString(lit)
			continue
		}
		var out string
		switch {
		case c == 'y' && n == 2:
			out = "06"
		case c == 'y':
			out = "2006"
		case c == 'M':
			out = [...]string{"1", "01", "Jan", "January"}[min(n, 4)-1]
		case c == 'd' && n <= 2:
			out = [...]string{"2", "02"}[n-1]
		case c == 'H' && n == 2:
			out = "15"
		case c == 'h' && n <= 2:
			out = [...]string{"3", "03"}[n-1]
		case c == 'm' && n <= 2:
			out = [...]string{"4", "04"}[n-1]
		case c == 's' && n <= 2:
			out = [...]string{"5", "05"}[n-1]
		case c == 'S':
			// Go writes fractions only after a '.' or ','.
			prev := b.String()
			if prev == "" || (prev[len(prev)-1] != '.' && prev[len(prev)-1] != ',') {
				return "", false
			}
			out = strings.Repeat("0", n)
		case c == 'a':
			out = "PM"
		case c == 'E':
			out = "Mon"
			if n >= 4 {
				out = "Monday"
			}
		case c == 'D' && n == 3:
			out = "002"
		case c == 'z':
			out = "MST"
		case c == 'Z':
			out = "-0700"
		case c == 'X' && n <= 3:
			out = [...]string{"Z07", "Z0700", "Z07:00"}[n-1]
		default:
			return "", false
		}
		b.WriteString(out)
	}
	return b.String(), true
}

// plainLiteral reports whether Go's time formatting writes s as it is.
func plainLiteral(s string) bool {
	if strings.ContainsAny(s, "0123456789_") {
		return false
	}
	for _, tok := range []string{"Jan", "Mon", "MST", "PM", "pm", "Z07"} {
		if strings.Contains(s, tok) {
			return false
		}
	}
	return true
}

// templateName reports whether a variable name can be a flow template's
// {{.name}}.
func templateName(name string) bool {
	return name != "" && !strings.ContainsAny(name, " \t\n{}()$,\"'")
}

// evalCondition evaluates an If Controller condition that is fixed for the
// whole run: true/false, or the simple conditions written with __jexl3,
// __groovy or __javaScript — comparisons (==, !=, <, <=, >, >=, ===, !==,
// .equals) joined by &&, ||, ! and parentheses — whose operands are
// literals, -J properties or user-defined variables. ok is false when
// the condition depends on anything that varies during the run.
func evalCondition(cond string, env *exprEnv) (value, ok bool) {
	c := strings.TrimSpace(cond)
	for _, fn := range []string{"__jexl3", "__jexl2", "__groovy", "__javaScript"} {
		prefix := "${" + fn + "("
		if strings.HasPrefix(c, prefix) && strings.HasSuffix(c, ")}") {
			inner := splitArgs(c[len(prefix) : len(c)-2])
			c = strings.TrimSpace(inner[0])
			break
		}
	}
	tr := env.translate(c)
	if tr.varies || len(tr.problems) > 0 || strings.Contains(tr.text, "{{") {
		return false, false
	}
	text := strings.TrimSpace(tr.text)
	// load.Cond: the comparisons, &&, ||, ! and parentheses the flow
	// engine evaluates at run time, here once before the run.
	if v, ok := load.Cond(text); ok {
		return v, true
	}
	for _, op := range []string{"===", "!==", "==", "!=", ".equals("} {
		l, r, found := strings.Cut(text, op)
		if !found {
			continue
		}
		if op == ".equals(" {
			r = strings.TrimSuffix(strings.TrimSpace(r), ")")
		}
		lv, okL := literal(l)
		rv, okR := literal(r)
		if !okL || !okR {
			return false, false
		}
		eq := lv == rv
		if strings.HasPrefix(op, "!") {
			return !eq, true
		}
		return eq, true
	}
	return false, false
}

// literal reads a quoted string or a number operand.
func literal(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1], true
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return s, true
	}
	return "", false
}

// splitArgs splits JMeter function arguments on commas that are neither
// escaped (\,) nor inside a nested ${…}.
func splitArgs(s string) []string {
	var out []string
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
			continue
		case c == '$' && i+1 < len(s) && s[i+1] == '{':
			depth++
		case c == '}' && depth > 0:
			depth--
		case c == ',' && depth == 0:
			out = append(out, b.String())
			b.Reset()
			continue
		}
		b.WriteByte(c)
	}
	return append(out, b.String())
}
