package httpapi

import (
	"strings"
	"testing"

	"ratelab"
	"ratelab/wire"
)

// TestTiersFor walks the tiers of requests of every kind through the
// default policies: what each is charged, as "policy=key" in order.
func TestTiersFor(t *testing.T) {
	ps := DefaultPolicies()
	routes := apiRoutes()
	byID := func(id string) *route {
		for i := range routes {
			if routes[i].id == id {
				return &routes[i]
			}
		}
		t.Fatalf("no route %s", id)
		return nil
	}
	cl := &ratelab.Client{ID: "c1", OrgID: "o1"}
	for _, tc := range []struct {
		name    string
		rt      *route
		who     caller
		scripts []string
		group   string
		want    string
	}{
		{"PUT", byID("PUT " + wire.ScriptPath), caller{client: cl}, []string{"s1"}, "o1",
			"org-requests=o1 client-requests=c1 script-writes=o1 script-writes-per-script=s1"},
		{"bulk of two", byID("POST " + wire.BulkPath), caller{client: cl}, []string{"a", "b"}, "o1",
			"org-requests=o1 client-requests=c1 script-writes=o1 script-writes-per-script=a script-writes-per-script=b"},
		{"read", byID("GET /api/v2/users"), caller{client: cl}, nil, "o1", "org-requests=o1 client-requests=c1"},
		{"unknown route", nil, caller{client: cl}, nil, "o1", "org-requests=o1 client-requests=c1"},
		{"token by client id", byID("POST /oauth/token"), caller{tokenClient: "c1", addr: "10.0.0.1"}, nil, "token", "token-requests=client:c1"},
		{"token without id", byID("POST /oauth/token"), caller{addr: "10.0.0.1"}, nil, "token", "token-requests=addr:10.0.0.1"},
		{"unauthenticated", byID("GET /api/v2/users"), caller{addr: "10.0.0.1"}, nil, "token", "token-requests=addr:10.0.0.1"},
		{"unauthenticated, unknown route", nil, caller{addr: "10.0.0.1"}, nil, "token", "token-requests=addr:10.0.0.1"},
		{"not limited", byID("GET /healthz"), caller{}, nil, "token", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			group, tiers := tiersFor(nil, ps, tc.rt, tc.who, tc.scripts)
			var got []string
			for _, tr := range tiers {
				got = append(got, tr.Policy.Name+"="+tr.Key)
			}
			if group != tc.group || strings.Join(got, " ") != tc.want {
				t.Fatalf("group %q tiers %q, want %q %q", group, strings.Join(got, " "), tc.group, tc.want)
			}
		})
	}
}
