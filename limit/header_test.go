package limit_test

import (
	"net/http"
	"testing"
	"time"

	"ratelab/limit"
)

// decideAt runs one decision on a fresh memory store after n earlier
// requests at the same instant.
func decideAfter(t *testing.T, n int, tiers ...limit.Tier) *limit.Decision {
	t.Helper()
	s := limit.NewMemoryStore(limit.MemoryConfig{})
	at := time.Unix(1000, 0)
	var d limit.Decision
	for range n + 1 {
		if err := s.Decide(t.Context(), &limit.Request{Now: at, Cost: 1, Tiers: tiers}, &d); err != nil {
			t.Fatal(err)
		}
	}
	return &d
}

func TestSetHeaders(t *testing.T) {
	org := &limit.Policy{Name: "org-requests", Rate: limit.Per(1000, time.Second), Burst: 1000}
	script := &limit.Policy{Name: "script-writes-per-script", Rate: limit.Per(2, time.Second), Burst: 5}
	shadow := &limit.Policy{Name: "new-limit", Rate: limit.Per(1, time.Second), Burst: 1, Shadow: true}
	tiers := []limit.Tier{{Policy: org, Key: "o"}, {Policy: script, Key: "s"}, {Policy: shadow, Key: "o"}}

	tests := []struct {
		name  string
		after int
		want  map[string]string
	}{
		{"first request", 0, map[string]string{
			"RateLimit-Policy":      `"org-requests";q=1000;w=1, "script-writes-per-script";q=5;w=3`,
			"RateLimit":             `"script-writes-per-script";r=4;t=1`,
			"X-RateLimit-Limit":     "5",
			"X-RateLimit-Remaining": "4",
			"X-RateLimit-Reset":     "1",
			"Retry-After":           "",
		}},
		{"rejected", 5, map[string]string{
			"RateLimit":             `"script-writes-per-script";r=0;t=3`,
			"X-RateLimit-Remaining": "0",
			"X-RateLimit-Reset":     "3",
			"Retry-After":           "1", // 500ms exactly, rounded up
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decideAfter(t, tt.after, tiers...)
			h := http.Header{}
			limit.SetHeaders(h, d)
			for k, want := range tt.want {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestSetHeadersOnlyShadow(t *testing.T) {
	shadow := &limit.Policy{Name: "s", Rate: limit.Per(1, time.Second), Burst: 1, Shadow: true}
	h := http.Header{}
	limit.SetHeaders(h, decideAfter(t, 3, limit.Tier{Policy: shadow}))
	if len(h) != 0 {
		t.Fatalf("shadow-only decision wrote headers: %v", h)
	}
}

func TestQuoteString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":         `"plain"`,
		`say "hi"\now`:  `"say \"hi\"\\now"`,
		"tab\there":     `"tab%09here"`,
		"100%":          `"100%25"`,
		"naïve":         `"na%C3%AFve"`,
		"":              `""`,
		"new\nline\x7f": `"new%0Aline%7F"`,
	} {
		if got := limit.QuoteString(in); got != want {
			t.Errorf("QuoteString(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestHeadersRoundTrip checks that ParseHeaders reads back exactly what
// SetHeaders writes, also for names that need escaping.
func TestHeadersRoundTrip(t *testing.T) {
	odd := &limit.Policy{Name: "per \"script\", naïve; 100%", Rate: limit.Per(3, time.Second), Burst: 6}
	d := decideAfter(t, 6, limit.Tier{Policy: odd, Key: "k"})
	h := http.Header{}
	limit.SetHeaders(h, d)
	a := limit.ParseHeaders(h, time.Now())
	if a.Policy != odd.Name || a.Remaining != 0 || a.Limit != 6 || a.Reset != 2*time.Second || a.RetryAfter != time.Second {
		t.Fatalf("parsed %+v from %v", a, h)
	}
	if len(a.Policies) != 1 || a.Policies[0].Name != odd.Name || a.Policies[0].Quota != 6 || a.Policies[0].Window != 2*time.Second {
		t.Fatalf("policies %+v", a.Policies)
	}
	if len(a.Raw) != 0 {
		t.Fatalf("raw leftovers %q", a.Raw)
	}
}

func TestParseHeaders(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	type want struct {
		policy            string
		limit, remaining  int64
		reset, retryAfter time.Duration
		raw               int
	}
	tests := []struct {
		name string
		h    map[string]string
		want want
	}{
		{"nothing", nil, want{"", -1, -1, -1, -1, 0}},
		{"draft 11 picks least remaining", map[string]string{
			"RateLimit-Policy": `"burst";q=100;w=60,"daily";q=1000;w=86400`,
			"RateLimit":        `"burst";r=50;t=30, "daily";r=10;t=36000`,
		}, want{"daily", 1000, 10, 36000 * time.Second, -1, 0}},
		{"draft 7 dictionary", map[string]string{"RateLimit": "limit=100, remaining=50, reset=5"},
			want{"", 100, 50, 5 * time.Second, -1, 0}},
		{"draft 6 fields", map[string]string{"RateLimit-Limit": "10", "RateLimit-Remaining": "3", "RateLimit-Reset": "7"},
			want{"", 10, 3, 7 * time.Second, -1, 0}},
		{"github", map[string]string{"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999",
			"X-RateLimit-Reset": "1795773660", "X-RateLimit-Resource": "core", "X-RateLimit-Used": "1"},
			want{"core", 5000, 4999, 60 * time.Second, -1, 0}},
		{"inin", map[string]string{"inin-ratelimit-allowed": "300", "inin-ratelimit-count": "120", "inin-ratelimit-reset": "42"},
			want{"", 300, 180, 42 * time.Second, -1, 0}},
		{"retry-after seconds", map[string]string{"Retry-After": "1"}, want{"", -1, -1, -1, time.Second, 0}},
		{"retry-after date", map[string]string{"Retry-After": "Fri, 27 Nov 2026 10:00:03 GMT"}, want{"", -1, -1, -1, 3 * time.Second, 0}},
		{"garbage kept raw", map[string]string{"Retry-After": "soon", "X-RateLimit-Remaining": "lots", "RateLimit": `"x;r=1`},
			want{"", -1, -1, -1, -1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			a := limit.ParseHeaders(h, now)
			got := want{a.Policy, a.Limit, a.Remaining, a.Reset, a.RetryAfter, len(a.Raw)}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v (raw %q)", got, tt.want, a.Raw)
			}
			if found := a.Found(); found != (len(tt.h) > 0) {
				t.Fatalf("Found() = %v", found)
			}
		})
	}
}

func FuzzParseHeaders(f *testing.F) {
	f.Add(`"burst";q=100;w=60,"daily";q=1000;w=86400`, `"daily";r=10;t=36000`, "1")
	f.Add("", "limit=100, remaining=50, reset=5", "Fri, 27 Nov 2026 10:00:03 GMT")
	f.Add(`"a\"b%41";q=1`, `"x;r=1`, "-1")
	f.Fuzz(func(t *testing.T, policy, rl, retry string) {
		h := http.Header{}
		h.Set("RateLimit-Policy", policy)
		h.Set("RateLimit", rl)
		h.Set("Retry-After", retry)
		a := limit.ParseHeaders(h, time.Unix(0, 0))
		if a.Remaining < -1 || a.Limit < -1 || a.Reset < -1 || a.RetryAfter < -1 {
			t.Fatalf("negative values: %+v", a)
		}
	})
}

func TestSetHeadersAlgorithms(t *testing.T) {
	fixed := &limit.Policy{Name: "client", Algorithm: limit.FixedWindow, Rate: limit.Per(300, time.Minute)}
	sliding := &limit.Policy{Name: "listing", Algorithm: limit.SlidingWindow, Rate: limit.Per(30, 10*time.Second)}
	conc := &limit.Policy{Name: "uploads", Algorithm: limit.Concurrency, Concurrency: 4, Lease: 30 * time.Second}
	s := limit.NewMemoryStore(limit.MemoryConfig{})
	// 1000.5s is 40.5s into a minute window and 0.5s into a 10s one.
	at := time.Unix(1000, 500_000_000)
	var d limit.Decision
	req := &limit.Request{Now: at, Cost: 1, Tiers: []limit.Tier{{Policy: fixed, Key: "c"}, {Policy: sliding, Key: "c"}, {Policy: conc, Key: "c"}}}
	if err := s.Decide(t.Context(), req, &d); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	limit.SetHeaders(h, &d)
	for k, want := range map[string]string{
		"RateLimit-Policy":  `"client";q=300;w=60, "listing";q=30;w=10, "uploads";q=4;qu="concurrent-requests"`,
		"RateLimit":         `"uploads";r=3;t=30`,
		"X-RateLimit-Limit": "4",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// Fill the fixed window: the 300th rejection says the window's end.
	one := &limit.Request{Now: at, Cost: 1, Tiers: []limit.Tier{{Policy: fixed, Key: "c"}}}
	for range 300 {
		if err := s.Decide(t.Context(), one, &d); err != nil {
			t.Fatal(err)
		}
	}
	h = http.Header{}
	limit.SetHeaders(h, &d)
	for k, want := range map[string]string{
		"RateLimit":   `"client";r=0;t=20`,
		"Retry-After": "20", // 19.5s to the window's end, rounded up
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

// TestAdvertisedPolicyDescribes reads back what SetHeaders writes for each
// family and checks that Describes recognizes its own policy (through the
// rounding of w) and tells a changed one apart.
func TestAdvertisedPolicyDescribes(t *testing.T) {
	gcra := &limit.Policy{Name: "per-script", Rate: limit.Per(2, time.Second), Burst: 5} // τ 2.5 s: w=3
	fixed := &limit.Policy{Name: "client", Algorithm: limit.FixedWindow, Rate: limit.Per(300, time.Minute)}
	conc := &limit.Policy{Name: "uploads", Algorithm: limit.Concurrency, Concurrency: 4, Lease: 30 * time.Second}
	s := limit.NewMemoryStore(limit.MemoryConfig{})
	var d limit.Decision
	req := &limit.Request{Now: time.Unix(1000, 0), Cost: 1, Tiers: []limit.Tier{{Policy: gcra, Key: "a"}, {Policy: fixed, Key: "c"}, {Policy: conc, Key: "c"}}}
	if err := s.Decide(t.Context(), req, &d); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	limit.SetHeaders(h, &d)
	a := limit.ParseHeaders(h, time.Unix(1000, 0))
	if len(a.Policies) != 3 {
		t.Fatalf("policies %+v", a.Policies)
	}
	for i, p := range []*limit.Policy{gcra, fixed, conc} {
		if !a.Policies[i].Describes(p) {
			t.Errorf("%+v does not describe %s", a.Policies[i], p.Name)
		}
	}
	changed := *gcra
	changed.Burst = 6 // τ 3 s: still w=3, but q=6
	slower := *gcra
	slower.Rate = limit.Per(1, time.Second) // τ 5 s: w=5
	for _, p := range []*limit.Policy{&changed, &slower, fixed} {
		if a.Policies[0].Describes(p) {
			t.Errorf("%+v describes %+v", a.Policies[0], p)
		}
	}
}
