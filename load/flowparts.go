package load

// The flow's config elements, timers, extractors and assertions.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theory/jsonpath"
)

// csvSource is a CSVData's file, read once, with the cursors its sharing
// mode calls for.
type csvSource struct {
	d     *CSVData
	names []string
	rows  [][]string

	mu     sync.Mutex
	cursor map[any]int // by sharing key: the source, a group, a user
}

// csvEOF is what JMeter sets the variables to at the end of a file that
// does not recycle.
const csvEOF = "<EOF>"

func loadCSV(d *CSVData) (*csvSource, error) {
	b, err := os.ReadFile(d.File)
	if err != nil {
		return nil, fmt.Errorf("open data: %w", err)
	}
	delim := d.Delimiter
	if delim == 0 {
		delim = ','
	}
	var rows [][]string
	if d.Quoted {
		r := csv.NewReader(bytes.NewReader(b))
		r.Comma, r.FieldsPerRecord, r.LazyQuotes = delim, -1, true
		if rows, err = r.ReadAll(); err != nil {
			return nil, fmt.Errorf("data %s: %w", d.File, err)
		}
	} else {
		for _, line := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n") {
			if line == "" {
				continue
			}
			rows = append(rows, strings.Split(line, string(delim)))
		}
	}
	s := &csvSource{d: d, names: d.Vars, cursor: map[any]int{}}
	if len(s.names) == 0 {
		if len(rows) == 0 {
			return nil, fmt.Errorf("data %s: empty, and no variable names given", d.File)
		}
		for _, n := range rows[0] {
			s.names = append(s.names, strings.TrimSpace(strings.TrimPrefix(n, "\ufeff")))
		}
		rows = rows[1:]
	} else if d.IgnoreFirstLine && len(rows) > 0 {
		rows = rows[1:]
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("data %s: no rows", d.File)
	}
	s.rows = rows
	return s, nil
}

// nextRow sets the variables of d's next row; false means the user stops
// (end of a file that does not recycle, with stopThread).
func (u *user) nextRow(d *csvSource) bool {
	var key any = d
	switch d.d.Share {
	case ShareGroup:
		key = u.g
	case ShareThread:
		key = u
	}
	d.mu.Lock()
	i := d.cursor[key]
	if i >= len(d.rows) && !d.d.NoRecycle {
		i = 0
	}
	if i < len(d.rows) {
		d.cursor[key] = i + 1
	}
	d.mu.Unlock()
	if i >= len(d.rows) {
		if d.d.StopThread {
			return false
		}
		for _, n := range d.names {
			u.vars[n] = csvEOF
		}
		return true
	}
	row := d.rows[i]
	for j, n := range d.names {
		v := ""
		if j < len(row) {
			v = row[j]
		}
		u.vars[n] = v
	}
	return true
}

// ctimer is a compiled Timer.
type ctimer struct {
	t      *Timer
	tt     int              // ThroughputThread slot (constant throughput)
	ctt    *ThroughputTimer // constant throughput, shared by the group
	shared *timerShared     // precise throughput and synchronizing
}

// timerShared is the state a group's users share for one timer.
type timerShared struct {
	mu sync.Mutex
	// precise throughput: the next event of the group's schedule.
	next time.Time
	// synchronizing: the users waiting and the channel that frees them.
	waiting int
	release chan struct{}
}

func (c *compiler) timer(t *Timer) (*ctimer, error) {
	if ct := c.timers[t]; ct != nil {
		return ct, nil
	}
	ct, err := c.newTimer(t)
	if err != nil {
		return nil, err
	}
	if c.timers == nil {
		c.timers = map[*Timer]*ctimer{}
	}
	c.timers[t] = ct
	return ct, nil
}

func (c *compiler) newTimer(t *Timer) (*ctimer, error) {
	ct := &ctimer{t: t}
	switch t.Kind {
	case TimerConstant, TimerUniform, TimerGaussian, TimerPoisson:
		if t.Delay < 0 || t.Range < 0 || t.Lambda < 0 {
			return nil, errors.New("negative delay")
		}
	case TimerConstantThroughput:
		if t.Rate.Count <= 0 {
			return nil, errors.New("constant throughput timer without a rate")
		}
		ct.ctt = NewThroughputTimer(t.Rate, t.Mode)
		ct.tt = c.fg.ttSlots
		c.fg.ttSlots++
	case TimerPreciseThroughput:
		if t.Rate.Count <= 0 {
			return nil, errors.New("precise throughput timer without a rate")
		}
		ct.shared = &timerShared{}
	case TimerSynchronizing:
		if t.GroupSize < 0 {
			return nil, errors.New("negative group size")
		}
		ct.shared = &timerShared{release: make(chan struct{})}
	default:
		return nil, fmt.Errorf("unknown timer kind %d", t.Kind)
	}
	return ct, nil
}

// poisson draws from a Poisson distribution of mean lambda (Knuth's
// method; a normal approximation above 500, where e^−λ underflows).
func poisson(u *user, lambda float64) float64 {
	if lambda <= 0 {
		return 0
	}
	if lambda > 500 {
		return math.Max(0, math.Round(lambda+math.Sqrt(lambda)*u.rng.NormFloat64()))
	}
	l, k, p := math.Exp(-lambda), 0.0, 1.0
	for {
		p *= u.rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// delay returns the timer's delay before a request at now; a
// synchronizing timer waits here itself and returns 0.
func (ct *ctimer) delay(u *user, stop contextDone, now time.Time) time.Duration {
	t := ct.t
	ms := func(x float64) time.Duration { return time.Duration(x) * time.Millisecond }
	switch t.Kind {
	case TimerConstant:
		return t.Delay
	case TimerUniform:
		// JMeter: delay + random·range, in whole milliseconds.
		return t.Delay + ms(math.Floor(u.rng.Float64()*float64(t.Range.Milliseconds())))
	case TimerGaussian:
		// JMeter: |gaussian·deviation + delay|.
		return ms(math.Abs(u.rng.NormFloat64()*float64(t.Range.Milliseconds()) + float64(t.Delay.Milliseconds())))
	case TimerPoisson:
		return t.Delay + ms(poisson(u, t.Lambda))
	case TimerConstantThroughput:
		active := int(u.w.r.active.Load())
		if t.Mode == AllThreads || t.Mode == AllThreadsShared {
			active = int(u.g.run.allUsers.Load())
		}
		return ct.ctt.Delay(&u.tt[ct.tt], now, max(active, 1))
	case TimerPreciseThroughput:
		// A Poisson process of the target rate for the whole group: each
		// request takes the schedule's next event.
		s := ct.shared
		mean := float64(t.Rate.Period) / float64(t.Rate.Count)
		s.mu.Lock()
		if s.next.IsZero() {
			s.next = now
		} else {
			s.next = s.next.Add(time.Duration(u.rng.ExpFloat64() * mean))
		}
		at := s.next
		s.mu.Unlock()
		return max(at.Sub(now), 0)
	case TimerSynchronizing:
		size := t.GroupSize
		if size <= 0 {
			size = u.g.g.Workload.Threads
		}
		s := ct.shared
		s.mu.Lock()
		s.waiting++
		ch := s.release
		if s.waiting >= size {
			close(s.release)
			s.release, s.waiting = make(chan struct{}), 0
			s.mu.Unlock()
			return 0
		}
		s.mu.Unlock()
		var timeout <-chan time.Time
		if t.Timeout > 0 {
			tm := time.NewTimer(t.Timeout)
			defer tm.Stop()
			timeout = tm.C
		}
		select {
		case <-ch:
		case <-timeout:
			s.mu.Lock()
			if s.release == ch {
				// Free the others waiting too, as JMeter's timeout does.
				close(s.release)
				s.release, s.waiting = make(chan struct{}), 0
			}
			s.mu.Unlock()
		case <-stop.Done():
		}
		return 0
	}
	return 0
}

// contextDone is the part of a context a blocking timer watches.
type contextDone interface{ Done() <-chan struct{} }

// cextract is a compiled Extract.
type cextract struct {
	e    *Extract
	re   *regexp.Regexp
	path *jsonpath.Path
	tmpl []tmplPart // a regex template's parts
}

type tmplPart struct {
	text  string
	group int // -1 for text
}

func compileExtract(e *Extract) (*cextract, error) {
	if e.Var == "" {
		return nil, errors.New("no variable name")
	}
	ce := &cextract{e: e}
	var err error
	switch e.Kind {
	case ExtractRegex:
		if ce.re, err = regexp.Compile(e.Expr); err != nil {
			return nil, err
		}
		tmpl := e.Template
		if tmpl == "" {
			tmpl = "$1$"
		}
		// $n$ is group n; anything else is text.
		for tmpl != "" {
			i := strings.IndexByte(tmpl, '$')
			j := -1
			if i >= 0 {
				j = strings.IndexByte(tmpl[i+1:], '$')
			}
			n := -1
			if j >= 0 {
				if g, err := strconv.Atoi(tmpl[i+1 : i+1+j]); err == nil && g >= 0 {
					n = g
				}
			}
			if n < 0 {
				ce.tmpl = append(ce.tmpl, tmplPart{text: tmpl, group: -1})
				break
			}
			if i > 0 {
				ce.tmpl = append(ce.tmpl, tmplPart{text: tmpl[:i], group: -1})
			}
			ce.tmpl = append(ce.tmpl, tmplPart{group: n})
			tmpl = tmpl[i+j+2:]
		}
	case ExtractJSONPath:
		if ce.path, err = jsonpath.Parse(e.Expr); err != nil {
			return nil, err
		}
	case ExtractBoundary:
		if e.Left == "" && e.Right == "" {
			return nil, errors.New("boundary extractor needs a left or right boundary")
		}
	default:
		return nil, fmt.Errorf("unknown extractor kind %d", e.Kind)
	}
	return ce, nil
}

// fieldText returns the part of the response a field names.
func fieldText(w *worker, res *Result, f ExtractField) string {
	switch f {
	case FieldHeaders:
		var b strings.Builder
		for k, vs := range w.resp.header {
			for _, v := range vs {
				b.WriteString(k + ": " + v + "\n")
			}
		}
		return b.String()
	case FieldURL:
		return res.URL
	case FieldCode:
		return strconv.Itoa(res.Status)
	case FieldMessage:
		_, msg, _ := strings.Cut(w.resp.status, " ")
		return msg
	}
	return string(w.resp.body)
}

// apply sets the extractor's variables from the response.
func (ce *cextract) apply(u *user, res *Result) {
	e := ce.e
	var matches [][]string // each match: the value and, for a regex, its groups
	switch e.Kind {
	case ExtractRegex:
		text := fieldText(u.w, res, e.Field)
		for _, m := range ce.re.FindAllStringSubmatch(text, -1) {
			var b strings.Builder
			for _, p := range ce.tmpl {
				if p.group < 0 {
					b.WriteString(p.text)
				} else if p.group < len(m) {
					b.WriteString(m[p.group])
				}
			}
			matches = append(matches, append([]string{b.String()}, m...))
		}
	case ExtractJSONPath:
		var doc any
		if json.Unmarshal(u.w.resp.body, &doc) == nil {
			for v := range ce.path.Select(doc).All() {
				matches = append(matches, []string{jsonText(v)})
			}
		}
	case ExtractBoundary:
		text := fieldText(u.w, res, e.Field)
		for text != "" {
			i := strings.Index(text, e.Left)
			if i < 0 {
				break
			}
			rest := text[i+len(e.Left):]
			j := len(rest)
			if e.Right != "" {
				if j = strings.Index(rest, e.Right); j < 0 {
					break
				}
			}
			matches = append(matches, []string{rest[:j]})
			text = rest[j+len(e.Right):]
			if e.Right == "" {
				break
			}
		}
	}
	v := u.vars
	setGroups := func(prefix string, m []string) {
		if e.Kind != ExtractRegex {
			return
		}
		for g := 1; g < len(m); g++ {
			v[prefix+"_g"+strconv.Itoa(g-1)] = m[g]
		}
		v[prefix+"_g"] = strconv.Itoa(len(m) - 2)
	}
	if e.Match < 0 {
		// All matches: Var_1 … Var_n and Var_matchNr.
		for i := 1; ; i++ {
			name := e.Var + "_" + strconv.Itoa(i)
			if _, ok := v[name]; !ok || i <= len(matches) {
				if i > len(matches) {
					break
				}
			} else {
				delete(v, name) // a longer earlier list
				continue
			}
			v[name] = matches[i-1][0]
			setGroups(name, matches[i-1])
		}
		v[e.Var+"_matchNr"] = strconv.Itoa(len(matches))
		if len(matches) == 0 {
			ce.setDefault(u)
		}
		return
	}
	if len(matches) == 0 || e.Match > len(matches) {
		ce.setDefault(u)
		return
	}
	i := e.Match - 1
	if e.Match == 0 {
		i = u.rng.IntN(len(matches))
	}
	v[e.Var] = matches[i][0]
	setGroups(e.Var, matches[i])
}

func (ce *cextract) setDefault(u *user) {
	if ce.e.Default != "" || ce.e.DefaultEmpty {
		u.vars[ce.e.Var] = ce.e.Default
	}
}

// jsonText is a JSON value as JMeter's JSON Extractor writes it: a string
// as itself, anything else as JSON.
func jsonText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "null"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// cassert is a compiled Assert.
type cassert struct {
	a        *Assert
	patterns []*Template
	path     *jsonpath.Path
	expected *regexp.Regexp
}

func compileAssert(a *Assert) (*cassert, error) {
	ca := &cassert{a: a}
	switch a.Kind {
	case AssertResponse:
		if len(a.Patterns) == 0 {
			return nil, errors.New("response assertion without patterns")
		}
		for _, p := range a.Patterns {
			t, err := compileFlowTemplate(p)
			if err != nil {
				return nil, err
			}
			if (a.Match == MatchContains || a.Match == MatchMatches) && t.Static() {
				if _, err := regexp.Compile(p); err != nil {
					return nil, fmt.Errorf("pattern %q: %w", p, err)
				}
			}
			ca.patterns = append(ca.patterns, t)
		}
	case AssertDuration, AssertSize:
	case AssertJSON:
		var err error
		if ca.path, err = jsonpath.Parse(a.Path); err != nil {
			return nil, err
		}
		if a.Regex && a.Validate && !a.Null {
			if ca.expected, err = regexp.Compile("^(?:" + a.Expected + ")$"); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("unknown assertion kind %d", a.Kind)
	}
	return ca, nil
}

var fieldNames = [...]string{"text", "headers", "URL", "code", "message"}

// check runs the assertion and sets res.Failure when it fails.
func (ca *cassert) check(u *user, res *Result) {
	a := ca.a
	var fail string
	switch a.Kind {
	case AssertResponse:
		if a.IgnoreStatus {
			res.Accepted = true
		}
		text := fieldText(u.w, res, a.Field)
		pass := !a.Or
		var why string
		for _, pt := range ca.patterns {
			p := pt.Execute(&u.w.vars)
			var hit bool
			switch a.Match {
			case MatchEquals:
				hit = text == p
			case MatchSubstring:
				hit = strings.Contains(text, p)
			default:
				re, err := regexp.Compile(p)
				if err == nil {
					if a.Match == MatchMatches {
						loc := re.FindStringIndex(text)
						hit = loc != nil && loc[0] == 0 && loc[1] == len(text)
						if !hit {
							full, _ := regexp.Compile("^(?:" + p + ")$")
							hit = full != nil && full.MatchString(text)
						}
					} else {
						hit = re.MatchString(text)
					}
				}
			}
			if a.Not {
				hit = !hit
			}
			if a.Or {
				pass = pass || hit
			} else if !hit {
				pass = false
				if why == "" {
					why = p
				}
			}
		}
		if !pass {
			rule := [...]string{"contain", "match", "equal", "contain"}[a.Match]
			if a.Not {
				rule = "not " + rule
			}
			if why == "" {
				why = a.Patterns[0]
			}
			fail = fmt.Sprintf("Test failed: %s expected to %s /%s/", fieldNames[a.Field], rule, why)
		}
	case AssertDuration:
		if res.Elapsed > a.Duration {
			fail = fmt.Sprintf("The operation lasted too long: It took %d milliseconds, but should not have lasted longer than %d milliseconds.",
				res.Elapsed.Milliseconds(), a.Duration.Milliseconds())
		}
	case AssertSize:
		n := res.BytesIn
		ok := map[Comparison]bool{CompareEqual: n == a.Size, CompareNotEqual: n != a.Size, CompareGreater: n > a.Size,
			CompareLess: n < a.Size, CompareGreaterEqual: n >= a.Size, CompareLessEqual: n <= a.Size}[a.Compare]
		if !ok {
			fail = fmt.Sprintf("The result was the wrong size: It was %d bytes, but should have been %s %d bytes.",
				n, [...]string{"", "equal to", "not equal to", "greater than", "less than", "greater than or equal to", "less than or equal to"}[a.Compare], a.Size)
		}
	case AssertJSON:
		fail = ca.checkJSON(u)
	}
	if fail != "" && res.Failure == "" {
		res.Failure = fail
	}
}

// checkJSON is JMeter's JSON Assertion.
func (ca *cassert) checkJSON(u *user) string {
	a := ca.a
	var doc any
	if err := json.Unmarshal(u.w.resp.body, &doc); err != nil {
		return "Invalid JSON: " + err.Error()
	}
	nodes := ca.path.Select(doc)
	var fail string
	switch {
	case len(nodes) == 0:
		fail = "No results for path: " + a.Path
	case !a.Validate:
	default:
		matched := false
		for _, v := range nodes {
			switch {
			case a.Null:
				matched = v == nil
			case ca.expected != nil:
				matched = ca.expected.MatchString(jsonText(v))
			default:
				matched = jsonText(v) == a.Expected
			}
			if matched {
				break
			}
		}
		if !matched {
			want := a.Expected
			if a.Null {
				want = "null"
			}
			fail = fmt.Sprintf("Value expected to be '%s', but found '%s'", want, jsonText(nodes[0]))
		}
	}
	if a.Invert {
		if fail == "" {
			return "Failed that JSONPath " + a.Path + " matches"
		}
		return ""
	}
	return fail
}
