//go:build !linux

package load

import "time"

// sleepPrecise sleeps for d; outside Linux it is time.Sleep.
func sleepPrecise(d time.Duration) { time.Sleep(d) }
