package probe_test

import (
	"net/http"
	"testing"
	"time"
)

// TestProbeHAProxyCount probes HAProxy's http_req_cnt (testdata/
// haproxy-cnt.cfg): a counter of every request of a source address, 429s
// included, that lives as long as its stick-table entry, which expires 3 s
// after the last request. It admits 20 from the first request on and then
// nothing while the client keeps sending; 3 s of silence give it 20 more.
// In the probe's families that is a window of 20 opening at the first
// request whose rejected requests count.
func TestProbeHAProxyCount(t *testing.T) {
	skipTimingUnderRace(t)
	url := startHAProxy(t, "haproxy-cnt.cfg")
	cfg := peerConfig(t, url, "100/s", false)
	cfg.Client = &http.Client{Timeout: 10 * time.Second}
	record(t, &cfg)
	runPeerCase(t, "haproxy http_req_cnt > 20 deny, entry expire 3s, track-sc0 src", cfg,
		want{scope: "unknown", algorithm: "fixed-window", quota: 20, windowS: 3, countsRejected: ptr(true)})
}
