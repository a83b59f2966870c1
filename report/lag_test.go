package report

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"ratelab/limit"
	"ratelab/load"
)

// TestSendLag checks the pacer-accuracy figure: actual − intended send
// time over paced results, and no figure at all for an unpaced run.
func TestSendLag(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	paced := NewAggregator(Config{Start: t0})
	for i, lag := range []time.Duration{0, time.Millisecond, time.Millisecond, 3 * time.Millisecond} {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		paced.Add(&load.Result{Seq: uint64(i), Intended: at, Start: at.Add(lag), Elapsed: time.Millisecond, Status: 200, Remaining: -1})
	}
	s := paced.Summary()
	if s.SendLag == nil {
		t.Fatal("paced run without a send lag")
	}
	// HDR precision: 3 significant digits.
	if l := s.SendLag; l.P50 < 0.99 || l.P50 > 1.01 || l.Max < 2.99 || l.Max > 3.01 {
		t.Fatalf("send lag %+v, want p50 1 ms and max 3 ms", *l)
	}

	unpaced := NewAggregator(Config{Start: t0})
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Second)
		unpaced.Add(&load.Result{Seq: uint64(i), Intended: at, Start: at, Elapsed: time.Millisecond, Status: 200, Remaining: -1})
	}
	if l := unpaced.Summary().SendLag; l != nil {
		t.Fatalf("unpaced run reports a send lag %+v", *l)
	}
	// Merging keeps the figure.
	unpaced.Merge(paced)
	if unpaced.Summary().SendLag == nil {
		t.Fatal("merge lost the send lag")
	}
}

// TestSendLagOfRun measures the send lag of real runs: every arrival of
// an open-model run has one, a closed run without a timer has none.
func TestSendLagOfRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	s := &load.Scenario{Requests: []load.RequestSpec{{URL: srv.URL + "/x"}}}
	p, err := s.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	run := func(w load.Workload) *Summary {
		agg := NewAggregator(Config{})
		if _, err := load.Run(context.Background(), load.Config{Plan: p, Workload: w, Sink: agg.Add}); err != nil {
			t.Fatal(err)
		}
		return agg.Summary()
	}
	open := run(load.Workload{Rate: limit.Per(100, time.Second), Loops: 20})
	if l := open.SendLag; open.Requests != 20 || l == nil || l.P50 > l.P99 || l.P99 > l.Max || l.Max > 1000 {
		t.Fatalf("open model: %d requests, lag %+v", open.Requests, open.SendLag)
	}
	if closed := run(load.Workload{Threads: 2, Loops: 3}); closed.Requests != 6 || closed.SendLag != nil {
		t.Fatalf("closed model: %d requests, lag %+v", closed.Requests, closed.SendLag)
	}
}

// A flow's transaction samples are no requests: the summary counts the
// requests of the transaction only.
func TestTransactionsNotCounted(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	agg := NewAggregator(Config{Start: t0})
	agg.Add(&load.Result{Start: t0, Intended: t0, Elapsed: time.Millisecond, Status: 429, Remaining: -1})
	agg.Add(&load.Result{Start: t0, Intended: t0, Elapsed: time.Millisecond, Status: 200, Remaining: -1})
	agg.Add(&load.Result{Start: t0, Intended: t0, Elapsed: 2 * time.Millisecond, Status: 200, Remaining: -1, Transaction: true})
	if s := agg.Summary(); s.Requests != 2 || s.RateLimit.Count429 != 1 {
		t.Fatalf("requests %d, 429s %d; want 2 and 1", s.Requests, s.RateLimit.Count429)
	}
}
