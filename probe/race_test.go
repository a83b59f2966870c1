//go:build race

package probe_test

import "testing"

// skipTimingUnderRace skips a test that measures timing accuracy: the race
// detector slows the probe and the server in one process by several times,
// so what such a test would measure is the detector. .ci/run runs this
// package a second time without -race, where these tests run.
func skipTimingUnderRace(t *testing.T) {
	t.Helper()
	t.Skip("timing accuracy is measured without -race (.ci/run runs ./probe again without it)")
}
