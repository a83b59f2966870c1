package httpapi

import (
	"net/http"
	"strconv"

	"ratelab"
	"ratelab/wire"
)

// route is one operation of the API: its ServeMux pattern, its route
// class for policy matching, whether it needs a bearer token, and its
// handler. The openapi fields describe it in /openapi.json.
type route struct {
	method, pattern string
	// class is the primary route class; "" means not rate limited.
	class string
	auth  bool
	// peek makes the route's limiter decision cost 0: it reports state and
	// consumes nothing.
	peek bool
	// selfAdmit: the handler takes the route's limiter decisions itself
	// (the token endpoint: failures before the secret is checked, the
	// grant after).
	selfAdmit bool
	// prepare runs before the limiter decision, after authentication, to
	// gather what the tiers need (the script ids of a write, the client id
	// of a token request). Its error is written after the decision, so
	// the response still carries the rate-limit headers.
	prepare func(s *Server, c *call) error
	handle  func(s *Server, c *call) error
	// maxScripts is the most script ids the route's prepare can name: one
	// per-script tier each.
	maxScripts int
	// id is "METHOD pattern", as registered on the ServeMux: how policies
	// find the route.
	id string

	summary  string
	request  string // schema name of the JSON body, or "form"
	response string // schema name of the success body
	status   int    // success status
	errors   []int  // documented error statuses besides the common ones
}

// inClass reports whether the route is in the route class c.
func (rt *route) inClass(c string) bool {
	switch {
	case rt.class == "":
		return false
	case c == rt.class:
		return true
	case !rt.auth:
		return false
	case c == ClassAll:
		return true
	case c == ClassReads:
		return rt.method == http.MethodGet
	case c == ClassWrites:
		return rt.method != http.MethodGet
	}
	return false
}

// apiRoutes returns the API's route table, in the order of the OpenAPI
// document.
func apiRoutes() []route {
	routes := []route{
		{method: "POST", pattern: wire.TokenPath, class: ClassToken, selfAdmit: true, handle: (*Server).handleToken,
			summary: "Issue an access token (OAuth 2.0 client-credentials grant)", request: "form", response: "Token", status: 200, errors: []int{400, 401, 413, 415, 429}},
		{method: "POST", pattern: wire.RevokePath, class: ClassToken, selfAdmit: true, handle: (*Server).handleRevoke,
			summary: "Revoke an access token of the authenticated client (RFC 7009); an unknown token is a 200 too", request: "form", response: "object", status: 200, errors: []int{400, 401, 413, 415}},
		{method: "GET", pattern: wire.ScriptsPath, class: ClassScriptReads, auth: true, handle: (*Server).handleListScripts,
			summary: "List the org's scripts, one page at a time", response: "ScriptPage", status: 200, errors: []int{400}},
		{method: "POST", pattern: wire.ScriptsPath, class: ClassScriptWrites, auth: true, handle: (*Server).handleCreateScript,
			summary: "Create a script at version 1", request: "ScriptCreate", response: "Script", status: 201, errors: []int{400, 413, 415, 422}},
		{method: "POST", pattern: wire.BulkPath, class: ClassScriptWrites, auth: true, prepare: (*Server).prepareBulk, handle: (*Server).handleBulk, maxScripts: wire.MaxBulkItems,
			summary: "Update up to 50 scripts in one request; each item has its own result", request: "BulkRequest", response: "BulkResponse", status: 200, errors: []int{400, 413, 415, 422}},
		{method: "GET", pattern: wire.ScriptPath, class: ClassScriptReads, auth: true, handle: (*Server).handleGetScript,
			summary: "Get a script", response: "Script", status: 200, errors: []int{404}},
		{method: "PUT", pattern: wire.ScriptPath, class: ClassScriptWrites, auth: true, prepare: (*Server).preparePathScript, handle: (*Server).handlePutScript, maxScripts: 1,
			summary: "Replace a script's name and text (creates it when unknown); If-Match or version make it a compare-and-swap", request: "ScriptPut", response: "Script", status: 200, errors: []int{400, 409, 412, 413, 415, 422}},
		{method: "DELETE", pattern: wire.ScriptPath, class: ClassScriptWrites, auth: true, prepare: (*Server).preparePathScript, handle: (*Server).handleDeleteScript, maxScripts: 1,
			summary: "Delete a script and its versions", status: 204, errors: []int{404}},
		{method: "GET", pattern: wire.VersionsPath, class: ClassScriptReads, auth: true, handle: (*Server).handleVersions,
			summary: "List a script's versions, newest first", response: "VersionPage", status: 200, errors: []int{400, 404}},
		{method: "GET", pattern: wire.UsersPath, class: ClassUsers, auth: true, handle: (*Server).handleUsers,
			summary: "List the org's users", response: "UserList", status: 200},
		{method: "GET", pattern: wire.RateLimitsPath, class: ClassRateLimits, auth: true, peek: true, handle: (*Server).handleRateLimits,
			summary: "The policies that apply to the caller and their current state; consumes no quota", response: "RateLimits", status: 200},
		{method: "GET", pattern: "/healthz", handle: (*Server).handleHealthz,
			summary: "The process is up", response: "Health", status: 200},
		{method: "GET", pattern: "/readyz", handle: (*Server).handleReadyz,
			summary: "The replica can serve: the database is reachable and the limiter decides (status degraded while it decides locally)", response: "Health", status: 200, errors: []int{503}},
		{method: "GET", pattern: "/metrics", handle: (*Server).handleMetrics,
			summary: "Prometheus metrics", response: "text", status: 200},
		{method: "GET", pattern: "/openapi.json", handle: (*Server).handleOpenAPI,
			summary: "This OpenAPI document", response: "object", status: 200},
	}
	for i := range routes {
		routes[i].id = routes[i].method + " " + routes[i].pattern
	}
	return routes
}

// call is one request in flight through a route.
type call struct {
	w  http.ResponseWriter
	r  *http.Request
	rt *route // nil for an unknown route
	// client is the authenticated caller; nil on unauthenticated routes.
	client *ratelab.Client
	// scriptIDs are the scripts the request writes: one tier each.
	scriptIDs []string
	// tokenClient is the client id a token request presents.
	tokenClient string
	bulk        *wire.BulkRequest
}

// maxPageNumber bounds pageNumber, so that an offset stays far from
// overflowing.
const maxPageNumber = 1_000_000

// pageParams reads pageSize (1 to ratelab.MaxPageSize, default
// ratelab.DefaultPageSize) and pageNumber (from 1).
func pageParams(r *http.Request) (ratelab.Page, error) {
	p := ratelab.Page{Size: ratelab.DefaultPageSize, Number: 1}
	q := r.URL.Query()
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > ratelab.MaxPageSize {
			return p, ratelab.Errorf(ratelab.EINVALID, "pageSize must be a whole number from 1 to %d.", ratelab.MaxPageSize)
		}
		p.Size = n
	}
	if v := q.Get("pageNumber"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageNumber {
			return p, ratelab.Errorf(ratelab.EINVALID, "pageNumber must be a whole number from 1 to %d.", maxPageNumber)
		}
		p.Number = n
	}
	return p, nil
}
