package load

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	if err := enc.WriteInfo(RunInfo{Start: start, Model: "open", TargetRPS: 10, Schedule: "10/s"}); err != nil {
		t.Fatal(err)
	}
	in := []Result{
		{Seq: 0, Thread: 1, Label: "GET /a", Method: "GET", URL: "http://h/a", Intended: start, Start: start.Add(time.Millisecond),
			Elapsed: 5 * time.Millisecond, TTFB: 4 * time.Millisecond, Status: 200, BytesIn: 2, Remaining: 9},
		{Seq: 1, Thread: 2, Iteration: 1, Status: 429, RetryAfter: time.Second, Policy: "p", Remaining: -1,
			RateLimitRaw: []string{"X-RateLimit-Remaining: lots"}, Waited: time.Second, Intended: start, Start: start},
	}
	for i := range in {
		if err := enc.Encode(&in[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != 3 {
		t.Fatalf("%d lines:\n%s", lines, buf.String())
	}
	dec, err := NewDecoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if info := dec.Info(); info.Model != "open" || info.TargetRPS != 10 || !info.Start.Equal(start) || info.Format != ResultsFormat {
		t.Fatalf("info %+v", info)
	}
	for i := range in {
		var r Result
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if !r.Start.Equal(in[i].Start) || r.Status != in[i].Status || r.Policy != in[i].Policy || r.Remaining != in[i].Remaining ||
			r.Elapsed != in[i].Elapsed || r.RetryAfter != in[i].RetryAfter || len(r.RateLimitRaw) != len(in[i].RateLimitRaw) {
			t.Fatalf("record %d: %+v, want %+v", i, r, in[i])
		}
	}
	var r Result
	if err := dec.Decode(&r); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if _, err := NewDecoder(strings.NewReader(`{"seq":1}` + "\n")); err == nil {
		t.Fatal("a file without a header accepted")
	}
	bad, _ := NewDecoder(strings.NewReader(`{"format":"ratelab-results/1"}` + "\n{not json\n"))
	if err := bad.Decode(&r); err == nil || !strings.Contains(err.Error(), "record 2") {
		t.Fatalf("bad record: %v", err)
	}
}
