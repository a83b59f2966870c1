package httpapi

import (
	"ratelab"
	"ratelab/limit"
	"ratelab/wire"
)

// caller is whom a request is charged to.
type caller struct {
	// client is the authenticated client; nil when the request has no
	// valid credentials.
	client *ratelab.Client
	// tokenClient is the client id a token request presents.
	tokenClient string
	// addr is the peer's address: the key of a request with neither.
	addr string
}

// tiersFor returns the limiter group and the tiers of a request on route
// rt (nil: a path no route matches) by who, naming scriptIDs (one
// per-script tier each): for every policy of ps that matches, its tiers
// and their keys, appended to dst. It is a pure function of its
// arguments, and both admission and GET /api/v2/ratelimits call it, so
// what the endpoint reports is what a request is charged.
func tiersFor(dst []limit.Tier, ps *Policies, rt *route, who caller, scriptIDs []string) (group string, tiers []limit.Tier) {
	authed := who.client != nil
	var matching []*Policy
	switch {
	case !authed && (rt == nil || rt.auth):
		matching = ps.unauth
	case rt == nil:
		matching = ps.other
	default:
		matching = ps.byRoute[rt.id]
	}
	for _, p := range matching {
		dst = appendTiers(dst, p, rt, who, scriptIDs)
	}
	return who.group(), dst
}

// group is the limiter group of the caller's tiers, which keeps them
// together (one Redis Cluster slot): the org of an authenticated client,
// "token" for everyone else.
func (who caller) group() string {
	if who.client != nil {
		return who.client.OrgID
	}
	return "token"
}

// appendTiers appends p's tiers for a request on rt by who: one, or one
// per script for the per-script scope, or none when the scope does not
// apply.
func appendTiers(tiers []limit.Tier, p *Policy, rt *route, who caller, scriptIDs []string) []limit.Tier {
	authed := who.client != nil
	switch p.Scope {
	case wire.ScopeClient:
		switch {
		case authed:
			return append(tiers, limit.Tier{Policy: &p.Policy, Key: who.client.ID})
		case who.tokenClient != "":
			return append(tiers, limit.Tier{Policy: &p.Policy, Key: "client:" + who.tokenClient})
		}
		return append(tiers, limit.Tier{Policy: &p.Policy, Key: "addr:" + who.addr})
	case wire.ScopeOrg:
		if authed {
			return append(tiers, limit.Tier{Policy: &p.Policy, Key: who.client.OrgID})
		}
	case wire.ScopeOrgRouteClass:
		if authed {
			class := "other"
			if rt != nil {
				class = rt.class
			}
			return append(tiers, limit.Tier{Policy: &p.Policy, Key: class})
		}
	case wire.ScopeOrgScript:
		if authed {
			for _, id := range scriptIDs {
				tiers = append(tiers, limit.Tier{Policy: &p.Policy, Key: id})
			}
		}
	}
	return tiers
}
