package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ratelab/jmx"
	"ratelab/limit"
	"ratelab/load"
	"ratelab/report"
)

func init() {
	register(&command{name: "load", summary: "run a load test from flags or a YAML scenario", run: runLoad})
}

const loadDescription = `Runs a load test and reports latency, status codes and rate limits.

The closed model (JMeter's thread group) runs --threads virtual users, thread i
starting at i×ramp-up/threads, each for --loops iterations or --duration,
optionally paced by JMeter's Constant Throughput Timer (--throughput,
--throughput-mode). The open model (--rate or --stages) schedules arrivals at
a fixed or ramping rate for the whole test, on up to --max-workers workers,
and counts latency from the intended send time.

URL, header values and body are templates: {{.Thread}}, {{.Iteration}},
{{.Seq}}, {{uuid}}, {{now}} and {{.column}} of the --data CSV file.

A JMeter plan runs with --jmx PLAN.jmx (-J name=value sets its properties):
as JMeter would run it, timer modes and traps included, or with --fix as
corrected (one global schedule at the intended rate, no start-up burst,
writes spread over per-thread resources, Retry-After honoured). "ratelab jmx
PLAN.jmx" explains the difference first.

A run needs a bound (--loops, --duration or --stages); Ctrl-C stops it and
still writes the summary and files. A failed --threshold exits with 99.

Examples:
  ratelab load --url http://127.0.0.1:8080/api/v2/users --rate 10/s --duration 30s
  ratelab load --threads 20 --loops 100 --throughput 600/m --throughput-mode all-threads \
      -X PUT -H 'Content-Type: application/json' --body '{"text":"v{{.Iteration}}"}' \
      --url 'http://127.0.0.1:8080/api/v2/architect/scripts/{{.scriptId}}' --data scripts.csv
  ratelab load scenario.yaml --json out.json --threshold 'share_429<1%'
  ratelab load --jmx script-updates.jmx -J host=127.0.0.1 -J port=8080 -J accessToken=$TOKEN --fix`

// headerFlags is a repeatable -H "Name: value" flag.
type headerFlags []load.Header

func (h *headerFlags) String() string {
	parts := make([]string, len(*h))
	for i, x := range *h {
		parts[i] = x.Name + ": " + x.Value
	}
	return strings.Join(parts, ", ")
}

func (h *headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("header %q: want \"Name: value\"", s)
	}
	*h = append(*h, load.Header{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
	return nil
}

// loadFlags are the flags of "ratelab load" as given, before they are
// merged into a scenario.
type loadFlags struct {
	url, method, body, bodyFile, data, dataMode, name string
	headers                                           headerFlags
	threads, loops, maxWorkers, connections           int
	rampUp, duration, timeout, progress               time.Duration
	rate, stages, throughput, throughputMode          string
	retryAfter                                        string
	keepAlive                                         bool
	tokenURL, clientID, clientSecret                  string
	jsonOut, jtlOut, resultsOut, htmlOut              string
	thresholds                                        report.Thresholds
	jmx                                               string
	jmxProps                                          propFlags
	fix                                               bool
}

func (f *loadFlags) define(fs *flag.FlagSet, env *environ) {
	fs.StringVar(&f.url, "url", "", "target `URL` (a template); the request of a flag-only run")
	fs.StringVar(&f.method, "method", "GET", "HTTP `method`")
	fs.StringVar(&f.method, "X", "GET", "HTTP `method` (short for --method)")
	fs.Var(&f.headers, "header", "request header \"Name: value\" (a template; repeatable)")
	fs.Var(&f.headers, "H", "request header (short for --header; repeatable)")
	fs.StringVar(&f.body, "body", "", "request body (a template)")
	fs.StringVar(&f.bodyFile, "body-file", "", "read the request body template from `FILE`")
	fs.StringVar(&f.data, "data", "", "CSV `FILE` whose first line names columns for {{.column}}; one row per thread iteration")
	fs.StringVar(&f.dataMode, "data-mode", "shared", "CSV cursor: shared (one for all threads) or per-thread; both recycle at the end")
	fs.StringVar(&f.name, "name", "", "test name for reports")
	fs.IntVar(&f.threads, "threads", 1, "closed model: virtual users")
	fs.DurationVar(&f.rampUp, "ramp-up", 0, "closed model: start thread i at i×ramp-up/threads (0 starts all at once: a burst)")
	fs.IntVar(&f.loops, "loops", 0, "iterations per thread (closed model) or arrivals in all (open model); 0 for no limit")
	fs.DurationVar(&f.duration, "duration", 0, "stop starting requests after this long")
	fs.StringVar(&f.rate, "rate", "", "open model: arrival `RATE` such as 10/s, 600/m, 0.5/s, 1/10s")
	fs.StringVar(&f.stages, "stages", "", "open model: ramping `STAGES` such as 30s:0-200/s,60s:200/s")
	fs.IntVar(&f.maxWorkers, "max-workers", load.DefaultMaxWorkers, "open model: most concurrent requests; arrivals beyond are dropped and counted")
	fs.StringVar(&f.throughput, "throughput", "", "closed model: JMeter Constant Throughput Timer target `RATE`, e.g. 600/m")
	fs.StringVar(&f.throughputMode, "throughput-mode", "this-thread", "timer mode: this-thread (JMeter's default: per thread!), all-threads, group, all-threads-shared, group-shared")
	fs.StringVar(&f.retryAfter, "retry-after", "ignore", "honor: wait as Retry-After says (threads sleep, the open schedule pauses); ignore: record only")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.IntVar(&f.connections, "connections", 0, "most connections per host (0: no cap)")
	fs.BoolVar(&f.keepAlive, "keep-alive", true, "reuse connections")
	fs.StringVar(&f.tokenURL, "token-url", envDefault(env, "RATELAB_TOKEN_URL", ""), "OAuth 2.0 token `URL` for the client-credentials grant ($RATELAB_TOKEN_URL)")
	fs.StringVar(&f.clientID, "client-id", envDefault(env, "RATELAB_CLIENT_ID", ""), "OAuth client ID ($RATELAB_CLIENT_ID)")
	fs.StringVar(&f.clientSecret, "client-secret", envDefault(env, "RATELAB_CLIENT_SECRET", ""), "OAuth client secret ($RATELAB_CLIENT_SECRET)")
	fs.StringVar(&f.jsonOut, "json", "", "write the JSON summary to `FILE`")
	fs.StringVar(&f.jtlOut, "jtl", "", "write every result as JMeter CSV to `FILE`")
	fs.StringVar(&f.resultsOut, "results", "", "write the raw result stream to `FILE` (read back by ratelab report)")
	fs.StringVar(&f.htmlOut, "html", "", "write the HTML report to `FILE`")
	fs.Var(&f.thresholds, "threshold", "pass/fail condition such as 'p99<250ms' or 'share_429<1%' (repeatable; a failure exits 99)")
	fs.DurationVar(&f.progress, "progress", time.Second, "progress line interval on stderr (0 turns it off)")
	fs.StringVar(&f.jmx, "jmx", "", "run the JMeter plan `PLAN.jmx` (as JMeter runs it; see --fix)")
	f.jmxProps = propFlags{}
	fs.Var(f.jmxProps, "J", "JMeter property `name=value` for --jmx (repeatable), as jmeter -J")
	fs.BoolVar(&f.fix, "fix", false, "with --jmx: run the plan corrected for its pitfalls instead")
}

// parseLoadArgs parses flags and at most one scenario file, which may come
// before, between or after the flags. It returns the names of the flags
// given, so that they override the scenario.
func parseLoadArgs(fs *flag.FlagSet, args []string) (scenario string, set map[string]bool, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			return "", nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if scenario != "" {
			return "", nil, fmt.Errorf("one scenario file at most, got %q and %q", scenario, args[0])
		}
		scenario, args = args[0], args[1:]
	}
	set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return scenario, set, nil
}

func runLoad(ctx context.Context, env *environ, args []string) error {
	var f loadFlags
	fs := newFlagSet(env, "load", "load [SCENARIO.yaml] [flags]", loadDescription)
	f.define(fs, env)
	scenarioFile, set, err := parseLoadArgs(fs, args)
	if err != nil {
		return err
	}
	s, err := f.scenario(env, scenarioFile, set)
	if err != nil {
		return err
	}
	if err := s.Workload.Validate(); err != nil {
		return err
	}
	var data *load.DataSet
	if s.Data != "" {
		if data, err = load.ReadDataFile(s.Data, s.DataMode); err != nil {
			return err
		}
	}
	plan, err := s.Compile(data)
	if err != nil {
		if scenarioFile != "" {
			return fmt.Errorf("%s: %w", scenarioFile, err)
		}
		return err
	}
	out, err := openOutputs(&f)
	if err != nil {
		return err
	}
	defer out.close()
	client, err := load.NewClient(ctx, load.ClientConfig{Timeout: s.Timeout, Connections: s.Connections,
		DisableKeepAlive: !f.keepAlive, Auth: s.Auth})
	if err != nil {
		return err
	}
	return execute(ctx, env, &f, s, plan, client, out)
}

// scenario builds the run's scenario: the file's, with the flags given
// on the command line taking precedence, or the flags' alone.
func (f *loadFlags) scenario(env *environ, file string, set map[string]bool) (*load.Scenario, error) {
	s := &load.Scenario{RetryAfter: load.RetryIgnore, Timeout: f.timeout}
	switch {
	case f.jmx != "" && file != "":
		return nil, fmt.Errorf("give a scenario file or --jmx, not both (got %s and %s)", file, f.jmx)
	case f.fix && f.jmx == "":
		return nil, errors.New("--fix corrects a JMeter plan: give --jmx PLAN.jmx")
	case f.jmx != "":
		js, err := f.jmxScenario(env)
		if err != nil {
			return nil, err
		}
		s = js
		file = f.jmx // the plan stands for a file: only the flags given override it
	case file != "":
		src, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read scenario: %w", err)
		}
		if s, err = load.ParseScenario(src, filepath.Dir(file)); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if s.Timeout == 0 {
			s.Timeout = f.timeout
		}
	}
	w := &s.Workload
	var err error
	if file == "" || set["threads"] {
		w.Threads = f.threads
	}
	if set["ramp-up"] {
		w.RampUp = f.rampUp
	}
	if set["loops"] {
		w.Loops = f.loops
	}
	if set["duration"] {
		w.Duration = f.duration
	}
	if file == "" || set["max-workers"] {
		w.MaxWorkers = f.maxWorkers
	}
	if f.rate != "" {
		if w.Rate, err = limit.ParseRate(f.rate); err != nil {
			return nil, fmt.Errorf("--rate: %w", err)
		}
		w.Stages = nil
	}
	if f.stages != "" {
		if w.Stages, err = load.ParseStages(f.stages); err != nil {
			return nil, fmt.Errorf("--stages: %w", err)
		}
		if f.rate == "" {
			w.Rate = limit.Rate{}
		}
	}
	if f.throughput != "" {
		if w.Throughput, err = limit.ParseRate(f.throughput); err != nil {
			return nil, fmt.Errorf("--throughput: %w", err)
		}
	}
	if file == "" || set["throughput-mode"] {
		if w.ThroughputMode, err = load.ParseThroughputMode(f.throughputMode); err != nil {
			return nil, err
		}
	}
	if file == "" || set["retry-after"] {
		if s.RetryAfter, err = load.ParseRetryAfterMode(f.retryAfter); err != nil {
			return nil, err
		}
	}
	if set["timeout"] {
		s.Timeout = f.timeout
	}
	if set["connections"] {
		s.Connections = f.connections
	}
	if set["name"] {
		s.Name = f.name
	}
	if f.data != "" {
		s.Data = f.data
	}
	if file == "" || set["data-mode"] {
		if s.DataMode, err = load.ParseDataMode(f.dataMode); err != nil {
			return nil, err
		}
	}
	if f.tokenURL != "" {
		s.Auth = load.Auth{TokenURL: f.tokenURL, ClientID: f.clientID, ClientSecret: f.clientSecret}
	}
	if f.url != "" {
		s.Requests = []load.RequestSpec{{Method: f.method, URL: f.url, Headers: f.headers, Body: f.body, BodyFile: f.bodyFile}}
	} else {
		if set["method"] || set["X"] || f.body != "" || f.bodyFile != "" {
			return nil, errors.New("--method and --body need --url")
		}
		s.Headers = append(s.Headers, f.headers...)
	}
	if len(s.Requests) == 0 {
		return nil, errors.New("nothing to send: give --url or a scenario file (ratelab load --help)")
	}
	return s, nil
}

// outputs are the files a run writes, opened before it starts so that a
// bad path fails before any load is sent.
type outputs struct {
	json, html, jtlFile, resultsFile *os.File
	jtl                              *report.JTLWriter
	jtlMu                            sync.Mutex
	results                          *load.Encoder
}

func openOutputs(f *loadFlags) (*outputs, error) {
	o := &outputs{}
	create := func(path string) (*os.File, error) {
		if path == "" {
			return nil, nil
		}
		file, err := os.Create(path)
		if err != nil {
			o.close()
			return nil, fmt.Errorf("create output: %w", err)
		}
		return file, nil
	}
	var err error
	if o.json, err = create(f.jsonOut); err != nil {
		return nil, err
	}
	if o.html, err = create(f.htmlOut); err != nil {
		return nil, err
	}
	if o.jtlFile, err = create(f.jtlOut); err != nil {
		return nil, err
	}
	if o.resultsFile, err = create(f.resultsOut); err != nil {
		return nil, err
	}
	if o.jtlFile != nil {
		o.jtl = report.NewJTLWriter(o.jtlFile)
	}
	if o.resultsFile != nil {
		o.results = load.NewEncoder(o.resultsFile)
	}
	return o, nil
}

func (o *outputs) close() {
	for _, f := range []*os.File{o.json, o.html, o.jtlFile, o.resultsFile} {
		if f != nil {
			f.Close()
		}
	}
}

// targetRPS is the rate the workload aims at, in requests per second
// (0 when it has none), and a short name of its model.
func targetRPS(w *load.Workload, requestsPerIteration int) (float64, string, string) {
	switch {
	case len(w.Stages) > 0:
		var n float64
		for _, st := range w.Stages {
			n += (st.From + st.To) / 2 * st.Duration.Seconds()
		}
		return n / w.Stages.Duration().Seconds() * float64(requestsPerIteration), "open", "stages"
	case w.Rate.Count > 0:
		return w.Rate.PerSecond() * float64(requestsPerIteration), "open", w.Rate.String()
	case w.Throughput.Count > 0:
		rps := w.Throughput.PerSecond()
		if w.ThroughputMode == load.ThisThread {
			rps *= float64(max(w.Threads, 1))
		}
		return rps, "closed, throughput " + w.ThroughputMode.String(), w.Throughput.String()
	}
	return 0, "closed", ""
}

// execute runs the plan with live progress, then writes the summary, the
// files and the threshold verdicts.
func execute(ctx context.Context, env *environ, f *loadFlags, s *load.Scenario, plan *load.Plan, client *http.Client, out *outputs) error {
	w := &s.Workload
	target, model, schedule := targetRPS(w, len(plan.Targets))
	if w.Throughput.Count > 0 {
		timer := load.NewThroughputTimer(w.Throughput, w.ThroughputMode)
		if note := load.ThroughputNote(timer, max(w.Threads, 1), 0); note != "" {
			fmt.Fprintf(env.stderr, "note: %s\n", note)
		}
	}
	// The aggregator is made when the run starts (its time zero); the
	// progress goroutine reads it through an atomic pointer.
	var aggPtr atomic.Pointer[report.Aggregator]
	var agg *report.Aggregator
	started := func(start time.Time) {
		agg = report.NewAggregator(report.Config{Start: start, TargetRPS: target, Model: model, Title: s.Name})
		if out.results != nil {
			out.results.WriteInfo(load.RunInfo{Start: start, Model: model, TargetRPS: target,
				Threads: w.Threads, Schedule: schedule, Name: s.Name})
		}
		aggPtr.Store(agg)
	}
	var jtlErr error
	sink := func(r *load.Result) {
		agg.Add(r)
		if out.results != nil {
			out.results.Encode(r)
		}
		if out.jtl != nil {
			out.jtlMu.Lock()
			if err := out.jtl.Write(r); err != nil && jtlErr == nil {
				jtlErr = err
			}
			out.jtlMu.Unlock()
		}
	}
	stopProgress := startProgress(env.stderr, f.progress, func() (report.Snapshot, bool) {
		if a := aggPtr.Load(); a != nil {
			return a.Snapshot(), true
		}
		return report.Snapshot{}, false
	})
	st, err := load.Run(ctx, load.Config{Plan: plan, Workload: *w, Client: client, RetryAfter: s.RetryAfter,
		Sink: sink, Started: started})
	stopProgress()
	if err != nil {
		return err
	}
	agg.SetDropped(int64(st.Dropped))
	sum := agg.Summary()
	if st.Interrupted {
		fmt.Fprintln(env.stdout, "interrupted: the summary covers what ran")
	}
	var errs []error
	if err := report.WriteText(env.stdout, sum); err != nil {
		errs = append(errs, fmt.Errorf("write summary: %w", err))
	}
	if out.json != nil {
		errs = append(errs, report.WriteJSON(out.json, sum))
	}
	if out.html != nil {
		errs = append(errs, report.WriteHTML(out.html, sum))
	}
	if out.jtl != nil {
		errs = append(errs, jtlErr, out.jtl.Flush())
	}
	if out.results != nil {
		if !st.Interrupted && st.Sent == 0 {
			out.results.WriteInfo(load.RunInfo{Start: st.Start, Model: model})
		}
		errs = append(errs, out.results.Flush())
	}
	for _, file := range []*os.File{out.json, out.html, out.jtlFile, out.resultsFile} {
		if file != nil {
			errs = append(errs, file.Sync())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(f.thresholds) > 0 {
		failed, err := f.thresholds.Check(env.stdout, sum)
		if err != nil {
			return err
		}
		if failed > 0 {
			return &exitError{code: 99, err: fmt.Errorf("%d of %d thresholds failed", failed, len(f.thresholds))}
		}
	}
	return nil
}

// startProgress prints a progress line every interval until the returned
// function is called: a line rewritten in place (\r) on a terminal, plain
// lines otherwise.
func startProgress(w io.Writer, interval time.Duration, snap func() (report.Snapshot, bool)) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	tty := isTerminal(w)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(w, "\r\x1b[K")
				}
				return
			case <-t.C:
				s, ok := snap()
				if !ok {
					continue
				}
				if tty {
					fmt.Fprintf(w, "\r%s\x1b[K", report.ProgressLine(s))
				} else {
					fmt.Fprintln(w, report.ProgressLine(s))
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	file, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// jmxScenario reads the --jmx plan and returns its scenario, faithful or
// (--fix) corrected. What cannot be run as JMeter would is said on stderr
// before anything is sent.
func (f *loadFlags) jmxScenario(env *environ) (*load.Scenario, error) {
	plan, err := readPlanFile(f.jmx)
	if err != nil {
		return nil, err
	}
	opts := jmx.Options{Properties: f.jmxProps}
	a := jmx.Analyze(plan, opts)
	for _, w := range a.Warnings {
		if w.Unfaithful {
			fmt.Fprintf(env.stderr, "warning: %s\n", w)
		}
	}
	if !f.fix {
		s, warns, err := plan.Scenario(opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.jmx, err)
		}
		for _, w := range warns {
			fmt.Fprintf(env.stderr, "warning: %s\n", w)
		}
		if !a.Faithful || len(warns) > 0 {
			fmt.Fprintln(env.stderr, "warning: ratelab cannot run this plan exactly as JMeter would (see above)")
		}
		for _, l := range a.Effective {
			fmt.Fprintf(env.stderr, "plan: %s\n", l)
		}
		return s, nil
	}
	dir, err := os.MkdirTemp("", "ratelab-fix-")
	if err != nil {
		return nil, err
	}
	s, changes, err := plan.FixedScenario(opts, jmx.FixOptions{DataFile: filepath.Join(dir, "resource-ids.csv")})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.jmx, err)
	}
	for _, c := range changes {
		fmt.Fprintf(env.stderr, "fix: %s\n", c)
	}
	return s, nil
}
