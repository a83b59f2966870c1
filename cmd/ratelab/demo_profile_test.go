package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoProfile replays the story against the token-bucket profile with
// GitHub's headers (about 17 s): every 429 of the paced run is its
// client-writes limit, and the diagnosis names that limit in its own
// terms (a bucket per client that counts rejected requests), not as a
// per-script limit; the bulk step is skipped, as the profile has no
// per-script limit to batch against.
func TestDemoProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo sends real load for about 17 s")
	}
	code, out, errOut := runCmd(t, "demo", "--quick", "--json", "--out", t.TempDir(),
		"--policies", filepath.Join("..", "..", "examples", "policies", "token-bucket.yaml"), "--headers", "github")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var doc struct {
		Runs []struct {
			RateLimit struct {
				Count429 int64            `json:"count_429"`
				ByPolicy map[string]int64 `json:"by_policy"`
			} `json:"rate_limit"`
		} `json:"runs"`
		Diagnosis []struct{ Finding, Evidence, Fix string } `json:"diagnosis"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if len(doc.Runs) != 3 || !strings.Contains(errOut, "4. the bulk endpoint: skipped, the server advertises no per-script limit") {
		t.Fatalf("%d runs, want 3 and the bulk step skipped:\n%s", len(doc.Runs), errOut)
	}
	paced := doc.Runs[1].RateLimit
	if paced.Count429 == 0 || paced.ByPolicy["client-writes"] != paced.Count429 {
		t.Errorf("paced run: 429s %d by %v, want all by client-writes", paced.Count429, paced.ByPolicy)
	}
	found := false
	for _, f := range doc.Diagnosis {
		if strings.Contains(f.Finding, `"client-writes", 5 per 1s, burst 10, counting rejected requests, per client`) {
			found = true
		}
		if strings.Contains(f.Finding, "separate limit for updates of one script") {
			t.Errorf("diagnosis claims a per-script limit: %s", f.Finding)
		}
	}
	if !found {
		t.Errorf("no finding names client-writes in its terms: %+v", doc.Diagnosis)
	}
}
