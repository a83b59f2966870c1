package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"ratelab/httpapi"
	"ratelab/jmx"
	"ratelab/limit"
	"ratelab/load"
	"ratelab/report"
	"ratelab/sqlite"
)

func init() {
	register(&command{name: "demo", summary: "replay the reference JMeter plan on an embedded server, explain why it throttles, show the fix", run: runDemo})
}

// demoRun is one run of the demo, as printed and as written with --json.
type demoRun struct {
	Name    string
	Summary *report.Summary
	HTML    string
	// Updates counts script updates (a bulk request carries several).
	UpdatesPerRequest int
}

// MarshalJSON writes the run as its name followed by every field of the
// load JSON summary, plus the report path and script updates per second.
func (r *demoRun) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(r.Summary)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["name"] = r.Name
	m["html_report"] = r.HTML
	m["script_updates_per_s"] = r.updatesPerSecond()
	return json.Marshal(m)
}

// updatesPerSecond is the rate of accepted script updates.
func (r *demoRun) updatesPerSecond() float64 {
	s := r.Summary
	if s.DurationS <= 0 {
		return 0
	}
	var ok int64
	for code, n := range s.StatusCounts {
		if strings.HasPrefix(code, "2") {
			ok += n
		}
	}
	return float64(ok) * float64(max(r.UpdatesPerRequest, 1)) / s.DurationS
}

// finding is one item of the demo's diagnosis.
type finding struct {
	Finding  string `json:"finding"`
	Evidence string `json:"evidence"`
	Fix      string `json:"fix"`
}

func runDemo(ctx context.Context, env *environ, args []string) error {
	fs := newFlagSet(env, "demo", "demo [--quick] [--json] [--out DIR]",
		"Starts an embedded ratelab server on 127.0.0.1 (default policies, a temporary SQLite\n"+
			"database), runs the reference JMeter plan against it as JMeter would, explains why it\n"+
			"throttles, and runs it again fixed step by step. Every number comes from real requests\n"+
			"over loopback. Takes about 45 s (--quick: under 20 s).")
	quick := fs.Bool("quick", false, "shorter runs: under 20 s in all")
	asJSON := fs.Bool("json", false, "print one JSON document {runs, diagnosis} on stdout; the narrative goes to stderr")
	outDir := fs.String("out", "", "directory for the HTML reports (default: a new temporary directory, kept)")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &exitError{code: 2, err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	out := env.stdout
	if *asJSON {
		out = env.stderr
	}
	dir := *outDir
	if dir == "" {
		d, err := os.MkdirTemp("", "ratelab-demo-")
		if err != nil {
			return err
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	runFor, loops := 10*time.Second, 100
	if *quick {
		runFor, loops = 3*time.Second, 20
	}

	srv, err := startDemoServer(ctx, dir)
	if err != nil {
		return fmt.Errorf("start the embedded server: %w", err)
	}
	defer srv.close()
	fmt.Fprintf(out, "ratelab demo: embedded server at %s (default policies, database %s)\n\n", srv.base, filepath.Join(dir, "ratelab.db"))

	// The plan, as the user wrote it, and what it really does.
	plan, err := jmx.Read(strings.NewReader(string(jmx.ReferencePlan)))
	if err != nil {
		return fmt.Errorf("reference plan: %w", err)
	}
	host, port, _ := strings.Cut(strings.TrimPrefix(srv.base, "http://"), ":")
	opts := jmx.Options{Properties: map[string]string{"host": host, "port": port, "accessToken": srv.token}}
	analysis := jmx.Analyze(plan, opts)
	fmt.Fprintln(out, "The plan (the reference scenario's script-updates.jmx):")
	for _, l := range analysis.Effective {
		fmt.Fprintf(out, "  - %s\n", l)
	}
	fmt.Fprintln(out)

	var runs []*demoRun
	step := func(name, what string, sc *load.Scenario, data *load.DataSet, target float64, perRequest int) (*demoRun, error) {
		if len(runs) > 0 {
			// Let every bucket refill so that runs do not inherit each
			// other's backlog: the longest window the server advertises.
			if !sleepCtx(ctx, srv.settle) {
				return nil, ctx.Err()
			}
		}
		fmt.Fprintf(out, "%d. %s\n   %s\n", len(runs)+1, name, what)
		sum, err := demoLoad(ctx, sc, data, name, target)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r := &demoRun{Name: name, Summary: sum, UpdatesPerRequest: perRequest}
		r.HTML = filepath.Join(dir, fmt.Sprintf("run-%d.html", len(runs)+1))
		if err := writeHTMLFile(r.HTML, sum); err != nil {
			return nil, err
		}
		runs = append(runs, r)
		printRun(out, r)
		return r, ctx.Err()
	}

	// 1. As JMeter runs it.
	faithful, _, err := plan.Scenario(opts)
	if err != nil {
		return err
	}
	faithful.Workload.Loops = loops
	intended := 0.0
	if analysis.IntendedRPS != nil {
		intended = *analysis.IntendedRPS
	}
	run1, err := step("the plan as JMeter runs it",
		fmt.Sprintf("%d threads, ramp-up 0, %d loops, Constant Throughput Timer %s in mode '%s'",
			faithful.Workload.Threads, loops, faithful.Workload.Throughput, jmx.CalcModeName(int(faithful.Workload.ThroughputMode))),
		faithful, nil, intended, 1)
	if err != nil {
		return err
	}

	// 2. Paced globally at the intended rate, still one script.
	rate, err := limit.RateOf(intended, time.Second)
	if err != nil {
		return fmt.Errorf("the plan has no throughput target: %w", err)
	}
	paced := *faithful
	paced.Workload = load.Workload{Rate: rate, Duration: runFor, MaxWorkers: faithful.Workload.Threads}
	run2, err := step("global pacing at the intended rate, one script",
		fmt.Sprintf("one schedule at %s for %v, every request still PUTs the same script", rate, runFor),
		&paced, nil, intended, 1)
	if err != nil {
		return err
	}

	// 3. Spread over per-thread scripts, Retry-After honoured.
	idsFile := filepath.Join(dir, "script-ids.csv")
	fixed, changes, err := plan.FixedScenario(opts, jmx.FixOptions{DataFile: idsFile})
	if err != nil {
		return err
	}
	fixed.Workload.Loops, fixed.Workload.Duration = 0, runFor
	data, err := load.ReadDataFile(idsFile, load.DataShared)
	if err != nil {
		return err
	}
	run3, err := step("spread over scripts, Retry-After honoured",
		strings.Join(changes, "; "), fixed, data, intended, 1)
	if err != nil {
		return err
	}

	// 4. The same scripts through the bulk endpoint, at the per-script rate.
	perScript, err := srv.scriptLimit(ctx, data)
	if err != nil {
		return err
	}
	bulk, items := bulkScenario(srv, data, perScript, runFor)
	run4, err := step("the same updates through the bulk endpoint",
		fmt.Sprintf("POST /api/v2/architect/scripts/bulk with %d scripts per request, at %s (the per-script limit the server advertises)", items, perScript.Rate),
		bulk, nil, perScript.Rate.PerSecond(), items)
	if err != nil {
		return err
	}

	diag := diagnose(analysis, run1, run2, run3, run4)
	fmt.Fprintln(out, "Diagnosis:")
	for i, f := range diag {
		fmt.Fprintf(out, "  %d. %s\n     evidence: %s\n     fix: %s\n", i+1, f.Finding, f.Evidence, f.Fix)
	}
	fmt.Fprintf(out, "\nHTML reports in %s\n", dir)
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Runs      []*demoRun `json:"runs"`
			Diagnosis []finding  `json:"diagnosis"`
		}{runs, diag})
	}
	return nil
}

// demoServer is the embedded server and a token for it.
type demoServer struct {
	base   string
	token  string
	settle time.Duration
	http   *http.Client
	close  func()
}

func startDemoServer(ctx context.Context, dir string) (*demoServer, error) {
	db, err := sqlite.Open(ctx, filepath.Join(dir, "ratelab.db"))
	if err != nil {
		return nil, err
	}
	org, err := db.EnsureOrg(ctx, "default")
	if err != nil {
		db.Close()
		return nil, err
	}
	client, secret, err := db.CreateClient(ctx, org.ID, "", "")
	if err != nil {
		db.Close()
		return nil, err
	}
	srv, err := httpapi.NewServer(httpapi.Config{Scripts: db, Auth: db, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := srv.Open("127.0.0.1:0"); err != nil {
		db.Close()
		return nil, err
	}
	s := &demoServer{base: "http://" + srv.Addr(), http: &http.Client{Timeout: 10 * time.Second}}
	s.close = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		db.Close()
	}
	cc := clientcredentials.Config{ClientID: client.ID, ClientSecret: secret, TokenURL: s.base + "/oauth/token"}
	tok, err := cc.Token(ctx)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("token: %w", err)
	}
	s.token = tok.AccessToken
	// The longest refill window of the policies that apply, so runs start
	// from full buckets.
	lim, err := s.limits(ctx, "")
	if err != nil {
		s.close()
		return nil, err
	}
	for _, p := range lim.Policies {
		if w, err := time.ParseDuration(p.Window); err == nil && p.Limit > 0 {
			s.settle = max(s.settle, w*time.Duration(p.Burst)/time.Duration(p.Limit))
		}
	}
	s.settle += 100 * time.Millisecond
	return s, nil
}

// limits reads GET /api/v2/ratelimits, as any client of the API can.
func (s *demoServer) limits(ctx context.Context, scriptID string) (*httpapi.RateLimits, error) {
	u := s.base + "/api/v2/ratelimits"
	if scriptID != "" {
		u += "?scriptId=" + scriptID
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v2/ratelimits: %s", resp.Status)
	}
	var out httpapi.RateLimits
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("GET /api/v2/ratelimits: %w", err)
	}
	return &out, nil
}

// scriptLimit returns the tightest per-script policy the server advertises
// for the first script of data.
func (s *demoServer) scriptLimit(ctx context.Context, data *load.DataSet) (*limit.Policy, error) {
	row := data.Next(0)
	if len(row) == 0 {
		return nil, errors.New("no script ids")
	}
	lim, err := s.limits(ctx, row[0])
	if err != nil {
		return nil, err
	}
	var best *limit.Policy
	for _, p := range lim.Policies {
		if p.Key == "" || !strings.Contains(p.Key, row[0]) || p.Shadow {
			continue
		}
		w, err := time.ParseDuration(p.Window)
		if err != nil || p.Limit <= 0 {
			continue
		}
		pol := &limit.Policy{Name: p.Policy, Rate: limit.Per(p.Limit, w), Burst: p.Burst}
		if best == nil || pol.Rate.PerSecond() < best.Rate.PerSecond() {
			best = pol
		}
	}
	if best == nil {
		return nil, errors.New("the server advertises no per-script limit")
	}
	return best, nil
}

// bulkScenario builds the bulk run: one request per tick carrying an
// update for every script in data.
func bulkScenario(s *demoServer, data *load.DataSet, perScript *limit.Policy, d time.Duration) (*load.Scenario, int) {
	var items []string
	seen := map[string]bool{}
	for range data.Len() {
		row := data.Next(0)
		if len(row) == 0 || seen[row[0]] {
			continue
		}
		seen[row[0]] = true
		id, _ := json.Marshal(row[0])
		items = append(items, fmt.Sprintf(`{"id":%s,"name":"Load test script","text":"bulk update {{.Seq}} at {{now}}"}`, id))
	}
	items = items[:min(len(items), httpapi.MaxBulkItems)]
	sc := &load.Scenario{
		Name:       "bulk",
		RetryAfter: load.RetryHonor,
		Workload:   load.Workload{Rate: perScript.Rate, Duration: d, MaxWorkers: 10},
		Requests: []load.RequestSpec{{
			Name: "POST bulk", Method: http.MethodPost, URL: s.base + "/api/v2/architect/scripts/bulk",
			Headers: []load.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Authorization", Value: "Bearer " + s.token}},
			Body:    `{"scripts":[` + strings.Join(items, ",") + `]}`,
		}},
	}
	return sc, len(items)
}

// demoLoad runs one scenario and summarizes it.
func demoLoad(ctx context.Context, sc *load.Scenario, data *load.DataSet, title string, target float64) (*report.Summary, error) {
	plan, err := sc.Compile(data)
	if err != nil {
		return nil, err
	}
	client, err := load.NewClient(ctx, load.ClientConfig{Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	model := "open"
	if !sc.Workload.Open() {
		model = "closed"
		if sc.Workload.Throughput.Count > 0 {
			model = "closed, JMeter throughput " + sc.Workload.ThroughputMode.String()
		}
	}
	agg := report.NewAggregator(report.Config{TargetRPS: target, Model: model, Title: title})
	st, err := load.Run(ctx, load.Config{Plan: plan, Workload: sc.Workload, Client: client, RetryAfter: sc.RetryAfter, Sink: agg.Add})
	if err != nil {
		return nil, err
	}
	agg.SetDropped(int64(st.Dropped))
	return agg.Summary(), nil
}

func writeHTMLFile(path string, s *report.Summary) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := report.WriteHTML(f, s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// printRun prints a run's short summary.
func printRun(w io.Writer, r *demoRun) {
	s := r.Summary
	rl := s.RateLimit
	fmt.Fprintf(w, "   %d requests in %.1f s: %.1f req/s", s.Requests, s.DurationS, s.AchievedRPS)
	if s.TargetRPS != nil {
		fmt.Fprintf(w, " (intended %s req/s)", fmtNum(*s.TargetRPS))
	}
	if r.UpdatesPerRequest > 1 {
		fmt.Fprintf(w, ", %.1f script updates/s", r.updatesPerSecond())
	}
	fmt.Fprintln(w)
	if rl.Count429 == 0 {
		fmt.Fprintln(w, "   429: none")
	} else {
		fmt.Fprintf(w, "   429: %d (%.1f%%)", rl.Count429, 100*rl.Share429)
		if rl.First429Request != nil && rl.First429S != nil {
			fmt.Fprintf(w, ", the first at request #%d, %.0f ms into the run", *rl.First429Request+1, 1000**rl.First429S)
		}
		fmt.Fprintln(w)
		if len(rl.ByPolicy) > 0 {
			fmt.Fprintf(w, "   rejected by: %s\n", byPolicy(rl.ByPolicy))
		}
	}
	fmt.Fprintf(w, "   report: %s\n\n", r.HTML)
}

// byPolicy lists policies by descending count: "a (12), b (3)".
func byPolicy(m map[string]int64) string {
	names := slices.Collect(maps.Keys(m))
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s (%d)", n, m[n])
	}
	return strings.Join(parts, ", ")
}

// topPolicy returns the policy that rejected most requests, or "".
func topPolicy(m map[string]int64) string {
	best, n := "", int64(0)
	for k, v := range m {
		if v > n || v == n && k < best {
			best, n = k, v
		}
	}
	return best
}

// fmtSeconds formats a duration in seconds for people: "430 ms", "1.5 s".
func fmtSeconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", math.Max(1, math.Round(s*1000)))
	}
	return fmtNum(s) + " s"
}

func fmtNum(f float64) string {
	s := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", f), "0"), ".")
	return s
}

// diagnose joins the plan's analysis with what the runs measured. Each
// finding's evidence is read from the runs; a pitfall the runs did not
// confirm is still reported, with the plan's own figures as evidence.
func diagnose(a *jmx.Analysis, asIs, paced, spread, bulk *demoRun) []finding {
	pit := map[string]jmx.Pitfall{}
	for _, p := range a.Pitfalls {
		pit[p.ID] = p
	}
	var out []finding
	s1, s2, s3, s4 := asIs.Summary, paced.Summary, spread.Summary, bulk.Summary
	if p, ok := pit["ctt-per-thread"]; ok {
		out = append(out, finding{
			Finding: p.Message,
			Evidence: fmt.Sprintf("run 1 sent %.1f req/s against an intended %s req/s", s1.AchievedRPS,
				fmtNum(*a.IntendedRPS)),
			Fix: p.Fix,
		})
	}
	if p, ok := pit["startup-burst"]; ok {
		ev := fmt.Sprintf("the plan sends %d requests in its first second", a.StartupBurst)
		if rl := s1.RateLimit; rl.First429Request != nil && rl.First429S != nil {
			ev += fmt.Sprintf("; in run 1 the first 429 answered request #%d, %.0f ms into the test", *rl.First429Request+1, 1000**rl.First429S)
		}
		out = append(out, finding{Finding: p.Message, Evidence: ev, Fix: p.Fix})
	}
	if p, ok := pit["same-resource"]; ok {
		pol := topPolicy(s2.RateLimit.ByPolicy)
		ev := fmt.Sprintf("run 2, paced at %.1f req/s on one script: %d of %d requests got 429 (%.1f%%)",
			s2.AchievedRPS, s2.RateLimit.Count429, s2.Requests, 100*s2.RateLimit.Share429)
		if pol != "" {
			ev += fmt.Sprintf(", every one of them naming policy %q (%s)", pol, byPolicy(s2.RateLimit.ByPolicy))
		}
		ev += fmt.Sprintf("; run 3, the same rate over many scripts: %d 429s", s3.RateLimit.Count429)
		f := finding{Finding: p.Message, Evidence: ev, Fix: p.Fix}
		if pol != "" {
			f.Finding = fmt.Sprintf("there is a separate limit for updates of one script: %q. %s", pol, p.Message)
		}
		out = append(out, f)
	}
	if p, ok := pit["no-retry-after"]; ok {
		rl := s1.RateLimit
		ev := fmt.Sprintf("run 1 kept sending after its first 429 and collected %d of them", rl.Count429)
		if rl.RetryAfterS != nil {
			ev += fmt.Sprintf(" while the server said to retry after %s to %s", fmtSeconds(rl.RetryAfterS.Min), fmtSeconds(rl.RetryAfterS.Max))
		}
		out = append(out, finding{Finding: p.Message, Evidence: ev, Fix: p.Fix})
	}
	out = append(out, finding{
		Finding: "batching is the cheap path: a bulk request counts once against the request limits and once per script against the per-script limit",
		Evidence: fmt.Sprintf("run 4 applied %.1f script updates/s with %d 429s, against %.1f updates/s in run 3",
			bulk.updatesPerSecond(), s4.RateLimit.Count429, spread.updatesPerSecond()),
		Fix: "send updates through POST /api/v2/architect/scripts/bulk (up to 50 per request), or use ratelab's Go client, which coalesces and batches them",
	})
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
