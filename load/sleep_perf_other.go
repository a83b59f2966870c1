//go:build !linux

package load

import "time"

// preciseClock is Go's timers outside Linux. A nil *preciseClock is
// ready to use.
type preciseClock struct{}

func newPreciseClock() *preciseClock { return nil }

// sleep sleeps for d.
func (c *preciseClock) sleep(d time.Duration) { time.Sleep(d) }

func (c *preciseClock) close() {}
