package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ratelab/limit"
)

func TestProbeNeedsBounds(t *testing.T) {
	code, _, errOut := runCmd(t, "probe", "--url", "http://127.0.0.1:1/x", "--budget", "100")
	if code != 1 || !strings.Contains(errOut, "--max-rate is required") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCmd(t, "probe", "--url", "http://127.0.0.1:1/x", "--max-rate", "10/s")
	if code != 1 || !strings.Contains(errOut, "--budget is required") {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}

func TestProbeCommand(t *testing.T) {
	store := limit.NewMemoryStore(limit.MemoryConfig{})
	defer store.Close()
	pol := &limit.Policy{Name: "p", Rate: limit.Per(10, time.Second), Burst: 4}
	var count atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		var d limit.Decision
		if err := store.Decide(r.Context(), &limit.Request{Tiers: []limit.Tier{{Policy: pol, Key: r.URL.Path}}, Cost: 1}, &d); err != nil || !d.Allowed {
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "probe.json")
	code, stdout, errOut := runCmd(t, "probe", "--url", srv.URL+"/items/{{.id}}", "--vary", "id=seq",
		"--max-rate", "100/s", "--budget", "1000", "--json", out, "--quiet")
	if code != 0 {
		t.Fatalf("code %d, stderr %s", code, errOut)
	}
	if !strings.Contains(stdout, "SCOPE") || !strings.Contains(stdout, "resource") {
		t.Errorf("text report:\n%s", stdout)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Limits []struct {
			Scope    string  `json:"scope"`
			RatePerS float64 `json:"rate_per_s"`
			RateLow  float64 `json:"rate_low"`
			RateHigh float64 `json:"rate_high"`
			Burst    int64   `json:"burst"`
			Evidence any     `json:"evidence"`
		} `json:"limits"`
		RequestsUsed int     `json:"requests_used"`
		DurationS    float64 `json:"duration_s"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Limits) != 1 {
		t.Fatalf("limits %s", data)
	}
	l := rep.Limits[0]
	if l.Scope != "resource" || l.Burst < 3 || l.Burst > 5 || l.RatePerS < 9.5 || l.RatePerS > 10.5 || l.Evidence == nil {
		t.Errorf("limit %+v, want resource 10/s burst 4", l)
	}
	if int64(rep.RequestsUsed) != count.Load() || rep.DurationS <= 0 {
		t.Errorf("requests_used %d (server counted %d), duration %v", rep.RequestsUsed, count.Load(), rep.DurationS)
	}
}
