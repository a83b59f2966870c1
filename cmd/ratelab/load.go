package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"ratelab/diagnose"
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

A YAML flow (a file with steps: or groups:) runs virtual users through a tree
of steps as JMeter does: transactions, controllers, timers, extractors,
assertions, cookies, CSV data; its groups give their own workload, and the
flags give only the outputs, --threshold and --keep-alive.

Load from several machines: N processes given --segment 1/N … N/N (or, in a
Kubernetes Indexed Job, --segment-of N) each run every N-th arrival of the open
schedule or every N-th thread, at their instants in the whole run; with one
--start-at they start together, and "ratelab report" merges their --results
into the report of one run (deploy/kubernetes/README.md).

--retry-after honor waits as a 429's Retry-After says, and does not send
into a 429 either: when a response (a success too) says a limit has nothing
left and when it resets, in any header dialect (RateLimit draft-11,
X-RateLimit-*, GitHub's epoch x-ratelimit-reset, inin-ratelimit-*), the
senders of requests that draw from that limit wait for the reset. Requests
still in flight count against what is left; the first request of each of
the scenario's requests goes alone, to learn which limit it draws from. A limit is known by the policy name the
headers give, else by its quota, so a per-resource limit holds the senders
of all its resources. A relative reset is counted from the response's
arrival (whole seconds: up to 1 s late); an epoch reset waits 1 ms more
plus a bound on the server's clock lag from the Date headers (whole
seconds too: up to 1 s more). A held
request is not dropped: a thread sends it after the wait, and the open
model pauses its schedule (every later arrival shifts, so a --duration run
lasts longer). Its wait is its "waited" in --results and --jtl and is not
counted in its latency; the summary's "held:" line adds the waits up.
A response with some quota left, or a reset without a remaining count,
holds nothing.

A run needs a bound (--loops, --duration or --stages); Ctrl-C stops it and
still writes the summary and files. A failed --threshold exits with 99.

Examples:
  ratelab load --url http://127.0.0.1:8080/api/v2/users --rate 10/s --duration 30s
  ratelab load --threads 20 --loops 100 --throughput 600/m --throughput-mode all-threads \
      -X PUT -H 'Content-Type: application/json' --body '{"text":"v{{.Iteration}}"}' \
      --url 'http://127.0.0.1:8080/api/v2/architect/scripts/{{.scriptId}}' --data scripts.csv
  ratelab load scenario.yaml --json out.json --threshold 'share_429<1%'
  ratelab load examples/flows/shop.yaml --jtl shop.jtl
  ratelab load --jmx script-updates.jmx -J host=127.0.0.1 -J port=8080 -J accessToken=$TOKEN --fix`

func runLoad(ctx context.Context, env *environ, args []string) error {
	var f loadFlags
	fs := newFlagSet(env, "load", "load [SCENARIO.yaml] [flags]", loadDescription)
	f.define(fs, env)
	scenarioFile, set, err := parseLoadArgs(fs, args)
	if err != nil {
		return err
	}
	seg, startAt, err := f.runSegment(env, time.Now())
	if err != nil {
		return err
	}
	if f.cpuProfile != "" {
		stop, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if scenarioFile != "" && f.jmx == "" {
		flow, isFlow, err := load.ReadFlowFile(scenarioFile)
		if err != nil {
			return err
		}
		if isFlow {
			return runFlowFile(ctx, env, &f, flow, seg, startAt)
		}
	}
	if f.jmx != "" && !f.fix && scenarioFile == "" {
		flow, err := f.jmxFlow(env, set)
		if err != nil {
			return err
		}
		return runFlowFile(ctx, env, &f, flow, seg, startAt)
	}
	s, data, err := f.scenario(env, scenarioFile, set)
	if err != nil {
		return err
	}
	if err := s.Workload.Validate(); err != nil {
		return err
	}
	if data == nil && s.Data != "" {
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
	out, err := openOutputs(env, &f)
	if err != nil {
		return err
	}
	defer out.close()
	// Run builds the client (and fetches a first token) before any
	// request, so that it can drive plain-HTTP connections itself.
	cc := load.ClientConfig{Timeout: s.Timeout, Connections: s.Connections,
		DisableKeepAlive: !f.keepAlive, Auth: s.Auth}
	cfg := load.Config{Plan: plan, Workload: s.Workload, HTTP: cc, RetryAfter: s.RetryAfter, Segment: seg, StartAt: startAt}
	return execute(ctx, env, &f, s.Name, cfg, diagnose.TargetOf(&s.Workload, len(plan.Targets)), out)
}

// runFlowFile runs a flow: its groups say what each user sends and how
// much; the flags say where results go.
func runFlowFile(ctx context.Context, env *environ, f *loadFlags, flow *load.Flow, seg load.Segment, startAt time.Time) error {
	if !seg.Whole() || !startAt.IsZero() {
		return errors.New("--segment, --start-at: a flow (a YAML flow, or a JMeter plan without --fix) cannot be run in segments yet: segment a scenario (requests and a workload)")
	}
	if err := flow.Validate(); err != nil {
		return err
	}
	out, err := openOutputs(env, f)
	if err != nil {
		return err
	}
	defer out.close()
	cfg := load.Config{Flow: flow, RetryAfter: flow.RetryAfter, HTTP: load.ClientConfig{Timeout: flow.Timeout,
		Connections: flow.Connections, DisableKeepAlive: !f.keepAlive}}
	return execute(ctx, env, f, flow.Name, cfg, diagnose.Target{Model: "flow"}, out)
}

// outputs are the files a run writes, opened before it starts so that a
// bad path fails before any load is sent. The text summary goes to
// summary: standard output, or standard error when the results stream
// goes to standard output (--results -).
type outputs struct {
	json, html, jtlFile, resultsFile *os.File
	jtl                              *report.JTLWriter
	results                          *load.Encoder
	summary                          io.Writer
}

func openOutputs(env *environ, f *loadFlags) (*outputs, error) {
	o := &outputs{summary: env.stdout}
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
	if f.resultsOut == "-" {
		o.results, o.summary = load.NewEncoder(env.stdout), env.stderr
	} else if o.resultsFile, err = create(f.resultsOut); err != nil {
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

// execute runs cfg (with its Sink and Started set here) with live
// progress, then writes the summary, the files and the threshold verdicts.
func execute(ctx context.Context, env *environ, f *loadFlags, name string, cfg load.Config, tg diagnose.Target, out *outputs) error {
	w := &cfg.Workload
	// A segment aims at its share of the target; the report of all
	// segments adds the shares up again.
	target, model := tg.RPS*cfg.Segment.Share(), tg.Model
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
		agg = report.NewAggregator(report.Config{Start: start, TargetRPS: target, Model: model, Title: name})
		if out.results != nil {
			out.results.WriteInfo(load.RunInfo{Start: start, Model: model, TargetRPS: target,
				Threads: w.Threads, Schedule: tg.Schedule, Name: name, Segment: cfg.Segment.String()})
		}
		aggPtr.Store(agg)
	}
	// Every sink is safe for concurrent use; the files keep their write
	// errors for Flush below.
	sinks := []load.Sink{func(r *load.Result) { agg.Add(r) }}
	if out.results != nil {
		sinks = append(sinks, func(r *load.Result) { _ = out.results.Encode(r) })
	}
	if out.jtl != nil {
		sinks = append(sinks, out.jtl.Sink())
	}
	sink := report.Fanout(sinks...)
	stopProgress := startProgress(env.stderr, f.progress, func() (report.Snapshot, bool) {
		if a := aggPtr.Load(); a != nil {
			return a.Snapshot(), true
		}
		return report.Snapshot{}, false
	})
	cfg.Sink, cfg.Started = sink, started
	st, err := load.Run(ctx, cfg)
	stopProgress()
	if err != nil {
		return err
	}
	agg.SetDropped(int64(st.Dropped))
	sum := agg.Summary()
	if st.Interrupted {
		fmt.Fprintln(out.summary, "interrupted: the summary covers what ran")
	}
	var errs []error
	if err := report.WriteText(out.summary, sum); err != nil {
		errs = append(errs, fmt.Errorf("write summary: %w", err))
	}
	if st.Held > 0 {
		fmt.Fprintf(out.summary, "held: %d requests waited %v in all before they were sent, for a Retry-After or a spent window's reset (--retry-after honor); each wait is the request's \"waited\" in --results and --jtl, not part of its latency\n",
			st.Held, st.HeldFor.Round(time.Millisecond))
	}
	if out.json != nil {
		errs = append(errs, report.WriteJSON(out.json, sum))
	}
	if out.html != nil {
		errs = append(errs, report.WriteHTML(out.html, sum))
	}
	if out.jtl != nil {
		errs = append(errs, out.jtl.Flush())
	}
	if out.results != nil {
		if !st.Interrupted && st.Sent == 0 {
			out.results.WriteInfo(load.RunInfo{Start: st.Start, Model: model, Segment: cfg.Segment.String()})
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
		failed, err := f.thresholds.Check(out.summary, sum)
		if err != nil {
			return err
		}
		if failed > 0 {
			return &exitError{code: 99, err: fmt.Errorf("%d of %d thresholds failed", failed, len(f.thresholds))}
		}
	}
	return nil
}
