// Package httpapi is ratelab's HTTP API server: the scripts API with
// transparent, layered rate limits. The shapes it shares with clients —
// paths, JSON bodies, scope names and the error code ↔ status table — are
// in package ratelab/wire; the Go client is package ratelab/client.
//
// Files: server.go (Config, Server, its life), routes.go (the route
// table, paging), middleware.go (every stage of the request path below,
// in one place), tiers.go (the tiers of a request as a value: tiersFor,
// which admission and GET /api/v2/ratelimits both call), policy.go
// (policies and their YAML), handlers.go, token.go (POST /oauth/token and
// its failure limits), revoke.go (POST /oauth/revoke), decode.go, errors.go, metrics.go, openapi.go.
//
// # Request path
//
// Every request goes through: panic recovery and metrics → route (standard
// library ServeMux patterns) → authentication (bearer token) → preparation
// (what the limiter needs: the script ids a write touches) → ONE limiter
// decision over every matching tier, all-or-nothing → handler → store.
// Every response of a rate-limited route — 2xx, 4xx and 429 alike —
// carries RateLimit-Policy, RateLimit and X-RateLimit-Limit/Remaining/Reset
// (see limit.SetHeaders; Config.Headers picks another platform's dialect
// instead, and Config.RejectBody a terse 429 body, see headers.go); a 429
// adds Retry-After and a body that names the
// policy, its scope, limit, window and the exact retry delay:
//
//	{"message": "script-writes-per-script allows 2 per second, burst 4, for script s1; retry in 430 ms",
//	 "code": "too_many_requests", "status": 429,
//	 "limit": {"policy": "script-writes-per-script", "scope": "org+script", "key": "s1", "limit": 2,
//	           "window": "1s", "burst": 4, "remaining": 0, "resetAfterMs": 2000, "retryAfterMs": 430},
//	 "violatedPolicies": ["script-writes-per-script"]}
//
// PUT is a compare-and-swap with If-Match (ETag "<version>"; a mismatch
// is a 412) or a version in the body (a mismatch is a 409); both carry
// the current ETag so that a client can retry without another GET.
//
// Errors have one shape everywhere, {"message", "code", "status"}
// (wire.ErrorBody), and one table maps ratelab error codes to statuses
// (wire.Status; StatusOf for an error).
//
// # Errors net/http answers itself
//
// The server answers in the error shape everything that reaches its
// handler, including what the standard library would let through: a
// request target over MaxURIBytes (414, uri_too_long), a request line and
// headers over MaxHeaderBytes (431, header_too_large; net/http's own cap is
// set to 1 MiB so that the server answers first), a query string with a
// malformed escape (400), a body over MaxBodyBytes (413), a body that does
// not arrive within the read timeout (408, request_timeout), a path no
// route has (404, 405 with Allow), and a path that is not clean (a
// redirect to the clean one, without a body).
//
// net/http parses the request before any handler runs and answers these
// itself, in plain text, closing the connection (no handler can change
// them):
//
//	400 Bad Request                    malformed request line, malformed escape in the path (/scripts/%zz),
//	                                   control bytes or other invalid header names or values, two
//	                                   differing Content-Length headers, HTTP/1.1 without Host, a bad Host
//	431 Request Header Fields Too Large request line and headers over 1 MiB
//	505 HTTP Version Not Supported     a version other than HTTP/1.x (e.g. HTTP/2.0 in the request line)
//	501 Not Implemented                a Transfer-Encoding other than chunked
//	417 Expectation Failed             an Expect header other than 100-continue
//
// A request line and headers slower than the read-header timeout (5 s),
// and a keep-alive connection idle for the idle timeout (120 s), get the
// connection closed without an answer.
//
// # Default policies
//
// Policies are data: DefaultPolicySpecs, or a YAML file (LoadPolicies)
// that replaces them. The defaults model the platform of the reference
// scenario:
//
//	name                      rate    burst  scope       applies to
//	org-requests              1000/s  1000   org         every authenticated request
//	client-requests           100/s   200    client      every authenticated request
//	token-requests            10/s    20     client      POST /oauth/token grants (by client id,
//	                                                     charged only when the credentials are
//	                                                     right) and requests without valid
//	                                                     credentials (by remote address)
//	script-writes             20/s    40     org         POST, PUT, DELETE of scripts, and bulk
//	script-writes-per-script  2/s     4      org+script  the same, per script id; a bulk request
//	                                                     costs 1 for each script in it (each id once)
//
// A bulk request (POST /api/v2/architect/scripts/bulk, up to 50 updates)
// counts once against org-requests, client-requests and script-writes, so
// 50 updates in one bulk use 1/50 of the request quota that 50 PUTs would:
// batching is the cheap path. GET /api/v2/users is under the org and
// client tiers only, so 10 requests/s never throttle, while 20 threads
// PUTting one script at 10 requests/s exceed script-writes-per-script
// within the first second.
//
// # Failed token requests
//
// Failed attempts at POST /oauth/token — every answer but a grant — are
// limited apart from the grants, by two fixed policies (Config.TokenFailures,
// token.go): token-failures-per-address, 10 per minute, burst 10, and
// token-failures-per-client, 10 per minute, burst 20, by the presented id
// whether it exists or not. Before the secret is hashed, a request is a 429
// when its address is over its failure limit, or when the id is over its
// failure limit and the address has failed recently itself: a flood from
// one address costs at most 10 PBKDF2 hashes and then 10 a minute, and
// wrong secrets sent for an id never lock out its owner, whose address has
// no failures (an owner behind the attacker's address waits like it).
// An unknown id and a wrong secret get the same 401, headers and time.
//
// # Policy file
//
//	policies:
//	  - name: script-writes-per-script
//	    algorithm: gcra    # the default; or fixed-window, sliding-window, concurrency
//	    rate: 2/s          # COUNT/PERIOD: 10/s, 600/m, 0.5/s, 1/10s
//	    burst: 4           # at least 1
//	    scope: org+script  # org, client, org+route-class, org+script
//	    classes: [script-writes]
//	    routes: ["PUT /api/v2/architect/scripts/{scriptId}"]  # optional, instead of or beside classes
//	    count_rejected: false  # true: a rejected request consumes too (Envoy, HAProxy)
//	    shadow: false      # true: count and report, never reject
//	  - name: client-per-minute
//	    algorithm: fixed-window
//	    rate: 300/m        # QUOTA/WINDOW, a whole quota: 300/m, 30/10s, 5000/h; no burst
//	    align: epoch       # windows at multiples of the window since the epoch; first: at a key's first request
//	    scope: client
//	    classes: [all]
//	  - name: org-sliding
//	    algorithm: sliding-window  # current + previous × (1 − elapsed/window), always epoch-aligned
//	    rate: 1000/s
//	    scope: org
//	    classes: [all]
//	  - name: client-in-flight
//	    algorithm: concurrency
//	    concurrency: 4     # requests in flight per key, released when the response is written
//	    lease: 30s         # a slot never released (a crashed replica) frees itself after this
//	    scope: client
//	    classes: [writes]
//
// Each algorithm takes only its own fields (gcra: rate, burst; windows:
// rate, align for fixed windows; concurrency: concurrency, lease), and
// count_rejected is refused on a concurrency policy: a rejected request
// is never in flight. limit/doc.go gives each algorithm's arithmetic.
//
// Route classes: all, reads, writes, script-reads, script-writes, users,
// ratelimits (authenticated requests), token (POST /oauth/token) and
// unauthenticated (API requests without valid credentials). The
// org-scoped scopes apply only to authenticated requests. Unknown fields
// are errors, and every error names the file, the policy and the field:
//
//	policies.yaml: policy "x": burst: must be at least 1
//
// Server.Reload (SIGHUP in ratelab serve) rereads the file and swaps the
// set atomically; a bad file is logged and the old set stays.
//
// # Limiter failures
//
// The limiter store (Config.Limiter) owns its failures; the server adds no
// fallback of its own. The Redis store fails open by default: while Redis
// is unreachable it decides on a local in-memory store, so every replica
// still enforces the policies on its own, /readyz answers 200 with
// "status": "degraded" and "degraded": true, and ratelab_limiter_degraded
// is 1. Configured to fail closed, it refuses to decide: every
// rate-limited request is a 503 (code "unavailable") with Retry-After, and
// /readyz is a 503. Any other limiter error is an internal error (500,
// logged).
//
// # Token revocation and the token cache
//
// POST /oauth/revoke (RFC 7009) revokes one of the authenticated client's
// tokens: the client authenticates as at the token endpoint, under the
// same failure limits, and a revocation is charged like a grant; an
// unknown, expired or foreign token is a 200 as well. The stores cache
// verified tokens (sqlstore.TokenCache), so a request with a known token
// costs no token query, and a revocation, a client deletion or a secret
// rotation takes effect at once on every replica sharing the database:
// SQLite reads a revocation generation from the file on every request,
// PostgreSQL keeps it through LISTEN/NOTIFY and a revocation returns only
// once every replica has acknowledged it (postgres/authwatch.go).
//
// # Other routes
//
// GET /api/v2/ratelimits reports every policy that applies to the caller
// with a cost-0 decision (it consumes nothing). /healthz, /readyz,
// /metrics and /openapi.json are not rate limited. With
// Config.MetricsElsewhere (ratelab serve --metrics-addr) /metrics answers
// 404 on the API's listener and MetricsHandler serves it on another.
package httpapi
