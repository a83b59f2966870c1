package limit_test

import (
	"net/http"
	"testing"
	"time"

	"ratelab/limit"
)

func TestParseBody(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   *limit.Stated // nil: no policy stated
		policy string
	}{
		{"ratelab", `{"message":"Rate limit exceeded.","code":"too_many_requests","status":429,
			"limit":{"policy":"script-writes-per-script","scope":"org+script","key":"s1","limit":2,"window":"1s",
			"burst":5,"remaining":0,"resetAfterMs":2500,"retryAfterMs":437}}`,
			&limit.Stated{Policy: limit.Policy{Name: "script-writes-per-script", Rate: limit.Per(2, time.Second), Burst: 5},
				Scope: "org+script", Key: "s1", RetryAfter: 437 * time.Millisecond}, ""},
		{"fractional ms, window in minutes", `{"limit":{"policy":"p","limit":300,"window":"1m0s","burst":300,"retryAfterMs":0.5,"shadow":true}}`,
			&limit.Stated{Policy: limit.Policy{Name: "p", Rate: limit.Per(300, time.Minute), Burst: 300, Shadow: true},
				RetryAfter: 500 * time.Microsecond}, ""},
		{"window in seconds", `{"limit":{"policy":"p","limit":10,"window":60,"burst":10}}`,
			&limit.Stated{Policy: limit.Policy{Name: "p", Rate: limit.Per(10, time.Minute), Burst: 10}, RetryAfter: -1}, ""},
		{"name only", `{"limit":{"policy":"p"}}`, &limit.Stated{Policy: limit.Policy{Name: "p"}, RetryAfter: -1}, ""},
		{"invalid numbers keep the name", `{"limit":{"policy":"p","limit":-1,"window":"soon","burst":0,"retryAfterMs":-5}}`,
			&limit.Stated{Policy: limit.Policy{Name: "p"}, RetryAfter: -1}, ""},
		// Every algorithm in the terms of wire.LimitState, as httpapi
		// writes a 429's "limit" object.
		{"fixed window", `{"message":"org allows 300 per minute in a fixed window","code":"too_many_requests","status":429,
			"limit":{"policy":"org","algorithm":"fixed-window","scope":"client","key":"c1","limit":300,"window":"1m0s",
			"remaining":0,"resetAfterMs":41000,"retryAfterMs":41000},"violatedPolicies":["org"]}`,
			&limit.Stated{Policy: limit.Policy{Name: "org", Algorithm: limit.FixedWindow, Rate: limit.Per(300, time.Minute)},
				Scope: "client", Key: "c1", RetryAfter: 41 * time.Second}, ""},
		{"fixed window aligned to the first request, counting rejections", `{"limit":{"policy":"w","algorithm":"fixed-window",
			"limit":30,"window":"10s","align":"first","countRejected":true,"shadow":true,"remaining":0,"resetAfterMs":5}}`,
			&limit.Stated{Policy: limit.Policy{Name: "w", Algorithm: limit.FixedWindow, Rate: limit.Per(30, 10*time.Second),
				AlignFirst: true, CountRejected: true, Shadow: true}, RetryAfter: -1}, ""},
		{"sliding window", `{"limit":{"policy":"s","algorithm":"sliding-window","limit":60,"window":60,"retryAfterMs":250}}`,
			&limit.Stated{Policy: limit.Policy{Name: "s", Algorithm: limit.SlidingWindow, Rate: limit.Per(60, time.Minute)},
				RetryAfter: 250 * time.Millisecond}, ""},
		{"concurrency", `{"limit":{"policy":"inflight","algorithm":"concurrency","scope":"client","key":"c1","limit":100,
			"lease":"30s","remaining":0,"resetAfterMs":29000,"retryAfterMs":29000}}`,
			&limit.Stated{Policy: limit.Policy{Name: "inflight", Algorithm: limit.Concurrency, Concurrency: 100, Lease: 30 * time.Second},
				Scope: "client", Key: "c1", RetryAfter: 29 * time.Second}, ""},
		{"gcra counting rejections, algorithm named", `{"limit":{"policy":"g","algorithm":"gcra","limit":2,"window":"1s","burst":4,"countRejected":true}}`,
			&limit.Stated{Policy: limit.Policy{Name: "g", Rate: limit.Per(2, time.Second), Burst: 4, CountRejected: true}, RetryAfter: -1}, ""},
		// Members that do not make a valid policy of the algorithm keep
		// the name only.
		{"a window with a burst", `{"limit":{"policy":"w","algorithm":"fixed-window","limit":30,"window":"10s","burst":30}}`,
			&limit.Stated{Policy: limit.Policy{Name: "w"}, RetryAfter: -1}, ""},
		{"a sliding window aligned to the first request", `{"limit":{"policy":"w","algorithm":"sliding-window","limit":30,"window":"10s","align":"first"}}`,
			&limit.Stated{Policy: limit.Policy{Name: "w"}, RetryAfter: -1}, ""},
		{"an unknown alignment", `{"limit":{"policy":"w","algorithm":"fixed-window","limit":30,"window":"10s","align":"noon"}}`,
			&limit.Stated{Policy: limit.Policy{Name: "w"}, RetryAfter: -1}, ""},
		{"a window of a fraction of a millisecond", `{"limit":{"policy":"w","algorithm":"fixed-window","limit":30,"window":"10.5ms"}}`,
			&limit.Stated{Policy: limit.Policy{Name: "w"}, RetryAfter: -1}, ""},
		{"concurrency without a lease", `{"limit":{"policy":"c","algorithm":"concurrency","limit":4}}`,
			&limit.Stated{Policy: limit.Policy{Name: "c"}, RetryAfter: -1}, ""},
		{"concurrency counting rejections", `{"limit":{"policy":"c","algorithm":"concurrency","limit":4,"lease":"30s","countRejected":true}}`,
			&limit.Stated{Policy: limit.Policy{Name: "c"}, RetryAfter: -1}, ""},
		{"an unknown algorithm", `{"limit":{"policy":"t","algorithm":"token-bucket","limit":2,"window":"1s","burst":4}}`,
			&limit.Stated{Policy: limit.Policy{Name: "t"}, RetryAfter: -1}, ""},
		{"ratelab violatedPolicies", `{"violatedPolicies":["a","b"]}`, &limit.Stated{Policy: limit.Policy{Name: "a"}, RetryAfter: -1}, ""},
		{"problem details", `{"type":"about:blank","violated-policies":["daily"]}`,
			&limit.Stated{Policy: limit.Policy{Name: "daily"}, RetryAfter: -1}, ""},
		{"the reference platform's body", `{"message":"Rate limit exceeded.","code":"too_many_requests"}`, nil, ""},
		{"empty", ``, nil, ""},
		{"html", `<html>slow down</html>`, nil, ""},
		{"wrong types", `{"limit":{"policy":7}}`, nil, ""},
		{"array", `[1,2]`, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := limit.ParseBody([]byte(tt.body))
			switch {
			case got == nil && tt.want == nil:
			case got == nil || tt.want == nil:
				t.Fatalf("got %+v, want %+v", got, tt.want)
			case *got != *tt.want:
				t.Fatalf("got %+v, want %+v", *got, *tt.want)
			}
			if got == nil {
				return
			}
			// Complete for every policy rebuilt whole; Exact (a Bucket can
			// copy it) for GCRA ones only.
			if complete := tt.want.Policy != (limit.Policy{Name: tt.want.Policy.Name}); got.Complete() != complete {
				t.Fatalf("Complete() = %v, want %v", got.Complete(), complete)
			}
			if exact := tt.want.Policy.Algorithm == limit.GCRA && tt.want.Policy.Rate.Count > 0; got.Exact() != exact {
				t.Fatalf("Exact() = %v, want %v", got.Exact(), exact)
			}
		})
	}
}

// TestParseResponse checks the precedence of a 429's body over its headers
// for every user of the parser: the body's policy and millisecond delay
// win; the headers fill the rest.
func TestParseResponse(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("Retry-After", "1")
	h.Set("RateLimit-Policy", `"org-requests";q=1000;w=1, "script-writes-per-script";q=5;w=3`)
	h.Set("RateLimit", `"script-writes-per-script";r=0;t=3`)
	body := []byte(`{"limit":{"policy":"script-writes-per-script","scope":"org+script","key":"s","limit":2,"window":"1s","burst":5,"retryAfterMs":437}}`)

	tests := []struct {
		name   string
		h      http.Header
		body   []byte
		policy string
		retry  time.Duration
		stated bool
	}{
		{"headers and body", h, body, "script-writes-per-script", 437 * time.Millisecond, true},
		{"no body read", h, nil, "script-writes-per-script", time.Second, false},
		{"body without delay keeps Retry-After", h, []byte(`{"violated-policies":["org-requests"]}`), "org-requests", time.Second, true},
		{"zero delay in the body keeps Retry-After", h, []byte(`{"limit":{"policy":"p","retryAfterMs":0}}`), "p", time.Second, true},
		{"foreign body", h, []byte(`{"message":"Rate limit exceeded."}`), "script-writes-per-script", time.Second, false},
		{"body alone", http.Header{}, body, "script-writes-per-script", 437 * time.Millisecond, true},
		{"reference platform", http.Header{"Retry-After": {"1"}}, []byte(`{"message":"Rate limit exceeded.","code":"too_many_requests"}`), "", time.Second, false},
		{"nothing", nil, nil, "", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := limit.ParseResponse(tt.h, tt.body, now)
			if a.Policy != tt.policy || a.RetryAfter != tt.retry || (a.Stated != nil) != tt.stated {
				t.Fatalf("policy %q retry %v stated %v; want %q %v %v", a.Policy, a.RetryAfter, a.Stated != nil, tt.policy, tt.retry, tt.stated)
			}
			if a.Found() != (tt.h != nil || tt.stated) {
				t.Fatalf("Found() = %v", a.Found())
			}
		})
	}
}

func TestParseHeadersUsedAndOldPolicy(t *testing.T) {
	now := time.Unix(1_795_773_600, 0)
	h := http.Header{}
	h.Set("X-RateLimit-Limit", "60")
	h.Set("X-RateLimit-Used", "60")
	h.Set("X-RateLimit-Reset", "1795773660")
	h.Set("X-RateLimit-Resource", "search")
	a := limit.ParseHeaders(h, now)
	if a.Policy != "search" || a.Limit != 60 || a.Used != 60 || a.Remaining != 0 || a.Reset != time.Minute {
		t.Fatalf("github without remaining: %+v", a)
	}

	h = http.Header{}
	h.Set("RateLimit-Policy", "100;w=60, 1000;w=3600")
	a = limit.ParseHeaders(h, now)
	if len(a.Policies) != 2 || a.Policies[0].Quota != 100 || a.Policies[0].Window != time.Minute || a.Policies[1].Quota != 1000 {
		t.Fatalf("draft 7 policy: %+v", a.Policies)
	}
	// A String item names a policy; it is not a quota.
	h.Set("RateLimit-Policy", `"100";w=60`)
	if a = limit.ParseHeaders(h, now); a.Policies[0].Quota != -1 {
		t.Fatalf("string item read as a quota: %+v", a.Policies)
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add("1", `"burst";q=100;w=60`, `"burst";r=0;t=30`, "5000", "1795773660", "300", []byte(`{"limit":{"policy":"p","limit":2,"window":"1s","burst":5,"retryAfterMs":437}}`))
	f.Add("Fri, 27 Nov 2026 10:00:03 GMT", "100;w=60", "limit=100, remaining=50, reset=5", "", "", "", []byte(`{"violated-policies":["x"]}`))
	f.Add("2", `"w";q=30;w=10`, "", "", "", "", []byte(`{"limit":{"policy":"w","algorithm":"fixed-window","limit":30,"window":"10s","align":"first","countRejected":true}}`))
	f.Add("", `"c";q=4;qu="concurrent-requests"`, "", "", "", "", []byte(`{"limit":{"policy":"c","algorithm":"concurrency","limit":4,"lease":"30s"}}`))
	f.Add("-1", `"a\"b%41";q=1`, `"x;r=1`, "lots", "-3", "1e99", []byte(`{"limit":{"policy":"p","window":1e300,"retryAfterMs":1e300}}`))
	f.Fuzz(func(t *testing.T, retry, policy, rl, xlimit, xreset, used string, body []byte) {
		h := http.Header{}
		for k, v := range map[string]string{"Retry-After": retry, "RateLimit-Policy": policy, "RateLimit": rl,
			"X-RateLimit-Limit": xlimit, "X-RateLimit-Reset": xreset, "X-RateLimit-Used": used, "inin-ratelimit-count": used} {
			if v != "" {
				h.Set(k, v)
			}
		}
		a := limit.ParseResponse(h, body, time.Unix(1_795_773_600, 0))
		if a.Remaining < -1 || a.Limit < -1 || a.Reset < -1 || a.Used < -1 || a.RetryAfter < -1 {
			t.Fatalf("negative values: %+v", a)
		}
		if s := a.Stated; s != nil {
			if s.Policy.Name == "" || a.Policy != s.Policy.Name {
				t.Fatalf("stated %+v, policy %q", s, a.Policy)
			}
			// A stated policy is whole and valid, or its name alone.
			if s.Policy != (limit.Policy{Name: s.Policy.Name}) && s.Policy.Validate() != nil {
				t.Fatalf("invalid policy %+v", s.Policy)
			}
			if s.Exact() && (!s.Complete() || s.Policy.Algorithm != limit.GCRA) {
				t.Fatalf("exact but not a complete GCRA policy: %+v", s.Policy)
			}
			if s.RetryAfter < -1 {
				t.Fatalf("stated retry %v", s.RetryAfter)
			}
		}
	})
}
