package limit_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"ratelab/limit"
)

// t0 is a whole second, as a fixed window aligned to the epoch starts.
var rt0 = time.Unix(1_800_000_000, 0)

func at(ms int) time.Time { return rt0.Add(time.Duration(ms) * time.Millisecond) }

// xHeaders is what a server of the x-ratelimit dialect says: the quota,
// what remains, and the seconds until the reset.
func xHeaders(limit, remaining, reset int) http.Header {
	h := http.Header{}
	if limit >= 0 {
		h.Set("X-RateLimit-Limit", strconv.Itoa(limit))
	}
	if remaining >= 0 {
		h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	}
	if reset >= 0 {
		h.Set("X-RateLimit-Reset", strconv.Itoa(reset))
	}
	return h
}

func observe(tr *limit.ResetTracker, n uint64, h http.Header, received time.Time) {
	a := limit.ParseHeaders(h, received)
	tr.Observe(n, h, &a, received)
}

// TestResetTrackerWindow walks a window of 3 per 5 s that two senders
// share: with the third request in flight nothing is surely left, and the
// tracker holds until the reset counted from the first response, whatever
// a response decided earlier says later; then it lets the whole quota go
// again and holds the fourth request of the new window until its first
// response tells the new reset.
func TestResetTrackerWindow(t *testing.T) {
	var tr limit.ResetTracker
	if d := tr.Wait(at(0)); d != 0 {
		t.Fatalf("an empty tracker holds %v", d)
	}
	n1 := tr.Take(at(0))
	n2 := tr.Take(at(0))
	observe(&tr, n1, xHeaders(3, 2, 5), at(10))
	if got := tr.Left(); got != 1 {
		t.Fatalf("after 1 of 3 and one more in flight: %d left, want 1", got)
	}
	n3 := tr.Take(at(20))
	if d := tr.Wait(at(20)); d != 0 {
		// Left counts the responses still to come: 0 left, and the
		// window's reset known from n1's response.
		if want := 5010*time.Millisecond + limit.HoldMargin - 20*time.Millisecond; d != want {
			t.Fatalf("with the quota in flight, wait %v, want %v", d, want)
		}
	} else {
		t.Fatal("with 3 of 3 sent the tracker lets a fourth go")
	}
	observe(&tr, n3, xHeaders(3, 0, 5), at(30))
	// An older response arriving later changes nothing.
	observe(&tr, n2, xHeaders(3, 1, 5), at(40))
	if got := tr.Left(); got != 0 {
		t.Fatalf("after the stale response: %d left, want 0", got)
	}
	// The earliest reset of the window's responses: n1's, 5 s from 10 ms.
	end := at(5010).Add(limit.HoldMargin)
	if d := tr.Wait(at(1000)); d != end.Sub(at(1000)) {
		t.Fatalf("wait at 1 s %v, want %v (the reset counted from the response)", d, end.Sub(at(1000)))
	}
	// At the reset the whole quota goes again, without waiting for a
	// response.
	for i := range 3 {
		if d := tr.Wait(end); d != 0 {
			t.Fatalf("request %d of the new window waits %v", i+1, d)
		}
		tr.Take(end)
	}
	if d := tr.Wait(end); d != limit.PollWait {
		t.Fatalf("a fourth request before the new window's first response waits %v, want %v", d, limit.PollWait)
	}
	// Nobody answers: after ResetLearnTimeout the count is unknown.
	if d := tr.Wait(end.Add(limit.ResetLearnTimeout)); d != 0 {
		t.Fatalf("after %v without an answer the tracker still holds %v", limit.ResetLearnTimeout, d)
	}
}

// TestResetTrackerNoHold: a remaining count above 0, a reset without a
// remaining count, a remaining count without a reset, and no headers at
// all hold nothing.
func TestResetTrackerNoHold(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Header
	}{
		{"remaining above 0", xHeaders(10, 4, 5)},
		{"reset without remaining", xHeaders(10, -1, 5)},
		{"remaining 0 without reset", xHeaders(10, 0, -1)},
		{"no headers", http.Header{}},
	} {
		var tr limit.ResetTracker
		n := tr.Take(at(0))
		observe(&tr, n, tc.h, at(10))
		if d := tr.Wait(at(20)); d != 0 {
			t.Errorf("%s: holds %v", tc.name, d)
		}
	}
}

// TestResetTrackerEpoch: GitHub's epoch reset is the instant itself, plus
// the bound on the server's clock lag that the Date headers give.
func TestResetTrackerEpoch(t *testing.T) {
	h := http.Header{}
	h.Set("x-ratelimit-limit", "20")
	h.Set("x-ratelimit-remaining", "0")
	h.Set("x-ratelimit-reset", strconv.FormatInt(at(5000).Unix(), 10))
	if !limit.EpochReset(h) {
		t.Fatal("EpochReset: false for an epoch x-ratelimit-reset")
	}
	if limit.EpochReset(xHeaders(20, 0, 5)) {
		t.Fatal("EpochReset: true for a reset of 5 s")
	}
	for _, tc := range []struct {
		name     string
		date     time.Time // the server's Date
		received time.Time
		want     time.Time
	}{
		// The server answered at 2.0xx s on its clock and the client
		// received it at 2.040 s: the lag is at most 40 ms.
		{"clocks agree", at(2000), at(2040), at(5040)},
		// The server's clock is 1.5 s behind: Date 1 s, received 2.6 s.
		{"server behind", at(1000), at(2600), at(6600)},
		// The server's clock is ahead: no lag to wait for.
		{"server ahead", at(3000), at(2100), at(5000)},
	} {
		var tr limit.ResetTracker
		n := tr.Take(at(2000))
		hh := h.Clone()
		hh.Set("Date", tc.date.UTC().Format(http.TimeFormat))
		observe(&tr, n, hh, tc.received)
		until, ok := tr.Until(tc.received)
		if want := tc.want.Add(limit.HoldMargin); !ok || !until.Equal(want) {
			t.Errorf("%s: holds until %v (%v), want %v", tc.name, until.Sub(rt0), ok, want.Sub(rt0))
		}
	}
}

// TestResetTrackerUnheldRollover: a window of 20 per 5 s whose quota was
// not spent rolls over with no hold to notice it. A response of the old
// window (sent 2 ms before its end: "1 s") must not set the hold of the
// new one, whose responses say 5 s, nor lend it its count; a response of
// the old window arriving after the new one's changes nothing.
func TestResetTrackerUnheldRollover(t *testing.T) {
	var tr limit.ResetTracker
	old := tr.Take(at(-2))
	observe(&tr, old, xHeaders(20, 17, 1), at(-1))
	var ns []uint64
	for i := range 20 {
		ns = append(ns, tr.Take(at(i)))
	}
	for i, n := range ns {
		observe(&tr, n, xHeaders(20, 19-i, 5), at(i+1))
	}
	end := at(5001).Add(limit.HoldMargin)
	if d := tr.Wait(at(30)); d != end.Sub(at(30)) {
		t.Fatalf("wait %v, want %v (until the new window's reset, not the old one's at %v)", d, end.Sub(at(30)), at(999))
	}
	late := tr.Take(at(-3)) // numbered after, but of the old window
	observe(&tr, late, xHeaders(20, 16, 1), at(40))
	if d := tr.Wait(at(50)); d != end.Sub(at(50)) {
		t.Fatalf("after a late response of the old window: wait %v, want %v", d, end.Sub(at(50)))
	}
}
