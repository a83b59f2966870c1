package bench

import (
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
)

const (
	// numKeys is how many distinct keys every contender tracks.
	numKeys = 100_000
	// seqLen is the length of the precomputed key sequence, a power of two
	// so that positions wrap with a mask.
	seqLen  = 1 << 20
	seqMask = seqLen - 1
	// zipfS is the Zipf exponent: the hottest key takes about 13% of the
	// choices and half of them go to about 60 keys, as with a few busy
	// tenants among many quiet ones.
	zipfS = 1.1
)

// workload is the precomputed input that every contender walks: the key
// strings and a fixed sequence of choices among them, stored as the chosen
// strings themselves so that choosing a key inside the timed loop is one
// sequential read.
type workload struct {
	keys []string // numKeys key strings, shaped like real partition keys
	seq  []string // seqLen choices from keys, Zipf-distributed
	// next hands each RunParallel goroutine its own starting position.
	next atomic.Uint64
}

func newWorkload() *workload { return newWorkloadKeys(numKeys) }

// newWorkloadKeys is newWorkload over n keys.
func newWorkloadKeys(n int) *workload {
	w := &workload{keys: make([]string, n), seq: make([]string, seqLen)}
	for i := range w.keys {
		// 32 characters, like "org-<uuid-ish>/script-<id>".
		w.keys[i] = "org-" + pad8(uint64(i)*2654435761) + "/script-" + pad8(uint64(i))
	}
	// A fixed seed: every contender, every run, sees the same sequence.
	r := rand.New(rand.NewPCG(2026, 2))
	z := rand.NewZipf(r, zipfS, 1, uint64(n-1))
	// Zipf ranks would make the hottest keys the lowest indexes, allocated
	// next to each other; a fixed permutation spreads them over the key
	// space and the heap, the way real tenant ids are spread.
	perm := r.Perm(n)
	for i := range w.seq {
		w.seq[i] = w.keys[perm[z.Uint64()]]
	}
	return w
}

// pad8 formats the low 32 bits of v as 8 hex digits.
func pad8(v uint64) string {
	s := strconv.FormatUint(v&0xffffffff, 16)
	for len(s) < 8 {
		s = "0" + s
	}
	return s
}

// start returns a starting position in seq for one goroutine, far from
// every other goroutine's, so that parallel goroutines do not walk the same
// keys in lockstep.
func (w *workload) start() uint64 {
	return w.next.Add(seqLen/8+7919) & seqMask
}

// key returns the key at position pos of the sequence.
func (w *workload) key(pos uint64) string { return w.seq[pos&seqMask] }

// heapBytes returns the live heap after a full collection.
func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// measureBytesPerKey runs fill, which must make its store track every key
// of the workload (n entries in all), and returns the heap growth per entry.
// The store must stay reachable after fill returns (fill closes over it).
func measureBytesPerKey(n int, fill func()) float64 {
	before := heapBytes()
	fill()
	after := heapBytes()
	if after < before {
		return 0
	}
	return float64(after-before) / float64(n)
}

// counter sums per-goroutine admission counts for the "admit%" metric,
// which shows that every contender saw the same mix of admissions and
// rejections.
type counter struct{ ops, admitted atomic.Int64 }

func (c *counter) add(ops, admitted int64) {
	c.ops.Add(ops)
	c.admitted.Add(admitted)
}

func (c *counter) report(b *testing.B) {
	if ops := c.ops.Load(); ops > 0 {
		b.ReportMetric(100*float64(c.admitted.Load())/float64(ops), "admit%")
	}
}
