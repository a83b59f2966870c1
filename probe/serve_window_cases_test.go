package probe_test

import "testing"

// The window cases of `ratelab serve` as a probe target (see
// serve_targets_test.go).

// TestProbeServeFixedWindowFirst probes a fixed window of 20 per 2 s that
// opens at the first request after the last one ended (align: first),
// under --headers inin: whole-second resets, and a 429 body with the
// exact delay. The fit must read where windows start by experiment (the
// late start), not from the resets.
func TestProbeServeFixedWindowFirst(t *testing.T) {
	peerTest(t)
	rs := startServe(t, "serve-fixed-first.yaml", "--headers", "inin")
	rep := runPeerCaseReport(t, "ratelab serve fixed-window 20/2s align first per org, --headers inin", serveConfig(t, rs, true, false),
		want{scope: "endpoint", algorithm: "fixed-window", quota: 20, windowS: 2, rate: 10})
	checkWindowStart(t, rep, "first request")
}

// TestProbeServeSlidingWindow probes a sliding window of 20 per 2 s shared
// by the clients of an org (ratelab's rounding, 429s not counted), under
// --headers x-ratelimit, with a second client to tell shared from per
// client.
func TestProbeServeSlidingWindow(t *testing.T) {
	peerTest(t)
	rs := startServe(t, "serve-sliding.yaml", "--headers", "x-ratelimit")
	runPeerCase(t, "ratelab serve sliding-window 20/2s per org, --headers x-ratelimit", serveConfig(t, rs, false, true),
		want{scope: "endpoint, shared by clients", algorithm: "sliding-window", quota: 20, windowS: 2, rate: 10, countsRejected: ptr(false)})
}

// TestProbeServeMix probes two limits of one decision, under serve's
// default headers: a fixed window of 5 writes per 2 s per script, aligned
// to the epoch, and a token bucket of 20/s, burst 10, shared by the org's
// scripts. Varying the script finds the second behind the first.
func TestProbeServeMix(t *testing.T) {
	peerTest(t)
	rs := startServe(t, "serve-mix.yaml")
	rep := runPeerCaseReport(t, "ratelab serve fixed-window 5/2s per script + gcra 20/s burst 10 per org, default headers", serveConfig(t, rs, true, false),
		want{scope: "resource", algorithm: "fixed-window", quota: 5, windowS: 2, rate: 2.5},
		want{scope: "endpoint", algorithm: "token-bucket", rate: 20, quota: 10})
	checkWindowStart(t, rep, "epoch")
}
