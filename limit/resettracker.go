package limit

import (
	"net/http"
	"time"
)

// ResetTracker is the client side of an advertised quota that resets: a
// client's picture of one limit as the server's responses describe it
// (what remains of it and when it is whole again, in any header dialect
// ParseHeaders reads), so that a client that sees the quota spent waits
// for its reset instead of sending into a 429. Bucket is the client side
// of a GCRA whose parameters are known; a ResetTracker needs none: it
// believes the server's remaining count and reset instant, whatever the
// algorithm behind them, and is right for a fixed window exactly.
//
// The count. Requests are counted when they go out (Take numbers them)
// and responses come back later, in any order: the server may decide a
// request sent later before one sent earlier. Within a window the least
// remaining count r any response gave is the server's count after the
// last of those requests it decided; the requests still in flight may
// have been decided before it (then r counts them already) or after, so
// that r less the requests in flight is what is surely left: the
// tracker's count, exact once nothing is in flight. While it is above 0,
// or unknown (a response that gave no remaining count, or no reset
// instant, says nothing a client can time a wait by), a request may go;
// at 0 it waits for the reset. Every request taken must end in Observe
// or Abandon, or it is counted in flight for ever.
//
// The reset instant. A relative reset (draft-11 t, X-RateLimit-Reset in
// seconds, inin-ratelimit-reset) is counted from when the response was
// received: the server measured it earlier, so the instant is never
// early, and whole seconds rounded up make it late by less than one (the
// earliest instant of the window's responses is kept). An epoch reset
// (GitHub's X-RateLimit-Reset) is an instant on the server's clock: if
// that clock is behind the client's, the client's instant comes early by
// the lag. The tracker bounds the lag from the responses' Date headers: a
// response received at local time L with Date D (whole seconds of the
// server's clock when it answered) has L − D ≥ lag, so the least L − D
// seen is an upper bound on it, exact to the latency once some response
// arrives just after the server's second ticks. It costs up to a second
// of each window: a client that sends only in bursts right after each
// hold receives every response at the same fraction of a second, the
// one its first responses came at, and the bound stays there. An epoch
// reset waits that bound more. Every reset waits HoldMargin more.
//
// After the reset the quota is taken to be whole again (Limit, when a
// response gave it) for the requests sent from then on, and responses to
// requests sent before are ignored; until the first response of the new
// window gives its reset, requests beyond Limit wait a little (PollWait
// at a time) for it, at most ResetLearnTimeout, after which the count is
// unknown again.
//
// The zero ResetTracker knows nothing and holds nothing. It is a plain
// value and is not safe for concurrent use; time is passed to every
// method.
type ResetTracker struct {
	least int64     // the window's least remaining count; -1 unknown
	limit int64     // quota; -1 unknown
	reset time.Time // when the quota is whole again; zero unknown
	epoch bool      // reset came as an epoch instant
	sent  uint64    // requests taken
	done  uint64    // requests answered or abandoned
	// stale: responses to requests numbered up to it are of a window
	// that has reset.
	stale uint64
	init  bool
	// rolled is when the quota was last taken to be whole again, with
	// no reset known yet.
	rolled time.Time
	// lag is the least (received − Date) seen, an upper bound on how far
	// the server's clock is behind; lagKnown says one was seen.
	lag      time.Duration
	lagKnown bool
}

// The tracker's fixed margins.
const (
	// HoldMargin is added to every reset instant: servers that count in
	// milliseconds, and timers, round.
	HoldMargin = time.Millisecond
	// PollWait is how long a request waits at a time, after a reset,
	// for the first response of the new window when the whole quota is
	// already in flight (and, in package load, for a target's first
	// response).
	PollWait = 5 * time.Millisecond
	// ResetLearnTimeout bounds that wait in all: a server that never
	// answers does not stall its clients.
	ResetLearnTimeout = time.Second
)

func (t *ResetTracker) start() {
	if !t.init {
		t.least, t.limit, t.init = -1, -1, true
	}
}

// Left returns the requests the tracker counts as surely left, -1 when it
// does not know.
func (t *ResetTracker) Left() int64 {
	t.start()
	if t.least < 0 {
		return -1
	}
	return max(0, t.least-int64(t.sent-t.done))
}

// Until returns the instant before which the tracker holds requests, and
// false when it holds none now (the quota is not spent, or not known).
func (t *ResetTracker) Until(now time.Time) (time.Time, bool) {
	t.start()
	t.roll(now)
	switch {
	case t.Left() != 0:
		return time.Time{}, false
	case t.reset.IsZero():
		// Rolled, the whole quota in flight, the new reset not known yet.
		return now.Add(PollWait), true
	}
	return t.holdEnd(), true
}

// Wait returns how long a request must wait at now before it may go: 0
// when it may go now.
func (t *ResetTracker) Wait(now time.Time) time.Duration {
	if until, ok := t.Until(now); ok {
		return until.Sub(now)
	}
	return 0
}

// holdEnd is the reset instant with the margins.
func (t *ResetTracker) holdEnd() time.Time {
	end := t.reset.Add(HoldMargin)
	if t.epoch && t.lagKnown {
		end = end.Add(max(0, t.lag))
	}
	return end
}

// roll takes the quota to be whole again once its reset has passed, and
// gives up waiting for the new window's reset after ResetLearnTimeout.
func (t *ResetTracker) roll(now time.Time) {
	if !t.reset.IsZero() && !now.Before(t.holdEnd()) {
		t.least, t.reset, t.rolled, t.stale = t.limit, time.Time{}, now, t.sent
		return
	}
	if t.reset.IsZero() && t.least >= 0 && t.Left() == 0 && now.Sub(t.rolled) >= ResetLearnTimeout {
		t.least = -1
	}
}

// Take counts a request that goes out at now and returns its number, to
// give to Observe with its response. Call it when Wait returns 0.
func (t *ResetTracker) Take(now time.Time) uint64 {
	t.start()
	t.roll(now)
	t.sent++
	return t.sent
}

// Observe applies the response to request n (Take's number), received
// at received, whose headers h say a (ParseHeaders or ParseResponse of h
// with now = received, so that a.Reset counts from received).
func (t *ResetTracker) Observe(n uint64, h http.Header, a *Advertised, received time.Time) {
	t.start()
	if n == 0 || n > t.sent {
		return // not a number Take gave
	}
	t.done++
	epoch := a.Reset >= 0 && EpochReset(h)
	if epoch {
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			if lag := received.Sub(d); !t.lagKnown || lag < t.lag {
				t.lag, t.lagKnown = lag, true
			}
		}
	}
	if n <= t.stale {
		return // a response of a window that has reset
	}
	if a.Limit >= 0 {
		t.limit = a.Limit
	}
	if a.Remaining < 0 || a.Reset < 0 {
		// Nothing to time a wait by: the count is unknown.
		t.least, t.reset = -1, time.Time{}
		return
	}
	reset := received.Add(a.Reset)
	if !t.reset.IsZero() {
		// A reset in whole seconds puts the true one within the second
		// before its instant (less the response's latency): a response
		// whose instant is more than that after the tracked one is of a
		// later window, which has reset without a hold to roll it (the
		// quota was not spent); one whose instant is that much earlier
		// is of an earlier window. Mixing them held a client until the
		// old window's reset, then sent into the new window's 429s (a
		// response at 44.998 said 1 s, one at 45.023 of the next window
		// said 0 remaining: two 429s at 45.998 under -race).
		switch {
		case reset.Add(-windowApart).After(t.reset):
			t.least, t.reset, t.epoch = a.Remaining, reset, epoch
			return
		case reset.Add(windowApart).Before(t.reset):
			return
		}
	}
	if t.least < 0 || a.Remaining < t.least {
		t.least = a.Remaining
	}
	if t.reset.IsZero() || reset.Before(t.reset) {
		t.reset, t.epoch = reset, epoch
	}
}

// windowApart is how far two responses' reset instants must be apart to
// be of different windows: a whole second of rounding and a quarter of
// latency.
const windowApart = 1250 * time.Millisecond

// Abandon says that request n (Take's number) got no response, or was
// rejected by another limit: it used nothing of this one.
func (t *ResetTracker) Abandon(n uint64) {
	if n > 0 && n <= t.sent {
		t.done++
	}
}

// Spent says that request n (Take's number) was admitted but its response
// said nothing of this limit (another one was decisive): it used one of
// what was left.
func (t *ResetTracker) Spent(n uint64) {
	if n == 0 || n > t.sent {
		return
	}
	t.done++
	if n > t.stale && t.least > 0 {
		t.least--
	}
}

// EpochReset reports whether h gives its reset as an instant (Unix
// seconds, as GitHub does) rather than as a delay: the field that
// ParseHeaders reads the reset from holds an epoch.
func EpochReset(h http.Header) bool {
	if _, ok := h["Ratelimit"]; ok {
		return false // draft 11's t and draft 7's reset are delays
	}
	for _, k := range [...]string{"Ratelimit-Reset", "X-Ratelimit-Reset", "Inin-Ratelimit-Reset"} {
		if v, ok := h[k]; ok {
			return isEpoch(v[0])
		}
	}
	return false
}

// isEpoch reports whether a reset value is a Unix time, as parseReset
// tells them apart.
func isEpoch(v string) bool {
	d, ok := parseReset(v, time.Unix(0, 0))
	return ok && d > epochThreshold
}

// epochThreshold: parseReset takes a value above 1e9 for a Unix time.
const epochThreshold = 1e9 * time.Second
