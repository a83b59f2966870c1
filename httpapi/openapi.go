package httpapi

import (
	"net/http"
	"strconv"
	"strings"

	"ratelab"
	"ratelab/wire"
)

// OpenAPI returns the OpenAPI 3.1 document of the API, built from the
// route table that the server registers, so the two cannot drift.
func OpenAPI() map[string]any {
	type obj = map[string]any
	ref := func(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }
	errResp := func(desc string) obj {
		return obj{"description": desc, "content": obj{"application/json": obj{"schema": ref("Error")}}}
	}
	rlHeaders := obj{
		"RateLimit-Policy":      obj{"description": "Every enforced policy of the request: q = burst, w = seconds to refill (draft-ietf-httpapi-ratelimit-headers).", "schema": obj{"type": "string"}},
		"RateLimit":             obj{"description": "The most restrictive policy's state: r = remaining, t = seconds until full.", "schema": obj{"type": "string"}},
		"X-RateLimit-Limit":     obj{"schema": obj{"type": "integer"}},
		"X-RateLimit-Remaining": obj{"schema": obj{"type": "integer"}},
		"X-RateLimit-Reset":     obj{"schema": obj{"type": "integer"}},
	}
	statusText := map[int]string{
		400: "Malformed request (bad JSON, unknown field, bad parameter)",
		401: "Missing, invalid or expired credentials",
		404: "Not found (another org's script is not found either)",
		409: "version in the body does not match the current version",
		412: "If-Match does not match the current version",
		413: "Body larger than " + strconv.Itoa(MaxBodyBytes) + " bytes",
		415: "Wrong Content-Type",
		422: "Empty name, oversized text, bad id or too many items",
		429: "Rate limited: the body names the policy; Retry-After says when to retry",
		503: "A dependency is unreachable",
	}
	paths := obj{}
	for _, rt := range apiRoutes() {
		item, _ := paths[rt.pattern].(obj)
		if item == nil {
			item = obj{}
			paths[rt.pattern] = item
		}
		op := obj{"summary": rt.summary, "operationId": operationID(rt)}
		var params []any
		if strings.Contains(rt.pattern, "{scriptId}") {
			params = append(params, obj{"name": "scriptId", "in": "path", "required": true, "schema": obj{"type": "string"}})
		}
		if rt.response == "ScriptPage" || rt.response == "VersionPage" {
			params = append(params,
				obj{"name": "pageSize", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": ratelab.MaxPageSize, "default": ratelab.DefaultPageSize}},
				obj{"name": "pageNumber", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": maxPageNumber, "default": 1}})
		}
		if rt.method == "PUT" {
			params = append(params, obj{"name": "If-Match", "in": "header", "schema": obj{"type": "string"}, "description": `The script's ETag, "<version>": makes the write a compare-and-swap.`})
		}
		if rt.response == "RateLimits" {
			params = append(params, obj{"name": "scriptId", "in": "query", "schema": obj{"type": "string"}, "description": "Also report the per-script tier of this script."})
		}
		if params != nil {
			op["parameters"] = params
		}
		switch rt.request {
		case "":
		case "form":
			op["requestBody"] = obj{"required": true, "content": obj{"application/x-www-form-urlencoded": obj{"schema": ref("TokenRequest")}}}
		default:
			op["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": ref(rt.request)}}}
		}
		ok := obj{"description": http.StatusText(rt.status)}
		switch rt.response {
		case "":
		case "text":
			ok["content"] = obj{"text/plain": obj{"schema": obj{"type": "string"}}}
		case "object":
			ok["content"] = obj{"application/json": obj{"schema": obj{"type": "object"}}}
		default:
			ok["content"] = obj{"application/json": obj{"schema": ref(rt.response)}}
		}
		if rt.class != "" {
			ok["headers"] = rlHeaders
		}
		responses := obj{strconv.Itoa(rt.status): ok}
		if rt.method == "PUT" {
			responses["201"] = obj{"description": "Created (the id was unknown)", "content": obj{"application/json": obj{"schema": ref("Script")}}, "headers": rlHeaders}
		}
		for _, st := range rt.errors {
			responses[strconv.Itoa(st)] = errResp(statusText[st])
		}
		if rt.auth {
			responses["401"] = errResp(statusText[401])
			op["security"] = []any{obj{"bearer": []any{}}}
		}
		if rt.class != "" {
			responses["429"] = obj{"description": statusText[429], "content": obj{"application/json": obj{"schema": ref("Error")}},
				"headers": obj{"Retry-After": obj{"schema": obj{"type": "integer"}}}}
		}
		op["responses"] = responses
		item[strings.ToLower(rt.method)] = op
	}
	str := obj{"type": "string"}
	integer := obj{"type": "integer"}
	dateTime := obj{"type": "string", "format": "date-time"}
	page := func(item string) obj {
		return obj{"type": "object", "properties": obj{
			"entities": obj{"type": "array", "items": ref(item)}, "pageSize": integer, "pageNumber": integer,
			"total": integer, "pageCount": integer}}
	}
	script := obj{"type": "object", "properties": obj{"id": str, "name": str, "text": str, "version": integer,
		"dateCreated": dateTime, "dateModified": dateTime}}
	scriptPut := obj{"type": "object", "additionalProperties": false, "required": []any{"name"}, "properties": obj{
		"id": str, "name": obj{"type": "string", "minLength": 1, "maxLength": ratelab.MaxScriptNameLen},
		"text": obj{"type": "string", "maxLength": ratelab.MaxScriptTextLen}, "version": obj{"type": "integer", "minimum": 1}}}
	limitState := obj{"type": "object", "properties": obj{"policy": str, "scope": obj{"type": "string", "enum": []any{"org", "client", "org+route-class", "org+script"}},
		"key": str, "limit": integer, "window": str, "burst": integer, "shadow": obj{"type": "boolean"},
		"remaining": integer, "resetAfterMs": integer, "retryAfterMs": integer}}
	errorBody := obj{"type": "object", "required": []any{"message", "code", "status"}, "properties": obj{
		"message": str, "code": str, "status": integer, "error": str, "limit": ref("LimitState"),
		"violatedPolicies": obj{"type": "array", "items": str}}}
	return obj{
		"openapi": "3.1.0",
		"info": obj{"title": "ratelab scripts API", "version": ratelab.Version,
			"description": "A scripts API with transparent, layered rate limits: every response carries RateLimit-Policy, RateLimit and X-RateLimit-* headers; a 429 names the policy and the exact retry delay."},
		"paths": paths,
		"components": obj{
			"securitySchemes": obj{
				"bearer": obj{"type": "http", "scheme": "bearer"},
				"oauth2": obj{"type": "oauth2", "flows": obj{"clientCredentials": obj{"tokenUrl": "/oauth/token", "scopes": obj{}}}},
			},
			"schemas": obj{
				"TokenRequest": obj{"type": "object", "required": []any{"grant_type"}, "properties": obj{
					"grant_type": obj{"type": "string", "const": "client_credentials"}, "client_id": str, "client_secret": str}},
				"Token":        obj{"type": "object", "properties": obj{"access_token": str, "token_type": obj{"type": "string", "const": "bearer"}, "expires_in": integer}},
				"Script":       script,
				"ScriptCreate": obj{"type": "object", "additionalProperties": false, "required": []any{"name"}, "properties": obj{"name": str, "text": str}},
				"ScriptPut":    scriptPut,
				"ScriptPage":   page("Script"),
				"Version": obj{"type": "object", "properties": obj{"version": integer, "name": str, "text": str,
					"dateModified": dateTime, "clientId": str}},
				"VersionPage": page("Version"),
				"BulkRequest": obj{"type": "object", "additionalProperties": false, "properties": obj{
					"scripts": obj{"type": "array", "minItems": 1, "maxItems": wire.MaxBulkItems, "items": ref("ScriptPut")}}},
				"BulkResponse": obj{"type": "object", "properties": obj{
					"results": obj{"type": "array", "items": obj{"type": "object", "properties": obj{
						"id": str, "status": integer, "version": integer, "script": ref("Script"), "error": ref("Error")}}},
					"succeeded": integer, "failed": integer}},
				"UserList": obj{"type": "object", "properties": obj{"entities": obj{"type": "array", "items": obj{"type": "object",
					"properties": obj{"id": str, "name": str, "email": str}}}, "total": integer}},
				"RateLimits": obj{"type": "object", "properties": obj{"policies": obj{"type": "array", "items": ref("LimitState")}}},
				"LimitState": limitState,
				"Health":     obj{"type": "object", "properties": obj{"status": str, "degraded": obj{"type": "boolean"}, "checks": obj{"type": "object", "additionalProperties": str}}},
				"Error":      errorBody,
			},
		},
	}
}

func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.method))
	for _, part := range strings.Split(rt.pattern, "/") {
		part = strings.Trim(part, "{}.")
		if part == "" || part == "api" || part == "v2" {
			continue
		}
		part = strings.ReplaceAll(part, ".", "")
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func (s *Server) handleOpenAPI(c *call) error {
	writeJSON(c.w, http.StatusOK, OpenAPI())
	return nil
}
