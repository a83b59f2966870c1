package report

import "testing"

// BenchmarkAdd measures the per-result cost of the aggregator on the hot
// path, from parallel workers as in a load test.
func BenchmarkAdd(b *testing.B) {
	a := NewAggregator(Config{Start: t0})
	rs := fixture()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			a.Add(rs[i%len(rs)])
			i++
		}
	})
}
