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
	"time"

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

// PolicySpec is one policy as written in the YAML file. Which fields a
// policy takes depends on its algorithm (see the package comment):
// gcra rate and burst; fixed-window rate (QUOTA/WINDOW) and align;
// sliding-window rate; concurrency concurrency and lease.
type PolicySpec struct {
	Name string `yaml:"name"`
	// Algorithm is gcra (the default), fixed-window, sliding-window or
	// concurrency.
	Algorithm string `yaml:"algorithm,omitempty"`
	Rate      string `yaml:"rate,omitempty"`
	Burst     int64  `yaml:"burst,omitempty"`
	// Concurrency is the most requests in flight per key, and Lease how
	// long a slot is held when its request never completes (a Go
	// duration, e.g. 30s).
	Concurrency int64  `yaml:"concurrency,omitempty"`
	Lease       string `yaml:"lease,omitempty"`
	// Align is where fixed windows start: epoch (the default: at multiples
	// of the window since the Unix epoch) or first (at a key's first
	// request).
	Align         string   `yaml:"align,omitempty"`
	CountRejected bool     `yaml:"count_rejected,omitempty"`
	Scope         string   `yaml:"scope"`
	Classes       []string `yaml:"classes"`
	Routes        []string `yaml:"routes,omitempty"`
	Shadow        bool     `yaml:"shadow,omitempty"`
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
	lp, err := limitPolicy(sp)
	if err != nil {
		return nil, err
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
		Policy:  lp,
		Scope:   wire.Scope(sp.Scope),
		Classes: slices.Clone(sp.Classes),
		Routes:  slices.Clone(sp.Routes),
	}
	if err := p.Policy.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// limitPolicy reads the algorithm and its parameters from sp, naming the
// field of the first problem. Fields the algorithm does not use are
// errors, so that a policy says what it does.
func limitPolicy(sp PolicySpec) (limit.Policy, error) {
	p := limit.Policy{Name: sp.Name, Shadow: sp.Shadow, CountRejected: sp.CountRejected}
	alg, err := limit.ParseAlgorithm(sp.Algorithm)
	if err != nil {
		return p, fmt.Errorf("algorithm: %q is not one of gcra, fixed-window, sliding-window, concurrency", sp.Algorithm)
	}
	p.Algorithm = alg
	unused := func(field string, set bool) error {
		if set {
			return fmt.Errorf("%s: not used by %s (%s)", field, alg, algorithmFields[alg])
		}
		return nil
	}
	switch alg {
	case limit.GCRA:
		if p.Rate, err = specRate(sp.Rate, "2/s"); err != nil {
			return p, err
		}
		if sp.Burst < 1 {
			return p, errors.New("burst: must be at least 1")
		}
		p.Burst = sp.Burst
		err = errors.Join(unused("concurrency", sp.Concurrency != 0), unused("lease", sp.Lease != ""), unused("align", sp.Align != ""))
	case limit.FixedWindow, limit.SlidingWindow:
		if p.Rate, err = specRate(sp.Rate, "300/m"); err != nil {
			return p, err
		}
		if q, _, _ := strings.Cut(sp.Rate, "/"); strings.ContainsAny(q, ".eE") {
			return p, fmt.Errorf("rate: %q: a window's quota is a whole number of requests, e.g. 300/m", sp.Rate)
		}
		switch sp.Align {
		case "", "epoch":
		case "first":
			if alg == limit.SlidingWindow {
				return p, errors.New("align: first: a sliding window is always aligned to the epoch (its two counters are of aligned windows)")
			}
			p.AlignFirst = true
		default:
			return p, fmt.Errorf("align: %q is not one of epoch, first", sp.Align)
		}
		err = errors.Join(unused("burst", sp.Burst != 0), unused("concurrency", sp.Concurrency != 0), unused("lease", sp.Lease != ""))
	case limit.Concurrency:
		if sp.Concurrency < 1 {
			return p, errors.New("concurrency: must be at least 1 (the most requests in flight per key)")
		}
		p.Concurrency = sp.Concurrency
		if sp.Lease == "" {
			return p, errors.New("lease: required, e.g. 30s: how long a slot is held when its request never completes")
		}
		if p.Lease, err = time.ParseDuration(sp.Lease); err != nil || p.Lease <= 0 {
			return p, fmt.Errorf("lease: %q: want a positive duration such as 30s", sp.Lease)
		}
		if sp.CountRejected {
			return p, errors.New("count_rejected: a concurrency limit counts requests in flight, and a rejected request never is")
		}
		err = errors.Join(unused("rate", sp.Rate != ""), unused("burst", sp.Burst != 0), unused("align", sp.Align != ""))
	}
	if err != nil {
		return p, firstError(err)
	}
	return p, p.Validate()
}

// algorithmFields says which fields each algorithm takes, for errors.
var algorithmFields = map[limit.Algorithm]string{
	limit.GCRA:          "gcra takes rate and burst",
	limit.FixedWindow:   "fixed-window takes rate as QUOTA/WINDOW, e.g. 300/m, and align",
	limit.SlidingWindow: "sliding-window takes rate as QUOTA/WINDOW, e.g. 300/m",
	limit.Concurrency:   "concurrency takes concurrency and lease",
}

// specRate parses a policy's rate field; example is shown when it is
// missing.
func specRate(s, example string) (limit.Rate, error) {
	if s == "" {
		return limit.Rate{}, fmt.Errorf("rate: required, e.g. %s", example)
	}
	r, err := limit.ParseRate(s)
	if err != nil {
		return r, fmt.Errorf("rate: %w", err)
	}
	return r, nil
}

// firstError returns the first of a joined error.
func firstError(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()[0]
	}
	return err
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
