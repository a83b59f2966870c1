package load

import (
	"errors"
	"strconv"
	"strings"
)

// Cond evaluates a condition's text (a template's output): a comparison
// of "quoted strings", numbers, true or false with ==, !=, <, <=, >, >=
// (numbers compare as numbers, anything else as text), joined by && and
// ||, negated by !, grouped by parentheses. ok is false when the text is
// no such expression (a bare word, say); then the caller applies JMeter's
// rule for plain text.
func Cond(text string) (value, ok bool) {
	p := &condParser{s: text}
	v, err := p.or()
	p.space()
	if err != nil || p.i != len(p.s) {
		return false, false
	}
	b, isBool := v.(bool)
	return b, isBool
}

type condParser struct {
	s string
	i int
}

var errCond = errors.New("not a condition")

func (p *condParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *condParser) eat(tok string) bool {
	p.space()
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

func (p *condParser) or() (any, error) {
	l, err := p.and()
	for err == nil && p.eat("||") {
		var r any
		if r, err = p.and(); err == nil {
			lb, ok1 := l.(bool)
			rb, ok2 := r.(bool)
			if !ok1 || !ok2 {
				return nil, errCond
			}
			l = lb || rb
		}
	}
	return l, err
}

func (p *condParser) and() (any, error) {
	l, err := p.cmp()
	for err == nil && p.eat("&&") {
		var r any
		if r, err = p.cmp(); err == nil {
			lb, ok1 := l.(bool)
			rb, ok2 := r.(bool)
			if !ok1 || !ok2 {
				return nil, errCond
			}
			l = lb && rb
		}
	}
	return l, err
}

func (p *condParser) cmp() (any, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for _, op := range []string{"==", "!=", "<=", ">=", "<", ">"} {
		if p.eat(op) {
			r, err := p.unary()
			if err != nil {
				return nil, err
			}
			return compare(l, r, op), nil
		}
	}
	return l, nil
}

func compare(l, r any, op string) bool {
	lf, lnum := l.(float64)
	rf, rnum := r.(float64)
	if !lnum || !rnum {
		// Mixed: compare texts, as JEXL compares a string with a number
		// it cannot convert.
		ls, rs := condText(l), condText(r)
		if x, err := strconv.ParseFloat(ls, 64); err == nil {
			if y, err := strconv.ParseFloat(rs, 64); err == nil {
				lf, rf, lnum, rnum = x, y, true, true
			}
		}
		if !lnum || !rnum {
			c := strings.Compare(ls, rs)
			return cmpResult(c, op)
		}
	}
	c := 0
	if lf < rf {
		c = -1
	} else if lf > rf {
		c = 1
	}
	return cmpResult(c, op)
}

func cmpResult(c int, op string) bool {
	switch op {
	case "==":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	}
	return c >= 0
}

func condText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return ""
}

func (p *condParser) unary() (any, error) {
	if p.eat("!") {
		if strings.HasPrefix(p.s[p.i:], "=") {
			return nil, errCond
		}
		v, err := p.unary()
		b, ok := v.(bool)
		if err != nil || !ok {
			return nil, errCond
		}
		return !b, nil
	}
	if p.eat("(") {
		v, err := p.or()
		if err != nil || !p.eat(")") {
			return nil, errCond
		}
		return v, nil
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, errCond
	}
	if q := p.s[p.i]; q == '"' || q == '\'' {
		j := strings.IndexByte(p.s[p.i+1:], q)
		if j < 0 {
			return nil, errCond
		}
		v := p.s[p.i+1 : p.i+1+j]
		p.i += j + 2
		return v, nil
	}
	j := p.i
	for j < len(p.s) && (p.s[j] == '-' || p.s[j] == '.' || p.s[j] == '_' || p.s[j] >= '0' && p.s[j] <= '9' ||
		p.s[j] >= 'a' && p.s[j] <= 'z' || p.s[j] >= 'A' && p.s[j] <= 'Z') {
		j++
	}
	word := p.s[p.i:j]
	if word == "" {
		return nil, errCond
	}
	p.i = j
	switch word {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	if f, err := strconv.ParseFloat(word, 64); err == nil {
		return f, nil
	}
	return nil, errCond
}
