package httpapi

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"ratelab/limit"
)

// TestPolicyProfiles loads every profile of examples/policies and checks
// that each has the limits its README promises, in the family it names,
// and no other: the README's table of the profile has a row for each.
// cmd/ratelab's TestProfileTiers measures them through the server.
func TestPolicyProfiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "policies", "*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("profiles %v, %v", files, err)
	}
	want := map[string]map[string]string{
		"contact-center.yaml": {"client-requests": "fixed-window 300/m", "user-listing": "fixed-window 60/m",
			"org-requests": "fixed-window 1000/s", "script-writes": "fixed-window 20/s", "script-writes-per-script": "fixed-window 2/s",
			"token-requests": "fixed-window 20/s"},
		"github.yaml": {"core": "fixed-window 5000/h align first", "concurrent-requests": "concurrency 100",
			"content-creation": "fixed-window 80/m", "token-requests": "fixed-window 60/m"},
		"token-bucket.yaml": {"client-requests": "gcra 25/s burst 100", "client-writes": "gcra 5/s burst 10 count rejected",
			"token-requests": "gcra 10/s burst 20"},
	}
	readme, err := os.ReadFile(filepath.Join("..", "examples", "policies", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		ps, err := LoadPolicies(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		base := filepath.Base(f)
		w, ok := want[base]
		if !ok {
			t.Errorf("%s: a profile this test does not know", base)
		}
		for _, p := range ps.List() {
			if _, ok := w[p.Name]; !ok {
				t.Errorf("%s: policy %s, which neither this test nor the README describes", base, p.Name)
			}
		}
		// The README's table of the profile's tiers names each one.
		_, section, _ := strings.Cut(string(readme), "### "+base+"\n")
		section, _, _ = strings.Cut(section, "\n#")
		for name := range w {
			if !strings.Contains(section, "| `"+name+"` |") {
				t.Errorf("README.md: the section of %s has no row for %s", base, name)
			}
		}
		for name, desc := range w {
			p := ps.byName[name]
			if p == nil {
				t.Errorf("%s: no policy %s", base, name)
				continue
			}
			if got := describePolicy(&p.Policy); got != desc {
				t.Errorf("%s: %s is %q, want %q", base, name, got, desc)
			}
		}
		if data, _ := os.ReadFile(f); !strings.Contains(string(data), "ratelab serve --policies examples/policies/"+base) {
			t.Errorf("%s: no recommended command line", base)
		}
	}
}

func describePolicy(p *limit.Policy) string {
	s := p.Algorithm.String()
	switch p.Algorithm {
	case limit.Concurrency:
		s += " " + strconv.FormatInt(p.Concurrency, 10)
	case limit.GCRA:
		s += " " + p.Rate.String() + " burst " + strconv.FormatInt(p.Burst, 10)
	default:
		s += " " + p.Rate.String()
		if p.AlignFirst {
			s += " align first"
		}
	}
	if p.CountRejected {
		s += " count rejected"
	}
	return s
}
