package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
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
// its own target and its own order of results), all of them counting
// from the earliest start of any file, so that their timelines line up on
// the wall clock, writes each result to jtl when it is not nil, and
// returns the summary of all files merged. Files that are segments of one
// run (ratelab load --segment) are checked for a missing or repeated
// segment, which is reported on standard error.
func readResults(ctx context.Context, env *environ, files []string, title string, jtl *report.JTLWriter) (*report.Summary, error) {
	decs := make([]*load.Decoder, len(files))
	for i, file := range files {
		dec, closeFn, err := openResults(env, file)
		if err != nil {
			return nil, err
		}
		defer closeFn()
		decs[i] = dec
	}
	var (
		start  time.Time
		target float64
		model  string
		name   string
		segs   []string
	)
	for _, dec := range decs {
		info := dec.Info()
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
		segs = append(segs, info.Segment)
	}
	if msg := checkSegments(files, segs); msg != "" {
		fmt.Fprintln(env.stderr, "warning:", msg)
	}
	if title == "" {
		title = name
	}
	// Shares of a target (400/3 three times) add up to it to the µ/s.
	target = math.Round(target*1e6) / 1e6
	all := report.NewAggregator(report.Config{Start: start, TargetRPS: target, Model: model, Title: title})
	for i, dec := range decs {
		info := dec.Info()
		agg := report.NewAggregator(report.Config{Start: start, TargetRPS: info.TargetRPS, Model: info.Model, Title: info.Name})
		if err := decodeInto(ctx, files[i], dec, agg, jtl); err != nil {
			return nil, err
		}
		all.Merge(agg)
	}
	return all.Summary(), nil
}

// checkSegments says what is wrong when the files are segments of one
// run that do not make it whole: a missing or repeated segment, or
// segments of different splits; "" when nothing is.
func checkSegments(files, segs []string) string {
	n, seen := 0, map[int]string{}
	var problems []string
	for i, s := range segs {
		if s == "" {
			continue
		}
		seg, err := load.ParseSegment(s)
		if err != nil {
			return fmt.Sprintf("%s: %v", files[i], err)
		}
		if n == 0 {
			n = seg.N
		}
		if seg.N != n {
			return fmt.Sprintf("%s is segment %s, but %s is of %d: not one run", files[i], s, segs[slices.IndexFunc(segs, func(x string) bool { return x != "" })], n)
		}
		if prev, ok := seen[seg.K]; ok {
			problems = append(problems, fmt.Sprintf("segment %s is in both %s and %s", s, prev, files[i]))
		}
		seen[seg.K] = files[i]
	}
	if n == 0 {
		return ""
	}
	for k := 1; k <= n; k++ {
		if _, ok := seen[k]; !ok {
			problems = append(problems, fmt.Sprintf("segment %d/%d is missing", k, n))
		}
	}
	if len(problems) > 0 {
		return "the files are not one whole run: " + strings.Join(problems, "; ")
	}
	return ""
}

// openResults opens one results file ("-": standard input) and reads its
// run information.
func openResults(env *environ, file string) (*load.Decoder, func(), error) {
	var r io.Reader = env.stdin
	closeFn := func() {}
	if file != "-" {
		fh, err := os.Open(file)
		if err != nil {
			return nil, nil, fmt.Errorf("open results: %w", err)
		}
		r, closeFn = fh, func() { fh.Close() }
	}
	dec, err := load.NewDecoder(r)
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	return dec, closeFn, nil
}

// decodeInto adds every result of dec to agg, and writes it to jtl when
// it is not nil.
func decodeInto(ctx context.Context, file string, dec *load.Decoder, agg *report.Aggregator, jtl *report.JTLWriter) error {
	var res load.Result
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return fmt.Errorf("read %s: %w", file, ctx.Err())
		}
		err := dec.Decode(&res)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		agg.Add(&res)
		if jtl != nil {
			if err := jtl.Write(&res); err != nil {
				return err
			}
		}
	}
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
