package probe_test

import "testing"

// The window cases of `ratelab serve` as a probe target (see
// serve_targets_test.go): a fixed window opening at the first request, a
// sliding window, and a fixed window per script
// under a bucket per org. They wait on the probe's window fits
// (/work/dev/probe-findings.md, F1, F2, F6, F7).

func TestProbeServeFixedWindowFirst(t *testing.T) {
	skipTimingUnderRace(t)
	rs := startServe(t, "serve-fixed-first.yaml", "--headers", "inin")
	rep := runPeerCaseReport(t, "ratelab serve fixed-window 20/2s align first per org, --headers inin", serveConfig(t, rs, true, false),
		want{scope: "endpoint", algorithm: "fixed-window", quota: 20, windowS: 2, rate: 10})
	checkWindowStart(t, rep, "first request")
}

func TestProbeServeSlidingWindow(t *testing.T) {
	skipTimingUnderRace(t)
	rs := startServe(t, "serve-sliding.yaml", "--headers", "x-ratelimit")
	runPeerCase(t, "ratelab serve sliding-window 20/2s per org, --headers x-ratelimit", serveConfig(t, rs, false, true),
		want{scope: "endpoint, shared by clients", algorithm: "sliding-window", quota: 20, windowS: 2, rate: 10, countsRejected: ptr(false)})
}

func TestProbeServeMix(t *testing.T) {
	skipTimingUnderRace(t)
	rs := startServe(t, "serve-mix.yaml")
	rep := runPeerCaseReport(t, "ratelab serve fixed-window 5/2s per script + gcra 20/s burst 10 per org, default headers", serveConfig(t, rs, true, false),
		want{scope: "resource", algorithm: "fixed-window", quota: 5, windowS: 2, rate: 2.5},
		want{scope: "endpoint", algorithm: "token-bucket", rate: 20, quota: 10})
	checkWindowStart(t, rep, "epoch")
}
