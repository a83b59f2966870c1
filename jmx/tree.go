package jmx

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// element is one test element of a plan (TestPlan, ThreadGroup,
// HTTPSamplerProxy, …) with its properties and the children of the
// hashTree that follows it.
type element struct {
	tag      string // the XML element name, e.g. "HTTPSamplerProxy"
	name     string // testname
	enabled  bool
	props    map[string]*prop
	children []*element
	line     int
	col      int
	path     string // "Test Plan / Thread Group / PUT script", for messages
}

// prop is one JMeter property: a scalar (stringProp, boolProp, intProp,
// longProp, doubleProp), an elementProp holding properties, a
// collectionProp holding items, or an objProp kept as raw fields.
type prop struct {
	kind  string // stringProp, boolProp, …
	name  string
	value string
	// elementType is an elementProp's type (Arguments, Header, …).
	elementType string
	props       map[string]*prop // elementProp members, objProp fields
	items       []*prop          // collectionProp items, in order
}

func (e *element) str(name string) string {
	if p := e.props[name]; p != nil {
		return strings.TrimSpace(p.value)
	}
	return ""
}

func (e *element) raw(name string) (string, bool) {
	if p := e.props[name]; p != nil {
		return p.value, true
	}
	return "", false
}

// SyntaxError reports malformed XML or a plan whose structure JMeter
// would not load, with the position in the file.
type SyntaxError struct {
	Line, Column int
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// decoder wraps xml.Decoder with positions for errors.
type decoder struct {
	d *xml.Decoder
}

func (d *decoder) errorf(format string, args ...any) error {
	line, col := d.d.InputPos()
	return &SyntaxError{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// token returns the next token, turning XML errors into SyntaxErrors.
func (d *decoder) token() (xml.Token, error) {
	tok, err := d.d.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, d.errorf("unexpected end of file")
		}
		var se *xml.SyntaxError
		if errors.As(err, &se) {
			_, col := d.d.InputPos()
			return nil, &SyntaxError{Line: se.Line, Column: col, Msg: se.Msg}
		}
		return nil, d.errorf("%v", err)
	}
	return xml.CopyToken(tok), nil
}

// parseTree reads a .jmx document into its tree of elements.
func parseTree(r io.Reader) ([]*element, error) {
	d := &decoder{d: xml.NewDecoder(r)}
	d.d.Strict = true
	// Find <jmeterTestPlan>.
	for {
		tok, err := d.token()
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) && se.Msg == "unexpected end of file" {
				se.Msg = "no <jmeterTestPlan> element: not a JMeter plan"
			}
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "jmeterTestPlan" {
				return nil, d.errorf("root element is <%s>, want <jmeterTestPlan>: not a JMeter plan", se.Name.Local)
			}
			break
		}
	}
	var roots []*element
	for {
		tok, err := d.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "hashTree" {
				return nil, d.errorf("<jmeterTestPlan> holds <%s>, want <hashTree>", t.Name.Local)
			}
			els, err := d.hashTree("")
			if err != nil {
				return nil, err
			}
			roots = append(roots, els...)
		case xml.EndElement:
			if len(roots) == 0 {
				return nil, d.errorf("the plan is empty: no <TestPlan>")
			}
			return roots, nil
		}
	}
}

// hashTree reads the inside of a <hashTree>: test elements, each followed
// by a <hashTree> of its children.
func (d *decoder) hashTree(parentPath string) ([]*element, error) {
	var els []*element
	for {
		tok, err := d.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local == "hashTree" {
				if len(els) == 0 {
					// JMeter's loader skips a <hashTree> that follows no
					// element (plans edited by hand have them); so does
					// ratelab, after reading it through.
					if _, err := d.hashTree(parentPath); err != nil {
						return nil, err
					}
					continue
				}
				last := els[len(els)-1]
				if last.children != nil {
					return nil, d.errorf("two <hashTree>s follow <%s %q>", last.tag, last.name)
				}
				kids, err := d.hashTree(last.path)
				if err != nil {
					return nil, err
				}
				last.children = append([]*element{}, kids...)
				continue
			}
			line, col := d.d.InputPos()
			e := &element{tag: t.Name.Local, enabled: true, props: map[string]*prop{}, line: line, col: col}
			for _, a := range t.Attr {
				switch a.Name.Local {
				case "testname":
					e.name = a.Value
				case "enabled":
					e.enabled = a.Value != "false"
				}
			}
			label := e.name
			if label == "" {
				label = e.tag
			}
			e.path = label
			if parentPath != "" {
				e.path = parentPath + " / " + label
			}
			if err := d.props(e.props, nil, t.Name.Local); err != nil {
				return nil, err
			}
			els = append(els, e)
		case xml.EndElement:
			return els, nil
		}
	}
}

// props reads property elements until the end of the element named end,
// storing named ones in m and, when items is not nil, every one in order.
func (d *decoder) props(m map[string]*prop, items *[]*prop, end string) error {
	for {
		tok, err := d.token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			p, err := d.prop(t)
			if err != nil {
				return err
			}
			if p.name != "" && m != nil {
				m[p.name] = p
			}
			if items != nil {
				*items = append(*items, p)
			}
		case xml.EndElement:
			if t.Name.Local != end {
				return d.errorf("unexpected </%s> inside <%s>", t.Name.Local, end)
			}
			return nil
		}
	}
}

// prop reads one property element whose start tag is t.
func (d *decoder) prop(t xml.StartElement) (*prop, error) {
	p := &prop{kind: t.Name.Local}
	for _, a := range t.Attr {
		switch a.Name.Local {
		case "name":
			p.name = a.Value
		case "elementType":
			p.elementType = a.Value
		}
	}
	switch p.kind {
	case "elementProp":
		p.props = map[string]*prop{}
		return p, d.props(p.props, &p.items, p.kind)
	case "collectionProp":
		return p, d.props(nil, &p.items, p.kind)
	}
	// A scalar: either text content, or (doubleProp, objProp …) child
	// elements <name> and <value> with text or fields.
	var text strings.Builder
	for {
		tok, err := d.token()
		if err != nil {
			return nil, err
		}
		switch c := tok.(type) {
		case xml.CharData:
			text.Write(c)
		case xml.StartElement:
			switch c.Name.Local {
			case "name":
				v, err := d.text(c.Name.Local)
				if err != nil {
					return nil, err
				}
				p.name = strings.TrimSpace(v)
			case "value":
				if p.kind == "objProp" {
					p.props = map[string]*prop{}
					if err := d.fields(p.props, "value"); err != nil {
						return nil, err
					}
					continue
				}
				v, err := d.text("value")
				if err != nil {
					return nil, err
				}
				p.value = v
			default:
				if err := d.d.Skip(); err != nil {
					return nil, d.errorf("%v", err)
				}
			}
		case xml.EndElement:
			if c.Name.Local != p.kind {
				return nil, d.errorf("unexpected </%s> inside <%s>", c.Name.Local, p.kind)
			}
			if p.value == "" && p.props == nil {
				p.value = text.String()
			}
			return p, nil
		}
	}
}

// fields reads simple <field>text</field> children into m (objProp values).
func (d *decoder) fields(m map[string]*prop, end string) error {
	for {
		tok, err := d.token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			v, err := d.text(t.Name.Local)
			if err != nil {
				return err
			}
			m[t.Name.Local] = &prop{kind: "field", name: t.Name.Local, value: v}
		case xml.EndElement:
			if t.Name.Local != end {
				return d.errorf("unexpected </%s> inside <%s>", t.Name.Local, end)
			}
			return nil
		}
	}
}

// text reads character data up to the end of the element named end.
func (d *decoder) text(end string) (string, error) {
	var b strings.Builder
	for {
		tok, err := d.token()
		if err != nil {
			return "", err
		}
		switch t := tok.(type) {
		case xml.CharData:
			b.Write(t)
		case xml.StartElement:
			if err := d.d.Skip(); err != nil {
				return "", d.errorf("%v", err)
			}
		case xml.EndElement:
			if t.Name.Local != end {
				return "", d.errorf("unexpected </%s> inside <%s>", t.Name.Local, end)
			}
			return b.String(), nil
		}
	}
}
