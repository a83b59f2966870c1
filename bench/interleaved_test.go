package bench

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// interleaveChunk is how many decisions a contender takes before the next
// contender's turn in BenchmarkMemoryInterleaved.
const interleaveChunk = 10_000

// BenchmarkMemoryInterleaved runs the contenders of BenchmarkMemory in
// turns of interleaveChunk decisions, so that they share the same moments
// of a shared machine's load; BenchmarkMemory runs them one after the
// other, and on a machine whose load drifts over seconds their numbers can
// differ by more than the contenders do. Each op is one round (every
// contender takes one turn, starting with a different one each round);
// the metrics are each contender's ns per decision, "<name>-ns/dec", and
// the ratios that the targets in RESULTS.md name.
func BenchmarkMemoryInterleaved(b *testing.B) {
	// A turn is interleaveChunk decisions split over the goroutines.
	perGoroutine := func(g int) int { return interleaveChunk / g }
	interleave(b, newWorkload(), memoryContenders(), runtime.GOMAXPROCS(0), perGoroutine, 0,
		func(b *testing.B, decisions int, elapsed map[string]time.Duration, _ map[string]int) {
			perDecision := map[string]float64{}
			for name, d := range elapsed {
				perDecision[name] = float64(d.Nanoseconds()) / float64(decisions)
				b.ReportMetric(perDecision[name], name+"-ns/dec")
			}
			if x := perDecision["xtimerate-map"]; x > 0 {
				b.ReportMetric(perDecision["ratelab-1tier"]/x, "1tier/xtimerate")
				b.ReportMetric(perDecision["ratelab-4tiers"]/(4*x), "4tiers/4xtimerate")
			}
			// Issue 12: a window decision costs no more than a GCRA one
			// (target ≤ 1).
			if g := perDecision["ratelab-1tier"]; g > 0 {
				b.ReportMetric(perDecision["ratelab-1tier-fixed-window"]/g, "fixed/gcra")
				b.ReportMetric(perDecision["ratelab-1tier-sliding-window"]/g, "sliding/gcra")
			}
			if gl := perDecision["golimiter"]; gl > 0 {
				b.ReportMetric(perDecision["ratelab-1tier"]/gl, "1tier/golimiter")
			}
		})
}

// interleave runs the contenders cs in turns, /serial on one goroutine and
// /parallel on goroutines, each goroutine taking perGoroutine(g) decisions
// per turn when g goroutines share it. Each op is one round: every
// contender takes one turn, starting with a different one each round. It
// hands report the decisions each contender took in all, the time its
// turns took and how many of its decisions were admitted. Before the
// first sub-benchmark, every contender takes warm untimed turns on all
// the goroutines.
func interleave(b *testing.B, w *workload, cs []contender, goroutines int, perGoroutine func(g int) int, warm int,
	report func(b *testing.B, decisions int, elapsed map[string]time.Duration, admitted map[string]int)) {
	type entry struct {
		c        contender
		workers  []worker // one per goroutine; [0] alone when serial
		pos      []uint64
		elapsed  time.Duration
		admitted int
	}
	es := make([]*entry, len(cs))
	for i, c := range cs {
		newWorker, _, release := c.open(b, w)
		defer release()
		e := &entry{c: c}
		for range goroutines {
			e.workers = append(e.workers, newWorker())
			e.pos = append(e.pos, w.start())
		}
		es[i] = e
	}
	for range warm {
		for _, e := range es {
			runTurn(e.workers, e.pos, e.c.width, perGoroutine(goroutines))
		}
	}
	for _, mode := range []string{"serial", "parallel"} {
		b.Run(mode, func(b *testing.B) {
			g := 1
			if mode == "parallel" {
				g = goroutines
			}
			n := perGoroutine(g)
			for _, e := range es {
				e.elapsed, e.admitted = 0, 0
			}
			b.ResetTimer()
			for round := range b.N {
				for k := range es {
					e := es[(round+k)%len(es)]
					start := time.Now()
					e.admitted += runTurn(e.workers[:g], e.pos[:g], e.c.width, n)
					e.elapsed += time.Since(start)
				}
			}
			b.StopTimer()
			elapsed, admitted := map[string]time.Duration{}, map[string]int{}
			for _, e := range es {
				elapsed[e.c.name], admitted[e.c.name] = e.elapsed, e.admitted
			}
			b.ReportMetric(0, "ns/op") // a round's time is not a figure of merit
			report(b, b.N*g*n, elapsed, admitted)
		})
	}
}

// runTurn takes n decisions on each of len(workers) goroutines (on the
// calling goroutine when there is one worker) and returns how many were
// admitted.
func runTurn(workers []worker, pos []uint64, width uint64, n int) int {
	if len(workers) == 1 {
		work, p, admitted := workers[0], pos[0], 0
		for range n {
			if work(p) {
				admitted++
			}
			p += width
		}
		pos[0] = p
		return admitted
	}
	var wg sync.WaitGroup
	counts := make([]int, len(workers))
	for i := range workers {
		wg.Go(func() {
			work, p := workers[i], pos[i]
			for range n {
				if work(p) {
					counts[i]++
				}
				p += width
			}
			pos[i] = p
		})
	}
	wg.Wait()
	total := 0
	for _, c := range counts {
		total += c
	}
	return total
}
