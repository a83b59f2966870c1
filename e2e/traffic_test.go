package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// maxInFlight bounds the requests an open loop keeps in flight; past it a
// send waits, so a stalled server slows the loop instead of piling up
// goroutines.
const maxInFlight = 256

// outcome is one request's result in an open loop.
type outcome struct {
	i          int
	sent, recv time.Time
	status     int // 0 when err is set
	err        error
}

// openLoop sends rate·d requests, request i at start + i/rate (an open
// model: a slow answer does not delay the next send, up to maxInFlight in
// flight), and returns their outcomes in send order. It stops by itself:
// the count is fixed, and every request has the client's timeout.
func openLoop(hc *http.Client, rate float64, d time.Duration, mk func(i int) (*http.Request, error)) []outcome {
	n := int(rate * d.Seconds())
	outs := make([]outcome, n)
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			o := &outs[i]
			o.i = i
			req, err := mk(i)
			if err != nil {
				o.err = err
				return
			}
			o.sent = time.Now()
			o.status, _, o.err = do(hc, req)
			o.recv = time.Now()
		}(i)
	}
	wg.Wait()
	return outs
}

// do sends req and reads the whole answer.
func do(hc *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// upperBound is the most a limit of rate and burst may admit over outs:
// every decision falls between the first send and the last answer.
func upperBound(outs []outcome, rate, burst float64) float64 {
	first, last := outs[0].sent, outs[0].recv
	for _, o := range outs {
		if o.sent.Before(first) {
			first = o.sent
		}
		if o.recv.After(last) {
			last = o.recv
		}
	}
	return burst + rate*last.Sub(first).Seconds()
}

// lowerBound is the least a limit of rate and burst must admit over outs
// when every request is over the limit: the decisions span at least from
// the first answer to the last send.
func lowerBound(outs []outcome, rate, burst float64) float64 {
	firstRecv, lastSent := outs[0].recv, outs[0].sent
	for _, o := range outs {
		if o.recv.Before(firstRecv) {
			firstRecv = o.recv
		}
		if o.sent.After(lastSent) {
			lastSent = o.sent
		}
	}
	return burst + rate*max(0, lastSent.Sub(firstRecv).Seconds())
}

// checkAdmitted counts the 2xx answers of outs, fails the test on any
// other answer than 2xx and 429, on more admitted than upperBound, and on
// fewer than share of lowerBound (share 0: no lower check), and returns
// the count.
func checkAdmitted(t *testing.T, outs []outcome, rate, burst, share float64) int {
	t.Helper()
	admitted, rejected := 0, 0
	for _, o := range outs {
		switch {
		case o.err != nil:
			t.Fatalf("request %d: %v", o.i, o.err)
		case o.status >= 200 && o.status < 300:
			admitted++
		case o.status == http.StatusTooManyRequests:
			rejected++
		default:
			t.Fatalf("request %d: status %d", o.i, o.status)
		}
	}
	hi, lo := upperBound(outs, rate, burst), lowerBound(outs, rate, burst)
	t.Logf("%d requests: %d admitted, %d rejected; bounds [%.1f, %.1f]", len(outs), admitted, rejected, lo, hi)
	if float64(admitted) > hi {
		t.Errorf("admitted %d, more than burst + rate·t = %.1f", admitted, hi)
	}
	if share > 0 && float64(admitted) < share*lo {
		t.Errorf("admitted %d, fewer than %.0f %% of burst + rate·t = %.1f", admitted, share*100, lo)
	}
	return admitted
}

// fetchToken gets a bearer token for the bootstrap client through base.
func fetchToken(t *testing.T, hc *http.Client, base string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.SetBasicAuth("e2e", "e2e-secret")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, body, err := do(hc, req)
	if err != nil || status != http.StatusOK {
		t.Fatalf("token: status %d, error %v, body %s", status, err, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: body %s", body)
	}
	return tok.AccessToken
}

// getJSON GETs u with the token and decodes a 200 answer into v.
func getJSON(t *testing.T, hc *http.Client, u, token string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	status, body, err := do(hc, req)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET %s: status %d, error %v, body %s", u, status, err, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", u, err, body)
	}
}

// degraded reports whether the replica at base says in /readyz that its
// limiter decides locally (Redis unreachable), or does not answer.
func degraded(hc *http.Client, base string) bool {
	req, _ := http.NewRequest(http.MethodGet, base+"/readyz", nil)
	_, body, err := do(hc, req)
	var h struct {
		Degraded bool `json:"degraded"`
	}
	return err != nil || json.Unmarshal(body, &h) != nil || h.Degraded
}
