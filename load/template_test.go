package load

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestTemplate(t *testing.T) {
	cols := Columns{"scriptId": 0, "name": 1}
	v := &Vars{Thread: 3, Iteration: 7, Seq: 42, Row: []string{"s-1", "Ann"},
		Now: time.Date(2026, 5, 1, 12, 0, 0, 5e6, time.FixedZone("x", 3600))}
	for src, want := range map[string]string{
		"":                             "",
		"static":                       "static",
		"/scripts/{{.scriptId}}":       "/scripts/s-1",
		"{{ .Thread }}-{{.Iteration}}": "3-7",
		"seq={{.Seq}}&n={{.name}}":     "seq=42&n=Ann",
		"at {{now}}":                   "at 2026-05-01T11:00:00.005Z",
	} {
		tm, err := CompileTemplate(src, cols)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got := tm.Execute(v); got != want {
			t.Errorf("%q: got %q, want %q", src, got, want)
		}
		if tm.Static() != !strings.Contains(src, "{{") {
			t.Errorf("%q: static %v", src, tm.Static())
		}
	}
	u, _ := CompileTemplate("{{uuid}}", nil)
	a, b := u.Execute(v), u.Execute(v)
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(a) || a == b {
		t.Errorf("uuids %q %q", a, b)
	}
}

func TestTemplateErrors(t *testing.T) {
	for src, want := range map[string]struct {
		off int
		msg string
	}{
		"/x/{{.nope}}":     {3, `unknown variable ".nope"`},
		"ab{{.Thread":      {2, "unclosed action"},
		"{{}}":             {0, "empty action"},
		"{{ random }}":     {0, `unknown function "random"`},
		"{{.Seq}}{{.Foo}}": {8, `unknown variable ".Foo"`},
	} {
		_, err := CompileTemplate(src, Columns{"id": 0})
		var te *TemplateError
		if !errors.As(err, &te) || te.Offset != want.off || !strings.Contains(te.Msg, want.msg) {
			t.Errorf("%q: error %v, want offset %d and %q", src, err, want.off, want.msg)
		}
	}
}

func TestStaticTemplateCostsNothing(t *testing.T) {
	tm, _ := CompileTemplate("PUT body that never changes", nil)
	v := &Vars{}
	if n := testing.AllocsPerRun(100, func() { _ = tm.Execute(v) }); n != 0 {
		t.Fatalf("static template allocates %v per execution", n)
	}
	dyn, _ := CompileTemplate("/s/{{.Thread}}/{{.Seq}}", nil)
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = dyn.Append(buf[:0], v) }); n != 0 {
		t.Fatalf("Append into a buffer allocates %v", n)
	}
}

func FuzzCompileTemplate(f *testing.F) {
	for _, s := range []string{"", "x", "{{.Thread}}", "{{uuid}}{{now}}", "a{{.c}}b", "{{", "}}", "{{{{}}}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tm, err := CompileTemplate(src, Columns{"c": 0})
		if err != nil {
			var te *TemplateError
			if !errors.As(err, &te) || te.Offset < 0 || te.Offset > len(src) {
				t.Fatalf("%q: bad error %v", src, err)
			}
			return
		}
		out := tm.Execute(&Vars{Row: []string{"C"}})
		if !strings.Contains(src, "{{") && out != src {
			t.Fatalf("%q: static text changed to %q", src, out)
		}
	})
}
