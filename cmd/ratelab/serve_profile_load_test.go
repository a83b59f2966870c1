package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLoadMeasuresProfiles runs `ratelab load` against `ratelab serve` on
// each profile of examples/policies (default headers and body, so that
// the load tester can name the policy of each 429) and checks what it
// measured against the profile's write tier: PUTs of one script at 40/s
// or 50/s for 2 s (each run takes about 2 s).
func TestLoadMeasuresProfiles(t *testing.T) {
	for _, tc := range []struct {
		profile, policy string
		// admitted bounds what the tier admits to the 80 PUTs, given how
		// many of its aligned windows the run spanned.
		admitted func(windows int64) (lo, hi int64)
		window   time.Duration
		rate     int64 // per second, for 2 s
	}{
		// 2/s per script in fixed windows: 2 in each second the run touched,
		// at least 2 (the run covers one whole second).
		{"contact-center.yaml", "script-writes-per-script", func(n int64) (int64, int64) { return 2, 2 * n }, time.Second, 40},
		// 80 content-creating requests per minute.
		{"github.yaml", "content-creation", func(n int64) (int64, int64) {
			if n == 1 {
				return 80, 80
			}
			return 80, 80 * n
		}, time.Minute, 50},
		// A bucket of 10 at 5/s that counts rejected requests: the burst and
		// what refills while it is spent (a request or two at 40/s), and
		// nothing after: at 40/s a client that counts against itself never
		// recovers (2 s at 5/s would otherwise admit 10 more).
		{"token-bucket.yaml", "client-writes", func(int64) (int64, int64) { return 10, 12 }, 0, 40},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			dir := t.TempDir()
			srv := startServe(t, nil, "--addr", "127.0.0.1:0", "--db", "sqlite:"+filepath.Join(dir, "r.db"),
				"--policies", filepath.Join("..", "..", "examples", "policies", tc.profile), "--bootstrap-client", "demo:s3cret")
			out := filepath.Join(dir, "s.json")
			start := time.Now()
			code, _, errOut := runCmd(t, "load", "--url", srv.url+"/api/v2/architect/scripts/s1", "-X", "PUT",
				"-H", "Content-Type: application/json", "--body", `{"name":"n","text":"t"}`,
				"--token-url", srv.url+"/oauth/token", "--client-id", "demo", "--client-secret", "s3cret",
				"--rate", fmt.Sprintf("%d/s", tc.rate), "--duration", "2s", "--progress", "0", "--json", out)
			end := time.Now()
			if code != 0 {
				t.Fatalf("load exited %d: %s", code, errOut)
			}
			var s struct {
				Requests     int64            `json:"requests"`
				StatusCounts map[string]int64 `json:"status_counts"`
				RateLimit    struct {
					Count429 int64            `json:"count_429"`
					ByPolicy map[string]int64 `json:"by_policy"`
				} `json:"rate_limit"`
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &s); err != nil {
				t.Fatal(err)
			}
			admitted := s.Requests - s.RateLimit.Count429
			windows := int64(1)
			if tc.window > 0 {
				windows = end.Truncate(tc.window).Sub(start.Truncate(tc.window)).Milliseconds()/tc.window.Milliseconds() + 1
			}
			lo, hi := tc.admitted(windows)
			t.Logf("%s: %d requests, %d admitted, 429 by policy %v, %d windows", tc.profile, s.Requests, admitted, s.RateLimit.ByPolicy, windows)
			if s.Requests < 2*tc.rate*9/10 || admitted < lo || admitted > hi {
				t.Errorf("%d requests, %d admitted; want about %d, and %d to %d admitted", s.Requests, admitted, 2*tc.rate, lo, hi)
			}
			if s.RateLimit.ByPolicy[tc.policy] != s.RateLimit.Count429 || s.RateLimit.Count429 == 0 {
				t.Errorf("429s by policy %v, want all %d by %s", s.RateLimit.ByPolicy, s.RateLimit.Count429, tc.policy)
			}
		})
	}
}
