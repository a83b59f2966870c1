package wire

import (
	"net/url"
	"strconv"

	"ratelab"
)

// The API's paths. ScriptPath and VersionsPath are ServeMux patterns with
// the wildcard {scriptId}; ScriptURLPath fills it in.
const (
	TokenPath      = "/oauth/token"
	RevokePath     = "/oauth/revoke"
	ScriptsPath    = "/api/v2/architect/scripts"
	BulkPath       = ScriptsPath + "/bulk"
	ScriptPath     = ScriptsPath + "/{scriptId}"
	VersionsPath   = ScriptPath + "/versions"
	UsersPath      = "/api/v2/users"
	RateLimitsPath = "/api/v2/ratelimits"
)

// ScriptURLPath returns the path of the script id, escaped for a URL.
func ScriptURLPath(id string) string { return ScriptsPath + "/" + url.PathEscape(id) }

// VersionsURLPath returns the path of the script id's versions.
func VersionsURLPath(id string) string { return ScriptURLPath(id) + "/versions" }

// MaxBulkItems bounds the updates of one bulk request.
const MaxBulkItems = 50

// PageQuery returns the query parameters of a listing's page: pageSize
// and pageNumber, each left out when zero (the server's default).
func PageQuery(p ratelab.Page) url.Values {
	q := url.Values{}
	if p.Size > 0 {
		q.Set("pageSize", strconv.Itoa(p.Size))
	}
	if p.Number > 0 {
		q.Set("pageNumber", strconv.Itoa(p.Number))
	}
	return q
}
