package report

import (
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"ratelab/load"
)

// Histogram geometry. Values are microseconds from 1 µs to one hour; larger
// values are recorded as one hour, so a hung request still counts.
const (
	histLowest   = 1
	histHighest  = int64(time.Hour / time.Microsecond)
	histDigits   = 3
	secondDigits = 2
	// maxTimeline bounds the timeline: a result that claims to start more
	// than a day after the test's start (a clock jump, a corrupt file)
	// counts in the totals but gets no timeline row, so one bad line cannot
	// make the aggregator allocate without bound.
	maxTimeline = 24 * 60 * 60
	// rateWindow is how many complete seconds the progress line's current
	// rate averages over.
	rateWindow = 5
)

// Config configures an Aggregator.
type Config struct {
	// Start is time zero of the test: the origin of the timeline and of
	// first_429_s. The zero value means the intended send time of the first
	// result added.
	Start time.Time
	// TargetRPS is the request rate the test aimed at, in requests per
	// second; 0 means the test had no target (target_rps is null).
	TargetRPS float64
	// Model names the workload model ("open", "closed", a JMeter timer
	// mode…); it is shown in reports and may be empty.
	Model string
	// Title names the test in the HTML and text reports; may be empty.
	Title string
}

// Aggregator accumulates load.Result values into the statistics of a
// Summary. Create one with NewAggregator; the zero value is not usable.
// All methods are safe for concurrent use. Add is cheap and allocates
// nothing in the steady state; memory grows with the test's duration in
// seconds, not with the number of requests.
type Aggregator struct {
	mu  sync.Mutex
	cfg Config
	state
}

// state is everything an Aggregator has recorded, apart from its lock.
type state struct {
	start    time.Time
	startSet bool

	n        int64
	status   map[int]int64
	errors   int64
	latency  *hdrhistogram.Histogram // µs, from the intended send time
	service  *hdrhistogram.Histogram // µs, from the actual send time
	lag      *hdrhistogram.Histogram // µs, actual − intended send time
	paced    bool                    // some result was sent off its Intended instant
	firstSt  time.Time               // earliest Start seen
	lastSt   time.Time               // latest Start seen
	lastEnd  time.Time               // latest Start+Elapsed seen
	dropped  int64
	count429 int64
	first429 struct {
		ok    bool
		seq   uint64
		start time.Time
	}
	retry     minMax
	byPolicy  map[string]int64
	remaining latest
	// Recovery episodes (see the package documentation).
	episodeOpen  bool
	episodeStart time.Time
	recovery     durationStats

	seconds []*second
}

// second is one row of the timeline.
type second struct {
	requests, c2xx, c3xx, c4xx, c5xx, errors, c429 int64
	lat                                            *hdrhistogram.PackedHistogram
	remaining                                      latest
	retry                                          minMax
}

// latest keeps the value of the most recently sent result that carried
// one: by Start time, then by Seq, so the answer does not depend on the
// order results arrive in.
type latest struct {
	ok  bool
	v   int64
	at  time.Time
	seq uint64
}

func (l *latest) observe(v int64, at time.Time, seq uint64) {
	if !l.ok || at.After(l.at) || (at.Equal(l.at) && seq >= l.seq) {
		*l = latest{ok: true, v: v, at: at, seq: seq}
	}
}

func (l *latest) merge(o latest) {
	if o.ok {
		l.observe(o.v, o.at, o.seq)
	}
}

// minMax tracks the extremes of a duration.
type minMax struct {
	ok       bool
	min, max time.Duration
}

func (m *minMax) observe(d time.Duration) {
	if !m.ok {
		*m = minMax{ok: true, min: d, max: d}
		return
	}
	m.min = min(m.min, d)
	m.max = max(m.max, d)
}

func (m *minMax) merge(o minMax) {
	if o.ok {
		m.observe(o.min)
		m.observe(o.max)
	}
}

// durationStats keeps count, extremes and sum of a duration.
type durationStats struct {
	minMax
	count int64
	sum   time.Duration
}

func (s *durationStats) observe(d time.Duration) {
	s.minMax.observe(d)
	s.count++
	s.sum += d
}

func (s *durationStats) merge(o durationStats) {
	s.minMax.merge(o.minMax)
	s.count += o.count
	s.sum += o.sum
}

// NewAggregator returns an empty Aggregator.
func NewAggregator(cfg Config) *Aggregator {
	a := &Aggregator{cfg: cfg, state: state{
		status:   make(map[int]int64),
		byPolicy: make(map[string]int64),
		latency:  hdrhistogram.New(histLowest, histHighest, histDigits),
		service:  hdrhistogram.New(histLowest, histHighest, histDigits),
		lag:      hdrhistogram.New(histLowest, histHighest, histDigits),
	}}
	if !cfg.Start.IsZero() {
		a.start, a.startSet = cfg.Start, true
	}
	return a
}

// micros converts a duration to whole microseconds within the histogram's
// range.
func micros(d time.Duration) int64 {
	us := int64(d / time.Microsecond)
	return min(max(us, 0), histHighest)
}

// latencyOf is r.Latency(), guarded against a result without an intended
// send time.
func latencyOf(r *load.Result) time.Duration {
	if r.Intended.IsZero() || r.Intended.After(r.Start) {
		return r.Elapsed
	}
	return r.Latency()
}

// Add records one result. It keeps no reference to r. A flow's
// transaction sample is not a request, and is not counted: its requests
// are, on their own results.
func (a *Aggregator) Add(r *load.Result) {
	if r.Transaction {
		return
	}
	lat, svc := micros(latencyOf(r)), micros(r.Elapsed)
	end := r.Start.Add(r.Elapsed)

	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.startSet {
		a.start, a.startSet = r.Intended, true
		if r.Intended.IsZero() {
			a.start = r.Start
		}
	}
	if a.n == 0 || r.Start.Before(a.firstSt) {
		a.firstSt = r.Start
	}
	if a.n == 0 || r.Start.After(a.lastSt) {
		a.lastSt = r.Start
	}
	if a.n == 0 || end.After(a.lastEnd) {
		a.lastEnd = end
	}
	a.n++
	a.status[r.Status]++
	// Both values are clamped into range, so recording cannot fail.
	_ = a.latency.RecordValue(lat)
	_ = a.service.RecordValue(svc)
	// An unpaced request has Intended == Start exactly; any other tells
	// that a schedule was at work, and its lag is the pacer's accuracy.
	if !r.Intended.IsZero() {
		a.paced = a.paced || !r.Start.Equal(r.Intended)
		_ = a.lag.RecordValue(micros(r.Start.Sub(r.Intended)))
	}

	if r.Status == 0 {
		a.errors++
	}
	if r.RetryAfter > 0 {
		a.retry.observe(r.RetryAfter)
	}
	if r.Remaining >= 0 {
		a.remaining.observe(r.Remaining, r.Start, r.Seq)
	}
	if r.Status == 429 {
		a.count429++
		if !a.first429.ok || r.Seq < a.first429.seq {
			a.first429.ok, a.first429.seq, a.first429.start = true, r.Seq, r.Start
		}
		if r.Policy != "" {
			a.byPolicy[r.Policy]++
		}
		if !a.episodeOpen {
			a.episodeOpen, a.episodeStart = true, end
		}
	} else if a.episodeOpen && r.Success() && !r.Start.Before(a.episodeStart) {
		a.episodeOpen = false
		a.recovery.observe(end.Sub(a.episodeStart))
	}

	if s := a.secondFor(r.Start); s != nil {
		s.requests++
		switch {
		case r.Status == 0:
			s.errors++
		case r.Status < 300:
			s.c2xx++
		case r.Status < 400:
			s.c3xx++
		case r.Status < 500:
			s.c4xx++
		default:
			s.c5xx++
		}
		if r.Status == 429 {
			s.c429++
		}
		_ = s.lat.RecordValue(lat)
		if r.Remaining >= 0 {
			s.remaining.observe(r.Remaining, r.Start, r.Seq)
		}
		if r.RetryAfter > 0 {
			s.retry.observe(r.RetryAfter)
		}
	}
}

// secondIndex returns the timeline row of instant t, and false when t is
// beyond the timeline's bound.
func (a *state) secondIndex(t time.Time) (int, bool) {
	d := t.Sub(a.start)
	if d < 0 {
		return 0, true
	}
	i := d / time.Second
	if i >= maxTimeline {
		return 0, false
	}
	return int(i), true
}

// secondFor returns the timeline row of instant t, creating it (and the
// rows before it) as needed; nil when t is beyond the timeline's bound.
func (a *state) secondFor(t time.Time) *second {
	i, ok := a.secondIndex(t)
	if !ok {
		return nil
	}
	return a.row(i)
}

func (a *state) row(i int) *second {
	for len(a.seconds) <= i {
		a.seconds = append(a.seconds, nil)
	}
	if a.seconds[i] == nil {
		a.seconds[i] = &second{lat: hdrhistogram.NewPacked(histLowest, histHighest, secondDigits)}
	}
	return a.seconds[i]
}

// SetDropped records how many scheduled requests were never sent because
// no worker was free (open model). It replaces the previous value.
func (a *Aggregator) SetDropped(n int64) {
	a.mu.Lock()
	a.dropped = n
	a.mu.Unlock()
}

// Snapshot is the state of a running test, for the live progress line.
type Snapshot struct {
	// Elapsed is the time since the test's start.
	Elapsed time.Duration
	// Sent counts the results received so far.
	Sent int64
	// Rate is the current rate in requests per second: the average over
	// the last complete seconds (up to five), or Sent/Elapsed in the first
	// second.
	Rate float64
	// Status classes: 2xx, 3xx, 429, other 4xx, 5xx, and network errors.
	OK, Redirect, TooMany, Other4xx, Server, Errors int64
	// P50 and P99 are latency percentiles so far (from the intended send
	// time).
	P50, P99 time.Duration
	// Remaining is the last remaining quota a response advertised; -1 when
	// none did.
	Remaining int64
	// Dropped is the value last given to SetDropped.
	Dropped int64
}

// Snapshot is shorthand for SnapshotAt(time.Now()).
func (a *Aggregator) Snapshot() Snapshot { return a.SnapshotAt(time.Now()) }

// SnapshotAt returns the state of the test at instant now.
func (a *Aggregator) SnapshotAt(now time.Time) Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Snapshot{Sent: a.n, Remaining: -1, Dropped: a.dropped, Errors: a.errors}
	if a.startSet {
		s.Elapsed = max(now.Sub(a.start), 0)
	}
	for code, c := range a.status {
		switch {
		case code == 0:
		case code < 300:
			s.OK += c
		case code < 400:
			s.Redirect += c
		case code == 429:
			s.TooMany += c
		case code < 500:
			s.Other4xx += c
		default:
			s.Server += c
		}
	}
	if a.n > 0 {
		s.P50 = time.Duration(a.latency.ValueAtPercentile(50)) * time.Microsecond
		s.P99 = time.Duration(a.latency.ValueAtPercentile(99)) * time.Microsecond
	}
	if a.remaining.ok {
		s.Remaining = a.remaining.v
	}
	cur := int(s.Elapsed / time.Second)
	if w := min(rateWindow, cur); w > 0 {
		var sum int64
		for i := cur - w; i < cur; i++ {
			if i < len(a.seconds) && a.seconds[i] != nil {
				sum += a.seconds[i].requests
			}
		}
		s.Rate = float64(sum) / float64(w)
	} else if s.Elapsed > 0 {
		s.Rate = float64(a.n) / s.Elapsed.Seconds()
	}
	return s
}

// Merge adds everything other has recorded to a, as if a had been given
// other's results too. Timelines are aligned on their start times: the
// merged start is the earlier one, and the other's rows shift by the
// difference in whole seconds, so they are exact on the wall clock when
// both aggregators have the same Config.Start (as ratelab report gives
// every file it merges) or starts a whole number of seconds apart. other is not changed. Merging an
// aggregator into itself is a no-op.
func (a *Aggregator) Merge(other *Aggregator) {
	if a == other || other == nil {
		return
	}
	o := other.clone()

	a.mu.Lock()
	defer a.mu.Unlock()
	if !o.startSet {
		// other has seen no result and no start: only the drop count.
		a.dropped += o.dropped
		return
	}
	if !a.startSet || o.start.Before(a.start) {
		if a.startSet {
			shift := int(a.start.Sub(o.start) / time.Second)
			if shift > 0 {
				a.seconds = append(make([]*second, shift, shift+len(a.seconds)), a.seconds...)
			}
		}
		a.start, a.startSet = o.start, true
	}
	if o.n > 0 {
		if a.n == 0 || o.firstSt.Before(a.firstSt) {
			a.firstSt = o.firstSt
		}
		if a.n == 0 || o.lastSt.After(a.lastSt) {
			a.lastSt = o.lastSt
		}
		if a.n == 0 || o.lastEnd.After(a.lastEnd) {
			a.lastEnd = o.lastEnd
		}
	}
	a.n += o.n
	for code, c := range o.status {
		a.status[code] += c
	}
	a.errors += o.errors
	a.latency.Merge(o.latency)
	a.service.Merge(o.service)
	a.lag.Merge(o.lag)
	a.paced = a.paced || o.paced
	a.dropped += o.dropped
	a.count429 += o.count429
	// Sequence numbers are a process's own: across aggregators (several
	// machines, or segments of one run) the first 429 is the first sent.
	if o.first429.ok && (!a.first429.ok || o.first429.start.Before(a.first429.start) ||
		(o.first429.start.Equal(a.first429.start) && o.first429.seq < a.first429.seq)) {
		a.first429 = o.first429
	}
	a.retry.merge(o.retry)
	for p, c := range o.byPolicy {
		a.byPolicy[p] += c
	}
	a.remaining.merge(o.remaining)
	a.recovery.merge(o.recovery)
	if o.episodeOpen && !a.episodeOpen {
		a.episodeOpen, a.episodeStart = true, o.episodeStart
	}

	off := int(o.start.Sub(a.start) / time.Second)
	for i, os := range o.seconds {
		if os == nil || i+off >= maxTimeline {
			continue
		}
		s := a.row(i + off)
		s.requests += os.requests
		s.c2xx += os.c2xx
		s.c3xx += os.c3xx
		s.c4xx += os.c4xx
		s.c5xx += os.c5xx
		s.errors += os.errors
		s.c429 += os.c429
		s.lat.Merge(os.lat)
		s.remaining.merge(os.remaining)
		s.retry.merge(os.retry)
	}
}

// clone returns a deep copy of a taken under its lock, so Merge never
// holds two aggregators' locks at once.
func (a *Aggregator) clone() *state {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.state
	c.latency = a.latency.Clone()
	c.service = a.service.Clone()
	c.lag = a.lag.Clone()
	c.status = make(map[int]int64, len(a.status))
	for k, v := range a.status {
		c.status[k] = v
	}
	c.byPolicy = make(map[string]int64, len(a.byPolicy))
	for k, v := range a.byPolicy {
		c.byPolicy[k] = v
	}
	c.seconds = make([]*second, len(a.seconds))
	for i, s := range a.seconds {
		if s != nil {
			cs := *s
			cs.lat = s.lat.Clone()
			c.seconds[i] = &cs
		}
	}
	return &c
}

// ms converts microseconds to float milliseconds.
func ms(us int64) float64 { return float64(us) / 1000 }

// seconds converts a duration to float seconds, rounded to the microsecond
// so that reports are stable.
func secs(d time.Duration) float64 {
	return math.Round(d.Seconds()*1e6) / 1e6
}
