package jmx

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"ratelab/load"
)

// Resolution: the numbers of a plan (threads, ramp-up, loops, durations,
// timer delays, schedules) may be expressions — ${__P(threads,10)} — whose
// value depends on the -J properties given at run time. The reader keeps
// the raw strings; resolve evaluates them against the properties and the
// user-defined variables, and is run again by Analyze and Scenario with
// their Options, so -J applies to thread-group fields as to any other.

// resolve evaluates the plan's numbers against opts and returns the
// expression environment and what could not be evaluated.
func (p *Plan) resolve(opts Options) (*exprEnv, []Warning) {
	env := planEnv(p, opts)
	var ws []Warning
	seen := map[*Timer]bool{}
	for _, g := range p.Groups {
		g.env = env
		ws = append(ws, g.resolve(env)...)
		for _, s := range g.Samplers {
			for _, t := range s.Timers {
				if !seen[t] {
					seen[t] = true
					ws = append(ws, t.resolve(env)...)
				}
			}
		}
		for _, t := range g.shaping {
			if !seen[t] {
				seen[t] = true
				ws = append(ws, t.resolve(env)...)
			}
		}
	}
	return env, ws
}

// number evaluates a numeric field; ok is false (with a message) when the
// field holds something ratelab cannot evaluate before the run.
func number(env *exprEnv, raw string) (float64, bool, string) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return 0, false, ""
	}
	v := env.translate(raw)
	text := strings.TrimSpace(v.text)
	if f, err := strconv.ParseFloat(text, 64); err == nil && len(v.problems) == 0 {
		return f, true, ""
	}
	return 0, false, fmt.Sprintf("%q is not a number ratelab can evaluate before the run", raw)
}

func (g *ThreadGroup) resolve(env *exprEnv) []Warning {
	if g.el == nil {
		return nil
	}
	e := g.el
	var ws []Warning
	warn := func(unfaithful bool, format string, args ...any) {
		ws = append(ws, Warning{Path: g.Path, Line: g.Line, Message: fmt.Sprintf(format, args...), Unfaithful: unfaithful})
	}
	num := func(field string, def float64) float64 {
		f, ok, msg := number(env, e.str(field))
		if !ok {
			if msg != "" {
				warn(true, "%s %s; using %g", field, msg, def)
			}
			return def
		}
		return f
	}
	secs := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	loops := func() {
		g.Loops = 1
		if mc := e.props["ThreadGroup.main_controller"]; mc != nil {
			if lp := mc.props["LoopController.loops"]; lp != nil {
				f, ok, msg := number(env, lp.value)
				switch {
				case ok:
					g.Loops = int(f)
				case msg != "":
					warn(true, "loops %s; using 1", msg)
				}
			}
			if cf := mc.props["LoopController.continue_forever"]; cf != nil && strings.TrimSpace(cf.value) == "true" && g.Loops < 0 {
				g.Loops = -1
			}
		}
	}
	g.Stages, g.MaxWorkers, g.Open = nil, 0, false
	g.Windows, g.windowed = nil, map[string]bool{}
	windowWarn := func(format string, args ...any) {
		warn(true, format, args...)
		g.windowed[ws[len(ws)-1].Message] = true
	}
	switch g.Kind {
	case "thread", "setUp", "tearDown":
		g.Threads = int(num("ThreadGroup.num_threads", 1))
		g.RampUp = secs(num("ThreadGroup.ramp_time", 0))
		loops()
		g.Scheduler = e.str("ThreadGroup.scheduler") == "true"
		g.Duration, g.Delay = 0, 0
		if g.Scheduler {
			g.Duration = secs(num("ThreadGroup.duration", 0))
			g.Delay = secs(num("ThreadGroup.delay", 0))
		}
	case "stepping":
		// Start "Start users count" threads every "Start users period"
		// seconds (after a first burst), hold for "flighttime", then stop
		// "Stop users count" every "Stop users period" seconds.
		g.Threads = int(num("ThreadGroup.num_threads", 1))
		start, period := num("Start users count", 1), num("Start users period", 0)
		if start < 1 {
			start = 1
		}
		steps := math.Ceil(float64(g.Threads) / start)
		g.Delay = secs(num("Threads initial delay", 0))
		g.RampUp = secs(steps * period)
		g.Scheduler, g.Duration = true, g.RampUp+secs(num("flighttime", 0))
		g.Loops = -1
		g.Windows = steppingWindows(g.Threads, map[string]int{
			"in": int(start), "burst": int(num("Start users count burst", 0)), "out": int(num("Stop users count", 0)),
			"inPeriod": int(num("Start users period", 0)), "outPeriod": int(num("Stop users period", 0)),
			"rampUp": int(num("rampUp", 0)), "flight": int(num("flighttime", 0)), "delay": int(num("Threads initial delay", 0))})
		g.Duration = lastStop(g.Windows)
		windowWarn("Stepping Thread Group is run as a linear ramp-up of %d threads over %v and a hold: its steps of %g threads and its gradual stop are not emulated", g.Threads, g.RampUp, start)
	case "ultimate":
		rows := rowsOf(e.props["ultimatethreadgroupdata"])
		g.Loops, g.Scheduler = -1, true
		g.Threads = 0
		for i, r := range rows {
			v := make([]float64, 5)
			for k := range v {
				if k < len(r) {
					f, ok, msg := number(env, r[k])
					if !ok && msg != "" {
						warn(true, "row %d: %s", i+1, msg)
					}
					v[k] = f
				}
			}
			g.Threads += int(v[0])
			// The plugin's schedule: the row's k-th thread (from 0) of n
			// starts at delay + rampUp·(n−k)/n and stops at delay + rampUp +
			// hold + shutdown·(n−k)/n, in whole milliseconds.
			n := int64(v[0])
			for k := range n {
				left := float64(n - k)
				start := int64(1000*v[1]) + int64(math.Floor(1000*v[2]*left/float64(n)))
				stop := int64(1000*(v[1]+v[2]+v[3])) + int64(math.Floor(1000*v[4]*left/float64(n)))
				g.Windows = append(g.Windows, load.ThreadWindow{Start: time.Duration(start) * time.Millisecond, Stop: time.Duration(stop) * time.Millisecond})
			}
			if i == 0 {
				g.Delay, g.RampUp = secs(v[1]), secs(v[2])
				g.Duration = secs(v[2] + v[3])
				if v[4] > 0 {
					windowWarn("Ultimate Thread Group row 1: the %gs shutdown (threads stopping one by one) is not emulated: ratelab stops them together", v[4])
				}
			}
		}
		if len(rows) > 1 {
			windowWarn("Ultimate Thread Group with %d rows is run as its first row's schedule with %d threads in all", len(rows), g.Threads)
		}
		if len(rows) == 0 {
			warn(true, "Ultimate Thread Group has no schedule rows")
		}
	case "concurrency":
		unit := unitOf(e.str("Unit"))
		g.Threads = int(num("TargetLevel", 1))
		g.RampUp = secs(num("RampUp", 0) * unit)
		g.Scheduler, g.Loops = true, -1
		g.Duration = g.RampUp + secs(num("Hold", 0)*unit)
		if it, ok, _ := number(env, e.str("Iterations")); ok && it > 0 {
			g.Loops = int(it)
		}
		if steps, ok, _ := number(env, e.str("Steps")); ok && steps > 0 {
			warn(true, "Concurrency Thread Group ramps up in %g steps; ratelab ramps linearly", steps)
		}
	case "arrivals", "freeform":
		unit := unitOf(e.str("Unit"))
		g.Open, g.Scheduler = true, true
		if g.Kind == "arrivals" {
			target := num("TargetLevel", 0) / unit
			ramp, hold := num("RampUp", 0)*unit, num("Hold", 0)*unit
			if ramp > 0 {
				g.Stages = append(g.Stages, load.Stage{Duration: secs(ramp), From: 0, To: target})
			}
			g.Stages = append(g.Stages, load.Stage{Duration: secs(hold), From: target, To: target})
			if steps, ok, _ := number(env, e.str("Steps")); ok && steps > 0 {
				warn(true, "Arrivals Thread Group ramps up in %g steps; ratelab ramps linearly", steps)
			}
		} else {
			for i, r := range rowsOf(e.props["Schedule"]) {
				v := make([]float64, 3)
				for k := range v {
					if k < len(r) {
						f, ok, msg := number(env, r[k])
						if !ok && msg != "" {
							warn(true, "schedule row %d: %s", i+1, msg)
						}
						v[k] = f
					}
				}
				g.Stages = append(g.Stages, load.Stage{Duration: secs(v[2] * unit), From: v[0] / unit, To: v[1] / unit})
			}
		}
		if c, ok, _ := number(env, e.str("ConcurrencyLimit")); ok && c > 0 {
			g.MaxWorkers = int(c)
		}
		if it, ok, _ := number(env, e.str("Iterations")); ok && it > 0 {
			warn(true, "Iterations %g per arrival thread is not emulated: each arrival runs the requests once", it)
		}
	case "openmodel":
		g.Open, g.Scheduler = true, true
		st, random, err := parseOpenModel(env.translate(e.str("OpenModelThreadGroup.schedule")).text)
		if err != nil {
			warn(true, "Open Model schedule: %v", err)
		}
		g.Stages = st
		if random {
			warn(true, "Open Model random_arrivals are spaced evenly by ratelab: the same number of arrivals at the same mean rate, but not JMeter's Poisson bunching")
		}
	}
	for _, t := range g.shaping {
		if len(t.Stages) > 0 && !g.Open {
			// The Throughput Shaping Timer paces the group's samples to its
			// schedule: an open model of that schedule, with the group's
			// threads as the bound on concurrency.
			g.Open, g.Stages, g.MaxWorkers = true, t.Stages, max(g.Threads, 1)
			g.Scheduler = true
		}
	}
	if g.Open {
		var d time.Duration
		for _, s := range g.Stages {
			d += s.Duration
		}
		g.Duration = d
	}
	g.warnings = ws
	return ws
}

// steppingWindows is the Stepping Thread Group's schedule of n threads
// (the plugin's scheduleThread, in whole milliseconds from the group's
// start): a first burst of threads, then steps of "in"
// threads every inPeriod + rampUp seconds, each step's threads rampUp/in
// apart; after the last step and the flight time, "out" threads stop
// every outPeriod seconds.
func steppingWindows(n int, f map[string]int) []load.ThreadWindow {
	in, outCount := f["in"], f["out"]
	if in <= 0 {
		in = n
	}
	if outCount <= 0 {
		outCount = n
	}
	burst := min(f["burst"], n)
	if burst <= 0 {
		burst = in
	}
	rampUp := int64(1000 * f["rampUp"])
	iterDur := int64(1000*f["inPeriod"]) + rampUp
	steps := 1
	if n >= burst {
		steps = (n - burst + in - 1) / in
	}
	last := (n - burst) % in
	if last == 0 {
		last = in
	}
	delay := int64(1000 * f["delay"])
	descent := delay + int64(steps)*iterDur + rampUp/int64(in)*int64(last) + int64(1000*f["flight"])
	var out []load.ThreadWindow
	for k := range n {
		bucket, count, pos := 0, burst, k
		if k >= burst {
			bucket, count, pos = 1+(k-burst)/in, in, (k-burst)%in
		}
		start := delay + int64(bucket)*iterDur + int64(pos)*(rampUp/int64(count))
		stop := descent + int64(1000*f["outPeriod"])*int64(k/outCount)
		out = append(out, load.ThreadWindow{Start: time.Duration(start) * time.Millisecond, Stop: time.Duration(stop) * time.Millisecond})
	}
	return out
}

func lastStop(ws []load.ThreadWindow) time.Duration {
	var d time.Duration
	for _, w := range ws {
		d = max(d, w.Stop)
	}
	return d
}

// unitOf returns the seconds in a Concurrency/Arrivals "Unit": M (minutes,
// the plugin's default) or S.
func unitOf(u string) float64 {
	if strings.EqualFold(strings.TrimSpace(u), "S") {
		return 1
	}
	return 60
}

// rowsOf reads a collectionProp of collectionProps (a plugin's table).
func rowsOf(p *prop) [][]string {
	if p == nil {
		return nil
	}
	var rows [][]string
	for _, r := range p.items {
		var row []string
		for _, c := range r.items {
			row = append(row, c.value)
		}
		rows = append(rows, row)
	}
	return rows
}

// parseOpenModel reads the Open Model Thread Group's schedule language:
// rate(N/s|m|h) random_arrivals(D) pause(D) even_arrivals(D), D as 10s,
// 5m, 1h or "10 sec"/"5 min". Between rate() steps the rate moves linearly
// over the arrivals' duration, as JMeter's documentation describes.
func parseOpenModel(s string) (load.Stages, bool, error) {
	var st load.Stages
	rate, random := 0.0, false
	pendingFrom := -1.0
	rest := strings.TrimSpace(s)
	for rest != "" {
		open := strings.IndexByte(rest, '(')
		closeIdx := strings.IndexByte(rest, ')')
		if open < 0 || closeIdx < open {
			return st, random, fmt.Errorf("cannot read %q", rest)
		}
		fn, arg := strings.TrimSpace(rest[:open]), strings.TrimSpace(rest[open+1:closeIdx])
		rest = strings.TrimSpace(rest[closeIdx+1:])
		switch fn {
		case "rate":
			r, err := parseOpenRate(arg)
			if err != nil {
				return st, random, err
			}
			if pendingFrom >= 0 && len(st) > 0 {
				st[len(st)-1].To = r
				pendingFrom = -1
			}
			rate = r
		case "random_arrivals", "even_arrivals", "pause":
			d, err := parseOpenDuration(arg)
			if err != nil {
				return st, random, err
			}
			if fn == "pause" {
				st = append(st, load.Stage{Duration: d})
				pendingFrom = -1
				continue
			}
			if fn == "random_arrivals" {
				random = true
			}
			st = append(st, load.Stage{Duration: d, From: rate, To: rate})
			pendingFrom = rate
		default:
			return st, random, fmt.Errorf("%s() is not supported", fn)
		}
	}
	return st, random, nil
}

func parseOpenRate(s string) (float64, error) {
	num, unit, _ := strings.Cut(strings.ReplaceAll(s, " ", ""), "/")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("rate %q", s)
	}
	switch strings.TrimSpace(unit) {
	case "", "s", "sec":
		return f, nil
	case "m", "min":
		return f / 60, nil
	case "h", "hour":
		return f / 3600, nil
	case "d", "day":
		return f / 86400, nil
	}
	return 0, fmt.Errorf("rate unit %q", unit)
}

func parseOpenDuration(s string) (time.Duration, error) {
	s = strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	for suffix, mult := range map[string]time.Duration{"sec": time.Second, "min": time.Minute, "hour": time.Hour, "day": 24 * time.Hour} {
		if strings.HasSuffix(s, suffix) {
			f, err := strconv.ParseFloat(strings.TrimSuffix(s, suffix), 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q", s)
			}
			return time.Duration(f * float64(mult)), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("duration %q", s)
}

func (t *Timer) resolve(env *exprEnv) []Warning {
	if t.el == nil {
		return nil
	}
	e := t.el
	var ws []Warning
	warn := func(format string, args ...any) {
		ws = append(ws, Warning{Path: t.Path, Line: t.Line, Message: fmt.Sprintf(format, args...), Unfaithful: true})
	}
	ms := func(field string) time.Duration {
		f, ok, msg := number(env, e.str(field))
		if !ok {
			if msg != "" {
				warn("%s %s; taken as 0", field, msg)
			}
			return 0
		}
		return time.Duration(f * float64(time.Millisecond))
	}
	switch t.Kind {
	case ConstantThroughput:
		v, _ := e.raw("throughput")
		f, ok, msg := number(env, v)
		if !ok {
			if msg == "" {
				msg = "is empty"
			}
			warn("throughput %s; the timer is not run", msg)
			t.PerMinute = 0
			return ws
		}
		t.PerMinute = f
		mode, okMode := parseCalcMode(e.str("calcMode"))
		if !okMode && e.str("calcMode") != "" {
			warn("calcMode %q is unknown; using 0 (this thread only), JMeter's default", e.str("calcMode"))
		}
		t.Mode = mode
	case Constant:
		t.Delay = ms("ConstantTimer.delay")
	case UniformRandom, GaussianRandom, PoissonRandom:
		t.Delay, t.Range = ms("ConstantTimer.delay"), ms("RandomTimer.range")
	case ShapingTimer:
		t.Stages = nil
		for i, r := range rowsOf(e.props["load_profile"]) {
			v := make([]float64, 3)
			for k := range v {
				if k < len(r) {
					f, ok, msg := number(env, r[k])
					if !ok && msg != "" {
						warn("load_profile row %d: %s", i+1, msg)
					}
					v[k] = f
				}
			}
			t.Stages = append(t.Stages, load.Stage{Duration: time.Duration(v[2] * float64(time.Second)), From: v[0], To: v[1]})
		}
	}
	return ws
}
