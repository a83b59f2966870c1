//go:build race

package probe_test

// raceEnabled reports whether the race detector is on: it slows the
// in-process client and server several times, below the sending rates the
// 500/s cases need.
const raceEnabled = true
