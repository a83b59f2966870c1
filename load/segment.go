package load

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Segment is one of N equal shares of a run, as k6's execution segments
// split a test over machines: segment K of N (1 ≤ K ≤ N) runs, of an open
// schedule, the arrivals i (from 0) with i mod N = K − 1, each at its
// instant in the whole schedule, and of the closed model the threads t
// (from 0) with t mod N = K − 1, each with its number, ramp-up offset and
// loops in the whole run. So N processes given segments 1/N … N/N
// together send exactly the requests of one run, at the same instants
// from a common start (Config.StartAt), and each is deterministic: which
// requests it sends does not depend on the others. Striping by i mod N is
// what k6's striped segments give for equal shares: every segment gets
// every N-th arrival, so a ramp is shared evenly over its whole length.
//
// What cannot be split, and is therefore refused (Validate): a Constant
// Throughput Timer whose threads share one pace (every mode but
// this-thread). What is per process: the shared --data cursor (each
// segment reads the file from its first row), {{.Seq}} (each segment
// counts its own requests), --max-workers, and an open schedule's
// Retry-After pauses (a segment pauses its own arrivals).
//
// The zero Segment is the whole run.
type Segment struct {
	K, N int
}

// ParseSegment reads "K/N", 1 ≤ K ≤ N; "" is the whole run.
func ParseSegment(s string) (Segment, error) {
	if s == "" {
		return Segment{}, nil
	}
	kText, nText, ok := strings.Cut(s, "/")
	k, kerr := strconv.Atoi(strings.TrimSpace(kText))
	n, nerr := strconv.Atoi(strings.TrimSpace(nText))
	if !ok || kerr != nil || nerr != nil {
		return Segment{}, fmt.Errorf("segment %q: want K/N, such as 2/3", s)
	}
	seg := Segment{K: k, N: n}
	if err := seg.Validate(); err != nil {
		return Segment{}, err
	}
	return seg, nil
}

// Validate checks 1 ≤ K ≤ N, or the zero Segment.
func (s Segment) Validate() error {
	if s == (Segment{}) {
		return nil
	}
	if s.N < 1 || s.K < 1 || s.K > s.N {
		return fmt.Errorf("segment %d/%d: want K/N with 1 ≤ K ≤ N", s.K, s.N)
	}
	return nil
}

// Whole reports whether s is the whole run (the zero Segment, or 1/1).
func (s Segment) Whole() bool { return s.N <= 1 }

// Has reports whether arrival or thread i (from 0) is the segment's.
func (s Segment) Has(i uint64) bool {
	return s.Whole() || i%uint64(s.N) == uint64(s.K-1)
}

// Count returns how many of 0 … total−1 are the segment's.
func (s Segment) Count(total int) int {
	if s.Whole() {
		return total
	}
	if total <= s.K-1 {
		return 0
	}
	return (total-s.K)/s.N + 1
}

// Share returns the segment's part of the run, 1/N (1 for the whole).
func (s Segment) Share() float64 {
	if s.Whole() {
		return 1
	}
	return 1 / float64(s.N)
}

// String returns "K/N", or "" for the zero Segment.
func (s Segment) String() string {
	if s == (Segment{}) {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.K, s.N)
}

// validateSegment refuses a segment of a workload that N processes
// cannot split exactly.
func validateSegment(s Segment, w *Workload) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if s.Whole() {
		return nil
	}
	if w.Throughput.Count > 0 && w.ThroughputMode != ThisThread {
		return errors.New("a segment cannot split a Constant Throughput Timer whose threads share one pace (" +
			w.ThroughputMode.String() + "): give each thread its own (this-thread) or use an open schedule (--rate)")
	}
	return nil
}
