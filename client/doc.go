// Package client is the Go client of ratelab's scripts API (the server is
// package ratelab/httpapi; the shapes both speak are in ratelab/wire). A
// [Client] implements ratelab.ScriptService over HTTP and never fights the
// server's rate limiter:
//
//   - it authenticates with the OAuth client-credentials grant and
//     replaces its token before it expires;
//   - it paces itself from the server's own words, learned from
//     RateLimit-Policy and RateLimit (or X-RateLimit-*, GitHub's and
//     inin's headers) and from GET /api/v2/ratelimits, per policy and
//     scope key in the policy's own terms, so that it sends a request only
//     when the server will admit it: a local GCRA (limit.Bucket) for a
//     token bucket; for a window, the wait for its reset once responses
//     say it is spent (limit.ResetTracker, requests in flight counted);
//     for a concurrency limit, which is no rate, at most that many of its
//     own requests in flight;
//   - after a 429 it waits exactly the server's retry delay (read with
//     limit.ParseResponse) plus a little jitter, and retries;
//   - it merges updates of one script that wait for quota and batches
//     updates of many scripts into bulk requests (Client.Submit);
//   - one retry policy covers every request and every write (retryOf in
//     client.go): what is retried, how often, and when a 401 means "get a
//     new token";
//   - its time comes from one clock (Config.Now): pacing, retry delays and
//     the token's age; Close cancels the writes in flight.
//
// Files: client.go (Client, requests, the retry policy, the token),
// pacer.go (the picture of the server's limits), writes.go (the write
// scheduler: coalescing, batching).
//
// It imports neither Prometheus nor YAML nor procfs: a program that uses it
// links only the standard library, golang.org/x/oauth2 and ratelab's
// domain, wire and limit packages.
package client
