package load

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// embedServer serves an HTML page (/page, /sub/page with a <base>) with
// resources of every kind, records every request with its Cookie and
// X-Plan headers, and counts how many resource requests run at once.
type embedServer struct {
	mu        sync.Mutex
	seen      []string
	cookies   []string
	planHdr   []string
	cur, peak atomic.Int64
	delay     time.Duration
}

const embedPage = `<!DOCTYPE html><html><head>
<link rel="stylesheet" href="/css/a.css"><link rel="alternate" href="/feed.xml">
<link rel="icon" href="/favicon.ico">
<script src="js/app.js"></script><script>var x = "<img src='/not-a-tag.png'>";</script>
</head><body background="/img/bg.png">
<img src="/img/a.png#frag"><img src="/img/a.png"><IMG SRC="//OTHER/img/b.png">
<a href="/link-not-fetched.html">x</a><img src="data:image/png;base64,AAAA">
<iframe src="frame.html"></iframe><embed src="/media/m.swf"><object data="/media/o.svg"></object>
<input type="image" src="/img/button.png"><input type="text" src="/img/no.png">
<table background="/img/table.png"><tr><td background="/img/td.png">c</td></tr></table>
<img src="/missing.png">
</body></html>`

func (s *embedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seen = append(s.seen, r.Host+r.URL.RequestURI())
	s.cookies = append(s.cookies, r.Header.Get("Cookie"))
	s.planHdr = append(s.planHdr, r.Header.Get("X-Plan"))
	s.mu.Unlock()
	switch r.URL.Path {
	case "/page":
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "u1", Path: "/"})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, strings.ReplaceAll(embedPage, "OTHER", r.Host))
	case "/sub/page":
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<base href="/base/"><img src="x.png"><script src="/abs.js"></script>`)
	case "/plain":
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, `<img src="/img/a.png">`)
	case "/missing.png":
		w.WriteHeader(404)
	default:
		n := s.cur.Add(1)
		for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
		}
		time.Sleep(s.delay)
		s.cur.Add(-1)
		fmt.Fprint(w, "resource")
	}
}

func (s *embedServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

func embedFlow(base, path string, e *Embedded) *Flow {
	return &Flow{Cookies: &Cookies{}, Groups: []*ThreadGroup{{Workload: Workload{Threads: 1, Loops: 1},
		Steps: []Step{&Request{Name: "home", URL: base + path, Headers: []Header{{Name: "X-Plan", Value: "p"}}, Embedded: e}}}}}
}

func TestEmbeddedResources(t *testing.T) {
	srv := &embedServer{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	host := strings.TrimPrefix(ts.URL, "http://")
	rs := runParsedFlow(t, embedFlow(ts.URL, "/page", &Embedded{}))
	want := []string{"/css/a.css", "/favicon.ico", "/js/app.js", "/img/bg.png", "/img/a.png", "/img/b.png",
		"/frame.html", "/media/m.swf", "/media/o.svg", "/img/button.png", "/img/table.png", "/img/td.png", "/missing.png"}
	var wantSeen []string
	wantSeen = append(wantSeen, host+"/page")
	for _, p := range want {
		wantSeen = append(wantSeen, host+p)
	}
	if got := srv.requests(); !slices.Equal(got, wantSeen) {
		t.Fatalf("requests:\n got %q\nwant %q", got, wantSeen)
	}
	// Every resource a sub-result of "home", labelled by its URL, then
	// the parent, which failed with the 404 and lasts until the last one.
	if len(rs) != len(want)+1 {
		t.Fatalf("%d results, want %d", len(rs), len(want)+1)
	}
	for i, p := range want {
		if r := rs[i]; r.Parent != "home" || r.Label != ts.URL+p || r.Method != "GET" {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	parent := rs[len(rs)-1]
	if parent.Label != "home" || parent.Parent != "" || parent.Success() || !strings.Contains(parent.Failure, "1 of 13") {
		t.Errorf("parent: %+v", parent)
	}
	last := rs[len(rs)-2]
	if end := parent.Start.Add(parent.Elapsed); end.Before(last.Start.Add(last.Elapsed)) {
		t.Errorf("parent ends at %v, before its last resource", end)
	}
	// The user's cookies and the plan's headers go with each resource.
	srv.mu.Lock()
	for i := 1; i < len(srv.seen); i++ {
		if srv.cookies[i] != "sid=u1" || srv.planHdr[i] != "p" {
			t.Errorf("%s sent cookie %q, X-Plan %q", srv.seen[i], srv.cookies[i], srv.planHdr[i])
		}
	}
	srv.mu.Unlock()
}

func TestEmbeddedBaseFilterAndTypes(t *testing.T) {
	srv := &embedServer{}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	host := strings.TrimPrefix(ts.URL, "http://")
	runParsedFlow(t, embedFlow(ts.URL, "/sub/page", &Embedded{}))
	if got, want := srv.requests(), []string{host + "/sub/page", host + "/base/x.png", host + "/abs.js"}; !slices.Equal(got, want) {
		t.Errorf("with <base>: %q, want %q", got, want)
	}
	// Match is a whole-URL pattern, Exclude removes from what it keeps.
	srv.seen = nil
	runParsedFlow(t, embedFlow(ts.URL, "/page", &Embedded{Match: `.*/img/.*`, Exclude: `.*/(td|table)\.png`}))
	want := []string{host + "/page", host + "/img/bg.png", host + "/img/a.png", host + "/img/b.png", host + "/img/button.png"}
	if got := srv.requests(); !slices.Equal(got, want) {
		t.Errorf("filtered: %q, want %q", got, want)
	}
	// Only a match of the whole URL counts.
	srv.seen = nil
	runParsedFlow(t, embedFlow(ts.URL, "/page", &Embedded{Match: `img`}))
	if got := srv.requests(); len(got) != 1 {
		t.Errorf("a partial match fetched %q", got)
	}
	// Not HTML: nothing fetched.
	srv.seen = nil
	runParsedFlow(t, embedFlow(ts.URL, "/plain", &Embedded{}))
	if got := srv.requests(); len(got) != 1 {
		t.Errorf("text/plain: %q", got)
	}
	if err := embedFlow(ts.URL, "/page", &Embedded{Match: `(`}).Validate(); err == nil {
		t.Error("a bad pattern passed Validate")
	}
}

func TestEmbeddedConcurrency(t *testing.T) {
	for _, n := range []int{0, 3} {
		srv := &embedServer{delay: 40 * time.Millisecond}
		ts := httptest.NewServer(srv)
		rs := runParsedFlow(t, embedFlow(ts.URL, "/page", &Embedded{Concurrent: n}))
		ts.Close()
		if len(rs) != 14 {
			t.Fatalf("pool %d: %d results", n, len(rs))
		}
		want := int64(max(n, 1))
		if p := srv.peak.Load(); p != want {
			t.Errorf("pool %d: %d resources at once, want %d", n, p, want)
		}
	}
}

func TestEmbeddedURLs(t *testing.T) {
	base, _ := url.Parse("http://h/dir/page")
	got := EmbeddedURLs([]byte(`<img src=" a.png "><img src="javascript:x"><img src="https://x/y.png"><link rel="STYLESHEET" href="s.css">`), base)
	var s []string
	for _, u := range got {
		s = append(s, u.String())
	}
	if want := []string{"http://h/dir/a.png", "https://x/y.png", "http://h/dir/s.css"}; !slices.Equal(s, want) {
		t.Errorf("%q, want %q", s, want)
	}
}

func TestEmbeddedYAML(t *testing.T) {
	f, err := ParseFlow([]byte(`
threads: 1
loops: 1
steps:
  - request: {name: a, url: http://127.0.0.1:1/, embedded: true}
  - request: {name: b, url: http://127.0.0.1:1/, embedded: {match: '.*\.png', exclude: '.*/x\.png', concurrent: 4}}
  - request: {name: c, url: http://127.0.0.1:1/, embedded: false}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	st := f.Groups[0].Steps
	a, b, c := st[0].(*Request).Embedded, st[1].(*Request).Embedded, st[2].(*Request).Embedded
	if a == nil || *a != (Embedded{}) || b == nil || *b != (Embedded{Match: `.*\.png`, Exclude: `.*/x\.png`, Concurrent: 4}) || c != nil {
		t.Errorf("embedded: %+v %+v %+v", a, b, c)
	}
	if _, err := ParseFlow([]byte("threads: 1\nloops: 1\nsteps: [{request: {url: /, embedded: {pool: 3}}}]\n"), ""); err == nil || !strings.Contains(err.Error(), "pool") {
		t.Errorf("unknown field: %v", err)
	}
}
