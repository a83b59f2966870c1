package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"ratelab/jmx"
	"ratelab/load"
)

func init() {
	register(&command{name: "jmx", summary: "read a JMeter plan: the load it really produces, its pitfalls, the ratelab scenario", run: runJMX})
}

// propFlags collects -J name=value JMeter properties.
type propFlags map[string]string

func (p propFlags) String() string { return "" }

func (p propFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	p[name] = value
	return nil
}

func runJMX(_ context.Context, env *environ, args []string) error {
	fs := newFlagSet(env, "jmx", "jmx [flags] PLAN.jmx",
		"Reads a JMeter 5.6 test plan and prints the load it really produces when JMeter runs it,\n"+
			"the pitfalls it falls into (each with the fix), and the equivalent ratelab scenario\n"+
			"(\"ratelab load SCENARIO.yaml\" runs it; \"ratelab load --jmx PLAN.jmx\" runs the plan directly).")
	props := propFlags{}
	fs.Var(props, "J", "JMeter property `name=value` (repeatable), as jmeter -J; used by ${__P(name)}")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	if err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return &exitError{code: 2, err: errors.New("want exactly one plan file")}
	}
	path := fs.Arg(0)
	plan, err := readPlanFile(path)
	if err != nil {
		return err
	}
	opts := jmx.Options{Properties: props, Dir: filepath.Dir(path)}
	a := jmx.Analyze(plan, opts)
	// "ratelab load --jmx" runs the plan as a flow: its warnings, and
	// whether it can be built, are what say faithful and runnable.
	flow, fw, flowErr := plan.Flow(opts)
	if flowErr == nil {
		flowErr = jmx.ValidateShape(flow)
	}
	a.SetWarnings(fw)
	sc, _, scErr := plan.Scenario(opts)
	var yamlText []byte
	if scErr == nil {
		if yamlText, err = jmx.ScenarioYAML(sc); err != nil {
			return err
		}
	}
	if *asJSON {
		out := struct {
			*jmx.Analysis
			Scenario      any    `json:"scenario"`
			ScenarioError string `json:"scenario_error,omitempty"`
		}{Analysis: a}
		if flowErr != nil {
			out.ScenarioError = flowErr.Error()
		} else if scErr == nil {
			out.Scenario = jmx.ScenarioDocument(sc)
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	writeAnalysis(env.stdout, path, a)
	if flowErr != nil {
		fmt.Fprintf(env.stdout, "\nratelab load --jmx cannot run it: %v\n", flowErr)
	} else {
		fmt.Fprintf(env.stdout, "\nratelab load --jmx %s runs it as a flow of %d thread group(s), controllers, extractors and cookies included.\n", path, len(flow.Groups))
	}
	fmt.Fprintln(env.stdout, "\nIts requests as a flat scenario, without the plan's logic (ratelab load FILE.yaml):")
	if scErr != nil {
		fmt.Fprintf(env.stdout, "  none: %v\n", scErr)
		return nil
	}
	fmt.Fprintln(env.stdout, "---")
	_, err = env.stdout.Write(yamlText)
	return err
}

// readPlanFile reads and parses a .jmx file, naming the file in errors.
func readPlanFile(path string) (*jmx.Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := jmx.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// writeAnalysis prints an analysis for people.
func writeAnalysis(w io.Writer, path string, a *jmx.Analysis) {
	fmt.Fprintf(w, "Plan %s: %d threads, ramp-up %gs, ", path, a.Threads, a.RampUpS)
	switch {
	case a.DurationS != nil:
		fmt.Fprintf(w, "for %gs", *a.DurationS)
	case a.Loops < 0:
		fmt.Fprint(w, "looping forever")
	default:
		fmt.Fprintf(w, "%d loops", a.Loops)
	}
	if a.TotalRequests != nil {
		fmt.Fprintf(w, " (%d requests)", *a.TotalRequests)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\nWhat it really does:")
	for _, l := range a.Effective {
		fmt.Fprintf(w, "  - %s\n", l)
	}
	if len(a.Pitfalls) > 0 {
		fmt.Fprintln(w, "\nPitfalls:")
		for _, p := range a.Pitfalls {
			fmt.Fprintf(w, "  [%s] %s\n      fix: %s\n", p.ID, p.Message, p.Fix)
		}
	}
	if len(a.Warnings) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, wn := range a.Warnings {
			fmt.Fprintf(w, "  - %s\n", wn)
		}
	}
	if !a.Faithful {
		fmt.Fprintln(w, "\nratelab cannot run this plan exactly as JMeter would: see the warnings above.")
	}
}

// jmxScenario reads the --jmx plan and returns its scenario, faithful or
// (--fix) corrected. What cannot be run as JMeter would is said on stderr
// before anything is sent. A corrected plan comes with the data set of
// resource ids its requests read, held in memory.
func (f *loadFlags) jmxScenario(env *environ) (*load.Scenario, *load.DataSet, error) {
	plan, err := readPlanFile(f.jmx)
	if err != nil {
		return nil, nil, err
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
			return nil, nil, fmt.Errorf("%s: %w", f.jmx, err)
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
		return s, nil, nil
	}
	fixed, err := plan.FixedScenario(opts, jmx.FixOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.jmx, err)
	}
	for _, c := range fixed.Changes {
		fmt.Fprintf(env.stderr, "fix: %s\n", c)
	}
	return fixed.Scenario, fixed.Data, nil
}

// jmxFlow reads the --jmx plan as the flow "ratelab load" runs: what
// cannot be run as JMeter would is said on stderr before anything is
// sent. --threads, --ramp-up, --loops and --duration, when given, replace
// those of every normal thread group of the closed model.
func (f *loadFlags) jmxFlow(env *environ, set map[string]bool) (*load.Flow, error) {
	for _, name := range []string{"rate", "stages", "max-workers", "throughput", "throughput-mode", "url", "data", "body", "body-file"} {
		if set[name] {
			return nil, fmt.Errorf("--%s does not apply to --jmx: the plan's thread groups give the load (--fix runs it corrected)", name)
		}
	}
	plan, err := readPlanFile(f.jmx)
	if err != nil {
		return nil, err
	}
	opts := jmx.Options{Properties: f.jmxProps, Dir: filepath.Dir(f.jmx)}
	a := jmx.Analyze(plan, opts)
	flow, warns, err := plan.Flow(opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.jmx, err)
	}
	a.SetWarnings(warns)
	for _, w := range warns {
		if w.Unfaithful {
			fmt.Fprintf(env.stderr, "warning: %s\n", w)
		}
	}
	if !a.Faithful {
		fmt.Fprintln(env.stderr, "warning: ratelab cannot run this plan exactly as JMeter would (see above)")
	}
	for _, l := range a.Effective {
		fmt.Fprintf(env.stderr, "plan: %s\n", l)
	}
	for _, g := range flow.Groups {
		w := &g.Workload
		if g.Kind != load.GroupNormal || w.Open() {
			continue
		}
		f.overrideWorkload(w, set)
	}
	if set["timeout"] {
		flow.Timeout = f.timeout
	}
	if set["name"] {
		flow.Name = f.name
	}
	if set["retry-after"] {
		if flow.RetryAfter, err = load.ParseRetryAfterMode(f.retryAfter); err != nil {
			return nil, err
		}
	}
	return flow, nil
}
