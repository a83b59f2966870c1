package report

import (
	"math"
	"strconv"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// ErrorStatus is the status_counts key of results that got no HTTP
// response (network errors, timeouts).
const ErrorStatus = "error"

// Summary is the outcome of a load test: what Aggregator.Summary computes
// and what the writers print. Its JSON form is the --json output. Latencies
// are float milliseconds, times float seconds.
type Summary struct {
	// Title and Model repeat the Config's.
	Title string `json:"title,omitempty"`
	Model string `json:"model,omitempty"`
	// Start is time zero of the test (the zero time when nothing was
	// recorded).
	Start time.Time `json:"start"`
	// Requests counts every result, whatever its outcome (a flow's
	// transaction samples excepted: they are no requests).
	Requests int64 `json:"requests"`
	// DurationS runs from Start to the end of the last response.
	DurationS float64 `json:"duration_s"`
	// AchievedRPS is the send rate: (Requests−1) divided by the time from
	// the first send to the last, or Requests/DurationS when all were sent
	// at one instant.
	AchievedRPS float64 `json:"achieved_rps"`
	// TargetRPS is the rate aimed at; nil (null) when there was none.
	TargetRPS *float64 `json:"target_rps"`
	// StatusCounts maps an HTTP status ("200", "429") or ErrorStatus to
	// its count.
	StatusCounts map[string]int64 `json:"status_counts"`
	// Errors counts results without an HTTP response.
	Errors int64 `json:"errors"`
	// Latency is measured from the intended send time; ServiceTime from the
	// actual send time.
	Latency     Percentiles `json:"latency_ms"`
	ServiceTime Percentiles `json:"service_time_ms"`
	// SendLag is how late requests left against their schedule (actual −
	// intended send time): the pacer's accuracy. Null when nothing was
	// paced (every request left when it was meant to, by construction).
	SendLag   *Percentiles `json:"send_lag_ms"`
	RateLimit RateLimit    `json:"rate_limit"`
	// Dropped counts scheduled requests never sent for lack of a worker.
	Dropped  int64    `json:"dropped"`
	Timeline []Second `json:"timeline"`
}

// Percentiles are latency percentiles in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// RateLimit is what the test learned about the rate limits it met.
type RateLimit struct {
	// Count429 and Share429 count the 429 responses, absolutely and as a
	// fraction (0 to 1) of all requests.
	Count429 int64   `json:"count_429"`
	Share429 float64 `json:"share_429"`
	// First429Request is the Seq (send index, from 0) of the first request
	// answered 429, so it is also the number of requests sent before it;
	// First429S is when it was sent, in seconds from the start. Both are nil
	// without a 429.
	First429Request *uint64  `json:"first_429_request"`
	First429S       *float64 `json:"first_429_s"`
	// RetryAfterS is the range of Retry-After values seen, in seconds; nil
	// when no response carried one.
	RetryAfterS *Range `json:"retry_after_s"`
	// ByPolicy counts 429s by the policy the response named; 429s that
	// named none are not in it.
	ByPolicy map[string]int64 `json:"by_policy"`
	// LastRemaining is the remaining quota advertised by the last request
	// sent that carried one; nil when none did.
	LastRemaining *int64 `json:"last_remaining"`
	// RecoveryS describes the time from a 429 until the next success (see
	// the package documentation); nil when no episode recovered.
	RecoveryS *Recovery `json:"recovery_s"`
	// Unrecovered is true when the test ended inside a 429 episode.
	Unrecovered bool `json:"unrecovered"`
}

// Range is a closed interval of float seconds.
type Range struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// Recovery summarizes recovery times after 429s, in seconds.
type Recovery struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// Second is one second of the timeline: the requests sent during it.
type Second struct {
	// Second is the row's index: seconds since the start.
	Second   int   `json:"second"`
	Requests int64 `json:"requests"`
	// Status classes; C4xx includes the 429s, which C429 counts again.
	C2xx   int64 `json:"2xx"`
	C3xx   int64 `json:"3xx"`
	C4xx   int64 `json:"4xx"`
	C5xx   int64 `json:"5xx"`
	Errors int64 `json:"errors"`
	C429   int64 `json:"429"`
	// Latency percentiles of the second's requests (two significant
	// digits), from the intended send time; zero when there were none.
	Latency SecondLatency `json:"latency_ms"`
	// Remaining is the last remaining quota advertised in the second; nil
	// when none was.
	Remaining *int64 `json:"remaining"`
	// RetryAfterS is the largest Retry-After seen in the second; nil when
	// none was.
	RetryAfterS *float64 `json:"retry_after_s"`
}

// SecondLatency are a timeline row's latency percentiles in milliseconds.
type SecondLatency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50: ms(h.ValueAtPercentile(50)),
		P90: ms(h.ValueAtPercentile(90)),
		P99: ms(h.ValueAtPercentile(99)),
		Max: ms(h.Max()),
	}
}

// Summary computes the summary of everything recorded so far. It may be
// called while results are still being added.
func (a *Aggregator) Summary() *Summary {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &Summary{
		Title:        a.cfg.Title,
		Model:        a.cfg.Model,
		Requests:     a.n,
		StatusCounts: make(map[string]int64, len(a.status)),
		Errors:       a.errors,
		Latency:      percentiles(a.latency),
		ServiceTime:  percentiles(a.service),
		Dropped:      a.dropped,
		Timeline:     make([]Second, 0, len(a.seconds)),
	}
	if a.startSet {
		s.Start = a.start
	}
	if a.paced {
		lag := percentiles(a.lag)
		s.SendLag = &lag
	}
	if a.cfg.TargetRPS > 0 {
		t := a.cfg.TargetRPS
		s.TargetRPS = &t
	}
	for code, c := range a.status {
		k := ErrorStatus
		if code != 0 {
			k = strconv.Itoa(code)
		}
		s.StatusCounts[k] += c
	}
	if a.n > 0 {
		s.DurationS = secs(max(a.lastEnd.Sub(a.start), 0))
		if span := a.lastSt.Sub(a.firstSt); a.n > 1 && span > 0 {
			s.AchievedRPS = round6(float64(a.n-1) / span.Seconds())
		} else if s.DurationS > 0 {
			s.AchievedRPS = round6(float64(a.n) / s.DurationS)
		}
	}

	rl := &s.RateLimit
	rl.Count429 = a.count429
	if a.n > 0 {
		rl.Share429 = round6(float64(a.count429) / float64(a.n))
	}
	if a.first429.ok {
		seq, at := a.first429.seq, secs(max(a.first429.start.Sub(a.start), 0))
		rl.First429Request, rl.First429S = &seq, &at
	}
	if a.retry.ok {
		rl.RetryAfterS = &Range{Min: secs(a.retry.min), Max: secs(a.retry.max)}
	}
	rl.ByPolicy = make(map[string]int64, len(a.byPolicy))
	for p, c := range a.byPolicy {
		rl.ByPolicy[p] = c
	}
	if a.remaining.ok {
		v := a.remaining.v
		rl.LastRemaining = &v
	}
	if r := a.recovery; r.count > 0 {
		rl.RecoveryS = &Recovery{
			Count: r.count,
			Min:   secs(r.min),
			Max:   secs(r.max),
			Mean:  secs(r.sum / time.Duration(r.count)),
		}
	}
	rl.Unrecovered = a.episodeOpen

	pcts := []float64{50, 90, 99}
	for i, row := range a.seconds {
		out := Second{Second: i}
		if row != nil {
			out.Requests = row.requests
			out.C2xx, out.C3xx, out.C4xx, out.C5xx = row.c2xx, row.c3xx, row.c4xx, row.c5xx
			out.Errors, out.C429 = row.errors, row.c429
			if row.lat.TotalCount() > 0 {
				v := row.lat.ValueAtPercentilesSlice(pcts)
				out.Latency = SecondLatency{P50: ms(v[0]), P90: ms(v[1]), P99: ms(v[2])}
			}
			if row.remaining.ok {
				v := row.remaining.v
				out.Remaining = &v
			}
			if row.retry.ok {
				v := secs(row.retry.max)
				out.RetryAfterS = &v
			}
		}
		s.Timeline = append(s.Timeline, out)
	}
	return s
}

// round6 rounds to six decimals, so that reports are stable.
func round6(f float64) float64 {
	return math.Round(f*1e6) / 1e6
}
