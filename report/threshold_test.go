package report

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestParseThreshold(t *testing.T) {
	for _, c := range []struct {
		in     string
		metric string
		op     string
		value  float64
	}{
		{"p99<250ms", "p99", "<", 250},
		{"p99 < 0.25s", "p99", "<", 250},
		{"p50<=100ms", "p50", "<=", 100},
		{"p90<=100", "p90", "<=", 100},
		{"max<1500us", "max", "<", 1.5},
		{"service_p99<20ms", "service_p99", "<", 20},
		{"share_429<1%", "share_429", "<", 0.01},
		{"share_429<=0.5", "share_429", "<=", 0.5},
		{"error_rate<0.1%", "error_rate", "<", 0.001},
		{"errors==0", "errors", "==", 0},
		{"count_429>=3", "count_429", ">=", 3},
		{"achieved_rps>9.5", "achieved_rps", ">", 9.5},
		{"achieved_rps>9.5/s", "achieved_rps", ">", 9.5},
		{"first_429_request>=100", "first_429_request", ">=", 100},
		{"first_429_s>2s", "first_429_s", ">", 2},
		{"duration_s>=1500ms", "duration_s", ">=", 1.5},
		{"requests>1e3", "requests", ">", 1000},
		{"  dropped == 0  ", "dropped", "==", 0},
	} {
		th, err := ParseThreshold(c.in)
		if err != nil {
			t.Errorf("ParseThreshold(%q): %v", c.in, err)
			continue
		}
		if th.Metric != c.metric || th.Op != c.op || math.Abs(th.Value-c.value) > 1e-12 {
			t.Errorf("ParseThreshold(%q) = %s %s %v, want %s %s %v", c.in, th.Metric, th.Op, th.Value, c.metric, c.op, c.value)
		}
	}
}

func TestParseThresholdErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "empty threshold"},
		{"p99 250ms", "no comparison operator"},
		{"p99=250ms", "bad comparison operator"},
		{"p99!=250ms", "bad comparison operator"},
		{"p99<<250ms", "bad comparison operator"},
		{"<250ms", "no metric"},
		{"p98<250ms", `unknown metric "p98"`},
		{"p99<", "no value"},
		{"p99<fast", "not a number"},
		{"p99<1%", `unit "%" does not fit this metric: it is a latency`},
		{"share_429<5ms", `unit "ms" does not fit this metric: it is a share`},
		{"errors<1%", "a count"},
		{"achieved_rps>5/m", "a rate"},
		{"p99<NaN", "not a number"},
		{"p99<Inf", "not a number"},
	} {
		_, err := ParseThreshold(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseThreshold(%q) error = %v, want it to contain %q", c.in, err, c.want)
		}
	}
}

func TestThresholdCheck(t *testing.T) {
	s := fixtureSummary(t)
	for _, c := range []struct {
		in     string
		ok     bool
		actual string
	}{
		{"p99<250ms", true, "110.015ms"},
		{"p99<100ms", false, "110.015ms"},
		{"p50<=0.1s", true, "10.007ms"},
		{"share_429<1%", false, "30%"},
		{"share_429<=30%", true, "30%"},
		{"errors==0", false, "1"},
		{"errors<=1", true, "1"},
		{"achieved_rps>9.5", true, "10/s"},
		{"achieved_rps>=10.5", false, "10/s"},
		{"first_429_request>=5", true, "5"},
		{"first_429_request>5", false, "5"},
		{"first_429_s<1s", true, "0.5s"},
		{"dropped==3", true, "3"},
		{"count_429<6", false, "6"},
	} {
		th, err := ParseThreshold(c.in)
		if err != nil {
			t.Fatal(err)
		}
		ok, actual := th.Check(s)
		if ok != c.ok || actual != c.actual {
			t.Errorf("%s: ok %v actual %q, want %v %q", c.in, ok, actual, c.ok, c.actual)
		}
	}
	// Without any 429, "the first 429 came late enough" holds.
	th, _ := ParseThreshold("first_429_request>=1000")
	if ok, actual := th.Check(&Summary{}); !ok || actual != "none" {
		t.Errorf("no 429: ok %v actual %q", ok, actual)
	}
}

func TestThresholdsFlagAndCheck(t *testing.T) {
	var ts Thresholds
	for _, s := range []string{"p99<250ms", "share_429<1%"} {
		if err := ts.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.Set("nope<1"); err == nil {
		t.Error("Set accepted an unknown metric")
	}
	if ts.String() != "p99<250ms,share_429<1%" {
		t.Errorf("String() = %q", ts.String())
	}
	var b bytes.Buffer
	failed, err := ts.Check(&b, fixtureSummary(t))
	if err != nil || failed != 1 {
		t.Fatalf("failed %d, err %v", failed, err)
	}
	want := "threshold ok    p99<250ms (actual 110.015ms)\nthreshold FAIL  share_429<1% (actual 30%)\n"
	if b.String() != want {
		t.Errorf("output\n%s\nwant\n%s", b.String(), want)
	}
}

func FuzzParseThreshold(f *testing.F) {
	for _, s := range []string{"p99<250ms", "share_429<1%", "p50<=100ms", "errors==0", "achieved_rps>9.5", "max<1e3us", "p99 < 0.25 s", "first_429_s>=2"} {
		f.Add(s)
	}
	sum := &Summary{}
	f.Fuzz(func(t *testing.T, s string) {
		th, err := ParseThreshold(s)
		if err != nil {
			if th != nil {
				t.Fatalf("ParseThreshold(%q) returned a threshold and an error", s)
			}
			return
		}
		// The canonical form parses back to the same threshold.
		back, err := ParseThreshold(th.String())
		if err != nil {
			t.Fatalf("ParseThreshold(%q).String() = %q does not parse: %v", s, th.String(), err)
		}
		if back.Metric != th.Metric || back.Op != th.Op || math.Abs(back.Value-th.Value) > math.Abs(th.Value)*1e-12 {
			t.Fatalf("round trip of %q: %+v then %+v", s, th, back)
		}
		th.Check(sum) // must not panic
	})
}
