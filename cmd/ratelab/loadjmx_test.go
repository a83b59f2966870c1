package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"ratelab/httpapi"
	"strings"
	"testing"
)

// TestLoadJMX runs the reference plan with "load --jmx" against the
// embedded server: faithfully (per-thread timer, one script: throttled by
// the per-script policy) and with --fix (no 429s).
func TestLoadJMX(t *testing.T) {
	dir := t.TempDir()
	srv, err := startDemoServer(t.Context(), dir, httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	host, port, _ := strings.Cut(strings.TrimPrefix(srv.base, "http://"), ":")
	props := []string{"-J", "host=" + host, "-J", "port=" + port, "-J", "accessToken=" + srv.token}

	type summary struct {
		Requests  int64 `json:"requests"`
		RateLimit struct {
			Count429 int64            `json:"count_429"`
			ByPolicy map[string]int64 `json:"by_policy"`
		} `json:"rate_limit"`
	}
	run := func(args ...string) summary {
		t.Helper()
		out := filepath.Join(dir, "out.json")
		args = append(append([]string{"load", "--jmx", refPlan, "--json", out, "--progress", "0"}, props...), args...)
		code, _, errOut := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, errOut)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var s summary
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	faithful := run("--loops", "5")
	if faithful.Requests != 100 {
		t.Fatalf("faithful run sent %d requests, want 20 threads × 5 loops", faithful.Requests)
	}
	if faithful.RateLimit.Count429 == 0 || faithful.RateLimit.ByPolicy["script-writes-per-script"] == 0 {
		t.Fatalf("faithful run: %+v, want 429s from script-writes-per-script", faithful.RateLimit)
	}
	if !sleepCtx(t.Context(), srv.settle) {
		t.Fatal("cancelled")
	}
	// The fix's resource ids stay in memory: nothing is left in the
	// temporary directory (a ratelab-fix-* directory used to be).
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	fixed := run("--fix", "--loops", "0", "--duration", "2s")
	if fixed.Requests < 15 || fixed.RateLimit.Count429 != 0 {
		t.Fatalf("fixed run: %d requests, %d 429s; want about 20 and none", fixed.Requests, fixed.RateLimit.Count429)
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Fatalf("load --fix left %v in TMPDIR (%v)", left, err)
	}
}

func TestLoadJMXErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"load", "--fix", "--url", "http://127.0.0.1:1/"}, "--fix corrects a JMeter plan"},
		{[]string{"load", "--jmx", refPlan, "some.yaml"}, "not both"},
		{[]string{"load", "--jmx", "missing.jmx"}, "no such file"},
	} {
		code, _, errOut := runCmd(t, c.args...)
		if code == 0 || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %q", c.args, code, errOut, c.msg)
		}
	}
}
