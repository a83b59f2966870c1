package limit

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Advertised is what one response says about rate limits, read from every
// header family in use: the IETF draft's RateLimit and RateLimit-Policy
// (draft 11 lists, draft 7's single dictionary, and the RateLimit-Limit /
// -Remaining / -Reset fields of drafts up to 6), the common X-RateLimit-*
// family (with GitHub's X-RateLimit-Resource and -Used), the
// inin-ratelimit-* family of some contact-center platforms, and
// Retry-After.
//
// Numbers a response did not carry are -1.
type Advertised struct {
	// Policies lists RateLimit-Policy items in order.
	Policies []AdvertisedPolicy
	// Policy names the decisive policy: the RateLimit item's name, or
	// X-RateLimit-Resource. Empty when the response named none.
	Policy string
	// Limit is the quota of the decisive policy; Remaining what is left of
	// it; Reset the time until it resets.
	Limit     int64
	Remaining int64
	Reset     time.Duration
	// Used is the quota used so far (X-RateLimit-Used as GitHub sends it,
	// inin-ratelimit-count).
	Used int64
	// RetryAfter is the delay before a retry: a 429 body's exact retry
	// delay when ParseResponse found one, else Retry-After (seconds, or an
	// HTTP date relative to now); -1 when absent or unreadable.
	RetryAfter time.Duration
	// Stated is the server's own account of the limit in a 429 body
	// (ratelab's "limit" object); nil when the body had none. Only
	// ParseResponse sets it.
	Stated *Stated
	// Raw keeps rate-limit headers the parser could not read, as
	// "Name: value", so nothing is silently lost.
	Raw []string
}

// AdvertisedPolicy is one item of a RateLimit-Policy field.
type AdvertisedPolicy struct {
	Name   string
	Quota  int64         // q; -1 when absent
	Window time.Duration // w; -1 when absent
	// Params holds the item's other parameters (qu, pk, vendor ones) as
	// their raw text.
	Params map[string]string
}

// Describes reports whether a is what SetHeaders writes for p: the same
// quota q and the window w in seconds, rounded up as SetHeaders rounds it.
// A client that knows a policy exactly uses it to tell a changed policy
// from the rounding of the header.
func (a *AdvertisedPolicy) Describes(p *Policy) bool {
	if a.Name != p.Name || a.Quota != p.Quota() {
		return false
	}
	if p.Algorithm == Concurrency {
		return a.Window < 0 // SetHeaders writes no window for it
	}
	return a.Window == time.Duration(ceilSeconds(p.Window()))*time.Second
}

// Found reports whether the response carried any rate-limit information.
func (a *Advertised) Found() bool {
	return len(a.Policies) > 0 || a.Policy != "" || a.Limit >= 0 || a.Remaining >= 0 ||
		a.Reset >= 0 || a.Used >= 0 || a.RetryAfter >= 0 || len(a.Raw) > 0 || a.Stated != nil
}

// ParseHeaders reads every rate-limit header in h. now resolves a
// Retry-After given as an HTTP date. Malformed values land in Raw; the
// function never fails.
func ParseHeaders(h http.Header, now time.Time) Advertised {
	a := Advertised{Limit: -1, Remaining: -1, Reset: -1, Used: -1, RetryAfter: -1}
	if len(h) == 0 {
		return a
	}
	raw := func(name string, vals []string) {
		for _, v := range vals {
			a.Raw = append(a.Raw, name+": "+v)
		}
	}
	if v, ok := h["Retry-After"]; ok {
		if d, ok := parseRetryAfter(v[0], now); ok {
			a.RetryAfter = d
		} else {
			raw("Retry-After", v)
		}
	}
	if v, ok := h["Ratelimit-Policy"]; ok {
		items, ok := parseList(strings.Join(v, ","))
		if !ok {
			raw("RateLimit-Policy", v)
		}
		for _, it := range items {
			p := AdvertisedPolicy{Name: it.name, Quota: -1, Window: -1}
			if !it.quoted {
				// Draft 7 and 8 wrote the quota as the item itself:
				// RateLimit-Policy: 100;w=60.
				p.Quota = parseInt(it.name)
			}
			for k, val := range it.params {
				switch k {
				case "q":
					p.Quota = parseInt(val)
				case "w":
					if n := parseInt(val); n >= 0 {
						p.Window = time.Duration(n) * time.Second
					}
				default:
					if p.Params == nil {
						p.Params = map[string]string{}
					}
					p.Params[k] = val
				}
			}
			a.Policies = append(a.Policies, p)
		}
	}
	if v, ok := h["Ratelimit"]; ok {
		if !a.parseRateLimit(strings.Join(v, ",")) {
			raw("RateLimit", v)
		}
	}
	// Older drafts, the X- family and the inin- family fill what is still
	// unknown, in that order of preference.
	for _, fam := range [...]struct{ limit, remaining, reset string }{
		{"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset"},
		{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"},
		{"Inin-Ratelimit-Allowed", "", "Inin-Ratelimit-Reset"},
	} {
		a.fill(h, fam.limit, &a.Limit, raw)
		a.fill(h, fam.remaining, &a.Remaining, raw)
		if v, ok := h[fam.reset]; ok && a.Reset < 0 {
			if d, ok := parseReset(v[0], now); ok {
				a.Reset = d
			} else {
				raw(fam.reset, v)
			}
		}
	}
	// X-RateLimit-Used (GitHub) and inin-ratelimit-count are the quota
	// used so far; with the limit they give the remaining quota when no
	// field stated it.
	for _, name := range [...]string{"X-Ratelimit-Used", "Inin-Ratelimit-Count"} {
		a.fill(h, name, &a.Used, raw)
	}
	if a.Remaining < 0 && a.Limit >= 0 && a.Used >= 0 {
		a.Remaining = max(0, a.Limit-a.Used)
	}
	if a.Policy == "" {
		if v, ok := h["X-Ratelimit-Resource"]; ok {
			a.Policy = v[0]
		}
	}
	return a
}

func (a *Advertised) fill(h http.Header, name string, dst *int64, raw func(string, []string)) {
	if name == "" {
		return
	}
	v, ok := h[name]
	if !ok || *dst >= 0 {
		return
	}
	// Some servers list several comma-separated values (one per policy);
	// the first is the decisive one by convention.
	first, _, _ := strings.Cut(v[0], ",")
	if n := parseInt(strings.TrimSpace(first)); n >= 0 {
		*dst = n
	} else {
		raw(name, v)
	}
}

// parseRateLimit reads a RateLimit field: draft 11's list of named items
// with r and t, or draft 7's dictionary limit=, remaining=, reset=.
func (a *Advertised) parseRateLimit(v string) bool {
	items, ok := parseList(v)
	if !ok || len(items) == 0 {
		return false
	}
	// Draft 7: a dictionary of bare keys, parsed here as tokens with values.
	if items[0].dictKey != "" {
		for _, it := range items {
			switch it.dictKey {
			case "limit":
				a.Limit = parseInt(it.dictVal)
			case "remaining":
				a.Remaining = parseInt(it.dictVal)
			case "reset":
				if n := parseInt(it.dictVal); n >= 0 {
					a.Reset = time.Duration(n) * time.Second
				}
			}
		}
		return true
	}
	// Draft 11: the item with the least remaining quota is decisive.
	best := -1
	for i, it := range items {
		r := parseInt(it.params["r"])
		if r < 0 {
			continue
		}
		if best < 0 || r < a.Remaining {
			best, a.Remaining = i, r
		}
	}
	if best < 0 {
		return false
	}
	a.Policy = items[best].name
	if n := parseInt(items[best].params["t"]); n >= 0 {
		a.Reset = time.Duration(n) * time.Second
	}
	for _, p := range a.Policies {
		if p.Name == a.Policy && p.Quota >= 0 {
			a.Limit = p.Quota
		}
	}
	return true
}

type sfItem struct {
	name             string // a String or Token item's value
	quoted           bool   // name was a String
	params           map[string]string
	dictKey, dictVal string // set for "key=value" members (draft 7)
}

// parseList parses the subset of RFC 8941 Lists and Dictionaries that
// rate-limit fields use: members that are Strings or Tokens with
// parameters, or key=value pairs. It reports false on malformed input.
func parseList(s string) ([]sfItem, bool) {
	var items []sfItem
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return items, len(items) > 0
		}
		var it sfItem
		var ok bool
		if s[0] == '"' {
			it.quoted = true
			it.name, s, ok = parseSFString(s)
			if !ok {
				return nil, false
			}
		} else {
			var tok string
			tok, s = cutToken(s)
			if tok == "" {
				return nil, false
			}
			if strings.HasPrefix(s, "=") {
				it.dictKey = tok
				it.dictVal, s = cutToken(s[1:])
			} else {
				it.name = tok
			}
		}
		for strings.HasPrefix(s, ";") {
			s = strings.TrimLeft(s[1:], " ")
			var k, v string
			k, s = cutToken(s)
			if k == "" {
				return nil, false
			}
			v = "?1"
			if strings.HasPrefix(s, "=") {
				if strings.HasPrefix(s[1:], `"`) {
					v, s, ok = parseSFString(s[1:])
					if !ok {
						return nil, false
					}
				} else {
					v, s = cutToken(s[1:])
				}
			}
			if it.params == nil {
				it.params = map[string]string{}
			}
			it.params[k] = v
		}
		items = append(items, it)
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return items, true
		}
		if s[0] != ',' {
			return nil, false
		}
		s = s[1:]
	}
}

// cutToken returns the longest prefix of s made of token or number
// characters (and ':' for byte sequences) and the rest.
func cutToken(s string) (string, string) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c == ',' || c == ';' || c == '=' || c == ' ' || c == '\t' || c == '"' {
			break
		}
		i++
	}
	return s[:i], s[i:]
}

// parseSFString reads a quoted String at the start of s, unescaping \" and
// \\, and the %XX escapes that QuoteString writes.
func parseSFString(s string) (string, string, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return unescapePercent(b.String()), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

func unescapePercent(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func parseInt(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// parseRetryAfter reads delay-seconds (fractions accepted, as some servers
// send them) or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e9 {
		return time.Duration(f * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

// parseReset reads a reset value: seconds until reset, or (as GitHub and
// others send) an epoch timestamp in seconds, recognized by its size.
func parseReset(v string, now time.Time) (time.Duration, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 {
		return 0, false
	}
	if f > 1e9 { // an epoch timestamp, not a delay
		return max(0, time.Unix(int64(f), 0).Sub(now)), true
	}
	return time.Duration(f * float64(time.Second)), true
}
