package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const refPlan = "../../jmx/testdata/script-updates.jmx"

func TestJMXText(t *testing.T) {
	code, out, errOut := runCmd(t, "jmx", refPlan, "-J", "host=10.0.0.1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"= 200 req/s, not 10 req/s",
		"ramp-up 0: all 20 threads send their first request at t=0",
		"[ctt-per-thread]", "[same-resource]", "[no-retry-after]",
		"url: http://10.0.0.1:8080/api/v2/architect/scripts/",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestJMXJSON(t *testing.T) {
	code, out, errOut := runCmd(t, "jmx", "--json", refPlan)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct {
		Threads      int      `json:"threads"`
		RampUpS      float64  `json:"ramp_up_s"`
		Loops        int      `json:"loops"`
		DurationS    *float64 `json:"duration_s"`
		EffectiveRPS *float64 `json:"effective_rps"`
		StartupBurst int      `json:"startup_burst"`
		Pitfalls     []struct{ ID, Message, Fix string }
		Warnings     []any
		Scenario     map[string]any
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Threads != 20 || got.Loops != 100 || got.DurationS != nil || got.EffectiveRPS == nil || *got.EffectiveRPS != 200 || got.StartupBurst != 200 {
		t.Fatalf("%+v", got)
	}
	if len(got.Pitfalls) < 4 || got.Scenario["throughput_mode"] != "this-thread" {
		t.Fatalf("pitfalls %v scenario %v", got.Pitfalls, got.Scenario)
	}
}

func TestJMXErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.jmx")
	os.WriteFile(bad, []byte("<jmeterTestPlan>\n<hashTree>\n<TestPlan>\n</hashTree>"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"jmx"}, 2, "want exactly one plan file"},
		{[]string{"jmx", "nope.jmx"}, 1, "no such file"},
		{[]string{"jmx", bad}, 1, "bad.jmx: line 4"},
		{[]string{"jmx", "-J", "novalue", refPlan}, 1, "want name=value"},
	} {
		code, _, errOut := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errOut, c.code, c.msg)
		}
	}
}
