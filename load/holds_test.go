package load

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// windowServer is a fixed window of quota requests per window, aligned
// to the epoch, that answers as the x-ratelimit dialect does
// (X-RateLimit-Limit, -Remaining, -Reset in whole seconds rounded up) and
// 429s with Retry-After; it counts what it admitted per window.
type windowServer struct {
	window time.Duration
	quota  int

	mu       sync.Mutex
	cur      int64
	used     int
	admitted map[int64]int
	rejected int
}

func (s *windowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.mu.Lock()
	win := now.UnixNano() / int64(s.window)
	if win != s.cur {
		s.cur, s.used = win, 0
	}
	ok := s.used < s.quota
	if ok {
		s.used++
		s.admitted[win]++
	} else {
		s.rejected++
	}
	left := s.quota - s.used
	s.mu.Unlock()
	reset := time.Unix(0, (win+1)*int64(s.window)).Sub(now)
	secs := strconv.FormatInt(int64((reset+time.Second-1)/time.Second), 10)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(s.quota))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(left))
	h.Set("X-RateLimit-Reset", secs)
	if !ok {
		h.Set("Retry-After", secs)
		w.WriteHeader(http.StatusTooManyRequests)
	}
}

// TestFlowHonorsSpentWindow: a flow (as a JMeter plan runs) with
// retry_after: honor, three users against a window of 5 per second that
// advertises itself in X-RateLimit-* only: no request gets a 429 over
// three resets, none is dropped, and each window is used (the hold ends
// within the second the reset is rounded up to).
func TestFlowHonorsSpentWindow(t *testing.T) {
	srv := &windowServer{window: time.Second, quota: 5, admitted: map[int64]int{}}
	url := serve(t, srv)
	f, err := ParseFlow([]byte(`
retry_after: honor
threads: 3
duration: 3500ms
steps: [{request: {url: `+url+`/w}}]
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rs := runParsedFlow(t, f)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.rejected != 0 || len(srv.admitted) < 3 {
		t.Fatalf("%d of %d requests rejected, windows %v: want none rejected over three windows or more", srv.rejected, len(rs), srv.admitted)
	}
	held := 0
	for _, r := range rs {
		if r.Status != http.StatusOK {
			t.Errorf("seq %d: status %d", r.Seq, r.Status)
		}
		if r.Waited > 0 {
			held++
		}
	}
	if held == 0 {
		t.Errorf("no result records a wait; windows %v", srv.admitted)
	}
	t.Logf("%d requests, windows %v, %d held", len(rs), srv.admitted, held)
}
