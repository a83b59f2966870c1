package report

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"ratelab/load"
)

// TestJTLConcurrentWrites writes from many goroutines at once, as a run's
// workers do through a Sink: under -race this failed while the writer
// needed its caller's lock, and every line must come out whole.
func TestJTLConcurrentWrites(t *testing.T) {
	var b bytes.Buffer
	w := NewJTLWriter(&b)
	sink := w.Sink()
	rs := fixture()
	const goroutines = 8
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for _, r := range rs {
				sink(r)
			}
		})
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != goroutines*len(rs)+1 || lines[0] != JTLHeader {
		t.Fatalf("%d lines, header %q; want %d", len(lines), lines[0], goroutines*len(rs)+1)
	}
	var single bytes.Buffer
	one := NewJTLWriter(&single)
	for _, r := range rs {
		_ = one.Write(r)
	}
	_ = one.Flush()
	want := map[string]int{}
	for _, l := range strings.Split(strings.TrimSuffix(single.String(), "\n"), "\n")[1:] {
		want[l] += goroutines
	}
	got := map[string]int{}
	for _, l := range lines[1:] {
		got[l]++
	}
	for l, n := range want {
		if got[l] != n {
			t.Fatalf("line %q appears %d times, want %d", l, got[l], n)
		}
	}
}

// failAfter fails every write after the first n bytes.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		return 0, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

// TestFanout hands results to an aggregator, a results encoder and a JTL
// writer that fails: the others get every result, and the failure comes
// back from the writer's Flush.
func TestFanout(t *testing.T) {
	agg := NewAggregator(Config{})
	var enc bytes.Buffer
	e := load.NewEncoder(&enc)
	jtl := NewJTLWriter(&failAfter{n: 10})
	sink := Fanout(agg.Add, nil, func(r *load.Result) { _ = e.Encode(r) }, jtl.Sink())
	rs := fixture()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			for range 1000 {
				sink(r)
			}
		})
	}
	wg.Wait()
	if got, want := agg.Summary().Requests, int64(1000*len(rs)); got != want {
		t.Errorf("aggregator saw %d, want %d", got, want)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(enc.String(), "\n"); got != 1000*len(rs)+1 {
		t.Errorf("encoder wrote %d lines, want %d", got, 1000*len(rs)+1)
	}
	if err := jtl.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("jtl flush: %v, want the write error", err)
	}
	if Fanout() == nil {
		t.Error("an empty fan-out is nil")
	}
}
