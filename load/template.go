package load

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Vars are the values a template may use when a request is built: the
// virtual user, its iteration, the request's sequence number, the current
// CSV row and the time of the send. The zero Vars is valid: thread 0,
// iteration 0, no CSV row, the zero time.
type Vars struct {
	Thread    int
	Iteration int
	Seq       uint64
	// Row is the current CSV row, indexed by column (see Columns).
	Row []string
	// Now is the instant the request is built; {{now}} formats it.
	Now time.Time
	// Named are a flow user's variables, which {{.name}} reads in a
	// flow's templates.
	Named map[string]string
}

// Columns maps CSV column names to their index in Vars.Row. A nil Columns
// has no columns: a template that names one fails to compile.
type Columns map[string]int

// Template is a compiled request template: the text of a URL, a header
// value or a body with {{...}} actions in the syntax of text/template:
//
//	{{.Thread}}     the virtual user, from 1
//	{{.Iteration}}  its loop iteration, from 0
//	{{.Seq}}        the request's sequence number in the run, from 0
//	{{.name}}       column "name" of the current --data CSV row; in a
//	                flow, the user's variable "name" (${name} when unset)
//	{{uuid}}        a random UUID (version 4)
//	{{now}}         the send time, RFC 3339 with milliseconds, UTC
//	{{timems}}      the send time in epoch milliseconds (JMeter's ${__time(,)})
//	{{time "LAYOUT"}}  the send time in local time, formatted by a Go layout
//	                (JMeter's ${__time(FORMAT,)}, its SimpleDateFormat translated)
//	{{timediv N}}   the send time in epoch milliseconds divided by N (${__time(/N,)})
//	{{counter}}     the thread's iteration, from 1 (JMeter's ${__counter(TRUE,)}
//	                when it is called once per iteration)
//	{{gcounter}}    the request's sequence number, from 1 (${__counter(FALSE,)})
//	{{random A B}}  a random integer in [A, B] (${__Random(A,B)})
//	{{randomString N "CHARS"}}  N random characters from CHARS (${__RandomString})
//
// A Template is compiled once; a static one (no actions) costs nothing per
// request. The zero Template is the empty static text. A Template is
// immutable and safe for concurrent use.
type Template struct {
	src   string
	parts []part
}

type partKind uint8

const (
	partText partKind = iota
	partThread
	partIteration
	partSeq
	partColumn
	partUUID
	partNow
	partTimeMillis
	partCounter
	partGlobalCounter
	partRandom
	partRandomString
	partVar
	partTimeLayout
	partTimeDiv
)

type part struct {
	kind   partKind
	text   string // partText; the characters of partRandomString; partVar's name
	col    int    // partColumn
	lo, hi int64  // partRandom bounds; hi is the length for partRandomString
}

// TemplateError locates a template error: Offset is the byte offset of the
// offending action in the source.
type TemplateError struct {
	Offset int
	Msg    string
}

func (e *TemplateError) Error() string {
	return fmt.Sprintf("template: at offset %d: %s", e.Offset, e.Msg)
}

// CompileTemplate compiles src. cols names the CSV columns a template may
// use; a template that names anything else fails here, before any request
// is sent.
func CompileTemplate(src string, cols Columns) (*Template, error) {
	return compileTemplate(src, cols, false)
}

// compileFlowTemplate compiles src for a flow: {{.name}} is the user's
// variable name, set at run time (see Vars.Named), and a name that no one
// has set comes out as JMeter leaves it, ${name}.
func compileFlowTemplate(src string) (*Template, error) { return compileTemplate(src, nil, true) }

func compileTemplate(src string, cols Columns, named bool) (*Template, error) {
	t := &Template{src: src}
	rest, off := src, 0
	for rest != "" {
		i := strings.Index(rest, "{{")
		if i < 0 {
			t.parts = append(t.parts, part{kind: partText, text: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{kind: partText, text: rest[:i]})
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			return nil, &TemplateError{Offset: off + i, Msg: `unclosed action: missing "}}"`}
		}
		action := strings.TrimSpace(rest[i+2 : i+2+j])
		p, err := compileAction(action, cols, named)
		if err != nil {
			return nil, &TemplateError{Offset: off + i, Msg: err.Error()}
		}
		t.parts = append(t.parts, p)
		off += i + 2 + j + 2
		rest = rest[i+2+j+2:]
	}
	if len(t.parts) == 1 && t.parts[0].kind == partText {
		t.parts = nil // static: Static answers without looking at parts
	}
	return t, nil
}

func compileAction(a string, cols Columns, named bool) (part, error) {
	switch a {
	case "":
		return part{}, errors.New("empty action")
	case ".Thread":
		return part{kind: partThread}, nil
	case ".Iteration":
		return part{kind: partIteration}, nil
	case ".Seq":
		return part{kind: partSeq}, nil
	case "uuid":
		return part{kind: partUUID}, nil
	case "now":
		return part{kind: partNow}, nil
	case "timems":
		return part{kind: partTimeMillis}, nil
	case "counter":
		return part{kind: partCounter}, nil
	case "gcounter":
		return part{kind: partGlobalCounter}, nil
	}
	if args, ok := strings.CutPrefix(a, "random "); ok {
		var lo, hi int64
		if n, err := fmt.Sscanf(args, "%d %d", &lo, &hi); n != 2 || err != nil || lo > hi {
			return part{}, fmt.Errorf("random %q: want {{random MIN MAX}} with MIN ≤ MAX", args)
		}
		return part{kind: partRandom, lo: lo, hi: hi}, nil
	}
	if args, ok := strings.CutPrefix(a, "time "); ok {
		layout, err := strconv.Unquote(strings.TrimSpace(args))
		if err != nil || layout == "" {
			return part{}, fmt.Errorf("time %q: want {{time \"LAYOUT\"}} with a Go time layout", args)
		}
		return part{kind: partTimeLayout, text: layout}, nil
	}
	if args, ok := strings.CutPrefix(a, "timediv "); ok {
		n, err := strconv.ParseInt(strings.TrimSpace(args), 10, 64)
		if err != nil || n <= 0 {
			return part{}, fmt.Errorf("timediv %q: want {{timediv N}} with N > 0", args)
		}
		return part{kind: partTimeDiv, lo: n}, nil
	}
	if args, ok := strings.CutPrefix(a, "randomString "); ok {
		n, chars, _ := strings.Cut(strings.TrimSpace(args), " ")
		length, err := strconv.Atoi(n)
		unq, qerr := strconv.Unquote(strings.TrimSpace(chars))
		if err != nil || length < 0 || length > 1<<16 || qerr != nil || unq == "" {
			return part{}, fmt.Errorf("randomString %q: want {{randomString LENGTH \"CHARS\"}}", args)
		}
		return part{kind: partRandomString, hi: int64(length), text: unq}, nil
	}
	if name, ok := strings.CutPrefix(a, "."); ok {
		if named {
			if name == "" || strings.ContainsAny(name, " \t{}") {
				return part{}, fmt.Errorf("variable %q: want {{.name}}", a)
			}
			return part{kind: partVar, text: name}, nil
		}
		if i, ok := cols[name]; ok && name != "" {
			return part{kind: partColumn, col: i}, nil
		}
		if len(cols) == 0 {
			return part{}, fmt.Errorf("unknown variable %q (no --data CSV columns are defined)", a)
		}
		return part{}, fmt.Errorf("unknown variable %q (not a CSV column)", a)
	}
	return part{}, fmt.Errorf("unknown function %q (want .Thread, .Iteration, .Seq, .column, uuid, now, timems, counter, gcounter, random or randomString)", a)
}

// MustStatic returns a static template of s, for callers that build
// requests in code.
func MustStatic(s string) *Template { return &Template{src: s} }

// Source returns the template's source text.
func (t *Template) Source() string { return t.src }

// Static reports whether the template has no actions.
func (t *Template) Static() bool { return len(t.parts) == 0 }

// Append appends the template's text for v to dst and returns it.
func (t *Template) Append(dst []byte, v *Vars) []byte {
	if len(t.parts) == 0 {
		return append(dst, t.src...)
	}
	for _, p := range t.parts {
		switch p.kind {
		case partText:
			dst = append(dst, p.text...)
		case partThread:
			dst = strconv.AppendInt(dst, int64(v.Thread), 10)
		case partIteration:
			dst = strconv.AppendInt(dst, int64(v.Iteration), 10)
		case partSeq:
			dst = strconv.AppendUint(dst, v.Seq, 10)
		case partColumn:
			if p.col < len(v.Row) {
				dst = append(dst, v.Row[p.col]...)
			}
		case partUUID:
			id := uuid.New()
			var buf [36]byte
			hexUUID(buf[:], id)
			dst = append(dst, buf[:]...)
		case partNow:
			dst = v.Now.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
		case partTimeMillis:
			dst = strconv.AppendInt(dst, v.Now.UnixMilli(), 10)
		case partTimeLayout:
			dst = v.Now.Local().AppendFormat(dst, p.text)
		case partTimeDiv:
			dst = strconv.AppendInt(dst, v.Now.UnixMilli()/p.lo, 10)
		case partCounter:
			dst = strconv.AppendInt(dst, int64(v.Iteration)+1, 10)
		case partGlobalCounter:
			dst = strconv.AppendUint(dst, v.Seq+1, 10)
		case partRandom:
			dst = strconv.AppendInt(dst, p.lo+rand.Int64N(p.hi-p.lo+1), 10)
		case partRandomString:
			for range p.hi {
				dst = append(dst, p.text[rand.IntN(len(p.text))])
			}
		case partVar:
			if val, ok := v.Named[p.text]; ok {
				dst = append(dst, val...)
			} else {
				dst = append(append(append(dst, "${"...), p.text...), '}')
			}
		}
	}
	return dst
}

// Execute returns the template's text for v.
func (t *Template) Execute(v *Vars) string {
	if len(t.parts) == 0 {
		return t.src
	}
	return string(t.Append(nil, v))
}

func hexUUID(dst []byte, id uuid.UUID) {
	const hex = "0123456789abcdef"
	j := 0
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = hex[b>>4], hex[b&0xf]
		j += 2
	}
}
