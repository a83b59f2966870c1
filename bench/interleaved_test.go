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
	w := newWorkload()
	cs := memoryContenders()
	type entry struct {
		c       contender
		workers []worker // one per goroutine; [0] alone when serial
		pos     []uint64
		elapsed time.Duration
	}
	procs := runtime.GOMAXPROCS(0)
	es := make([]*entry, len(cs))
	for i, c := range cs {
		newWorker, _, release := c.open(b, w)
		defer release()
		e := &entry{c: c}
		for range procs {
			e.workers = append(e.workers, newWorker())
			e.pos = append(e.pos, w.start())
		}
		es[i] = e
	}
	for _, mode := range []string{"serial", "parallel"} {
		b.Run(mode, func(b *testing.B) {
			g := 1
			if mode == "parallel" {
				g = procs
			}
			for _, e := range es {
				e.elapsed = 0
			}
			b.ResetTimer()
			for round := range b.N {
				for k := range es {
					e := es[(round+k)%len(es)]
					start := time.Now()
					runTurn(e.workers[:g], e.pos[:g], e.c.width)
					e.elapsed += time.Since(start)
				}
			}
			b.StopTimer()
			perDecision := map[string]float64{}
			for _, e := range es {
				v := float64(e.elapsed.Nanoseconds()) / float64(b.N*interleaveChunk)
				perDecision[e.c.name] = v
				b.ReportMetric(v, e.c.name+"-ns/dec")
			}
			b.ReportMetric(0, "ns/op") // a round's time is not a figure of merit
			if x := perDecision["xtimerate-map"]; x > 0 {
				b.ReportMetric(perDecision["ratelab-1tier"]/x, "1tier/xtimerate")
				b.ReportMetric(perDecision["ratelab-4tiers"]/(4*x), "4tiers/4xtimerate")
			}
			if gl := perDecision["golimiter"]; gl > 0 {
				b.ReportMetric(perDecision["ratelab-1tier"]/gl, "1tier/golimiter")
			}
		})
	}
}

// runTurn takes interleaveChunk decisions split over len(workers)
// goroutines (on the calling goroutine when there is one worker).
func runTurn(workers []worker, pos []uint64, width uint64) {
	if len(workers) == 1 {
		work, p := workers[0], pos[0]
		for range interleaveChunk {
			work(p)
			p += width
		}
		pos[0] = p
		return
	}
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			work, p := workers[i], pos[i]
			for range interleaveChunk / len(workers) {
				work(p)
				p += width
			}
			pos[i] = p
		})
	}
	wg.Wait()
}
