package load

import (
	"context"
	"time"
)

// sleeper sleeps until instants on a reused timer. It is used by one
// goroutine at a time.
type sleeper struct {
	t *time.Timer
	// precise, when set, ends each wait on a precise clock instead of the
	// timer: the open model's pacer, a single goroutine, sleeps this way.
	precise *preciseClock
}

func newSleeper() *sleeper {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &sleeper{t: t}
}

// preciseSpan is the last stretch of a precise wait that is slept on the
// precise clock rather than on a Go timer (which may be a millisecond late).
const preciseSpan = 1500 * time.Microsecond

// until sleeps until t and reports false if ctx ended first.
func (s *sleeper) until(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	if s.precise != nil {
		if d > preciseSpan {
			if !s.sleep(ctx, d-preciseSpan) {
				return false
			}
		}
		s.precise.sleep(time.Until(t))
		return ctx.Err() == nil
	}
	return s.sleep(ctx, d)
}

// sleep waits d on the timer, or until ctx ends.
func (s *sleeper) sleep(ctx context.Context, d time.Duration) bool {
	s.t.Reset(d)
	select {
	case <-s.t.C:
		return true
	case <-ctx.Done():
		s.t.Stop()
		return false
	}
}
