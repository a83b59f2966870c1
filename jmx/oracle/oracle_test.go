// Package oracle_test checks ratelab's JMeter emulation against a real
// JMeter: the plans in testdata run under JMeter 2.13 and under
// "ratelab load --jmx" against the same recording server on loopback, and
// each thread's requests (method, URL, body, headers, cookies), the counts,
// the labels of the JTL samples and the pauses between requests are
// compared. A plan ratelab calls faithful must match; a plan it calls
// unfaithful must differ from JMeter, and only where its warning says.
//
// It needs JMeter: RATELAB_JMETER names the jmeter-2.13 wrapper of
// ../shared/tools, and the test runs inside ../shared/tools/isolated
// (loopback only), as .ci/run does:
//
//	../shared/tools/isolated env RATELAB_JMETER=$PWD/../shared/tools/jmeter-2.13 \
//	    RATELAB_REQUIRE_ORACLE=1 go test -count=1 ./jmx/oracle
//
// Without RATELAB_JMETER it skips, unless RATELAB_REQUIRE_ORACLE=1, where
// it fails. JMeter's JVM is slow to start, so all plans run in one JMeter
// run: their thread groups, concatenated into one plan.
package oracle_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"ratelab/internal/testenv"
)

// request is what the recording server saw.
type request struct {
	Case, Thread string
	Method, URI  string
	Body         string
	// Headers are the ones both tools set from the plan: X-*, the media
	// type of Content-Type, Cookie.
	Headers string
	At      time.Time
}

func (r request) key() string {
	return r.Method + " " + r.URI + " body=" + r.Body + " " + r.Headers
}

type recorder struct {
	mu   sync.Mutex
	reqs []request
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var hs []string
	for name, vs := range r.Header {
		v := strings.Join(vs, ",")
		switch {
		case strings.HasPrefix(name, "X-"), name == "Cookie", name == "Authorization":
		case name == "Content-Type":
			v, _, _ = strings.Cut(v, ";")
		default:
			continue
		}
		hs = append(hs, name+": "+strings.TrimSpace(v))
	}
	sort.Strings(hs)
	req := request{Case: r.Header.Get("X-Case"), Thread: r.Header.Get("X-Thread"), Method: r.Method,
		URI: r.URL.RequestURI(), Body: string(body), Headers: strings.Join(hs, "; "), At: time.Now()}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, req)
	rec.mu.Unlock()
	switch r.URL.Path {
	case "/extract/token":
		fmt.Fprintf(w, `{"token":"t-%s"}`, req.Thread)
	case "/embedded/page":
		// A page whose resources both tools fetch, in document order and
		// once each, those outside /embedded/ left out by the plan's
		// embedded_url_re; every resource answers text/plain, so
		// neither parses further.
		http.SetCookie(w, &http.Cookie{Name: "emb", Value: "e" + req.Thread, Path: "/"})
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<html><head><link rel="stylesheet" href="/embedded/a.css"><script src="b.js"></script></head>`+
			`<body background="/embedded/bg.png"><img src="/embedded/c.png"><img src="/other/d.png"><img src="c.png">`+
			`<a href="/embedded/not-fetched">x</a><input type="image" src="/embedded/e.png"></body></html>`)
	case "/cookies/set":
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s" + req.Thread, Path: "/"})
		fmt.Fprintln(w, "set")
	default:
		fmt.Fprintln(w, "ok")
	}
}

func (rec *recorder) take() []request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.reqs
	rec.reqs = nil
	return out
}

// byThread groups one case's requests by thread, in arrival order.
func byThread(reqs []request, c string) map[string][]request {
	out := map[string][]request{}
	for _, r := range reqs {
		if r.Case == c {
			out[r.Thread] = append(out[r.Thread], r)
		}
	}
	return out
}

// pauses returns, for each step of a thread's sequence (a request after
// another), the shortest pause between the two over the loop iterations.
// The shortest, because JMeter's JVM loads and compiles code the first
// time a sampler runs (up to 200 ms seen on a loaded machine).
func pauses(rs []request) map[string]time.Duration {
	out := map[string]time.Duration{}
	for i := 1; i < len(rs); i++ {
		step := rs[i-1].Method + " " + rs[i-1].URI + " -> " + rs[i].Method + " " + rs[i].URI
		d := rs[i].At.Sub(rs[i-1].At)
		if old, ok := out[step]; !ok || d < old {
			out[step] = d
		}
	}
	return out
}

// jtlLabels counts the samples of a JTL by label. JMeter 2.13 writes no
// header line and 12 columns (label third); ratelab writes a header line.
func jtlLabels(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]int{}
	for i, r := range rows {
		if i == 0 && len(r) > 2 && r[0] == "timeStamp" {
			continue
		}
		if len(r) < 3 {
			t.Fatalf("%s: row %d has %d fields", path, i+1, len(r))
		}
		out[r[2]]++
	}
	return out
}

// oracleCase is one plan of testdata and what ratelab says of it.
type oracleCase struct {
	name string
	// unfaithful is a phrase of the warning ratelab must give, empty when
	// it must call the plan faithful.
	unfaithful string
	// differs checks, for an unfaithful plan, that JMeter really did what
	// ratelab says it cannot (jm: JMeter's requests, rl: ratelab's).
	differs func(t *testing.T, jm, rl map[string][]request)
	// extraJMeterLabels are JTL labels JMeter writes and ratelab does not,
	// with their counts (Transaction Controller samples).
	extraJMeterLabels map[string]int
	// noTimers is set for a plan with no timer and no pause: JMeter's
	// gaps there measure its own overhead between samples.
	noTimers bool
	// onlyJMeterPaths are paths only JMeter requests (thread groups
	// ratelab does not run); they are left out of the comparison.
	onlyJMeterPaths []string
}

var cases = []oracleCase{
	{name: "flow"},
	{name: "csv", noTimers: true},
	{name: "setup"},
	{name: "extract", noTimers: true},
	{name: "cookies", noTimers: true},
	{name: "embedded", noTimers: true},
}

func TestMain(m *testing.M) {
	if os.Getenv("RATELAB_JMETER") == "" {
		if os.Getenv("RATELAB_REQUIRE_ORACLE") == "1" {
			fmt.Fprintln(os.Stderr, "RATELAB_JMETER is not set: the JMeter oracle cannot run")
			os.Exit(1)
		}
		fmt.Println("skipping the JMeter oracle: set RATELAB_JMETER to ../shared/tools/jmeter-2.13 (see the package doc)")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// combine concatenates the cases' thread groups into one plan.
func combine(t *testing.T, names []string) []byte {
	t.Helper()
	var parts [][]byte
	var head, tail []byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", n+".jmx"))
		if err != nil {
			t.Fatal(err)
		}
		i, j := bytes.Index(b, []byte("<!--case-->")), bytes.Index(b, []byte("<!--/case-->"))
		if i < 0 || j < i {
			t.Fatalf("%s: no <!--case--> part", n)
		}
		if head == nil {
			head, tail = b[:i], b[j:]
		}
		parts = append(parts, b[i:j])
	}
	out := append([]byte{}, head...)
	for _, p := range parts {
		out = append(out, p...)
	}
	return append(out, tail...)
}

func TestAgainstJMeter(t *testing.T) {
	dir := t.TempDir()
	bin := testenv.BuildRatelab(t)
	rec := &recorder{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rec, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	csvdir, _ := filepath.Abs("testdata")
	props := []string{"host=127.0.0.1", "port=" + port, "csvdir=" + csvdir, htmlParser}

	names := make([]string, len(cases))
	for i, c := range cases {
		names[i] = c.name
	}
	all := filepath.Join(dir, "all.jmx")
	if err := os.WriteFile(all, combine(t, names), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	args := []string{"-t", all, "-l", filepath.Join(dir, "jmeter.jtl"), "-j", filepath.Join(dir, "jmeter.log")}
	for _, p := range props {
		args = append(args, "-J"+p)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, os.Getenv("RATELAB_JMETER"), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "jmeter.log"))
		t.Fatalf("jmeter: %v\n%s\n%s", err, out, log)
	}
	t.Logf("JMeter ran the %d plans in %v", len(cases), time.Since(start).Round(time.Millisecond))
	jmeter := rec.take()
	jmLabels := jtlLabels(t, filepath.Join(dir, "jmeter.jtl"))
	// JMeter's own time between two samples with no timer between them,
	// in this run: the median of the shortest gaps of the cases without
	// timers, step by step. On a busy
	// machine it is tens of milliseconds, which ratelab does not spend.
	var idle []time.Duration
	for _, c := range cases {
		if !c.noTimers {
			continue
		}
		for _, rs := range byThread(jmeter, c.name) {
			// The shortest over the iterations, as for the pauses
			// compared below (the first iteration is the JVM's slowest).
			for _, d := range pauses(rs) {
				idle = append(idle, d)
			}
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i] < idle[j] })
	var overhead time.Duration
	if len(idle) > 0 {
		overhead = idle[len(idle)/2]
	}
	t.Logf("JMeter's median gap between samples with no timer: %v", overhead)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan := filepath.Join("testdata", c.name+".jmx")
			// What ratelab says of the plan.
			jargs := []string{"jmx", "--json", plan}
			for _, p := range props {
				jargs = append(jargs, "-J", p)
			}
			out, err := exec.Command(bin, jargs...).Output()
			if err != nil {
				t.Fatalf("ratelab jmx: %v", err)
			}
			var a struct {
				Faithful bool
				Warnings []struct {
					Message    string
					Unfaithful bool
				}
			}
			if err := json.Unmarshal(out, &a); err != nil {
				t.Fatal(err)
			}
			var unf []string
			for _, w := range a.Warnings {
				if w.Unfaithful {
					unf = append(unf, w.Message)
				}
			}
			if c.unfaithful == "" && !a.Faithful {
				t.Fatalf("ratelab calls the plan unfaithful: %v", unf)
			}
			if c.unfaithful != "" && (a.Faithful || !strings.Contains(strings.Join(unf, "\n"), c.unfaithful)) {
				t.Fatalf("ratelab does not warn %q; unfaithful: %v", c.unfaithful, unf)
			}

			// ratelab runs it.
			jtl := filepath.Join(dir, c.name+".jtl")
			largs := []string{"load", "--jmx", plan, "--jtl", jtl}
			for _, p := range props {
				largs = append(largs, "-J", p)
			}
			if out, err := exec.Command(bin, largs...).CombinedOutput(); err != nil {
				t.Fatalf("ratelab load: %v\n%s", err, out)
			}
			rl := byThread(rec.take(), c.name)
			jm := byThread(jmeter, c.name)
			for th, rs := range jm {
				var kept []request
				for _, r := range rs {
					only := false
					for _, p := range c.onlyJMeterPaths {
						only = only || strings.HasPrefix(r.URI, p)
					}
					if !only {
						kept = append(kept, r)
					}
				}
				jm[th] = kept
			}
			if len(jm) == 0 || len(jm) != len(rl) {
				t.Fatalf("threads: JMeter %d, ratelab %d", len(jm), len(rl))
			}
			if c.differs != nil {
				c.differs(t, jm, rl)
				return
			}
			for th, want := range jm {
				got := rl[th]
				if len(got) != len(want) {
					t.Errorf("thread %s: JMeter sent %d requests, ratelab %d", th, len(want), len(got))
					continue
				}
				for i := range want {
					if want[i].key() != got[i].key() {
						t.Errorf("thread %s, request %d:\n JMeter  %s\n ratelab %s", th, i+1, want[i].key(), got[i].key())
					}
				}
			}
			// The pauses between requests: ratelab's within 25 ms + 20 % of
			// JMeter's, step by step, thread by thread; shorter by at most
			// that and JMeter's own overhead between samples (in a plan
			// without timers JMeter's gaps are all overhead: ratelab must
			// only not pause longer).
			for th, want := range jm {
				got := pauses(rl[th])
				for step, jd := range pauses(want) {
					rd, ok := got[step]
					if !ok {
						continue // the sequences differ, reported above
					}
					if tol := 25*time.Millisecond + jd/5; rd-jd > tol || !c.noTimers && jd-rd > tol+overhead {
						t.Errorf("thread %s, pause %s: JMeter %v, ratelab %v (tolerance %v, JMeter's overhead %v)", th, step, jd, rd, tol, overhead)
					}
				}
			}
			// The JTL samples, by label: the same counts, but for the
			// Transaction Controller samples only JMeter writes.
			rlLabels := jtlLabels(t, jtl)
			for label, n := range rlLabels {
				if jmLabels[label] != n {
					t.Errorf("JTL label %q: JMeter %d samples, ratelab %d", label, jmLabels[label], n)
				}
			}
			for label, n := range c.extraJMeterLabels {
				if jmLabels[label] != n || rlLabels[label] != 0 {
					t.Errorf("transaction %q: JMeter %d samples (want %d), ratelab %d", label, jmLabels[label], n, rlLabels[label])
				}
			}
		})
	}
}

// htmlParser names the HTML parser JMeter reads embedded resources with:
// Debian's JMeter 2.13 lacks the jodd library of its default
// (LagartoBasedHtmlParser), so its own regular-expression parser, which
// needs no library.
const htmlParser = "htmlParser.className=org.apache.jmeter.protocol.http.parser.RegexpHTMLParser"
