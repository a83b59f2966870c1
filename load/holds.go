package load

// Holds for spent windows: with Retry-After honoured, a run also waits
// for a limit's reset when a response (a success as much as a 429) says
// that nothing is left of it, instead of sending into a 429. See the
// package doc ("Holds") for how held requests are counted.

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"ratelab/limit"
)

// windowHolds is a run's picture of the limits its responses advertise:
// one limit.ResetTracker per limit, and per target the limit its last
// response advertised. Every sender of the run whose next request is of a
// target that draws from a spent limit waits for that limit's reset; a
// target whose responses advertise nothing is never held.
//
// Until a target's first response says which limit it draws from, one
// request of it goes alone (its teacher) and the others wait for that
// response: requests sent before it would otherwise be counted against no
// limit, and as many as there are senders could find the quota spent.
//
// A limit is known by the name the response gives the decisive policy
// (draft-11 RateLimit's item, X-RateLimit-Resource), else by its quota
// (X-RateLimit-Limit, inin-ratelimit-allowed): targets that advertise the
// same are taken to share it. That errs towards waiting: a per-resource
// limit, which the headers cannot tell from an endpoint-wide one, holds
// the senders of every resource it covers when one resource's quota is
// spent.
//
// It is safe for concurrent use. A nil *windowHolds holds nothing.
type windowHolds struct {
	mu sync.Mutex
	// byTarget is the limit a target's last response advertised, "" for
	// none; a target not in it has had no response yet.
	byTarget map[*Target]string
	trackers map[string]*limit.ResetTracker
	// teaching holds the targets whose first request is in flight.
	teaching map[*Target]bool
}

func newWindowHolds() *windowHolds {
	return &windowHolds{byTarget: map[*Target]string{}, trackers: map[string]*limit.ResetTracker{},
		teaching: map[*Target]bool{}}
}

// hold is one request's draw on a limit, for observe.
type hold struct {
	key string
	n   uint64 // the tracker's number of the request; 0: none taken
	// teacher: the request is its target's first, sent alone.
	teacher bool
}

// take asks whether a request of t may go at now. When it may, it is
// counted against its limit and wait is 0; otherwise nothing is taken and
// wait is how long to wait before asking again.
func (h *windowHolds) take(t *Target, now time.Time) (hold, time.Duration) {
	if h == nil {
		return hold{}, 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	key, ok := h.byTarget[t]
	switch {
	case !ok && h.teaching[t]:
		return hold{}, limit.PollWait
	case !ok:
		h.teaching[t] = true
		return hold{teacher: true}, 0
	case key == "":
		return hold{}, 0 // the target advertises no limit
	}
	tr := h.trackers[key]
	if d := tr.Wait(now); d > 0 {
		return hold{}, d
	}
	return hold{key: key, n: tr.Take(now)}, 0
}

// observe applies a response of status to a request of t (taken as hd),
// received at received, whose headers hdr say adv (parsed with now =
// received).
func (h *windowHolds) observe(t *Target, hd hold, status int, hdr http.Header, adv *limit.Advertised, received time.Time) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if hd.teacher {
		delete(h.teaching, t)
	}
	if adv.Remaining < 0 && adv.Reset < 0 {
		h.byTarget[t] = "" // no limit advertised: nothing to hold for
		return
	}
	key := adv.Policy
	if key == "" {
		key = "quota " + strconv.FormatInt(adv.Limit, 10)
	}
	h.byTarget[t] = key
	tr := h.trackers[key]
	if tr == nil {
		tr = new(limit.ResetTracker)
		h.trackers[key] = tr
	}
	n := hd.n
	if hd.key != key || n == 0 {
		// The request was counted against another limit (the decisive
		// policy changed), or against none: it is no longer in flight
		// there, and its response is the newest news of this one.
		if old := h.trackers[hd.key]; old != nil && n > 0 {
			if status == http.StatusTooManyRequests {
				old.Abandon(n) // rejected by the other limit
			} else {
				old.Spent(n)
			}
		}
		n = tr.Take(received)
	}
	tr.Observe(n, hdr, adv, received)
}

// abandon says that the request of t taken as hd got no response.
func (h *windowHolds) abandon(t *Target, hd hold) {
	if h == nil || (!hd.teacher && hd.n == 0) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if hd.teacher {
		delete(h.teaching, t)
	}
	if tr := h.trackers[hd.key]; tr != nil {
		tr.Abandon(hd.n)
	}
}

// until returns the latest instant before which some limit holds
// requests, and false when none holds: the open model pauses its
// schedule until then, as it does for a Retry-After.
func (h *windowHolds) until(now time.Time) (time.Time, bool) {
	if h == nil {
		return time.Time{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var latest time.Time
	held := false
	for _, tr := range h.trackers {
		if u, ok := tr.Until(now); ok && u.After(latest) {
			latest, held = u, true
		}
	}
	return latest, held
}

// holdWindow waits, when the limit that t draws from is spent, until it
// resets, and takes the request's draw on it (in w.hold, for do). It
// returns the time waited, and false when the run ended meanwhile.
func (w *worker) holdWindow(stop context.Context, t *Target) (time.Duration, bool) {
	h := w.r.holds
	if h == nil {
		return 0, true
	}
	var waited time.Duration
	for {
		now := time.Now()
		hd, d := h.take(t, now)
		if d <= 0 {
			w.hold = hd
			return waited, true
		}
		if !w.sleepUntil(stop, now.Add(d)) {
			return waited, false
		}
		waited += time.Since(now)
	}
}
