package load

import (
	"context"
	"net/http"
	"testing"
)

// BenchmarkSendLoop measures the closed model's send loop against a
// loopback server: one virtual user, b.N requests.
func BenchmarkSendLoop(b *testing.B) {
	url := serveB(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	s := &Scenario{Requests: []RequestSpec{{URL: url + "/x"}}}
	p, err := s.Compile(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := Run(context.Background(), Config{Plan: p, Workload: Workload{Threads: 1, Loops: b.N}, Sink: func(*Result) {}}); err != nil {
		b.Fatal(err)
	}
}
