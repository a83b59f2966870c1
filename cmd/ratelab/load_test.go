package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ratelab/load"
)

// loadServer is a real loopback server that answers request n (from 0)
// with 429, Retry-After: 1 and ratelab's body naming the policy when
// reject(n); otherwise 200 with the remaining quota 50−n.
func loadServer(t *testing.T, reject func(n int64) bool) string {
	t.Helper()
	var count atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := count.Add(1) - 1
		w.Header().Set("X-RateLimit-Remaining", fmt.Sprint(max(0, 50-n)))
		if reject(n) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"message":"Rate limit exceeded.","code":"too_many_requests","limit":{"policy":"per-script","retryAfterMs":1000}}`)
			return
		}
		w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func runCmdCtx(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	env := &environ{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	code := run(ctx, env, args)
	return code, out.String(), errOut.String()
}

func TestLoadEndToEnd(t *testing.T) {
	url := loadServer(t, func(n int64) bool { return n >= 4 && n < 7 })
	dir := t.TempDir()
	jsonPath, jtlPath, resPath, htmlPath := filepath.Join(dir, "s.json"), filepath.Join(dir, "r.jtl"),
		filepath.Join(dir, "r.jsonl"), filepath.Join(dir, "r.html")
	code, out, errOut := runCmd(t, "load", "--url", url+"/api/v2/users", "--threads", "1", "--loops", "10",
		"--json", jsonPath, "--jtl", jtlPath, "--results", resPath, "--html", htmlPath, "--progress", "0",
		"--threshold", "share_429<50%", "--threshold", "errors==0")
	if code != 0 {
		t.Fatalf("code %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if !strings.Contains(out, "threshold ok") || !strings.Contains(out, "per-script") {
		t.Errorf("stdout:\n%s", out)
	}
	var sum struct {
		Requests     int64            `json:"requests"`
		TargetRPS    *float64         `json:"target_rps"`
		StatusCounts map[string]int64 `json:"status_counts"`
		RateLimit    struct {
			Count429        int64                      `json:"count_429"`
			Share429        float64                    `json:"share_429"`
			First429Request *int64                     `json:"first_429_request"`
			RetryAfterS     struct{ Min, Max float64 } `json:"retry_after_s"`
			ByPolicy        map[string]int64           `json:"by_policy"`
			LastRemaining   *int64                     `json:"last_remaining"`
		} `json:"rate_limit"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	rl := sum.RateLimit
	if sum.Requests != 10 || sum.TargetRPS != nil || sum.StatusCounts["200"] != 7 || sum.StatusCounts["429"] != 3 ||
		rl.Count429 != 3 || rl.Share429 != 0.3 || rl.First429Request == nil || *rl.First429Request != 4 ||
		rl.RetryAfterS.Min != 1 || rl.RetryAfterS.Max != 1 || rl.ByPolicy["per-script"] != 3 ||
		rl.LastRemaining == nil || *rl.LastRemaining != 41 {
		t.Errorf("summary %s", b)
	}
	jtl, _ := os.ReadFile(jtlPath)
	lines := strings.Split(strings.TrimSpace(string(jtl)), "\n")
	if len(lines) != 11 || lines[0] != "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect" {
		t.Errorf("jtl: %d lines, header %q", len(lines), lines[0])
	}
	f, _ := os.Open(resPath)
	defer f.Close()
	dec, err := load.NewDecoder(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		var r load.Result
		if dec.Decode(&r) != nil {
			break
		}
		n++
	}
	if n != 10 || dec.Info().Model != "closed" {
		t.Errorf("results file: %d results, info %+v", n, dec.Info())
	}
	if html, _ := os.ReadFile(htmlPath); !bytes.Contains(html, []byte("<svg")) {
		t.Errorf("html report has no chart")
	}
}

func TestLoadThresholdFails(t *testing.T) {
	url := loadServer(t, func(n int64) bool { return n%2 == 1 })
	code, out, _ := runCmd(t, "load", "--url", url, "--loops", "4", "--progress", "0", "--threshold", "share_429<1%")
	if code != 99 || !strings.Contains(out, "threshold FAIL") {
		t.Fatalf("code %d, stdout:\n%s", code, out)
	}
}

func TestLoadRefusesBadRuns(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("threads: 2\nloops: 1\nrequests:\n  - url: http://127.0.0.1:1/{{.nope}}\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--url", "http://127.0.0.1:1/", "--threads", "5"}, "unbounded run refused"},
		{[]string{"--loops", "1"}, "nothing to send"},
		{[]string{"--url", "http://127.0.0.1:1/", "--rate", "fast", "--duration", "1s"}, "--rate"},
		{[]string{bad}, "bad.yaml"},
		{[]string{bad}, `line 4: requests[0].url: template: at offset 19: unknown variable ".nope"`},
		{[]string{"--url", "http://127.0.0.1:1/", "--loops", "1", "--json", filepath.Join(dir, "no", "such", "dir.json")}, "create output"},
	} {
		code, _, errOut := runCmd(t, append([]string{"load"}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: code %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestLoadScenarioWithFlagOverrides(t *testing.T) {
	url := loadServer(t, func(int64) bool { return false })
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ids.csv"), []byte("id\na\nb\n"), 0o600)
	sc := filepath.Join(dir, "s.yaml")
	os.WriteFile(sc, []byte(fmt.Sprintf("threads: 2\nloops: 50\ndata: {file: ids.csv}\nrequests:\n  - url: %s/s/{{.id}}\n  - url: %s/u\n", url, url)), 0o600)
	jsonPath := filepath.Join(dir, "s.json")
	code, out, errOut := runCmd(t, "load", sc, "--loops", "2", "--progress", "0", "--json", jsonPath)
	if code != 0 {
		t.Fatalf("code %d %s %s", code, out, errOut)
	}
	b, _ := os.ReadFile(jsonPath)
	if !bytes.Contains(b, []byte(`"requests": 8`)) && !bytes.Contains(b, []byte(`"requests":8`)) {
		t.Fatalf("2 threads × 2 loops × 2 requests, got %s", b[:min(len(b), 200)])
	}
}

func TestLoadInterruptWritesSummary(t *testing.T) {
	url := loadServer(t, func(int64) bool { return false })
	jsonPath := filepath.Join(t.TempDir(), "s.json")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	begin := time.Now()
	code, out, errOut := runCmdCtx(ctx, "load", "--url", url, "--rate", "50/s", "--duration", "1m", "--json", jsonPath, "--progress", "100ms")
	if code != 0 || time.Since(begin) > 5*time.Second || !strings.Contains(out, "interrupted") {
		t.Fatalf("code %d after %v\nstdout %s\nstderr %s", code, time.Since(begin), out, errOut)
	}
	if !strings.Contains(errOut, "sent ") {
		t.Errorf("no progress lines on stderr: %q", errOut)
	}
	if b, err := os.ReadFile(jsonPath); err != nil || !bytes.Contains(b, []byte(`"target_rps": 50`)) && !bytes.Contains(b, []byte(`"target_rps":50`)) {
		t.Fatalf("json after interrupt: %v %s", err, b)
	}
}

func TestLoadThroughputNote(t *testing.T) {
	url := loadServer(t, func(int64) bool { return false })
	code, _, errOut := runCmd(t, "load", "--url", url, "--threads", "3", "--loops", "1", "--throughput", "600/m", "--progress", "0")
	if code != 0 || !strings.Contains(errOut, "each of the 3 threads") {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
}
