package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"ratelab"
	"ratelab/limit"
	"ratelab/wire"
)

// authenticate returns the client of the request's bearer token.
func (s *Server) authenticate(r *http.Request) (*ratelab.Client, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, oauthErr("", ratelab.EUNAUTHORIZED, "Authorization is missing; send Authorization: Bearer TOKEN (POST /oauth/token issues one).")
	}
	scheme, token, _ := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, oauthErr("invalid_request", ratelab.EUNAUTHORIZED, "Authorization must be Bearer TOKEN.")
	}
	cl, err := s.auth.ValidateToken(r.Context(), token, s.now())
	if err != nil {
		if ratelab.ErrorCode(err) == ratelab.EUNAUTHORIZED {
			return nil, oauthErr("invalid_token", ratelab.EUNAUTHORIZED, "The access token is invalid or expired.")
		}
		return nil, err
	}
	return cl, nil
}

func (s *Server) handleListScripts(c *call) error {
	p, err := pageParams(c.r)
	if err != nil {
		return err
	}
	list, total, err := s.scripts.FindScripts(c.r.Context(), c.client.OrgID, p)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, wire.NewPage(list, p, total))
	return nil
}

func etag(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

func writeScript(w http.ResponseWriter, status int, sc *ratelab.Script) {
	w.Header().Set("ETag", etag(sc.Version))
	if status == http.StatusCreated {
		w.Header().Set("Location", wire.ScriptsPath+"/"+url.PathEscape(sc.ID))
	}
	writeJSON(w, status, sc)
}

func (s *Server) handleCreateScript(c *call) error {
	var body wire.ScriptCreate
	if err := decodeJSON(c.w, c.r, &body); err != nil {
		return err
	}
	if err := ratelab.ValidateScript(body.Name, body.Text); err != nil {
		return err
	}
	sc, err := s.scripts.CreateScript(c.r.Context(), c.client.OrgID, body.Name, body.Text, c.client.ID)
	if err != nil {
		return err
	}
	writeScript(c.w, http.StatusCreated, sc)
	return nil
}

func (s *Server) handleGetScript(c *call) error {
	id, err := pathScriptID(c)
	if err != nil {
		return err
	}
	sc, err := s.scripts.FindScript(c.r.Context(), c.client.OrgID, id)
	if err != nil {
		return err
	}
	writeScript(c.w, http.StatusOK, sc)
	return nil
}

// pathScriptID returns the script id of the request's path. An id that
// fails the id rule (ratelab.ValidID) names no script that can exist:
// ENOTFOUND, before any query, for every method alike.
func pathScriptID(c *call) (string, error) {
	id := c.r.PathValue("scriptId")
	if !ratelab.ValidID(id) {
		return "", ratelab.ScriptNotFound(id)
	}
	return id, nil
}

// bodyVersion returns the compare-and-swap version of a body's "version"
// (0 without one): a version given must be at least 1.
func bodyVersion(v *int64) (int64, error) {
	switch {
	case v == nil:
		return 0, nil
	case *v < 1:
		return 0, ratelab.Errorf(ratelab.EUNPROCESSABLE, "version must be at least 1.")
	}
	return *v, nil
}

// preparePathScript names the script of a PUT or DELETE for the
// per-script tier.
func (s *Server) preparePathScript(c *call) error {
	id, err := pathScriptID(c)
	if err != nil {
		return err
	}
	c.scriptIDs = append(c.scriptIDs[:0], id)
	return nil
}

// ifMatch is a parsed If-Match header (RFC 9110 §13.1.1): "*", or a list
// of entity tags of which any may match. A script's ETag is "<version>";
// a weak tag compares like the strong one, and a tag that is no version
// of ours can never match.
type ifMatch struct {
	any      bool
	versions []int64
}

// parseIfMatch reads an If-Match header; ok is false without one.
func parseIfMatch(h string) (m ifMatch, ok bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return m, false
	}
	if h == "*" {
		return ifMatch{any: true}, true
	}
	for tag := range strings.SplitSeq(h, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"' {
			if v, err := strconv.ParseInt(tag[1:len(tag)-1], 10, 64); err == nil && v > 0 {
				m.versions = append(m.versions, v)
			}
		}
	}
	return m, true
}

// single returns the one version the header names, when it names exactly
// one.
func (m ifMatch) single() (int64, bool) {
	if m.any || len(m.versions) != 1 {
		return 0, false
	}
	return m.versions[0], true
}

// matches reports whether a script at version v satisfies the header.
func (m ifMatch) matches(v int64) bool { return m.any || slices.Contains(m.versions, v) }

func (s *Server) handlePutScript(c *call) error {
	ctx, orgID, id := c.r.Context(), c.client.OrgID, c.r.PathValue("scriptId")
	var body wire.ScriptPut
	if err := decodeJSON(c.w, c.r, &body); err != nil {
		return err
	}
	if body.ID != "" && body.ID != id {
		return ratelab.Errorf(ratelab.EUNPROCESSABLE, "id %q in the body differs from %q in the path.", body.ID, id)
	}
	if err := ratelab.ValidateScript(body.Name, body.Text); err != nil {
		return err
	}
	version, err := bodyVersion(body.Version)
	if err != nil {
		return err
	}
	upd := ratelab.ScriptUpdate{ID: id, Name: body.Name, Text: body.Text, ClientID: c.client.ID}
	im, hasIfMatch := parseIfMatch(c.r.Header.Get("If-Match"))
	conflictCode := ratelab.ECONFLICT
	if hasIfMatch {
		conflictCode = ratelab.EPRECONDITION
		want, one := im.single()
		if !one || version != 0 && version != want {
			// "*", a list, no usable tag, or a body version that disagrees
			// with If-Match: the current version decides which
			// precondition failed, and the write is then a compare-and-swap
			// on it, so a write in between still fails it.
			cur, err := s.scripts.FindScript(ctx, orgID, id)
			switch {
			case ratelab.ErrorCode(err) == ratelab.ENOTFOUND:
				return ratelab.Errorf(ratelab.EPRECONDITION, "If-Match %s: the script does not exist.", c.r.Header.Get("If-Match"))
			case err != nil:
				return err
			case !im.matches(cur.Version):
				c.w.Header().Set("ETag", etag(cur.Version))
				return ratelab.Errorf(ratelab.EPRECONDITION, "If-Match %s does not match the current version %d.", c.r.Header.Get("If-Match"), cur.Version)
			case version != 0 && version != cur.Version:
				c.w.Header().Set("ETag", etag(cur.Version))
				return ratelab.Errorf(ratelab.ECONFLICT, "version %d in the body does not match the current version %d.", version, cur.Version)
			}
			want = cur.Version
		}
		upd.IfVersion = want
	} else {
		upd.IfVersion = version
	}
	sc, created, err := s.scripts.PutScript(ctx, orgID, upd)
	if ratelab.ErrorCode(err) == ratelab.ECONFLICT {
		return s.conflict(c, conflictCode, upd.IfVersion, hasIfMatch)
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeScript(c.w, status, sc)
	return nil
}

// conflict builds the 409 or 412 of a failed compare-and-swap. It names
// the current version and, when the script exists, sends its ETag, so a
// client can retry without another GET.
func (s *Server) conflict(c *call, code string, want int64, ifMatch bool) error {
	what := "version " + strconv.FormatInt(want, 10) + " in the body"
	if ifMatch {
		what = "If-Match " + etag(want)
	}
	cur, err := s.scripts.FindScript(c.r.Context(), c.client.OrgID, c.r.PathValue("scriptId"))
	if err != nil {
		return ratelab.Errorf(code, "%s does not match: the script does not exist.", what)
	}
	c.w.Header().Set("ETag", etag(cur.Version))
	return ratelab.Errorf(code, "%s does not match the current version %d.", what, cur.Version)
}

func (s *Server) handleDeleteScript(c *call) error {
	if err := s.scripts.DeleteScript(c.r.Context(), c.client.OrgID, c.r.PathValue("scriptId")); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleVersions(c *call) error {
	id, err := pathScriptID(c)
	if err != nil {
		return err
	}
	p, err := pageParams(c.r)
	if err != nil {
		return err
	}
	list, total, err := s.scripts.ScriptVersions(c.r.Context(), c.client.OrgID, id, p)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, wire.NewPage(list, p, total))
	return nil
}

// prepareBulk decodes the bulk body before the limiter, which charges one
// unit to the per-script tier of every script in it; an id may appear once.
func (s *Server) prepareBulk(c *call) error {
	var body wire.BulkRequest
	if err := decodeJSON(c.w, c.r, &body); err != nil {
		return err
	}
	switch n := len(body.Scripts); {
	case n == 0:
		return ratelab.Errorf(ratelab.EUNPROCESSABLE, "scripts must hold at least one update.")
	case n > wire.MaxBulkItems:
		return ratelab.Errorf(ratelab.EUNPROCESSABLE, "scripts holds %d updates; at most %d allowed.", n, wire.MaxBulkItems)
	}
	c.bulk = &body
	// One item per script: the per-script tier is charged once per id, so
	// duplicates would write a script several times for the price of one
	// (and their order within one transaction is no contract to rely on).
	seen := make(map[string]int, len(body.Scripts))
	var dups []string
	for _, it := range body.Scripts {
		seen[it.ID]++
		switch n := seen[it.ID]; {
		case n == 2:
			dups = append(dups, strconv.Quote(it.ID))
		case n == 1 && ratelab.ValidID(it.ID):
			c.scriptIDs = append(c.scriptIDs, it.ID)
		}
	}
	if dups != nil {
		c.scriptIDs = c.scriptIDs[:0]
		return ratelab.Errorf(ratelab.EUNPROCESSABLE, "scripts: each id may appear once; repeated: %s.", strings.Join(dups, ", "))
	}
	return nil
}

func (s *Server) handleBulk(c *call) error {
	items := c.bulk.Scripts
	results := make([]wire.BulkItem, len(items))
	var upds []ratelab.ScriptUpdate
	var idx []int
	for i, it := range items {
		results[i].ID = it.ID
		version, err := bodyVersion(it.Version)
		upd := ratelab.ScriptUpdate{ID: it.ID, Name: it.Name, Text: it.Text, IfVersion: version, ClientID: c.client.ID}
		if err == nil {
			err = ratelab.ValidateUpdate(upd)
		}
		if err != nil {
			setBulkError(&results[i], err)
			continue
		}
		upds = append(upds, upd)
		idx = append(idx, i)
	}
	if len(upds) > 0 {
		res, err := s.scripts.UpdateScripts(c.r.Context(), c.client.OrgID, upds)
		if err != nil {
			return err
		}
		for j, r := range res {
			it := &results[idx[j]]
			switch {
			case r.Err != nil && ratelab.ErrorCode(r.Err) == ratelab.EINTERNAL:
				s.metrics.storeErrors.Inc()
				s.log.Error("bulk item failed", "id", it.ID, "err", r.Err)
				setBulkError(it, r.Err)
			case r.Err != nil:
				setBulkError(it, r.Err)
			case r.Created:
				it.Status, it.Script, it.Version = http.StatusCreated, r.Script, r.Script.Version
			default:
				it.Status, it.Script, it.Version = http.StatusOK, r.Script, r.Script.Version
			}
		}
	}
	resp := wire.BulkResponse{Results: results}
	for _, r := range results {
		if r.Status < 300 {
			resp.Succeeded++
		} else {
			resp.Failed++
		}
	}
	writeJSON(c.w, http.StatusOK, resp)
	return nil
}

// setBulkError records err as a bulk item's outcome.
func setBulkError(it *wire.BulkItem, err error) {
	it.Status = StatusOf(err)
	it.Error = &wire.ErrorBody{Message: ratelab.ErrorMessage(err), Code: ratelab.ErrorCode(err), Status: it.Status}
}

func (s *Server) handleUsers(c *call) error {
	users, err := s.auth.FindUsers(c.r.Context(), c.client.OrgID)
	if err != nil {
		return err
	}
	if users == nil {
		users = []*ratelab.User{}
	}
	writeJSON(c.w, http.StatusOK, wire.UserList{Entities: users, Total: len(users)})
	return nil
}

// handleRateLimits reports every policy that applies to the caller: the
// org, client and route-class tiers of every route, the per-script tier
// of the script named by ?scriptId=, and the token endpoint's tier for the
// caller's client id. The decisions cost 0: nothing is consumed.
func (s *Server) handleRateLimits(c *call) error {
	ps := s.policies.Load()
	var scriptIDs []string
	if id := c.r.URL.Query().Get("scriptId"); id != "" {
		if err := ratelab.ValidateID("scriptId", id); err != nil {
			return err
		}
		scriptIDs = []string{id}
	}
	var out []wire.LimitState
	peek := func(group string, tiers []limit.Tier) error {
		if len(tiers) == 0 {
			return nil
		}
		req := &limit.Request{Group: group, Tiers: tiers, Cost: 0}
		if s.fixedNow {
			req.Now = s.now()
		}
		var d limit.Decision
		if err := s.decide(c.r.Context(), req, &d); err != nil {
			return err
		}
		for i := range d.Tiers {
			ts := &d.Tiers[i]
			out = append(out, limitState(ps.byName[ts.Policy.Name], ts))
		}
		return nil
	}
	// Every tier any request of the caller's could be charged, each once:
	// those of the authenticated routes, and those of the token endpoint
	// for the caller's client id.
	type tk struct{ policy, key string }
	seen := map[tk]bool{}
	var tiers []limit.Tier
	add := func(rt *route, who caller) {
		_, ts := tiersFor(nil, ps, rt, who, scriptIDs)
		for _, t := range ts {
			if !seen[tk{t.Policy.Name, t.Key}] {
				seen[tk{t.Policy.Name, t.Key}] = true
				tiers = append(tiers, t)
			}
		}
	}
	for i := range s.routes {
		if rt := &s.routes[i]; rt.auth {
			add(rt, caller{client: c.client})
		}
	}
	if err := peek(caller{client: c.client}.group(), tiers); err != nil {
		return err
	}
	tiers = tiers[:0]
	token := caller{tokenClient: c.client.ID}
	for i := range s.routes {
		if rt := &s.routes[i]; rt.class == ClassToken {
			add(rt, token)
		}
	}
	if err := peek(token.group(), tiers); err != nil {
		return err
	}
	if out == nil {
		out = []wire.LimitState{}
	}
	writeJSON(c.w, http.StatusOK, wire.RateLimits{Policies: out})
	return nil
}

func (s *Server) handleHealthz(c *call) error {
	writeJSON(c.w, http.StatusOK, wire.Health{Status: "ok"})
	return nil
}

// handleReadyz reports whether the replica can serve. A limiter that fails
// open is degraded, not unready: a load balancer that dropped every
// replica at once because Redis blinked would turn a limiter outage into
// a full outage. A limiter that fails closed admits nothing while its
// backend is down, so the replica is unready.
func (s *Server) handleReadyz(c *call) error {
	ctx, cancel := context.WithTimeout(c.r.Context(), 2*time.Second)
	defer cancel()
	h := wire.Health{Status: "ok", Checks: map[string]string{"database": "ok", "limiter": "ok"}}
	if err := s.auth.Ping(ctx); err != nil {
		s.log.Error("readyz: database unreachable", "err", err)
		h.Status, h.Checks["database"] = "unavailable", "unreachable"
	}
	if d, ok := s.limiter.(degrader); ok && d.Degraded() {
		if d.FailsClosed() {
			h.Status, h.Checks["limiter"] = "unavailable", "unreachable: failing closed"
		} else {
			h.Degraded, h.Checks["limiter"] = true, "degraded: deciding locally"
			if h.Status == "ok" {
				h.Status = "degraded"
			}
		}
	}
	status := http.StatusOK
	if h.Status == "unavailable" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(c.w, status, h)
	return nil
}
