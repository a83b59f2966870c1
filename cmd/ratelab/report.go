package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"ratelab/load"
	"ratelab/report"
)

func init() {
	register(&command{name: "report", summary: "turn result files into text / JSON / JTL / HTML reports (merging them)", run: runReport})
}

// reportFlags are the report command's options.
type reportFlags struct {
	text       bool
	jsonOut    string
	htmlOut    string
	jtlOut     string
	title      string
	thresholds report.Thresholds
}

func runReport(ctx context.Context, env *environ, args []string) error {
	fs := newFlagSet(env, "report", "report [flags] FILE... (flags may follow the files)",
		"Reads one or more results files written by \"ratelab load --results\" (- for standard input),\n"+
			"merges them into one report, and writes the chosen outputs. The text summary goes to\n"+
			"standard output unless another output is written there (--json - or --jtl -).\n"+
			"Exits 99 when a --threshold fails.")
	var f reportFlags
	fs.BoolVar(&f.text, "text", true, "write the text summary to standard output")
	fs.StringVar(&f.jsonOut, "json", "", "write the JSON summary to `FILE` (- for standard output)")
	fs.StringVar(&f.htmlOut, "html", "", "write the HTML report to `FILE`")
	fs.StringVar(&f.jtlOut, "jtl", "", "write all results as JMeter CSV to `FILE` (- for standard output)")
	fs.StringVar(&f.title, "title", envDefault(env, "RATELAB_REPORT_TITLE", ""), "the report's title (default: the run's name) [RATELAB_REPORT_TITLE]")
	fs.Var(&f.thresholds, "threshold", "a pass/fail `condition` such as p99<250ms or share_429<1% (repeatable)")

	// Flags may come before, between or after the files.
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) == 0 {
		fs.Usage()
		return &exitError{code: 2, err: errors.New("no results file given")}
	}
	textSet := false
	fs.Visit(func(fl *flag.Flag) { textSet = textSet || fl.Name == "text" })
	if !textSet && (f.jsonOut == "-" || f.jtlOut == "-") {
		f.text = false
	}
	if f.jsonOut == "-" && f.jtlOut == "-" {
		return &exitError{code: 2, err: errors.New("--json - and --jtl - cannot both write to standard output")}
	}

	var jtl *report.JTLWriter
	var closeJTL func() error
	if f.jtlOut != "" {
		w, closeFn, err := openOutput(env, f.jtlOut)
		if err != nil {
			return err
		}
		jtl, closeJTL = report.NewJTLWriter(w), closeFn
	}

	sum, err := readResults(ctx, env, files, f.title, jtl)
	if jtl != nil {
		if ferr := jtl.Flush(); ferr != nil && err == nil {
			err = ferr
		}
		if cerr := closeJTL(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", f.jtlOut, cerr)
		}
	}
	if err != nil {
		return err
	}

	if f.text {
		if err := report.WriteText(env.stdout, sum); err != nil {
			return err
		}
	}
	if f.jsonOut != "" {
		if err := writeOutput(env, f.jsonOut, func(w io.Writer) error { return report.WriteJSON(w, sum) }); err != nil {
			return err
		}
	}
	if f.htmlOut != "" {
		if err := writeOutput(env, f.htmlOut, func(w io.Writer) error { return report.WriteHTML(w, sum) }); err != nil {
			return err
		}
	}
	if len(f.thresholds) > 0 {
		failed, err := f.thresholds.Check(env.stderr, sum)
		if err != nil {
			return err
		}
		if failed > 0 {
			return &exitError{code: 99, err: fmt.Errorf("%d of %d thresholds failed", failed, len(f.thresholds))}
		}
	}
	return nil
}

// readResults decodes every file into its own aggregator (each file has
// its own start and target), writes each result to jtl when it is not nil,
// and returns the summary of all files merged.
func readResults(ctx context.Context, env *environ, files []string, title string, jtl *report.JTLWriter) (*report.Summary, error) {
	var (
		aggs   []*report.Aggregator
		start  time.Time
		target float64
		model  string
		name   string
	)
	for _, file := range files {
		agg, info, err := readFile(ctx, env, file, jtl)
		if err != nil {
			return nil, err
		}
		aggs = append(aggs, agg)
		if start.IsZero() || (!info.Start.IsZero() && info.Start.Before(start)) {
			start = info.Start
		}
		// Several machines each run their share of the rate: the targets add.
		target += info.TargetRPS
		if model == "" {
			model = info.Model
		}
		if name == "" {
			name = info.Name
		}
	}
	if title == "" {
		title = name
	}
	all := report.NewAggregator(report.Config{Start: start, TargetRPS: target, Model: model, Title: title})
	for _, a := range aggs {
		all.Merge(a)
	}
	return all.Summary(), nil
}

// readFile decodes one results file into a new aggregator.
func readFile(ctx context.Context, env *environ, file string, jtl *report.JTLWriter) (*report.Aggregator, load.RunInfo, error) {
	var r io.Reader = env.stdin
	if file != "-" {
		fh, err := os.Open(file)
		if err != nil {
			return nil, load.RunInfo{}, fmt.Errorf("open results: %w", err)
		}
		defer fh.Close()
		r = fh
	}
	dec, err := load.NewDecoder(r)
	if err != nil {
		return nil, load.RunInfo{}, fmt.Errorf("%s: %w", file, err)
	}
	info := dec.Info()
	agg := report.NewAggregator(report.Config{Start: info.Start, TargetRPS: info.TargetRPS, Model: info.Model, Title: info.Name})
	var res load.Result
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return nil, info, fmt.Errorf("read %s: %w", file, ctx.Err())
		}
		err := dec.Decode(&res)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, info, fmt.Errorf("%s: %w", file, err)
		}
		agg.Add(&res)
		if jtl != nil {
			if err := jtl.Write(&res); err != nil {
				return nil, info, err
			}
		}
	}
	return agg, info, nil
}

// openOutput opens path for writing; "-" is standard output.
func openOutput(env *environ, path string) (io.Writer, func() error, error) {
	if path == "-" {
		return env.stdout, func() error { return nil }, nil
	}
	fh, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("create output: %w", err)
	}
	return fh, fh.Close, nil
}

// writeOutput writes one output with write and closes it.
func writeOutput(env *environ, path string, write func(io.Writer) error) error {
	w, closeFn, err := openOutput(env, path)
	if err != nil {
		return err
	}
	err = write(w)
	if cerr := closeFn(); cerr != nil && err == nil {
		err = fmt.Errorf("close %s: %w", path, cerr)
	}
	return err
}
