package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"ratelab/limit"
	"ratelab/load"
	"ratelab/report"
)

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
	segment, startAt                                  string
	segmentOf                                         int
	cpuProfile                                        string
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
	fs.StringVar(&f.retryAfter, "retry-after", "ignore", "honor: wait as Retry-After says, and for a window's reset when a response says it is spent (threads sleep, the open schedule pauses; see above); ignore: record only")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.IntVar(&f.connections, "connections", 0, "most connections per host (0: no cap)")
	fs.BoolVar(&f.keepAlive, "keep-alive", true, "reuse connections")
	fs.StringVar(&f.tokenURL, "token-url", envDefault(env, "RATELAB_TOKEN_URL", ""), "OAuth 2.0 token `URL` for the client-credentials grant ($RATELAB_TOKEN_URL)")
	fs.StringVar(&f.clientID, "client-id", envDefault(env, "RATELAB_CLIENT_ID", ""), "OAuth client ID ($RATELAB_CLIENT_ID)")
	fs.StringVar(&f.clientSecret, "client-secret", envDefault(env, "RATELAB_CLIENT_SECRET", ""), "OAuth client secret ($RATELAB_CLIENT_SECRET)")
	fs.StringVar(&f.jsonOut, "json", "", "write the JSON summary to `FILE`")
	fs.StringVar(&f.jtlOut, "jtl", "", "write every result as JMeter CSV to `FILE`")
	fs.StringVar(&f.resultsOut, "results", "", "write the raw result stream to `FILE` (read back by ratelab report; - for standard output, the summary then goes to standard error)")
	fs.StringVar(&f.htmlOut, "html", "", "write the HTML report to `FILE`")
	fs.Var(&f.thresholds, "threshold", "pass/fail condition such as 'p99<250ms' or 'share_429<1%' (repeatable; a failure exits 99)")
	fs.DurationVar(&f.progress, "progress", time.Second, "progress line interval on stderr (0 turns it off)")
	fs.StringVar(&f.jmx, "jmx", "", "run the JMeter plan `PLAN.jmx` (as JMeter runs it; see --fix)")
	f.jmxProps = propFlags{}
	fs.Var(f.jmxProps, "J", "JMeter property `name=value` for --jmx (repeatable), as jmeter -J")
	fs.BoolVar(&f.fix, "fix", false, "with --jmx: run the plan corrected for its pitfalls instead")
	fs.StringVar(&f.segment, "segment", envDefault(env, "RATELAB_SEGMENT", ""), "run segment `K/N` of the test: every N-th arrival or thread from the K-th, so that N processes make one run ($RATELAB_SEGMENT)")
	fs.IntVar(&f.segmentOf, "segment-of", 0, "run segment JOB_COMPLETION_INDEX+1 of `N` (a pod of a Kubernetes Indexed Job)")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to `file` (for bench/loadgen)")
	fs.StringVar(&f.startAt, "start-at", envDefault(env, "RATELAB_START_AT", ""), "start the test at this RFC 3339 `TIME`, so that segments start together ($RATELAB_START_AT)")
}

// runSegment returns the segment and start instant the flags ask for:
// --segment K/N, or --segment-of N with K from $JOB_COMPLETION_INDEX (0
// based, as Kubernetes numbers the pods of an Indexed Job), and --start-at.
func (f *loadFlags) runSegment(env *environ, now time.Time) (load.Segment, time.Time, error) {
	var seg load.Segment
	var err error
	switch {
	case f.segment != "" && f.segmentOf != 0:
		return seg, time.Time{}, errors.New("give --segment K/N or --segment-of N, not both")
	case f.segmentOf < 0:
		return seg, time.Time{}, fmt.Errorf("--segment-of %d: want a number of segments, 1 or more", f.segmentOf)
	case f.segmentOf > 0:
		idx := env.getenv("JOB_COMPLETION_INDEX")
		i, perr := strconv.Atoi(idx)
		if perr != nil || i < 0 || i >= f.segmentOf {
			return seg, time.Time{}, fmt.Errorf("--segment-of %d: JOB_COMPLETION_INDEX is %q, want 0 to %d (set by a Kubernetes Indexed Job)", f.segmentOf, idx, f.segmentOf-1)
		}
		seg = load.Segment{K: i + 1, N: f.segmentOf}
	case f.segment != "":
		if seg, err = load.ParseSegment(f.segment); err != nil {
			return seg, time.Time{}, fmt.Errorf("--segment: %w", err)
		}
	}
	var at time.Time
	if f.startAt != "" {
		if at, err = time.Parse(time.RFC3339Nano, f.startAt); err != nil {
			return seg, time.Time{}, fmt.Errorf("--start-at %q: want an RFC 3339 time such as 2026-12-03T07:00:00Z", f.startAt)
		}
		if late := now.Sub(at); late > time.Second {
			return seg, time.Time{}, fmt.Errorf("--start-at %s is %v past: the test would start late, and a segment would not start with the others", f.startAt, late.Round(time.Millisecond))
		}
	}
	return seg, at, nil
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

// overrideWorkload sets in w the workload flags given on the command
// line (--threads, --ramp-up, --loops, --duration), which take precedence
// over a scenario file's or a JMeter plan's thread group.
func (f *loadFlags) overrideWorkload(w *load.Workload, set map[string]bool) {
	if set["threads"] {
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
}

// scenario builds the run's scenario: the file's, with the flags given
// on the command line taking precedence, or the flags' alone.
func (f *loadFlags) scenario(env *environ, file string, set map[string]bool) (*load.Scenario, *load.DataSet, error) {
	s := &load.Scenario{RetryAfter: load.RetryIgnore, Timeout: f.timeout}
	var data *load.DataSet // a --jmx --fix plan's generated ids
	switch {
	case f.jmx != "" && file != "":
		return nil, nil, fmt.Errorf("give a scenario file or --jmx, not both (got %s and %s)", file, f.jmx)
	case f.fix && f.jmx == "":
		return nil, nil, errors.New("--fix corrects a JMeter plan: give --jmx PLAN.jmx")
	case f.jmx != "":
		js, d, err := f.jmxScenario(env)
		if err != nil {
			return nil, nil, err
		}
		s, data = js, d
		file = f.jmx // the plan stands for a file: only the flags given override it
	case file != "":
		src, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, fmt.Errorf("read scenario: %w", err)
		}
		if s, err = load.ParseScenario(src, filepath.Dir(file)); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", file, err)
		}
		if s.Timeout == 0 {
			s.Timeout = f.timeout
		}
	}
	w := &s.Workload
	var err error
	f.overrideWorkload(w, set)
	if file == "" {
		w.Threads = f.threads // a flag-only run: --threads or its default
	}
	if file == "" || set["max-workers"] {
		w.MaxWorkers = f.maxWorkers
	}
	if f.rate != "" {
		if w.Rate, err = limit.ParseRate(f.rate); err != nil {
			return nil, nil, fmt.Errorf("--rate: %w", err)
		}
		w.Stages = nil
	}
	if f.stages != "" {
		if w.Stages, err = load.ParseStages(f.stages); err != nil {
			return nil, nil, fmt.Errorf("--stages: %w", err)
		}
		if f.rate == "" {
			w.Rate = limit.Rate{}
		}
	}
	if f.throughput != "" {
		if w.Throughput, err = limit.ParseRate(f.throughput); err != nil {
			return nil, nil, fmt.Errorf("--throughput: %w", err)
		}
	}
	if file == "" || set["throughput-mode"] {
		if w.ThroughputMode, err = load.ParseThroughputMode(f.throughputMode); err != nil {
			return nil, nil, err
		}
	}
	if file == "" || set["retry-after"] {
		if s.RetryAfter, err = load.ParseRetryAfterMode(f.retryAfter); err != nil {
			return nil, nil, err
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
		s.Data, data = f.data, nil
	}
	if file == "" || set["data-mode"] {
		if s.DataMode, err = load.ParseDataMode(f.dataMode); err != nil {
			return nil, nil, err
		}
	}
	if f.tokenURL != "" {
		s.Auth = load.Auth{TokenURL: f.tokenURL, ClientID: f.clientID, ClientSecret: f.clientSecret}
	}
	if f.url != "" {
		s.Requests = []load.RequestSpec{{Method: f.method, URL: f.url, Headers: f.headers, Body: f.body, BodyFile: f.bodyFile}}
	} else {
		if set["method"] || set["X"] || f.body != "" || f.bodyFile != "" {
			return nil, nil, errors.New("--method and --body need --url")
		}
		s.Headers = append(s.Headers, f.headers...)
	}
	if len(s.Requests) == 0 {
		return nil, nil, errors.New("nothing to send: give --url or a scenario file (ratelab load --help)")
	}
	return s, data, nil
}
