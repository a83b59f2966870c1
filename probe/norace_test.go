//go:build !race

package probe_test

import "testing"

// skipTimingUnderRace does nothing without the race detector.
func skipTimingUnderRace(*testing.T) {}
