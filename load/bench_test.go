package load

import (
	"context"
	"net/http"
	"testing"
)

// BenchmarkSendLoop measures the closed model's send loop against a
// loopback server: one virtual user, b.N requests, on NewClient's client
// (the worker-driven HTTP/1.1 path).
func BenchmarkSendLoop(b *testing.B) {
	benchSendLoop(b, nil)
}

// BenchmarkSendLoopNetHTTP is the same loop through a plain net/http
// client (the path of https targets and OAuth clients), for comparison.
func BenchmarkSendLoopNetHTTP(b *testing.B) {
	benchSendLoop(b, &http.Client{Transport: &http.Transport{DisableCompression: true}})
}

func benchSendLoop(b *testing.B, client *http.Client) {
	url := serveB(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	s := &Scenario{Requests: []RequestSpec{{URL: url + "/x"}}}
	p, err := s.Compile(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	st, err := Run(context.Background(), Config{Plan: p, Workload: Workload{Threads: 1, Loops: b.N}, Client: client, Sink: func(*Result) {}})
	if err != nil {
		b.Fatal(err)
	}
	if st.Sent != uint64(b.N) {
		b.Fatalf("sent %d of %d", st.Sent, b.N)
	}
}

// BenchmarkSendLoopFlow is BenchmarkSendLoop's loop as a flow of one
// request per iteration: it must cost what the Plan costs.
func BenchmarkSendLoopFlow(b *testing.B) {
	url := serveB(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	f := &Flow{Groups: []*ThreadGroup{{Workload: Workload{Threads: 1, Loops: b.N}, Steps: []Step{&Request{URL: url + "/x"}}}}}
	b.ReportAllocs()
	b.ResetTimer()
	st, err := Run(context.Background(), Config{Flow: f, Sink: func(*Result) {}})
	if err != nil {
		b.Fatal(err)
	}
	if st.Sent != uint64(b.N) {
		b.Fatalf("sent %d of %d", st.Sent, b.N)
	}
}
