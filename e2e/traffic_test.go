package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
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

// lowerBound is the least a GCRA limit of rate and burst, fresh when
// outs began, must admit over outs when every request is over the limit,
// and the time taken off for spans in which it may have gone unpressed.
//
// In GCRA terms (limit/doc.go), each admission moves the key's TAT by
// 1/rate, or further when it finds the TAT in the past: the bucket had
// filled and spilled (waste). A rejection at instant d leaves TAT beyond
// d + (burst − 1)/rate, so from the first decision d₀ to the last
// rejection d₁ the limit admits at least burst − 1 + rate·(d₁ − d₀ −
// waste). Waste needs a span without decisions: longer than 1/rate after
// any admission, longer than (burst − 1)/rate after a rejection. On a
// busy machine such spans happen through no fault of the limiter (the
// loop, nginx or a replica stalls), so the bound takes them off, in the
// worst case: a request is decided somewhere between its send and its
// answer, so after a decision at instant a the next one may be as late as
// the earliest answer to a request sent after a. Until the first
// rejection (at the latest, the first answer to a rejected request) any
// decision counts, with the short span; from there on only rejections,
// with the long one. d₀ is taken at the first answer, d₁ at the last send
// of a rejected request.
func lowerBound(outs []outcome, rate, burst float64) (float64, time.Duration) {
	var all, rej []outcome
	for _, o := range outs {
		if o.err != nil {
			continue
		}
		all = append(all, o)
		if o.status == http.StatusTooManyRequests {
			rej = append(rej, o)
		}
	}
	if len(rej) == 0 {
		return 0, 0
	}
	allNext, rejNext := earliestAnswers(all), earliestAnswers(rej)
	d0, first, d1 := allNext[0], rejNext[0], rej[len(rej)-1].sent
	perRequest := time.Duration(float64(time.Second) / rate)
	afterRejection := time.Duration((burst - 1) / rate * float64(time.Second))
	idle := unpressed(all, allNext, d0, first, perRequest) + unpressed(rej, rejNext, first, d1, afterRejection)
	return burst - 1 + rate*max(0, (d1.Sub(d0)-idle).Seconds()), idle
}

// earliestAnswers sorts outs by send and returns, for each i, the
// earliest answer among outs[i:].
func earliestAnswers(outs []outcome) []time.Time {
	slices.SortFunc(outs, func(a, b outcome) int { return a.sent.Compare(b.sent) })
	next := make([]time.Time, len(outs))
	for i := len(outs) - 1; i >= 0; i-- {
		next[i] = outs[i].recv
		if i+1 < len(outs) && next[i+1].Before(next[i]) {
			next[i] = next[i+1]
		}
	}
	return next
}

// unpressed sums, over the worst-case chain of decisions on outs (sorted
// by send, next from earliestAnswers) from instant a to until, the part of
// each span between two decisions beyond span.
func unpressed(outs []outcome, next []time.Time, a, until time.Time, span time.Duration) time.Duration {
	var idle time.Duration
	for i := 0; a.Before(until); {
		for i < len(outs) && !outs[i].sent.After(a) {
			i++
		}
		if i == len(outs) {
			break
		}
		h := next[i] // an answer to a request sent after a: later than a
		if h.After(until) {
			h = until
		}
		if gap := h.Sub(a); gap > span {
			idle += gap - span
		}
		a = h
	}
	return idle
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
	hi := upperBound(outs, rate, burst)
	lo, idle := lowerBound(outs, rate, burst)
	t.Logf("%d requests: %d admitted, %d rejected; bounds [%.1f, %.1f] (the loop idle for %v)", len(outs), admitted, rejected, lo, hi, idle)
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
	return clientToken(t, hc, base, "e2e", "e2e-secret")
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
