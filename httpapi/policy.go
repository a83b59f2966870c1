package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"ratelab/limit"
	"ratelab/wire"
)

// Route classes a policy can match. Every API route has one primary class
// and is also in "reads" or "writes" and in "all".
const (
	ClassAll             = "all"             // every authenticated API request
	ClassReads           = "reads"           // authenticated GETs
	ClassWrites          = "writes"          // authenticated POST, PUT, DELETE
	ClassScriptReads     = "script-reads"    // GET scripts, one script, versions
	ClassScriptWrites    = "script-writes"   // POST, PUT, DELETE scripts; bulk
	ClassUsers           = "users"           // GET /api/v2/users
	ClassRateLimits      = "ratelimits"      // GET /api/v2/ratelimits
	ClassToken           = "token"           // POST /oauth/token
	ClassUnauthenticated = "unauthenticated" // API requests without valid credentials
)

var classes = []string{ClassAll, ClassReads, ClassWrites, ClassScriptReads, ClassScriptWrites,
	ClassUsers, ClassRateLimits, ClassToken, ClassUnauthenticated}

// Policy is one rate-limit policy of the API: a limit.Policy, the scope
// that partitions it, and the requests it applies to (a request matches
// when its route is in one of Classes or is one of Routes).
//
// A Policy is immutable once built by ParsePolicies or DefaultPolicies and
// safe for concurrent use.
type Policy struct {
	limit.Policy
	Scope   wire.Scope
	Classes []string
	// Routes are "METHOD /pattern" or "/pattern" (any method), written as
	// the server registers them, e.g. "PUT /api/v2/architect/scripts/{scriptId}".
	Routes []string
}

// Policies is a validated set of policies. The zero value holds no policy
// and limits nothing. It is immutable and safe for concurrent use; the
// server swaps whole sets on reload.
type Policies struct {
	// Source names where the set came from: a file name or "defaults".
	Source string
	list   []*Policy
	// byRoute[id] are the policies that match the route of that id
	// ("METHOD pattern") for an authenticated request; unauth those
	// matching unauthenticated requests; other those matching an
	// authenticated request to an unknown route (class "all" only).
	byRoute map[string][]*Policy
	unauth  []*Policy
	other   []*Policy
	byName  map[string]*Policy
}

// List returns the policies in file order. The caller must not modify them.
func (ps *Policies) List() []*Policy { return ps.list }

// PolicySpec is one policy as written in the YAML file.
type PolicySpec struct {
	Name    string   `yaml:"name"`
	Rate    string   `yaml:"rate"`
	Burst   int64    `yaml:"burst"`
	Scope   string   `yaml:"scope"`
	Classes []string `yaml:"classes"`
	Routes  []string `yaml:"routes"`
	Shadow  bool     `yaml:"shadow"`
}

type policyFile struct {
	Policies []PolicySpec `yaml:"policies"`
}

// DefaultPolicySpecs returns the built-in policies, documented in the
// package comment. They model the platform of the reference scenario.
func DefaultPolicySpecs() []PolicySpec {
	return []PolicySpec{
		{Name: "org-requests", Rate: "1000/s", Burst: 1000, Scope: string(wire.ScopeOrg), Classes: []string{ClassAll}},
		{Name: "client-requests", Rate: "100/s", Burst: 200, Scope: string(wire.ScopeClient), Classes: []string{ClassAll}},
		{Name: "token-requests", Rate: "10/s", Burst: 20, Scope: string(wire.ScopeClient), Classes: []string{ClassToken, ClassUnauthenticated}},
		{Name: "script-writes", Rate: "20/s", Burst: 40, Scope: string(wire.ScopeOrg), Classes: []string{ClassScriptWrites}},
		{Name: "script-writes-per-script", Rate: "2/s", Burst: 4, Scope: string(wire.ScopeOrgScript), Classes: []string{ClassScriptWrites}},
	}
}

// DefaultPolicies returns the built-in policy set.
func DefaultPolicies() *Policies {
	ps, err := BuildPolicies("defaults", DefaultPolicySpecs())
	if err != nil {
		// The defaults are fixed data covered by tests; failing here is a
		// programming error, caught by TestDefaultPolicies.
		panic(fmt.Sprintf("httpapi: invalid default policies: %v", err))
	}
	return ps
}

// LoadPolicies reads and validates a policy file. Errors name the file,
// the policy and the field.
func LoadPolicies(path string) (*Policies, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	return ParsePolicies(filepath.Base(path), data)
}

// ParsePolicies parses and validates a YAML policy document. name is used
// in errors, e.g. `policies.yaml: policy "x": burst: must be at least 1`.
// Unknown fields are errors. The file replaces the defaults entirely.
func ParsePolicies(name string, data []byte) (*Policies, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f policyFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file: want a policies list", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: want one YAML document", name)
	}
	return BuildPolicies(name, f.Policies)
}

// BuildPolicies validates specs and builds a policy set; source names the
// origin in errors.
func BuildPolicies(source string, specs []PolicySpec) (*Policies, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("%s: policies: none defined (to stop enforcing, mark policies shadow: true)", source)
	}
	routes := apiRoutes()
	ps := &Policies{Source: source, byRoute: map[string][]*Policy{}, byName: map[string]*Policy{}}
	for i, sp := range specs {
		p, err := buildPolicy(sp, routes)
		if err != nil {
			label := fmt.Sprintf("policy %q", sp.Name)
			if sp.Name == "" {
				label = fmt.Sprintf("policy %d", i+1)
			}
			return nil, fmt.Errorf("%s: %s: %w", source, label, err)
		}
		if ps.byName[p.Name] != nil {
			return nil, fmt.Errorf("%s: policy %q: name: defined twice", source, p.Name)
		}
		ps.byName[p.Name] = p
		ps.list = append(ps.list, p)
		for ri := range routes {
			if rt := &routes[ri]; p.matchesRoute(rt) {
				ps.byRoute[rt.id] = append(ps.byRoute[rt.id], p)
			}
		}
		if slices.Contains(p.Classes, ClassUnauthenticated) {
			ps.unauth = append(ps.unauth, p)
		}
		if slices.Contains(p.Classes, ClassAll) {
			ps.other = append(ps.other, p)
		}
	}
	// The largest decision a request can need must fit in one: a set that
	// loads must never answer a request with a 500.
	for ri := range routes {
		rt := &routes[ri]
		if n := maxTiers(ps.byRoute[rt.id], rt.maxScripts); n > limit.MaxTiers {
			return nil, fmt.Errorf("%s: route %s: up to %d tiers in one decision (policies %s); at most %d fit: use fewer org+script policies on it",
				source, rt.id, n, policyNames(ps.byRoute[rt.id]), limit.MaxTiers)
		}
	}
	if n := max(maxTiers(ps.unauth, 0), maxTiers(ps.other, 0)); n > limit.MaxTiers {
		return nil, fmt.Errorf("%s: up to %d tiers in one decision; at most %d fit", source, n, limit.MaxTiers)
	}
	return ps, nil
}

// maxTiers returns the most tiers a decision over ps can have on a route
// whose requests name up to scripts script ids.
func maxTiers(ps []*Policy, scripts int) int {
	n := 0
	for _, p := range ps {
		if p.Scope == wire.ScopeOrgScript {
			n += scripts
		} else {
			n++
		}
	}
	return n
}

func policyNames(ps []*Policy) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

func buildPolicy(sp PolicySpec, routes []route) (*Policy, error) {
	if sp.Name == "" {
		return nil, errors.New("name: must not be empty")
	}
	if strings.ContainsFunc(sp.Name, func(r rune) bool { return r < 0x21 || r > 0x7e || r == '"' || r == '\\' }) {
		return nil, errors.New("name: only printable ASCII without spaces, quotes or backslashes")
	}
	if sp.Rate == "" {
		return nil, errors.New("rate: required, e.g. 2/s")
	}
	rate, err := limit.ParseRate(sp.Rate)
	if err != nil {
		return nil, fmt.Errorf("rate: %w", err)
	}
	if sp.Burst < 1 {
		return nil, errors.New("burst: must be at least 1")
	}
	if !slices.Contains(wire.Scopes(), wire.Scope(sp.Scope)) {
		return nil, fmt.Errorf("scope: %q is not one of org, client, org+route-class, org+script", sp.Scope)
	}
	if len(sp.Classes) == 0 && len(sp.Routes) == 0 {
		return nil, errors.New("classes: a policy must match at least one route class or route")
	}
	for _, c := range sp.Classes {
		if !slices.Contains(classes, c) {
			return nil, fmt.Errorf("classes: unknown route class %q (known: %s)", c, strings.Join(classes, ", "))
		}
	}
	for _, r := range sp.Routes {
		method, pattern := splitRoute(r)
		ok := false
		for i := range routes {
			if routes[i].pattern == pattern && (method == "" || method == routes[i].method) {
				ok = true
			}
		}
		if !ok {
			return nil, fmt.Errorf("routes: %q is not a route of the API", r)
		}
	}
	p := &Policy{
		Policy:  limit.Policy{Name: sp.Name, Rate: rate, Burst: sp.Burst, Shadow: sp.Shadow},
		Scope:   wire.Scope(sp.Scope),
		Classes: slices.Clone(sp.Classes),
		Routes:  slices.Clone(sp.Routes),
	}
	if err := p.Policy.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// splitRoute splits "PUT /path" into its method and pattern; a bare
// "/path" has no method.
func splitRoute(s string) (method, pattern string) {
	s = strings.TrimSpace(s)
	if m, p, ok := strings.Cut(s, " "); ok {
		return m, strings.TrimSpace(p)
	}
	return "", s
}

// matchesRoute reports whether p applies to authenticated requests on rt.
func (p *Policy) matchesRoute(rt *route) bool {
	for _, c := range p.Classes {
		if rt.inClass(c) {
			return true
		}
	}
	for _, r := range p.Routes {
		method, pattern := splitRoute(r)
		if pattern == rt.pattern && (method == "" || method == rt.method) {
			return true
		}
	}
	return false
}
