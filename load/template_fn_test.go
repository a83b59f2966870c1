package load

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJMeterFunctionTemplates checks the actions that stand in for
// JMeter's functions (ratelab jmx translates plans to them).
func TestJMeterFunctionTemplates(t *testing.T) {
	v := &Vars{Thread: 3, Iteration: 4, Seq: 41, Now: time.UnixMilli(1_700_000_000_123)}
	for src, want := range map[string]string{
		"{{timems}}":             "1700000000123",
		"{{counter}}":            "5",
		"{{gcounter}}":           "42",
		"{{random 7 7}}":         "7",
		`{{randomString 4 "z"}}`: "zzzz",
		"{{timediv 1000}}":       "1700000000",
		`{{time "2006-01-02"}}`:  time.UnixMilli(1_700_000_000_123).Local().Format("2006-01-02"),
	} {
		tm, err := CompileTemplate(src, nil)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := tm.Execute(v); got != want {
			t.Errorf("%s = %q, want %q", src, got, want)
		}
	}
	tm, _ := CompileTemplate("{{random 1 3}}", nil)
	seen := map[string]bool{}
	for range 200 {
		n, _ := strconv.Atoi(tm.Execute(v))
		if n < 1 || n > 3 {
			t.Fatalf("random out of range: %d", n)
		}
		seen[tm.Execute(v)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("random 1 3 produced %v", seen)
	}
	for _, bad := range []string{"{{random 3 1}}", "{{random x}}", `{{randomString x "a"}}`, `{{randomString 3 a}}`, `{{randomString 3 ""}}`, "{{timediv 0}}", "{{time 2006}}"} {
		if _, err := CompileTemplate(bad, nil); err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}
