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
	for _, file := range []string{"valid.yaml", "bad-burst.yaml", "unknown-field.yaml", "bad-yaml.yaml"} {
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
