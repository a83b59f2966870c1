package load

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ratelab/limit"
)

// flowServer records every request as "METHOD /path?query body" in order,
// and answers by path: /login sets a cookie and returns a token, /items
// lists ids, /fail answers 500, anything else "ok".
type flowServer struct {
	mu   sync.Mutex
	seen []string
	hdr  []http.Header
}

func (s *flowServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	line := r.Method + " " + r.URL.RequestURI()
	if len(b) > 0 {
		line += " " + string(b)
	}
	s.mu.Lock()
	s.seen = append(s.seen, line)
	s.hdr = append(s.hdr, r.Header.Clone())
	s.mu.Unlock()
	switch r.URL.Path {
	case "/login":
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s-" + r.URL.Query().Get("u"), Path: "/"})
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":"tok-%s","items":[{"id":"a1"},{"id":"b2"},{"id":"c3"}]}`, r.URL.Query().Get("u"))
	case "/html":
		fmt.Fprint(w, `<input name="csrf" value="X9"><a href="/p?id=7">7</a><a href="/p?id=8">8</a>`)
	case "/fail":
		w.WriteHeader(500)
	case "/slow":
		time.Sleep(30 * time.Millisecond)
		fmt.Fprint(w, "slow")
	default:
		fmt.Fprint(w, "ok")
	}
}

func (s *flowServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

func (s *flowServer) headers() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.hdr)
}

// runFlowYAML parses src (with {{URL}} replaced by the server's URL) and
// runs it, returning the results in delivery order.
func runFlowYAML(t *testing.T, src string) (*flowServer, []Result, Stats) {
	t.Helper()
	srv := &flowServer{}
	url := serve(t, srv)
	f, err := ParseFlow([]byte(strings.ReplaceAll(src, "{{URL}}", url)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return srv, runParsedFlow(t, f), Stats{}
}

func runParsedFlow(t *testing.T, f *Flow) []Result {
	t.Helper()
	var mu sync.Mutex
	var out []Result
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Run(ctx, Config{Flow: f, Sink: func(r *Result) {
		mu.Lock()
		out = append(out, *r)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func labels(rs []Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Label)
	}
	return out
}

func TestFlowLoginExtractCookiesTransaction(t *testing.T) {
	srv, rs, _ := runFlowYAML(t, `
base_url: {{URL}}
cookies: true
vars: {user: ann, greeting: "hi-{{.user}}"}
loops: 2
steps:
  - transaction:
      name: login
      steps:
        - request:
            name: login
            url: /login?u={{.user}}
            extract:
              - jsonpath: {var: token, expr: $.token}
              - jsonpath: {var: id, expr: '$.items[*].id', match: -1}
              - regex: {var: sid, field: headers, expr: 'sid=([^;]+)'}
        - request:
            name: home
            url: /home?t={{.token}}&s={{.sid}}&g={{.greeting}}&n={{.id_matchNr}}&second={{.id_2}}&missing={{.nope}}
  - request:
      name: html
      url: /html
      extract:
        - boundary: {var: csrf, left: 'value="', right: '"'}
        - regex: {var: p, expr: 'id=(\d+)', match: 2}
  - request: {name: use, method: POST, url: /use, body: 'csrf={{.csrf}}&p={{.p}}&g1={{.p_g1}}'}
`)
	want := []string{
		"GET /login?u=ann",
		"GET /home?t=tok-ann&s=s-ann&g=hi-ann&n=3&second=b2&missing=$%7Bnope%7D",
		"GET /html",
		"POST /use csrf=X9&p=8&g1=8",
	}
	got := srv.requests()
	if len(got) != 8 {
		t.Fatalf("server saw %q", got)
	}
	for i, w := range want {
		if got[i] != w && !(i == 1 && strings.HasPrefix(got[i], "GET /home?t=tok-ann&s=s-ann")) {
			t.Errorf("request %d: %q, want %q", i, got[i], w)
		}
	}
	// The cookie the login set goes with every later request of the user.
	hs := srv.headers()
	if hs[0].Get("Cookie") != "" || hs[1].Get("Cookie") != "sid=s-ann" || hs[3].Get("Cookie") != "sid=s-ann" {
		t.Errorf("cookies %q %q %q", hs[0].Get("Cookie"), hs[1].Get("Cookie"), hs[3].Get("Cookie"))
	}
	if l := labels(rs); strings.Join(l[:5], ",") != "login,home,login,html,use" {
		t.Fatalf("labels %q", l)
	}
	tx := rs[2]
	if !tx.Transaction || tx.Status != 200 || !tx.Success() || tx.Elapsed < rs[0].Elapsed+rs[1].Elapsed-time.Millisecond ||
		tx.BytesIn != rs[0].BytesIn+rs[1].BytesIn || tx.Parent != "" {
		t.Errorf("transaction %+v", tx)
	}
}

func TestFlowTransactionParentAndFailures(t *testing.T) {
	_, rs, _ := runFlowYAML(t, `
base_url: {{URL}}
loops: 1
steps:
  - transaction:
      name: tx
      parent: true
      steps:
        - request: {name: a, url: /a}
        - request: {name: fail, url: /fail}
        - request:
            name: asserted
            url: /a
            assert:
              - response: {field: body, match: contains, patterns: ["nothere"]}
        - request:
            name: ignored
            url: /fail
            assert:
              - response: {field: code, match: equals, patterns: ["500"], ignore_status: true}
        - request: {name: slow, url: /slow, assert: [{duration: 1ms}, {size: {bytes: 4}}]}
        - request: {name: size, url: /a, assert: [{size: {bytes: 3, compare: ">"}}]}
`)
	if len(rs) != 7 {
		t.Fatalf("%d results: %q", len(rs), labels(rs))
	}
	byLabel := map[string]Result{}
	for _, r := range rs {
		byLabel[r.Label] = r
	}
	for name, ok := range map[string]bool{"a": true, "fail": false, "asserted": false, "ignored": true, "slow": false, "size": false} {
		r := byLabel[name]
		if r.Success() != ok || r.Parent != "tx" {
			t.Errorf("%s: success %v failure %q parent %q", name, r.Success(), r.Failure, r.Parent)
		}
	}
	if f := byLabel["asserted"].Failure; f != "Test failed: text expected to contain /nothere/" {
		t.Errorf("assertion message %q", f)
	}
	if f := byLabel["slow"].Failure; !strings.HasPrefix(f, "The operation lasted too long") {
		t.Errorf("duration message %q", f)
	}
	tx := byLabel["tx"]
	var sum time.Duration
	for _, r := range rs[:6] {
		sum += r.Elapsed
	}
	if !tx.Transaction || tx.Success() || tx.Elapsed != sum ||
		tx.Failure != "Number of samples in transaction : 6, number of failing samples : 4" {
		t.Errorf("parent sample %+v (sum of children %v)", tx, sum)
	}
}

func TestFlowControllers(t *testing.T) {
	srv, _, _ := runFlowYAML(t, `
base_url: {{URL}}
vars: {kind: b, n: "2"}
loops: 4
steps:
  - once_only: {steps: [{request: {url: /once}}]}
  - loop: {count: 2, steps: [{request: {url: /loop}}]}
  - loop: {count: '{{.n}}', steps: [{request: {url: /loopexpr}}]}
  - interleave: {steps: [{request: {url: /i1}}, {request: {url: /i2}}, {request: {url: /i3}}]}
  - switch:
      value: '{{.kind}}'
      steps: [{request: {name: a, url: /sa}}, {request: {name: b, url: /sb}}]
  - switch:
      value: '7'
      steps: [{request: {url: /s0}}, {request: {url: /s1}}]
  - switch:
      value: 'zzz'
      steps: [{request: {name: x, url: /sx}}, {request: {name: Default, url: /sdefault}}]
  - if: {condition: '"{{.kind}}" == "b" && {{.n}} >= 2', steps: [{request: {url: /if}}]}
  - if: {condition: '{{.n}} > 5', steps: [{request: {url: /never}}]}
  - if: {condition: 'true', steps: [{request: {url: /iftrue}}]}
  - throughput: {percent: 50, per_user: true, steps: [{request: {url: /half}}]}
  - throughput: {executions: 1, steps: [{request: {url: /first}}]}
  - random: {steps: [{request: {url: /r1}}, {request: {url: /r2}}]}
  - foreach: {input: none, output: x, steps: [{request: {url: /neverfe}}]}
`)
	count := map[string]int{}
	for _, r := range srv.requests() {
		count[strings.TrimPrefix(r, "GET ")]++
	}
	want := map[string]int{"/once": 1, "/loop": 8, "/loopexpr": 8, "/i1": 2, "/i2": 1, "/i3": 1, "/sb": 4, "/s0": 4,
		"/sdefault": 4, "/if": 4, "/iftrue": 4, "/half": 2, "/first": 1}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%s: %d requests, want %d", k, count[k], n)
		}
	}
	if count["/r1"]+count["/r2"] != 4 || count["/never"] != 0 || count["/neverfe"] != 0 || count["/sa"] != 0 {
		t.Errorf("counts %v", count)
	}
}

func TestFlowWhileForEachRuntime(t *testing.T) {
	srv, _, _ := runFlowYAML(t, `
base_url: {{URL}}
loops: 1
counters: [{var: c, start: 1, incr: 1, per_user: true}]
steps:
  - request:
      url: /login?u=x
      extract: [{jsonpath: {var: id, expr: '$.items[*].id', match: -1}}]
  - foreach: {input: id, output: item, steps: [{request: {url: '/item/{{.item}}'}}]}
  - foreach: {input: id, output: item, start: 1, end: 2, steps: [{request: {url: '/second/{{.item}}'}}]}
  - while:
      condition: '"{{.item}}" != "z"'
      steps:
        - request: {url: /w}
        - request:
            url: /html
            extract: [{regex: {var: item, expr: 'value="(\w+)"', template: 'z', default: z}}]
  - while:
      steps:
        - request: {url: /untilfail}
        - request: {url: /fail}
  - runtime:
      duration: 100ms
      steps: [{request: {url: /slow}}]
`)
	got := srv.requests()
	joined := strings.Join(got, "\n")
	for _, w := range []string{"GET /item/a1\nGET /item/b2\nGET /item/c3\nGET /second/b2\nGET /w\nGET /html\nGET /untilfail\nGET /fail\nGET /slow"} {
		if !strings.Contains(joined, w) {
			t.Fatalf("requests:\n%s\nwant the sequence\n%s", joined, w)
		}
	}
	slow := strings.Count(joined, "/slow")
	if slow < 2 || slow > 5 {
		t.Errorf("runtime controller of 100ms sent %d requests of 30ms", slow)
	}
}

func TestFlowCSV(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "users.csv"), []byte("name;pass\nann;a1\nbob;b2\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "ids.csv"), []byte("10\n20\n30\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "quoted.csv"), []byte("\"a,b\",c\n"), 0o644)
	srv := &flowServer{}
	url := serve(t, srv)
	src := fmt.Sprintf(`
base_url: %s
data:
  - {file: users.csv, delimiter: ";", share: thread}
  - {file: ids.csv, vars: [id], recycle: false, share: all}
  - {file: quoted.csv, vars: "q,r", quoted: true}
threads: 1
loops: 4
steps:
  - request: {url: '/u/{{.name}}/{{.pass}}/{{.id}}/{{.q}}/{{.r}}'}
`, url)
	f, err := ParseFlow([]byte(src), dir)
	if err != nil {
		t.Fatal(err)
	}
	runParsedFlow(t, f)
	want := []string{"GET /u/ann/a1/10/a,b/c", "GET /u/bob/b2/20/a,b/c", "GET /u/ann/a1/30/a,b/c", "GET /u/bob/b2/%3CEOF%3E/a,b/c"}
	if got := srv.requests(); !slices.Equal(got, want) {
		t.Fatalf("requests %q\nwant %q", got, want)
	}
	// stopThread ends the user at the end of a file that does not recycle.
	srv2 := &flowServer{}
	f.BaseURL = serve(t, srv2)
	f.Data[1].StopThread = true
	runParsedFlow(t, f)
	if n := len(srv2.requests()); n != 3 {
		t.Fatalf("stopThread: %d requests, want 3", n)
	}
}

func TestFlowCSVSharing(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "d.csv"), []byte("v\n1\n2\n3\n4\n5\n6\n"), 0o644)
	for _, tc := range []struct {
		share string
		want  int // distinct values seen over 2 groups × 2 users × 1 loop
	}{{"all", 4}, {"group", 2}, {"thread", 1}} {
		srv := &flowServer{}
		url := serve(t, srv)
		src := fmt.Sprintf(`
base_url: %s
data: [{file: d.csv, share: %s}]
groups:
  - {threads: 2, loops: 1, steps: [{request: {url: '/{{.v}}'}}]}
  - {threads: 2, loops: 1, steps: [{request: {url: '/{{.v}}'}}]}
`, url, tc.share)
		f, err := ParseFlow([]byte(src), dir)
		if err != nil {
			t.Fatal(err)
		}
		runParsedFlow(t, f)
		distinct := map[string]bool{}
		for _, r := range srv.requests() {
			distinct[r] = true
		}
		if len(distinct) != tc.want || len(srv.requests()) != 4 {
			t.Errorf("share %s: requests %q, want %d distinct", tc.share, srv.requests(), tc.want)
		}
	}
}

func TestFlowCountersAndRandom(t *testing.T) {
	srv, _, _ := runFlowYAML(t, `
base_url: {{URL}}
threads: 1
loops: 4
counters:
  - {var: c, start: 1, incr: 2, max: 5, format: "000", per_user: true}
random:
  - {var: r, min: 3, max: 4, format: "R0"}
steps:
  - request: {url: '/c/{{.c}}/{{.r}}'}
`)
	got := srv.requests()
	for i, c := range []string{"001", "003", "005", "001"} {
		if !strings.HasPrefix(got[i], "GET /c/"+c+"/R") {
			t.Errorf("request %d: %q, want counter %s", i, got[i], c)
		}
		if r := got[i][len(got[i])-1]; r != '3' && r != '4' {
			t.Errorf("request %d: random %c out of [3,4]", i, r)
		}
	}
}

func TestFlowGroupsAndSampleErrors(t *testing.T) {
	srv, rs, _ := runFlowYAML(t, `
base_url: {{URL}}
groups:
  - {name: td, kind: teardown, threads: 1, loops: 1, steps: [{request: {url: /teardown}}]}
  - {name: main, threads: 2, loops: 3, delay: 50ms, steps: [{request: {url: /main}}]}
  - {name: su, kind: setup, threads: 1, loops: 1, steps: [{request: {url: /setup}}]}
  - name: next
    threads: 1
    loops: 2
    on_sample_error: start_next_loop
    steps: [{request: {url: /fail}}, {request: {url: /afterfail}}]
  - name: stopthread
    threads: 1
    loops: 5
    on_sample_error: stop_thread
    steps: [{request: {url: '/fail?stop'}}]
`)
	got := srv.requests()
	if got[0] != "GET /setup" || got[len(got)-1] != "GET /teardown" {
		t.Fatalf("order %q", got)
	}
	count := map[string]int{}
	for _, r := range got {
		count[r]++
	}
	if count["GET /main"] != 6 || count["GET /fail"] != 2 || count["GET /afterfail"] != 0 || count["GET /fail?stop"] != 1 {
		t.Fatalf("counts %v", count)
	}
	for _, r := range rs {
		if r.Label == "GET /main" && (r.Group != "main" || r.GroupNum != 2) {
			t.Fatalf("group %q", r.Group)
		}
	}
	// stop_test: the other group stops after its current sample.
	srv2, _, _ := runFlowYAML(t, `
base_url: {{URL}}
groups:
  - {name: a, threads: 1, duration: 5s, steps: [{request: {url: /slow}}]}
  - {name: b, threads: 1, loops: 1, on_sample_error: stop_test, delay: 100ms, steps: [{request: {url: /fail}}]}
  - {kind: teardown, threads: 1, loops: 1, steps: [{request: {url: /teardown}}]}
`)
	got = srv2.requests()
	if len(got) > 20 || got[len(got)-1] != "GET /teardown" {
		t.Fatalf("stop_test did not stop the run: %d requests", len(got))
	}
}

func TestFlowTimers(t *testing.T) {
	_, rs, _ := runFlowYAML(t, `
base_url: {{URL}}
threads: 1
loops: 3
steps:
  - request: {url: /a, timers: [{constant: 40ms}, {uniform: {delay: 10ms, range: 20ms}}]}
`)
	for i := 1; i < len(rs); i++ {
		gap := rs[i].Start.Sub(rs[i-1].Start.Add(rs[i-1].Elapsed))
		if gap < 50*time.Millisecond || gap > 200*time.Millisecond {
			t.Errorf("gap %v, want 50–70 ms of timers", gap)
		}
	}
	// Constant Throughput Timer at 600/min in this-thread mode: 100 ms apart.
	_, rs, _ = runFlowYAML(t, `
base_url: {{URL}}
threads: 1
loops: 4
timers: [{constant_throughput: {rate: 600/m}}]
steps: [{request: {url: /a}}]
`)
	if d := rs[3].Start.Sub(rs[0].Start); d < 290*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("constant throughput: 4 samples over %v, want about 300ms", d)
	}
	// Precise throughput 50/s over 2 users: 20 samples in about 0.4 s.
	_, rs, _ = runFlowYAML(t, `
base_url: {{URL}}
threads: 2
loops: 10
timers: [{precise_throughput: {rate: 50/s}}]
steps: [{request: {url: /a}}]
`)
	first, last := rs[0].Start, rs[0].Start
	for _, r := range rs {
		first, last = minTime(first, r.Start), maxTime(last, r.Start)
	}
	if d := last.Sub(first); len(rs) != 20 || d < 150*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("precise throughput: %d samples over %v, want about 380ms", len(rs), d)
	}
	// Synchronizing: 3 users started 60 ms apart leave together.
	_, rs, _ = runFlowYAML(t, `
base_url: {{URL}}
threads: 3
ramp_up: 180ms
loops: 1
steps: [{request: {url: /a, timers: [{synchronizing: {group_size: 3, timeout: 5s}}]}}]
`)
	first, last = rs[0].Start, rs[0].Start
	for _, r := range rs {
		first, last = minTime(first, r.Start), maxTime(last, r.Start)
	}
	if d := last.Sub(first); len(rs) != 3 || d > 40*time.Millisecond {
		t.Errorf("synchronizing: %d samples spread over %v", len(rs), d)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// A flow of one request per iteration takes the worker-driven path, on
// one connection, as a Plan does.
func TestFlowOneRequestFastPath(t *testing.T) {
	srv := &connServer{}
	url := serve(t, srv)
	f := &Flow{Groups: []*ThreadGroup{{Workload: Workload{Threads: 1, Loops: 5}, Steps: []Step{&Request{URL: url + "/x"}}}}}
	rs := runParsedFlow(t, f)
	if len(rs) != 5 || srv.count() != 1 || rs[0].Connect <= 0 || rs[1].Connect != 0 {
		t.Fatalf("%d results over %d connections", len(rs), srv.count())
	}
	// The open model runs flows too.
	f.Groups[0].Workload = Workload{Rate: limit.Per(100, time.Second), Loops: 5}
	if rs := runParsedFlow(t, f); len(rs) != 5 {
		t.Fatalf("open model: %d results", len(rs))
	}
}

func TestCond(t *testing.T) {
	for _, tc := range []struct {
		text      string
		value, ok bool
	}{
		{`"a" == "a"`, true, true}, {`"a" != "a"`, false, true}, {`3 > 20`, false, true}, {`"3" < "20"`, true, true},
		{`10 >= 10 && !(1 == 2)`, true, true}, {`false || 1 < 2`, true, true}, {`true`, true, true}, {`FALSE`, false, false},
		{`abc`, false, false}, {`"unclosed`, false, false}, {`1 ==`, false, false}, {``, false, false},
	} {
		if v, ok := Cond(tc.text); v != tc.value || ok != tc.ok {
			t.Errorf("Cond(%q) = %v, %v; want %v, %v", tc.text, v, ok, tc.value, tc.ok)
		}
	}
}

func TestFlowJSONAssertAndStopNow(t *testing.T) {
	_, rs, _ := runFlowYAML(t, `
base_url: {{URL}}
loops: 1
steps:
  - request:
      name: ok
      url: /login?u=z
      assert: [{json: {path: $.token, expected: tok-z}}, {json: {path: '$.items[1].id', expected: 'b\d', regex: true}}]
  - request: {name: wrong, url: '/login?u=z', assert: [{json: {path: $.token, expected: other}}]}
  - request: {name: absent, url: '/login?u=z', assert: [{json: {path: $.nope}}]}
  - request: {name: inverted, url: '/login?u=z', assert: [{json: {path: $.nope, invert: true}}]}
  - request: {name: notjson, url: /a, assert: [{json: {path: $.x}}]}
`)
	want := map[string]string{"ok": "", "wrong": "Value expected to be 'other', but found 'tok-z'",
		"absent": "No results for path: $.nope", "inverted": "", "notjson": "Invalid JSON"}
	for _, r := range rs {
		if w := want[r.Label]; !strings.HasPrefix(r.Failure, w) || (w == "") != (r.Failure == "") {
			t.Errorf("%s: failure %q, want %q", r.Label, r.Failure, w)
		}
	}
	// stop_test_now ends every group at once; no tearDown follows.
	srv, _, _ := runFlowYAML(t, `
base_url: {{URL}}
groups:
  - {threads: 2, duration: 10s, steps: [{request: {url: /a}}]}
  - {threads: 1, loops: 1, delay: 50ms, on_sample_error: stop_test_now, steps: [{request: {url: /fail}}]}
  - {kind: teardown, threads: 1, loops: 1, steps: [{request: {url: /teardown}}]}
`)
	got := srv.requests()
	if slices.Contains(got, "GET /teardown") || !slices.Contains(got, "GET /fail") {
		t.Fatalf("stop_test_now: %d requests, teardown ran: %v", len(got), slices.Contains(got, "GET /teardown"))
	}
}

// The random timers stay within their bounds: uniform in [delay,
// delay+range), Gaussian around the delay, Poisson of mean lambda ms.
func TestFlowRandomTimers(t *testing.T) {
	u := &user{rng: rand.New(rand.NewPCG(1, 2))}
	for _, tc := range []struct {
		t        Timer
		lo, hi   time.Duration
		meanNear time.Duration
	}{
		{Timer{Kind: TimerUniform, Delay: 10 * time.Millisecond, Range: 20 * time.Millisecond}, 10 * time.Millisecond, 30 * time.Millisecond, 20 * time.Millisecond},
		{Timer{Kind: TimerGaussian, Delay: 100 * time.Millisecond, Range: 10 * time.Millisecond}, 40 * time.Millisecond, 160 * time.Millisecond, 100 * time.Millisecond},
		{Timer{Kind: TimerPoisson, Delay: 5 * time.Millisecond, Lambda: 50}, 5 * time.Millisecond, 200 * time.Millisecond, 55 * time.Millisecond},
	} {
		ct := &ctimer{t: &tc.t}
		var sum time.Duration
		const n = 2000
		for range n {
			d := ct.delay(u, context.Background(), time.Now())
			if d < tc.lo || d >= tc.hi {
				t.Fatalf("timer %d: delay %v outside [%v, %v)", tc.t.Kind, d, tc.lo, tc.hi)
			}
			sum += d
		}
		if mean := sum / n; mean < tc.meanNear-3*time.Millisecond || mean > tc.meanNear+3*time.Millisecond {
			t.Errorf("timer %d: mean %v, want about %v", tc.t.Kind, mean, tc.meanNear)
		}
	}
}

// Header managers apply by scope: inner ones replace outer ones of the
// same name, and a request's own headers come last.
func TestFlowHeadersByScope(t *testing.T) {
	srv, _, _ := runFlowYAML(t, `
base_url: {{URL}}
headers: {X-A: flow, X-B: flow}
groups:
  - loops: 1
    headers: {X-A: group}
    steps:
      - transaction:
          name: tx
          headers: {X-C: tx}
          steps:
            - request: {url: /one, headers: {X-C: '{{.Thread}}-req'}}
            - request: {url: /two}
      - request: {url: /three}
`)
	hs := srv.headers()
	got := func(i int) string {
		return hs[i].Get("X-A") + "," + hs[i].Get("X-B") + "," + hs[i].Get("X-C")
	}
	for i, want := range []string{"group,flow,1-req", "group,flow,tx", "group,flow,"} {
		if got(i) != want {
			t.Errorf("request %d: headers %q, want %q", i, got(i), want)
		}
	}
}

// The example flow runs as documented against a server that answers its
// routes (its workload shortened, its timers removed).
func TestFlowExampleRuns(t *testing.T) {
	mux := http.NewServeMux()
	var paid, items, cart atomic.Int64
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		fmt.Fprintf(w, `{"token":"t-%s"}`, r.PostForm.Get("user"))
	})
	mux.HandleFunc("GET /categories/books", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer t-") {
			w.WriteHeader(401)
		}
		fmt.Fprint(w, `[{"id":"x1"},{"id":"x2"},{"id":"x3"},{"id":"x4"}]`)
	})
	mux.HandleFunc("GET /items/", func(w http.ResponseWriter, r *http.Request) { items.Add(1) })
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) { cart.Add(1) })
	mux.HandleFunc("POST /pay", func(w http.ResponseWriter, r *http.Request) { paid.Add(1) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {})
	url := serve(t, mux)
	src, err := os.ReadFile("../examples/flows/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFlow(src, "../examples/flows")
	if err != nil {
		t.Fatal(err)
	}
	f.BaseURL = url
	users := f.Groups[1]
	users.Workload = Workload{Threads: 2, Loops: 5}
	users.Timers = nil
	rs := runParsedFlow(t, f)
	for _, r := range rs {
		if !r.Success() {
			t.Errorf("%s failed: status %d %s%s", r.Label, r.Status, r.Error, r.Failure)
		}
	}
	// 10 iterations: 3 items each (foreach end 3), checkout on 30 %.
	if items.Load() != 30 || cart.Load() < 2 || cart.Load() > 4 || paid.Load() != cart.Load() {
		t.Fatalf("items %d, carts %d, payments %d", items.Load(), cart.Load(), paid.Load())
	}
}

func TestFlowInterrupt(t *testing.T) {
	url := serve(t, &flowServer{})
	f := &Flow{BaseURL: url, Groups: []*ThreadGroup{{Workload: Workload{Threads: 2, Duration: time.Minute},
		Steps: []Step{&Loop{Count: -1, Steps: []Step{&Request{URL: "/slow"}}}}}}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	begin := time.Now()
	st, err := Run(ctx, Config{Flow: f, Sink: func(*Result) {}})
	if err != nil || !st.Interrupted || st.Sent == 0 || time.Since(begin) > 2*time.Second {
		t.Fatalf("err %v, %+v after %v", err, st, time.Since(begin))
	}
	f.Groups[0].Workload = Workload{Threads: 1, Loops: 1}
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "unbounded") {
		t.Fatalf("a loop forever without a duration: %v", err)
	}
}

// FuzzCond checks that no text makes Cond panic, and that a comparison
// and its negation agree.
func FuzzCond(f *testing.F) {
	for _, s := range []string{`"a" == "b"`, `1 < 2 && !(3 >= 4)`, `true || false`, `((`, `"x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		v, ok := Cond(text)
		if !ok {
			return
		}
		if nv, nok := Cond("!(" + text + ")"); !nok || nv == v {
			t.Fatalf("Cond(%q) = %v but its negation = %v, %v", text, v, nv, nok)
		}
	})
}

// A timer in the scope of several requests is one timer (JMeter's): a
// Constant Throughput Timer of 600/min over two requests spaces all four
// samples 100 ms apart, not each request's. A pause runs its timers, then
// waits, and sends nothing.
func TestFlowSharedTimerAndPause(t *testing.T) {
	srv, rs, _ := runFlowYAML(t, `
base_url: {{URL}}
threads: 1
loops: 2
timers: [{constant_throughput: {rate: 600/m}}]
steps: [{request: {url: /a}}, {request: {url: /b}}]
`)
	if len(rs) != 4 || len(srv.requests()) != 4 {
		t.Fatalf("%d results, want 4", len(rs))
	}
	if d := rs[3].Start.Sub(rs[0].Start); d < 280*time.Millisecond || d > 600*time.Millisecond {
		t.Errorf("constant throughput over two requests: 4 samples over %v, want about 300ms", d)
	}
	srv, rs, _ = runFlowYAML(t, `
base_url: {{URL}}
threads: 1
loops: 1
steps:
  - transaction:
      name: tx
      steps:
        - request: {url: /a}
        - pause: {duration: 60ms, timers: [{constant: 40ms}]}
        - request: {url: /b}
`)
	if got := srv.requests(); len(got) != 2 {
		t.Fatalf("requests %v, want /a and /b only", got)
	}
	var a, b, tx *Result
	for i := range rs {
		switch {
		case rs[i].Transaction:
			tx = &rs[i]
		case a == nil:
			a = &rs[i]
		default:
			b = &rs[i]
		}
	}
	if a == nil || b == nil || tx == nil {
		t.Fatalf("results %v", labels(rs))
	}
	gap := b.Start.Sub(a.Start.Add(a.Elapsed))
	if gap < 100*time.Millisecond || gap > 300*time.Millisecond {
		t.Errorf("gap %v, want the 40 ms timer and the 60 ms pause", gap)
	}
	// The transaction counts the pause as its time, not the timer.
	if tx.Elapsed < 60*time.Millisecond || tx.Elapsed >= a.Elapsed+b.Elapsed+gap {
		t.Errorf("transaction %v: want the pause in, the timer out (gap %v)", tx.Elapsed, gap)
	}
}
