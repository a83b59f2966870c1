package httpapi

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ratelab/limit"
	"ratelab/wire"
)

func TestDefaultPolicies(t *testing.T) {
	ps := DefaultPolicies()
	want := map[string]struct {
		rate  limit.Rate
		burst int64
		scope wire.Scope
	}{
		"org-requests":             {limit.Per(1000, time.Second), 1000, wire.ScopeOrg},
		"client-requests":          {limit.Per(100, time.Second), 200, wire.ScopeClient},
		"token-requests":           {limit.Per(10, time.Second), 20, wire.ScopeClient},
		"script-writes":            {limit.Per(20, time.Second), 40, wire.ScopeOrg},
		"script-writes-per-script": {limit.Per(2, time.Second), 4, wire.ScopeOrgScript},
	}
	if len(ps.List()) != len(want) {
		t.Fatalf("%d default policies, want %d", len(ps.List()), len(want))
	}
	for _, p := range ps.List() {
		w, ok := want[p.Name]
		if !ok {
			t.Errorf("unexpected default policy %q", p.Name)
			continue
		}
		if p.Rate != w.rate || p.Burst != w.burst || p.Scope != w.scope || p.Shadow {
			t.Errorf("%s: got %v burst %d scope %s shadow %v", p.Name, p.Rate, p.Burst, p.Scope, p.Shadow)
		}
	}
	// Which policies each route gets, by name.
	routes := apiRoutes()
	names := func(route string) string {
		for i := range routes {
			if routes[i].method+" "+routes[i].pattern == route {
				var out []string
				for _, p := range ps.byRoute[routes[i].id] {
					out = append(out, p.Name)
				}
				return strings.Join(out, ",")
			}
		}
		t.Fatalf("no route %s", route)
		return ""
	}
	for route, want := range map[string]string{
		"PUT /api/v2/architect/scripts/{scriptId}": "org-requests,client-requests,script-writes,script-writes-per-script",
		"POST /api/v2/architect/scripts/bulk":      "org-requests,client-requests,script-writes,script-writes-per-script",
		"GET /api/v2/users":                        "org-requests,client-requests",
		"GET /api/v2/architect/scripts/{scriptId}": "org-requests,client-requests",
		"POST /oauth/token":                        "token-requests",
		"GET /healthz":                             "",
		"GET /metrics":                             "",
	} {
		if got := names(route); got != want {
			t.Errorf("%s: policies %q, want %q", route, got, want)
		}
	}
	var unauth []string
	for _, p := range ps.unauth {
		unauth = append(unauth, p.Name)
	}
	if strings.Join(unauth, ",") != "token-requests" {
		t.Errorf("unauthenticated policies %v", unauth)
	}
}

func TestLoadPoliciesValid(t *testing.T) {
	ps, err := LoadPolicies(filepath.Join("testdata", "valid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if ps.Source != "valid.yaml" || len(ps.List()) != 3 {
		t.Fatalf("source %q, %d policies", ps.Source, len(ps.List()))
	}
	p := ps.byName["reads-per-class"]
	if p.Rate != limit.Per(1, 2*time.Second) || p.Burst != 3 || !p.Shadow || p.Scope != wire.ScopeOrgRouteClass {
		t.Fatalf("reads-per-class: %+v", p)
	}
	routes := apiRoutes()
	for i := range routes {
		rt := &routes[i]
		var got []string
		for _, p := range ps.byRoute[routes[i].id] {
			got = append(got, p.Name)
		}
		var want []string
		if rt.auth {
			want = append(want, "org-requests")
		}
		if rt.method == "PUT" || rt.pattern == wire.ScriptsPath+"/bulk" {
			want = append(want, "script-writes-per-script")
		}
		if rt.auth && rt.method == "GET" {
			want = append(want, "reads-per-class")
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s %s: %v, want %v", rt.method, rt.pattern, got, want)
		}
	}
}

// TestLoadPoliciesAlgorithms reads one policy of each algorithm with
// every field the YAML has for it.
func TestLoadPoliciesAlgorithms(t *testing.T) {
	ps, err := LoadPolicies(filepath.Join("testdata", "valid-algorithms.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]limit.Policy{
		"client-per-minute":        {Algorithm: limit.FixedWindow, Rate: limit.Per(300, time.Minute)},
		"client-first-request":     {Algorithm: limit.FixedWindow, Rate: limit.Per(30, 10*time.Second), AlignFirst: true, CountRejected: true},
		"org-sliding":              {Algorithm: limit.SlidingWindow, Rate: limit.Per(1000, time.Second)},
		"client-in-flight":         {Algorithm: limit.Concurrency, Concurrency: 4, Lease: 30 * time.Second},
		"script-writes-per-script": {Algorithm: limit.GCRA, Rate: limit.Per(2, time.Second), Burst: 4, CountRejected: true},
	}
	if len(ps.List()) != len(want) {
		t.Fatalf("%d policies, want %d", len(ps.List()), len(want))
	}
	for _, p := range ps.List() {
		w := want[p.Name]
		w.Name = p.Name
		if p.Policy != w {
			t.Errorf("%s: got %+v, want %+v", p.Name, p.Policy, w)
		}
	}
	// The concurrency policy is on writes only.
	names := func(id string) string {
		var out []string
		for _, p := range ps.byRoute[id] {
			out = append(out, p.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names("GET /api/v2/users"); got != "client-per-minute,client-first-request,org-sliding" {
		t.Errorf("GET /api/v2/users: %s", got)
	}
	if got := names("PUT /api/v2/architect/scripts/{scriptId}"); got != "client-per-minute,client-first-request,org-sliding,client-in-flight,script-writes-per-script" {
		t.Errorf("PUT a script: %s", got)
	}
}

// TestPolicyFileErrors loads one fixture per configuration error; each
// error names the file, the policy and the field.
func TestPolicyFileErrors(t *testing.T) {
	for file, want := range map[string]string{
		"bad-burst.yaml":         `bad-burst.yaml: policy "x": burst: must be at least 1`,
		"bad-rate.yaml":          `bad-rate.yaml: policy "x": rate: rate "fast": want COUNT/PERIOD`,
		"missing-rate.yaml":      `missing-rate.yaml: policy "x": rate: required`,
		"bad-scope.yaml":         `bad-scope.yaml: policy "x": scope: "planet" is not one of org, client, org+route-class, org+script`,
		"unknown-field.yaml":     `unknown-field.yaml: yaml: unmarshal errors:` + "\n" + `  line 7: field brust not found`,
		"unknown-top-field.yaml": `unknown-top-field.yaml: yaml: unmarshal errors:` + "\n" + `  line 1: field policy not found`,
		"duplicate-name.yaml":    `duplicate-name.yaml: policy "x": name: defined twice`,
		"empty-name.yaml":        `empty-name.yaml: policy 1: name: must not be empty`,
		"bad-name.yaml":          `bad-name.yaml: policy "has space": name: only printable ASCII`,
		"unknown-class.yaml":     `unknown-class.yaml: policy "x": classes: unknown route class "script-deletes"`,
		"unknown-route.yaml":     `unknown-route.yaml: policy "x": routes: "PATCH /api/v2/architect/scripts/{scriptId}" is not a route of the API`,
		"no-match.yaml":          `no-match.yaml: policy "x": classes: a policy must match at least one route class or route`,
		"window-too-large.yaml":  `window-too-large.yaml: policy "x": burst: window`,
		"bad-yaml.yaml":          `bad-yaml.yaml: yaml: line `,
		"wrong-type.yaml":        `wrong-type.yaml: yaml: unmarshal errors:` + "\n" + `  line 4: cannot unmarshal !!str ` + "`many`",
		"empty.yaml":             `empty.yaml: empty file`,
		"no-policies.yaml":       `no-policies.yaml: policies: none defined`,
		"two-documents.yaml":     `two-documents.yaml: want one YAML document`,
		// The algorithms (issue 12): each error names the field.
		"bad-algorithm.yaml":              `bad-algorithm.yaml: policy "x": algorithm: "token-bucket" is not one of gcra, fixed-window, sliding-window, concurrency`,
		"window-burst.yaml":               `window-burst.yaml: policy "x": burst: not used by fixed-window (fixed-window takes rate as QUOTA/WINDOW`,
		"window-missing-rate.yaml":        `window-missing-rate.yaml: policy "x": rate: required, e.g. 300/m`,
		"window-fractional.yaml":          `window-fractional.yaml: policy "x": rate: "0.5/s": a window's quota is a whole number of requests`,
		"window-bad-period.yaml":          `window-bad-period.yaml: policy "x": rate: window 1.5ms must be a whole number of milliseconds`,
		"window-quota-too-large.yaml":     `window-quota-too-large.yaml: policy "x": rate: quota 2000000000000 exceeds`,
		"bad-align.yaml":                  `bad-align.yaml: policy "x": align: "start" is not one of epoch, first`,
		"sliding-align-first.yaml":        `sliding-align-first.yaml: policy "x": align: first: a sliding window is always aligned to the epoch`,
		"gcra-align.yaml":                 `gcra-align.yaml: policy "x": align: not used by gcra`,
		"gcra-concurrency.yaml":           `gcra-concurrency.yaml: policy "x": concurrency: not used by gcra`,
		"concurrency-missing.yaml":        `concurrency-missing.yaml: policy "x": concurrency: must be at least 1`,
		"concurrency-missing-lease.yaml":  `concurrency-missing-lease.yaml: policy "x": lease: required, e.g. 30s`,
		"concurrency-bad-lease.yaml":      `concurrency-bad-lease.yaml: policy "x": lease: "soon": want a positive duration`,
		"concurrency-lease-fraction.yaml": `concurrency-lease-fraction.yaml: policy "x": lease: 1.5ms must be a whole number of milliseconds`,
		"concurrency-rate.yaml":           `concurrency-rate.yaml: policy "x": rate: not used by concurrency (concurrency takes concurrency and lease)`,
		"concurrency-count-rejected.yaml": `concurrency-count-rejected.yaml: policy "x": count_rejected: a concurrency limit counts requests in flight`,
		"count-rejected-too-large.yaml":   `count-rejected-too-large.yaml: policy "x": count_rejected: window 1500h0m0s (burst × interval) exceeds 1200h0m0s`,
	} {
		t.Run(file, func(t *testing.T) {
			_, err := LoadPolicies(filepath.Join("testdata", file))
			if err == nil {
				t.Fatalf("no error, want %q", want)
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("error\n%s\nwant prefix\n%s", err, want)
			}
		})
	}
	if _, err := LoadPolicies(filepath.Join("testdata", "missing.yaml")); err == nil || !strings.Contains(err.Error(), "read policies: ") {
		t.Fatalf("missing file: %v", err)
	}
}

// FuzzParsePolicies checks that any document either fails with an error
// that names the file, or yields policies that all validate.
func FuzzParsePolicies(f *testing.F) {
	for _, file := range []string{"valid.yaml", "valid-algorithms.yaml", "bad-burst.yaml", "unknown-field.yaml", "bad-yaml.yaml", "concurrency-rate.yaml"} {
		data, err := readTestdata(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := ParsePolicies("p.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "p.yaml: ") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, p := range ps.List() {
			if err := p.Policy.Validate(); err != nil {
				t.Fatalf("accepted invalid policy %v: %v", p, err)
			}
		}
	})
}

// TestPoliciesLargestDecisionFits (issue 11 item 5): two org+script
// policies on the bulk route need 2 × 50 per-script tiers beside the
// others, more than one decision holds. The file is refused at load time,
// naming the route, instead of loading and answering a bulk with a 500.
func TestPoliciesLargestDecisionFits(t *testing.T) {
	doc := `policies:
  - {name: org, rate: 100/s, burst: 100, scope: org, classes: [all]}
  - {name: per-script, rate: 2/s, burst: 4, scope: org+script, classes: [script-writes]}
  - {name: per-script-slow, rate: 10/m, burst: 10, scope: org+script, classes: [script-writes]}
`
	_, err := ParsePolicies("two.yaml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "two.yaml: route POST /api/v2/architect/scripts/bulk: up to 101 tiers in one decision") {
		t.Fatalf("err = %v", err)
	}
	// One org+script policy fits: 50 + 1 tiers.
	if _, err := ParsePolicies("one.yaml", []byte(strings.Join(strings.Split(doc, "\n")[:3], "\n")+"\n")); err != nil {
		t.Fatal(err)
	}
}
