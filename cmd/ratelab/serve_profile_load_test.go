package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"ratelab/httpapi"
	"ratelab/internal/testenv"
	"ratelab/load"
)

// TestProfileTiers measures every tier of every profile in
// examples/policies with `ratelab load` against `ratelab serve` on that
// profile with its recommended flags, each tier on a server of its own,
// at the tier's real numbers (serve has no clock or scale to change):
//
//   - a fixed window gets its quota and some more at once inside one
//     aligned window (the burst starts just after a boundary, --start-at):
//     exactly the quota is admitted, and every 429 carries the wait to
//     the window's end, in whole seconds, within the bounds the send and
//     receive instants of that request put on the server's decision;
//   - a GCRA bucket gets a flood: what it admits is the burst plus one
//     per emission interval between the first and the last decision,
//     exactly, within the same bounds; count_rejected is checked request
//     by request against the rule of limit/doc.go, then after the pause
//     the last 429 asked for;
//   - the concurrency tier gets 100 requests held in flight by the
//     database (a PostgreSQL lock the test takes on the table they read),
//     the 101st overlapping one is a 429, and when one of them completes
//     the next is admitted.
//
// Each 429 must name its tier in the profile's dialect: load reads
// x-ratelimit-resource (github) and the detailed body (token-bucket) into
// its results; the inin dialect names no policy, so one request of the
// test's own, sent in the same window, must carry that tier's quota in
// inin-ratelimit-allowed and the terse body. Each subtest logs a line
// "tier: …" with what it measured (bench/RESULTS.md, issue 12).
func TestProfileTiers(t *testing.T) {
	cases := profileTierCases()
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "policies", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("profiles: %v %v", files, err)
	}
	covered := map[string]bool{}
	for _, f := range files {
		ps, err := httpapi.LoadPolicies(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps.List() {
			name := filepath.Base(f) + "/" + p.Name
			covered[name] = true
			if cases[name] == nil {
				t.Errorf("%s: a tier no case measures", name)
			}
		}
	}
	var names []string
	for name := range cases {
		if !covered[name] {
			t.Errorf("%s: a case for a tier no profile has", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	bin := testenv.BuildRatelab(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) { cases[name](t, bin) })
	}
}

// profileTierCases returns the measurement of each tier, by
// "profile.yaml/policy".
func profileTierCases() map[string]func(t *testing.T, bin string) {
	cc := []string{"--headers", "inin", "--reject-body", "terse"}
	gh := []string{"--headers", "github"}
	scripts := "/api/v2/architect/scripts"
	body := `{"name":"n","text":"t"}`
	return map[string]func(*testing.T, string){
		// contact-center: fixed windows everywhere, inin headers, terse body.
		"contact-center.yaml/client-requests": windowTier{profile: "contact-center.yaml", flags: cc, policy: "client-requests",
			quota: 300, window: time.Minute, method: "GET", path: scripts, n: 320, threads: 10}.run,
		"contact-center.yaml/user-listing": windowTier{profile: "contact-center.yaml", flags: cc, policy: "user-listing",
			quota: 60, window: time.Minute, method: "GET", path: "/api/v2/users", n: 70, threads: 10}.run,
		// Distinct scripts, so that no per-script window fills first.
		"contact-center.yaml/script-writes": windowTier{profile: "contact-center.yaml", flags: cc, policy: "script-writes",
			quota: 20, window: time.Second, method: "PUT", path: scripts + "/{{.id}}", body: body, n: 30, threads: 10,
			data: "id", rows: func(i int) string { return fmt.Sprintf("w%d", i) }, check: scripts + "/w-check"}.run,
		// One script, in two consecutive windows: 2 in each.
		"contact-center.yaml/script-writes-per-script": windowTier{profile: "contact-center.yaml", flags: cc, policy: "script-writes-per-script",
			quota: 2, window: time.Second, method: "PUT", path: scripts + "/s1", body: body, n: 8, threads: 4, windows: 2}.run,
		// Requests without credentials, charged by address.
		"contact-center.yaml/token-requests": windowTier{profile: "contact-center.yaml", flags: cc, policy: "token-requests",
			quota: 20, window: time.Second, method: "GET", path: "/api/v2/users", n: 30, threads: 10, unauthenticated: true}.run,
		// Four clients of one org, 276 requests each (under their 300/m).
		"contact-center.yaml/org-requests": windowTier{profile: "contact-center.yaml", flags: cc, policy: "org-requests",
			quota: 1000, window: time.Second, method: "GET", path: scripts, n: 1104, threads: 16, clients: 4}.run,

		// github: 5,000/h from the client's first request, 100 in flight,
		// 80 writes a minute; github headers.
		"github.yaml/core":                githubCore,
		"github.yaml/concurrent-requests": githubConcurrency,
		"github.yaml/content-creation": windowTier{profile: "github.yaml", flags: gh, policy: "content-creation",
			quota: 80, window: time.Minute, method: "PUT", path: scripts + "/s1", body: body, n: 90, threads: 10}.run,
		// Grants at the token endpoint, charged by client id.
		"github.yaml/token-requests": windowTier{profile: "github.yaml", flags: gh, policy: "token-requests",
			quota: 60, window: time.Minute, method: "POST", path: "/oauth/token", body: "grant_type=client_credentials&client_id=demo&client_secret=s3cret",
			n: 70, threads: 10, unauthenticated: true, grants: true}.run,

		// token-bucket: GCRA, the default (ietf) headers and detailed body.
		"token-bucket.yaml/client-requests": bucketTier{policy: "client-requests", burst: 100, interval: 40 * time.Millisecond,
			method: "GET", path: scripts, rate: "400/s", ok: 200}.run,
		"token-bucket.yaml/client-writes": countRejectedWrites,
		"token-bucket.yaml/token-requests": bucketTier{policy: "token-requests", burst: 20, interval: 100 * time.Millisecond,
			method: "GET", path: "/api/v2/users", rate: "200/s", ok: 401, unauthenticated: true}.run,
	}
}

// windowTier measures an epoch-aligned fixed-window tier: n requests at
// once (threads users, n/threads each) inside one window, windows times
// in a row.
type windowTier struct {
	profile string
	flags   []string
	policy  string
	quota   int
	window  time.Duration
	method  string
	// path is the request's path, a load template; check is the path of
	// the test's own request (default: path).
	path, check, body string
	n, threads        int
	windows           int
	// unauthenticated requests carry no token (admitted ones are 401s,
	// or 200s for grants at the token endpoint).
	unauthenticated, grants bool
	// clients, when more than 1, spreads the requests over that many
	// clients of one org, in turn.
	clients int
	// data names a CSV column that rows(i) fills for request i.
	data string
	rows func(i int) string
}

func (w windowTier) run(t *testing.T, bin string) {
	s := startServeProc(t, bin, w.profile, "sqlite:"+filepath.Join(t.TempDir(), "r.db"), w.flags...)
	var tok string
	var args []string
	if !w.unauthenticated {
		tok = s.token("demo", "s3cret")
		args = append(args, "-H", "Authorization: Bearer "+tok)
	}
	var csv []string
	switch {
	case w.clients > 1:
		csv = append(csv, "token", tok)
		for range w.clients - 1 {
			csv = append(csv, s.newClient())
		}
		args = []string{"-H", "Authorization: Bearer {{.token}}"}
	case w.data != "":
		csv = append(csv, w.data)
		for i := range w.n {
			csv = append(csv, w.rows(i))
		}
	}
	if csv != nil {
		path := filepath.Join(t.TempDir(), "data.csv")
		if err := os.WriteFile(path, []byte(strings.Join(csv, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--data", path)
	}
	args = append(args, "--url", s.url+w.path, "-X", w.method, "--threads", strconv.Itoa(w.threads), "--loops", strconv.Itoa(w.n/w.threads))
	if w.body != "" {
		args = append(args, "-H", "Content-Type: "+contentType(w.body), "--body", w.body)
	}
	ok := http.StatusOK
	if w.unauthenticated && !w.grants {
		ok = http.StatusUnauthorized
	}
	check := w.check
	if check == "" {
		check = w.path
	}
	begin := time.Now()
	at := windowStart(w.window, begin)
	for k := range max(1, w.windows) {
		ws := at.Add(time.Duration(k) * w.window).Truncate(w.window)
		we := ws.Add(w.window)
		runArgs := args
		if atK := at.Add(time.Duration(k) * w.window); atK.After(time.Now()) {
			runArgs = append(runArgs, "--start-at", atK.UTC().Format(time.RFC3339Nano))
		}
		run := runLoadProc(t, bin, runArgs...)
		// The test's own request, in the same window: the 429 in the
		// profile's dialect, with headers load does not keep.
		x := s.do(w.method, check, tok, w.body)
		first, last := run.span()
		if first.Before(ws) || !x.recv.Before(we) {
			t.Fatalf("window %d: the burst and the check ran from %v to %v, outside the window [%v, %v): the machine stalled for the length of a window",
				k, first.Format(time.StampMilli), x.recv.Format(time.StampMilli), ws.Format(time.StampMilli), we.Format(time.StampMilli))
		}
		st := run.statuses()
		if ok == http.StatusOK {
			st[ok] += st[http.StatusCreated] // a PUT that creates its script
			delete(st, http.StatusCreated)
		}
		t.Logf("tier: %s/%s | fixed window | %d/%v | sent %d, admitted %d, 429 %d, retry after %s | %v from %s",
			w.profile, w.policy, w.quota, w.window, len(run.results), st[ok], st[429], run.retryRange(), last.Sub(first).Round(time.Millisecond), ws.Format("15:04:05.000"))
		if st[ok] != w.quota || st[429] != w.n-w.quota || len(run.results) != w.n {
			t.Errorf("window %d: %d requests, statuses %v; want %d × %d and %d × 429", k, len(run.results), st, w.quota, ok, w.n-w.quota)
		}
		for _, r := range run.rejected() {
			checkWindowRejection(t, r, w.flags, w.policy, we)
		}
		checkDialect(t, x, w.flags, w.policy, int64(w.quota), we, we)
	}
}

// windowStart returns when a burst in windows of w should start: 20 ms
// after the next boundary for windows of a second or less; now for longer
// windows unless fewer than 5 s of the current one remain.
func windowStart(w time.Duration, now time.Time) time.Time {
	next := now.Truncate(w).Add(w)
	if w > time.Second {
		if next.Sub(now) > 5*time.Second {
			return now
		}
		return next.Add(20 * time.Millisecond)
	}
	if next.Sub(now) < 150*time.Millisecond {
		next = next.Add(w)
	}
	return next.Add(20 * time.Millisecond)
}

// checkWindowRejection checks one 429 of load's results against a window
// that ends at we: the wait to the end in whole seconds, nothing
// remaining, and the policy where the dialect names it.
func checkWindowRejection(t *testing.T, r load.Result, flags []string, policy string, we time.Time) {
	t.Helper()
	if !retryWithin(r, flags, we, we) {
		t.Errorf("429 sent %s: retry after %v, want the wait to the window's end %s", r.Start.Format(time.StampMilli), r.RetryAfter, we.Format(time.StampMilli))
	}
	if r.Remaining != 0 {
		t.Errorf("429 sent %s: remaining %d, want 0", r.Start.Format(time.StampMilli), r.Remaining)
	}
	want := policy // the detailed body names it
	if terse(flags) {
		want = "" // inin-ratelimit-* and the terse body name none
	}
	if r.Policy != want {
		t.Errorf("429 sent %s: policy %q, want %q", r.Start.Format(time.StampMilli), r.Policy, want)
	}
}

// retryWithin reports whether r's retry-after is the wait from its
// decision to an instant between endLo and endHi: in whole seconds
// (Retry-After) with the terse body, in milliseconds (the detailed body's
// retryAfterMs, which load prefers) otherwise.
func retryWithin(r load.Result, flags []string, endLo, endHi time.Time) bool {
	unit := time.Millisecond
	if terse(flags) {
		unit = time.Second
	}
	up := func(d time.Duration) time.Duration { return (d + unit - 1) / unit * unit }
	return r.RetryAfter%unit == 0 && r.RetryAfter >= up(endLo.Sub(decidedBy(r))) && r.RetryAfter <= up(endHi.Sub(r.Start))
}

func terse(flags []string) bool {
	for i, f := range flags {
		if f == "--reject-body" {
			return flags[i+1] == httpapi.RejectTerse
		}
	}
	return false
}

func dialect(flags []string) string {
	for i, f := range flags {
		if f == "--headers" {
			return flags[i+1]
		}
	}
	return httpapi.HeadersIETF
}

// checkDialect checks the test's own request x: a 429 of the tier, with
// a window of quota that ends between weLo and weHi, in the profile's
// dialect.
func checkDialect(t *testing.T, x exchange, flags []string, policy string, quota int64, weLo, weHi time.Time) {
	t.Helper()
	h := x.res.Header
	if x.res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("check request: %d %s, want a 429 of %s", x.res.StatusCode, x.body, policy)
	}
	lo, hi := ceilSec(weLo.Sub(x.recv)), ceilSec(weHi.Sub(x.sent))
	ra, err := strconv.ParseInt(h.Get("Retry-After"), 10, 64)
	if err != nil || ra < lo || ra > hi {
		t.Errorf("check request: Retry-After %q, want %d to %d", h.Get("Retry-After"), lo, hi)
	}
	hv := func(k string) string { return strings.Join(h.Values(k), ",") }
	switch dialect(flags) {
	case "inin":
		q := strconv.FormatInt(quota, 10)
		if hv("inin-ratelimit-allowed") != q || hv("inin-ratelimit-count") != q || hv("inin-ratelimit-reset") != h.Get("Retry-After") {
			t.Errorf("check request: inin-ratelimit-allowed %q, -count %q, -reset %q; want %s, %s and Retry-After %s (%s)",
				hv("inin-ratelimit-allowed"), hv("inin-ratelimit-count"), hv("inin-ratelimit-reset"), q, q, h.Get("Retry-After"), policy)
		}
		if x.body != `{"message":"Rate limit exceeded.","code":"too_many_requests"}`+"\n" {
			t.Errorf("check request: body %q, want the terse one", x.body)
		}
	case "github":
		q := strconv.FormatInt(quota, 10)
		// x-ratelimit-reset is the window's end in Unix seconds, rounded
		// up, from the decision's own instant: a window that ends on a
		// whole second reads as that second, exactly.
		reset, _ := strconv.ParseInt(hv("x-ratelimit-reset"), 10, 64)
		rlo, rhi := weLo.Add(time.Second-1).Unix(), weHi.Add(time.Second-1).Unix()
		if hv("x-ratelimit-resource") != policy || hv("x-ratelimit-limit") != q || hv("x-ratelimit-remaining") != "0" ||
			hv("x-ratelimit-used") != q || reset < rlo || reset > rhi {
			t.Errorf("check request: x-ratelimit-resource %q, -limit %q, -remaining %q, -used %q, -reset %q; want %s, %s, 0, %s, %d to %d",
				hv("x-ratelimit-resource"), hv("x-ratelimit-limit"), hv("x-ratelimit-remaining"), hv("x-ratelimit-used"), hv("x-ratelimit-reset"),
				policy, q, q, rlo, rhi)
		}
	}
	for _, k := range []string{"RateLimit", "RateLimit-Policy"} {
		if h.Get(k) != "" {
			t.Errorf("check request: %s sent in the %s dialect: %q", k, dialect(flags), h.Get(k))
		}
	}
}

// githubCore measures GitHub's 5,000 requests per hour from the client's
// first request: the test's own first request opens the window, load
// sends 5,100 more as fast as 20 users can, and exactly 4,999 of them are
// admitted; every 429 waits to an hour after that first request, and
// x-ratelimit-reset is the same instant a second later.
func githubCore(t *testing.T, bin string) {
	s := startServeProc(t, bin, "github.yaml", "sqlite:"+filepath.Join(t.TempDir(), "r.db"), "--headers", "github")
	tok := s.token("demo", "s3cret")
	open := s.do("GET", "/api/v2/architect/scripts", tok, "")
	if open.res.StatusCode != 200 {
		t.Fatalf("first request: %d %s", open.res.StatusCode, open.body)
	}
	weLo, weHi := open.sent.Add(time.Hour), open.recv.Add(time.Hour)
	run := runLoadProc(t, bin, "--url", s.url+"/api/v2/architect/scripts", "-H", "Authorization: Bearer "+tok,
		"--threads", "20", "--loops", "255")
	first, last := run.span()
	st := run.statuses()
	t.Logf("tier: github.yaml/core | fixed window, align first | 5000/h | sent %d (+1 first), admitted %d (+1), 429 %d, retry after %s | %v",
		len(run.results), st[200], st[429], run.retryRange(), last.Sub(first).Round(time.Millisecond))
	if st[200] != 4999 || st[429] != 101 || len(run.results) != 5100 {
		t.Errorf("5100 requests after the first: statuses %v, want 4999 × 200 and 101 × 429", st)
	}
	for _, r := range run.rejected() {
		if r.Policy != "core" || !retryWithin(r, nil, weLo, weHi) {
			t.Errorf("429 sent %s: policy %q, retry after %v; want core, the wait to %s–%s", r.Start.Format(time.StampMilli), r.Policy, r.RetryAfter,
				weLo.Format(time.StampMilli), weHi.Format(time.StampMilli))
			break
		}
	}
	x := s.do("GET", "/api/v2/architect/scripts", tok, "")
	checkDialect(t, x, []string{"--headers", "github"}, "core", 5000, weLo, weHi)
	time.Sleep(1100 * time.Millisecond)
	y := s.do("GET", "/api/v2/architect/scripts", tok, "")
	checkDialect(t, y, []string{"--headers", "github"}, "core", 5000, weLo, weHi)
	if a, b := x.res.Header.Get("x-ratelimit-reset"), y.res.Header.Get("x-ratelimit-reset"); a != b {
		t.Errorf("x-ratelimit-reset %s, then %s a second later: want the same instant for the whole hour", a, b)
	}
}

// githubConcurrency measures the 100 requests in flight per client. The
// requests are held in flight by the database, as a slow one holds them:
// the test locks the table a route reads (PostgreSQL, LOCK TABLE … IN
// ACCESS EXCLUSIVE MODE), so that every request to it is admitted and
// then waits in its handler, slot held, until the test commits. One
// request waits on script_versions, 99 on users; the 101st overlapping
// request is a 429 of concurrent-requests; when the one on
// script_versions completes, the next request is admitted, and the one
// after it is a 429 again.
func githubConcurrency(t *testing.T, bin string) {
	dbURL := testenv.PostgresDatabase(t)
	s := startServeProc(t, bin, "github.yaml", dbURL, "--headers", "github")
	tok := s.token("demo", "s3cret")
	begin := time.Now()
	if x := s.do("PUT", "/api/v2/architect/scripts/held", tok, `{"name":"n","text":"t"}`); x.res.StatusCode != 200 && x.res.StatusCode != 201 {
		t.Fatalf("PUT: %d %s", x.res.StatusCode, x.body)
	}
	ctx := context.Background()
	lock := func(table string) pgx.Tx {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback(ctx) })
		return tx
	}
	versions, users := lock("script_versions"), lock("users")
	auth := []string{"-H", "Authorization: Bearer " + tok}
	dir := t.TempDir()
	background := func(path string, n int) <-chan loadRun {
		ch := make(chan loadRun, 1)
		go func() {
			run, err := loadProc(ctx, dir, bin, append(auth, "--url", s.url+path, "--threads", strconv.Itoa(n), "--loops", "1")...)
			if err != nil {
				t.Error(err)
			}
			ch <- run
		}()
		return ch
	}
	const policy = "concurrent-requests"
	held := background("/api/v2/architect/scripts/held/versions", 1)
	firstHeld := s.waitInFlight(tok, policy, 1)
	many := background("/api/v2/users", 99)
	full := s.waitInFlight(tok, policy, 100)
	over := runLoadProc(t, bin, append(auth, "--url", s.url+"/api/v2/architect/scripts", "--threads", "3", "--loops", "1")...)
	x := s.do("GET", "/api/v2/architect/scripts", tok, "")
	if err := versions.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	heldRun := <-held
	s.waitInFlight(tok, policy, 99)
	again := background("/api/v2/users", 1)
	s.waitInFlight(tok, policy, 100)
	overAgain := runLoadProc(t, bin, append(auth, "--url", s.url+"/api/v2/architect/scripts", "--threads", "1", "--loops", "1")...)
	if err := users.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	manyRun, againRun := <-many, <-again
	s.waitInFlight(tok, policy, 0)

	t.Logf("tier: github.yaml/concurrent-requests | concurrency | 100 in flight | held %v + %v, overlapping %v (retry after %s), after one completed %v, then %v | %v",
		heldRun.statuses(), manyRun.statuses(), over.statuses(), over.retryRange(), againRun.statuses(), overAgain.statuses(), time.Since(begin).Round(time.Millisecond))
	if st := heldRun.statuses(); st[200] != 1 || len(heldRun.results) != 1 {
		t.Errorf("the request held on script_versions: %v, want one 200", st)
	}
	if st := manyRun.statuses(); st[200] != 99 || len(manyRun.results) != 99 {
		t.Errorf("the 99 requests held on users: %v, want 99 × 200", st)
	}
	if st := againRun.statuses(); st[200] != 1 || len(againRun.results) != 1 {
		t.Errorf("the request after one completed: %v, want a 200", st)
	}
	// The slot that expires first is the one taken first, a lease of
	// 60 s: the one on script_versions, then one of the 99.
	firstOfMany := manyRun.results[0].Start
	for _, r := range manyRun.results {
		if r.Start.Before(firstOfMany) {
			firstOfMany = r.Start
		}
	}
	for i, run := range []loadRun{over, overAgain} {
		if st := run.statuses(); st[429] != len(run.results) || len(run.results) == 0 {
			t.Errorf("requests over 100 in flight: %v, want all 429", st)
		}
		taken, seen := heldRun.results[0].Start, firstHeld
		if i == 1 {
			taken, seen = firstOfMany, full
		}
		for _, r := range run.rejected() {
			if r.Policy != policy || !retryWithin(r, nil, taken.Add(time.Minute), seen.Add(time.Minute)) {
				t.Errorf("429 sent %s: policy %q, retry after %v; want %s, the wait to %s–%s", r.Start.Format(time.StampMilli), r.Policy, r.RetryAfter, policy,
					taken.Add(time.Minute).Format(time.StampMilli), seen.Add(time.Minute).Format(time.StampMilli))
			}
		}
	}
	checkDialect(t, x, []string{"--headers", "github"}, policy, 100, heldRun.results[0].Start.Add(60*time.Second), firstHeld.Add(60*time.Second))
}

// bucketTier measures a GCRA tier of the token-bucket profile: a flood
// at rate (far over the tier's) for a second from a full bucket admits
// burst + ⌊(t_last − t_first)/interval⌋, t_first and t_last the first and
// last decisions; every 429 names the tier and asks for at most one
// interval.
type bucketTier struct {
	policy          string
	burst           int
	interval        time.Duration
	method, path    string
	rate            string
	ok              int
	unauthenticated bool
}

func (b bucketTier) run(t *testing.T, bin string) {
	s := startServeProc(t, bin, "token-bucket.yaml", "sqlite:"+filepath.Join(t.TempDir(), "r.db"))
	args := []string{"--url", s.url + b.path, "-X", b.method, "--rate", b.rate, "--duration", "1s"}
	if !b.unauthenticated {
		args = append(args, "-H", "Authorization: Bearer "+s.token("demo", "s3cret"))
	}
	run := runLoadProc(t, bin, args...)
	var firstStart, firstEnd, lastStart, lastEnd time.Time
	for i, r := range run.results {
		if i == 0 || r.Start.Before(firstStart) {
			firstStart, firstEnd = r.Start, decidedBy(r)
		}
		if i == 0 || r.Start.After(lastStart) {
			lastStart = r.Start
		}
		if i == 0 || decidedBy(r).After(lastEnd) {
			lastEnd = decidedBy(r)
		}
	}
	lo := b.burst + int(lastStart.Sub(firstEnd)/b.interval)
	hi := b.burst + int(lastEnd.Sub(firstStart)/b.interval)
	st := run.statuses()
	t.Logf("tier: token-bucket.yaml/%s | gcra | %d/s burst %d | sent %d at %s, admitted %d (want %d to %d), 429 %d, retry after %s | %v",
		b.policy, time.Second/b.interval, b.burst, len(run.results), b.rate, st[b.ok], lo, hi, st[429], run.retryRange(), lastEnd.Sub(firstStart).Round(time.Millisecond))
	if st[b.ok] < lo || st[b.ok] > hi || st[b.ok]+st[429] != len(run.results) {
		t.Errorf("statuses %v: want %d to %d × %d and the rest 429", st, lo, hi, b.ok)
	}
	for _, r := range run.rejected() {
		if r.Policy != b.policy || r.RetryAfter <= 0 || r.RetryAfter > b.interval || r.Remaining != 0 {
			t.Errorf("429 sent %s: policy %q, retry after %v, remaining %d; want %s, at most %v, 0",
				r.Start.Format(time.StampMilli), r.Policy, r.RetryAfter, r.Remaining, b.policy, b.interval)
			break
		}
	}
}

// countRejectedWrites measures client-writes, 5/s burst 10 that counts
// rejected requests: PUTs at 16/s for 3 s. Every request, admitted or
// not, moves the tier's TAT by T = 200 ms, so request k (from 0) is
// admitted exactly when d_k − d_0 ≥ (k+1)·T − τ (τ = 2 s): the first 13
// or 14, then none, though the rate would admit one every 200 ms. The
// backlog stops at 2τ, so the last 429 asks for τ + T = 2.2 s; after that
// pause the next PUT is admitted.
func countRejectedWrites(t *testing.T, bin string) {
	const T, tau = 200 * time.Millisecond, 2 * time.Second
	s := startServeProc(t, bin, "token-bucket.yaml", "sqlite:"+filepath.Join(t.TempDir(), "r.db"))
	put := []string{"--url", s.url + "/api/v2/architect/scripts/s1", "-X", "PUT", "-H", "Content-Type: application/json",
		"--body", `{"name":"n","text":"t"}`, "-H", "Authorization: Bearer " + s.token("demo", "s3cret")}
	run := runLoadProc(t, bin, append(put, "--rate", "16/s", "--duration", "3s")...)
	rs := run.results
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start.Before(rs[j].Start) })
	admitted, lastOK := 0, -1
	for k, r := range rs {
		need := time.Duration(k+1)*T - tau
		must, mustNot := r.Start.Sub(decidedBy(rs[0])) >= need, decidedBy(r).Sub(rs[0].Start) < need
		ok := r.Status/100 == 2
		if ok {
			admitted, lastOK = admitted+1, k
		}
		if !ok && r.Status != 429 || must && !ok || mustNot && ok {
			t.Errorf("PUT %d sent %v after the first: %d, want %s", k, r.Start.Sub(rs[0].Start).Round(time.Millisecond), r.Status,
				map[bool]string{true: "admitted", false: "rejected"}[must])
		}
		if !ok && r.Policy != "client-writes" {
			t.Errorf("PUT %d: 429 of %q, want client-writes", k, r.Policy)
		}
	}
	last := rs[len(rs)-1]
	gap := decidedBy(last).Sub(rs[len(rs)-2].Start)
	t.Logf("tier: token-bucket.yaml/client-writes | gcra, count rejected | 5/s burst 10 | sent %d at 16/s, admitted %d (the last PUT %d), 429 %d, last retry %v | %v",
		len(rs), admitted, lastOK, len(rs)-admitted, last.RetryAfter, decidedBy(last).Sub(rs[0].Start).Round(time.Millisecond))
	if last.Status != 429 || last.RetryAfter > tau+T || last.RetryAfter < tau+T-gap {
		t.Errorf("last PUT: %d, retry after %v; want a 429 asking for %v (at least %v)", last.Status, last.RetryAfter, tau+T, tau+T-gap)
	}
	time.Sleep(time.Until(decidedBy(last).Add(last.RetryAfter)))
	after := runLoadProc(t, bin, append(put, "--threads", "1", "--loops", "1")...)
	if st := after.statuses(); st[200] != 1 {
		t.Errorf("PUT after the pause the last 429 asked for: %v, want a 200", st)
	}
}
