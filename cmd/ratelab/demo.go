package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ratelab/diagnose"
	"ratelab/httpapi"
	"ratelab/jmx"
	"ratelab/limit"
	"ratelab/load"
)

func init() {
	register(&command{name: "demo", summary: "replay the reference JMeter plan on an embedded server, explain why it throttles, show the fix", run: runDemo})
}

func runDemo(ctx context.Context, env *environ, args []string) error {
	fs := newFlagSet(env, "demo", "demo [--quick] [--json] [--out DIR] [--policies FILE] [--headers DIALECT] [--reject-body BODY]",
		"Starts an embedded ratelab server on 127.0.0.1 (default policies, a temporary SQLite\n"+
			"database), runs the reference JMeter plan against it as JMeter would, explains why it\n"+
			"throttles, and runs it again fixed step by step. Every number comes from real requests\n"+
			"over loopback. Takes about 45 s (--quick: under 20 s). With --policies (e.g. a profile\n"+
			"of examples/policies) the server enforces that file instead, and --headers and\n"+
			"--reject-body make it answer as serve's flags of the same names do.")
	quick := fs.Bool("quick", false, "shorter runs: under 20 s in all")
	asJSON := fs.Bool("json", false, "print one JSON document {runs, diagnosis} on stdout; the narrative goes to stderr")
	outDir := fs.String("out", "", "directory for the HTML reports (default: a new temporary directory, kept)")
	policyFile := fs.String("policies", "", "YAML policy `file` for the embedded server instead of the defaults")
	headers := fs.String("headers", httpapi.HeadersIETF, "rate-limit header `dialect`: ietf, x-ratelimit, github, inin or none")
	rejectBody := fs.String("reject-body", httpapi.RejectDetailed, "429 `body`: detailed or terse")
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

	cfg := httpapi.Config{Headers: *headers, RejectBody: *rejectBody}
	source := "default policies"
	if *policyFile != "" {
		ps, err := httpapi.LoadPolicies(*policyFile)
		if err != nil {
			return err
		}
		cfg.Policies, source = ps, "policies of "+*policyFile
	}
	srv, err := startDemoServer(ctx, dir, cfg)
	if err != nil {
		return fmt.Errorf("start the embedded server: %w", err)
	}
	defer srv.close()
	fmt.Fprintf(out, "ratelab demo: embedded server at %s (%s, headers %s, database %s)\n\n", srv.base, source, *headers, filepath.Join(dir, "ratelab.db"))

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

	var runs []*diagnose.Run
	step := func(name, what string, sc *load.Scenario, data *load.DataSet, target float64, perRequest int) (*diagnose.Run, error) {
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
		r := &diagnose.Run{Name: name, Summary: sum, UpdatesPerRequest: perRequest}
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
			faithful.Workload.Threads, loops, faithful.Workload.Throughput, jmx.CalcModeName(faithful.Workload.ThroughputMode)),
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
	fixed, err := plan.FixedScenario(opts, jmx.FixOptions{})
	if err != nil {
		return err
	}
	if fixed.Data == nil {
		return errors.New("the reference plan's fix spreads no writes")
	}
	data := fixed.Data
	fixed.Scenario.Workload.Loops, fixed.Scenario.Workload.Duration = 0, runFor
	run3, err := step("spread over scripts, Retry-After honoured",
		strings.Join(fixed.Changes, "; "), fixed.Scenario, data, intended, 1)
	if err != nil {
		return err
	}

	// 4. The same scripts through the bulk endpoint, at the per-script rate
	// (when the policies have a per-script limit to batch against).
	var run4 *diagnose.Run
	if perScript, err := srv.scriptLimit(ctx, data); err != nil {
		fmt.Fprintf(out, "4. the bulk endpoint: skipped, %v\n\n", err)
	} else {
		bulk, items, err := bulkScenario(srv, data, perScript, runFor)
		if err != nil {
			return err
		}
		if run4, err = step("the same updates through the bulk endpoint",
			fmt.Sprintf("POST /api/v2/architect/scripts/bulk with %d scripts per request, at %s (the per-script limit the server advertises)", items, perScript.Rate),
			bulk, nil, perScript.Rate.PerSecond(), items); err != nil {
			return err
		}
	}

	limits, err := srv.limits(ctx, data)
	if err != nil {
		return err
	}
	diag := diagnose.DiagnoseLimits(analysis, run1, run2, run3, run4, limits)
	fmt.Fprintln(out, "Diagnosis:")
	for i, f := range diag {
		fmt.Fprintf(out, "  %d. %s\n     evidence: %s\n     fix: %s\n", i+1, f.Finding, f.Evidence, f.Fix)
	}
	fmt.Fprintf(out, "\nHTML reports in %s\n", dir)
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Runs      []*diagnose.Run    `json:"runs"`
			Diagnosis []diagnose.Finding `json:"diagnosis"`
		}{runs, diag})
	}
	return nil
}
