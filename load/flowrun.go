package load

// The flow engine: a Flow compiled into a tree of steps per thread group,
// and the virtual user that walks it. A user is a worker's companion: the
// worker sends (worker.go), the user decides what to send next and what
// to make of the response.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ctl is what a step tells the steps around it.
type ctl int

const (
	ctlNext     ctl = iota // carry on
	ctlNextLoop            // abandon the iteration, start the next
	ctlStopUser            // this user is done
	ctlStopTest            // every user stops after its current sample
	ctlStopNow             // every user stops now
	ctlDone                // the run (or the group's time) is over
)

// cstep is a compiled step.
type cstep interface {
	run(u *user, ctx, stop context.Context) ctl
}

// flowRun is the state of a whole flow's run that its groups share.
type flowRun struct {
	flow     *Flow
	stopTest context.CancelFunc // ends every group's stop context
	stopNow  context.CancelFunc // ends the run's context
	allUsers atomic.Int64       // users running, in every group
	shared   sync.Map           // *Counter, *CSVData (ShareAll) → state
}

// flowGroup is a compiled thread group.
type flowGroup struct {
	run      *flowRun
	g        *ThreadGroup
	num      int // from 1, in the flow's order
	steps    []cstep
	vars     []compiledVar
	data     []*csvSource // in scope order: the flow's, then the group's
	counters []*Counter
	random   []*RandomVar
	slots    int      // per-user state slots of its steps
	ttSlots  int      // per-user ThroughputThread slots
	shared   sync.Map // controller and timer state the group's users share
}

type compiledVar struct {
	name  string
	value *Template
}

// user is one virtual user of a flow group.
type user struct {
	g       *flowGroup
	w       *worker
	vars    map[string]string
	iter    int
	first   bool // the iteration is the user's first
	started bool
	state   []int64
	tt      []ThroughputThread
	rng     *rand.Rand
	lastOK  bool
	tx      []*txRun
	paused  time.Duration // time spent in timers and think, for transactions
	// intended and waited are the open model's schedule for the
	// iteration's first request.
	intended time.Time
	waited   time.Duration
	ownCount map[*Counter]int64
	randoms  map[*RandomVar]*rand.Rand
}

func (fg *flowGroup) newUser(w *worker) *user {
	u := &user{g: fg, w: w, vars: map[string]string{}, state: make([]int64, fg.slots),
		tt: make([]ThroughputThread, fg.ttSlots), lastOK: true,
		rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	w.vars.Named = u.vars
	w.user = u
	return u
}

// iteration runs the group's steps once.
func (u *user) iteration(ctx, stop context.Context, iter int, intended time.Time, waited time.Duration) bool {
	fg := u.g
	u.first = !u.started
	if !u.started {
		u.started = true
		fg.run.allUsers.Add(1)
	}
	u.iter = iter
	u.w.vars.Iteration = iter
	u.intended, u.waited = intended, waited
	if u.first {
		for _, v := range fg.vars {
			u.vars[v.name] = v.value.Execute(&u.w.vars)
		}
	}
	if c := fg.run.flow.Cookies; c != nil && (u.w.jar == nil || c.ClearEachIteration) {
		u.w.jar, _ = cookiejar.New(nil) // New fails only with bad options
	}
	for _, d := range fg.data {
		if !u.nextRow(d) {
			return false // stopThread at the end of the file
		}
	}
	for _, c := range fg.counters {
		u.vars[c.Var] = formatNumber(u.nextCount(c), c.Format)
	}
	for _, rv := range fg.random {
		u.vars[rv.Var] = formatNumber(u.random(rv), rv.Format)
	}
	switch c := runAll(fg.steps, u, ctx, stop); c {
	case ctlStopUser:
		return false
	case ctlStopTest:
		fg.run.stopTest()
		return false
	case ctlStopNow:
		fg.run.stopNow()
		return false
	case ctlDone:
		return false
	}
	return stop.Err() == nil
}

func runAll(steps []cstep, u *user, ctx, stop context.Context) ctl {
	for _, s := range steps {
		if c := s.run(u, ctx, stop); c != ctlNext {
			return c
		}
	}
	return ctlNext
}

// sleep waits d, counting it as pause for transactions.
func (u *user) sleep(stop context.Context, d time.Duration) bool {
	if d <= 0 {
		return stop.Err() == nil
	}
	u.paused += d
	return u.w.sleepUntil(stop, time.Now().Add(d))
}

// crequest is a compiled Request with everything in its scope.
type crequest struct {
	t        *Target
	think    time.Duration
	timers   []*ctimer
	extract  []*cextract
	assert   []*cassert
	keep     bool
	embedded *cembedded
	group    string
	onError  SampleErrorAction
}

func (s *crequest) run(u *user, ctx, stop context.Context) ctl {
	if stop.Err() != nil {
		return ctlDone
	}
	intended, waited := u.intended, u.waited
	u.intended, u.waited = time.Time{}, 0
	if intended.IsZero() {
		if u.w.pendingWait > 0 {
			// Honor Retry-After: sleep before the next request.
			waited = u.w.pendingWait
			u.w.pendingWait = 0
			if !u.sleep(stop, waited) {
				return ctlDone
			}
		}
		if len(s.timers) > 0 {
			now := time.Now()
			var d time.Duration
			for _, t := range s.timers {
				d += t.delay(u, stop, now)
			}
			if d > 0 {
				intended = now.Add(d)
				for _, tx := range u.tx {
					if tx.includeTimers {
						tx.timerTime += d
					}
				}
				if !u.sleep(stop, time.Until(intended)) {
					return ctlDone
				}
			}
		}
	}
	w := u.w
	held, ok := w.holdWindow(stop, s.t)
	if !ok {
		return ctlDone
	}
	if held > 0 {
		// As in worker.iteration: a hold is a wait, recorded in Waited.
		waited += held
		if !intended.IsZero() {
			intended = intended.Add(held)
		}
	}
	res := w.do(ctx, s.t, intended, waited, s.keep)
	if res == nil {
		return ctlDone
	}
	if s.embedded != nil && !u.fetchEmbedded(ctx, s.embedded, res) {
		return ctlDone
	}
	if res.Status > 0 {
		for _, e := range s.extract {
			e.apply(u, res)
		}
		for _, a := range s.assert {
			a.check(u, res)
		}
	}
	c := u.finish(res, s.onError)
	if s.think > 0 && !u.sleep(stop, s.think) {
		return ctlDone
	}
	return c
}

// finish records a sample's outcome, hands it to the transactions that
// hold it and delivers it; it returns what the group's on_sample_error
// says to do next.
func (u *user) finish(res *Result, onError SampleErrorAction) ctl {
	res.Group, res.GroupNum = u.g.g.Name, u.g.num
	ok := res.Success()
	u.lastOK = ok
	u.vars["JMeterThread.last_sample_ok"] = strconv.FormatBool(ok)
	for i := len(u.tx) - 1; i >= 0; i-- {
		tx := u.tx[i]
		tx.add(res)
		if tx.parent {
			if res.Parent == "" {
				res.Parent = tx.name
			}
			break
		}
	}
	if res.Transaction {
		// A transaction's sample is a result, not a request sent.
		u.w.r.cfg.Sink(res)
	} else {
		u.w.deliver(res)
	}
	if ok {
		return ctlNext
	}
	switch onError {
	case ErrorStartNextLoop:
		return ctlNextLoop
	case ErrorStopThread:
		return ctlStopUser
	case ErrorStopTest:
		return ctlStopTest
	case ErrorStopTestNow:
		return ctlStopNow
	}
	return ctlNext
}

// simple runs its children in order.
type simple struct{ steps []cstep }

func (s *simple) run(u *user, ctx, stop context.Context) ctl { return runAll(s.steps, u, ctx, stop) }

// txRun is an open transaction of a user.
type txRun struct {
	name          string
	parent        bool
	includeTimers bool
	start         time.Time
	paused0       time.Duration
	timerTime     time.Duration
	sum           time.Duration // children's elapsed (parent mode)
	n, failed     int
	in, out       int64
}

func (t *txRun) add(r *Result) {
	t.n++
	if !r.Success() {
		t.failed++
	}
	t.sum += r.Elapsed
	t.in += r.BytesIn
	t.out += r.BytesOut
}

type transaction struct {
	tx    *Transaction
	steps []cstep
	group string
	onErr SampleErrorAction
}

func (s *transaction) run(u *user, ctx, stop context.Context) ctl {
	t := &txRun{name: s.tx.Name, parent: s.tx.Parent, includeTimers: s.tx.IncludeTimers,
		start: time.Now(), paused0: u.paused}
	u.tx = append(u.tx, t)
	c := runAll(s.steps, u, ctx, stop)
	u.tx = u.tx[:len(u.tx)-1]
	if c == ctlStopNow || (c == ctlDone && ctx.Err() != nil) {
		return c
	}
	end := time.Now()
	res := &u.w.res
	*res = Result{Remaining: -1, Thread: u.w.thread, Iteration: u.iter, Label: t.name, Start: t.start,
		Intended: t.start, Status: 200, BytesIn: t.in, BytesOut: t.out, Transaction: true,
		ActiveThreads: int(u.w.r.active.Load())}
	res.Seq = u.w.r.seq.Add(1) - 1
	if t.parent {
		// JMeter's parent sample: the sum of its sub-samples' times.
		res.Elapsed = t.sum + t.timerTime
	} else {
		// JMeter's transaction sample: its wall time less the pauses of
		// timers (unless they are included).
		res.Elapsed = end.Sub(t.start) - (u.paused - t.paused0) + t.timerTime
	}
	if t.failed > 0 {
		res.Failure = fmt.Sprintf("Number of samples in transaction : %d, number of failing samples : %d", t.n, t.failed)
	}
	next := u.finish(res, s.onErr)
	if c != ctlNext {
		return c
	}
	if t.failed > 0 {
		// The children's failures were acted on already.
		return ctlNext
	}
	return next
}

type loop struct {
	count     int
	countExpr *Template
	steps     []cstep
}

func (s *loop) run(u *user, ctx, stop context.Context) ctl {
	n := s.count
	if s.countExpr != nil {
		var err error
		if n, err = strconv.Atoi(strings.TrimSpace(s.countExpr.Execute(&u.w.vars))); err != nil {
			n = 0
		}
	}
	for i := 0; n < 0 || i < n; i++ {
		if stop.Err() != nil {
			return ctlDone
		}
		if c := runAll(s.steps, u, ctx, stop); c != ctlNext {
			return c
		}
	}
	return ctlNext
}

type while struct {
	cond  *Template
	steps []cstep
}

// holds reports whether a While's condition lets another pass start:
// JMeter's rules, an empty condition looping until a sample in it fails
// (the first pass always runs) and "LAST" also not entering after a
// failed sample.
func (s *while) holds(u *user, first bool) bool {
	if s.cond == nil {
		return first || u.lastOK
	}
	text := strings.TrimSpace(s.cond.Execute(&u.w.vars))
	if text == "" {
		return first || u.lastOK
	}
	if text == "LAST" {
		return u.lastOK
	}
	if v, ok := Cond(text); ok {
		return v
	}
	return !strings.EqualFold(text, "false")
}

func (s *while) run(u *user, ctx, stop context.Context) ctl {
	for first := true; s.holds(u, first); first = false {
		if stop.Err() != nil {
			return ctlDone
		}
		if c := runAll(s.steps, u, ctx, stop); c != ctlNext {
			return c
		}
	}
	return ctlNext
}

type foreach struct {
	f     *ForEach
	steps []cstep
}

func (s *foreach) run(u *user, ctx, stop context.Context) ctl {
	sep := "_"
	if s.f.NoSeparator {
		sep = ""
	}
	for i := s.f.Start + 1; s.f.End == 0 || i <= s.f.End; i++ {
		v, ok := u.vars[s.f.Input+sep+strconv.Itoa(i)]
		if !ok {
			break
		}
		if stop.Err() != nil {
			return ctlDone
		}
		u.vars[s.f.Output] = v
		if c := runAll(s.steps, u, ctx, stop); c != ctlNext {
			return c
		}
	}
	return ctlNext
}

type ifc struct {
	cond        *Template
	evaluateAll bool
	steps       []cstep
}

func (s *ifc) holds(u *user) bool {
	text := strings.TrimSpace(s.cond.Execute(&u.w.vars))
	if v, ok := Cond(text); ok {
		return v
	}
	return strings.EqualFold(text, "true")
}

func (s *ifc) run(u *user, ctx, stop context.Context) ctl {
	if !s.evaluateAll {
		if !s.holds(u) {
			return ctlNext
		}
		return runAll(s.steps, u, ctx, stop)
	}
	for _, st := range s.steps {
		if !s.holds(u) {
			return ctlNext
		}
		if c := st.run(u, ctx, stop); c != ctlNext {
			return c
		}
	}
	return ctlNext
}

type onceOnly struct {
	slot  int
	steps []cstep
}

func (s *onceOnly) run(u *user, ctx, stop context.Context) ctl {
	if u.state[s.slot] != 0 {
		return ctlNext
	}
	u.state[s.slot] = 1
	return runAll(s.steps, u, ctx, stop)
}

type runtime struct {
	d     time.Duration
	steps []cstep
}

func (s *runtime) run(u *user, ctx, stop context.Context) ctl {
	if s.d <= 0 {
		return ctlNext
	}
	rctx, cancel := context.WithTimeout(stop, s.d)
	defer cancel()
	for rctx.Err() == nil {
		for _, st := range s.steps {
			if rctx.Err() != nil {
				break
			}
			// A step started before the end completes: it runs under the
			// group's stop context, not the controller's.
			if c := st.run(u, ctx, stop); c != ctlNext {
				return c
			}
		}
	}
	if stop.Err() != nil {
		return ctlDone
	}
	return ctlNext
}

// throughputCount is a Throughput Controller's count of passes and runs.
type throughputCount struct {
	mu           sync.Mutex
	passes, runs int64
}

type throughput struct {
	t     *Throughput
	slot  int // per user: passes in the high 32 bits, runs in the low
	steps []cstep
}

// decide is JMeter's rule: a number of executions runs the first Value
// passes; a percentage runs a pass when (100·runs + 50)/(passes + 1) is
// below it, which spreads the runs evenly.
func (s *throughput) decide(runs, passes int64) bool {
	if !s.t.Percent {
		return float64(runs) < s.t.Value
	}
	return (100*float64(runs)+50)/float64(passes+1) < s.t.Value
}

func (s *throughput) run(u *user, ctx, stop context.Context) ctl {
	var ok bool
	if s.t.PerUser {
		st := u.state[s.slot]
		passes, runs := st>>32, st&0xffffffff
		if ok = s.decide(runs, passes); ok {
			runs++
		}
		u.state[s.slot] = (passes+1)<<32 | runs
	} else {
		v, _ := u.g.shared.LoadOrStore(s, &throughputCount{})
		c := v.(*throughputCount)
		c.mu.Lock()
		if ok = s.decide(c.runs, c.passes); ok {
			c.runs++
		}
		c.passes++
		c.mu.Unlock()
	}
	if !ok {
		return ctlNext
	}
	return runAll(s.steps, u, ctx, stop)
}

type randomChoice struct{ steps []cstep }

func (s *randomChoice) run(u *user, ctx, stop context.Context) ctl {
	if len(s.steps) == 0 {
		return ctlNext
	}
	return s.steps[u.rng.IntN(len(s.steps))].run(u, ctx, stop)
}

type interleave struct {
	slot  int
	steps []cstep
}

func (s *interleave) run(u *user, ctx, stop context.Context) ctl {
	if len(s.steps) == 0 {
		return ctlNext
	}
	i := u.state[s.slot]
	u.state[s.slot] = (i + 1) % int64(len(s.steps))
	return s.steps[i].run(u, ctx, stop)
}

type switchc struct {
	value *Template
	names []string
	steps []cstep
}

// pick is JMeter's Switch Controller rule; -1 selects nothing.
func (s *switchc) pick(v string) int {
	if len(s.steps) == 0 {
		return -1
	}
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 || n >= len(s.steps) {
			return 0
		}
		return n
	}
	for i, name := range s.names {
		if name == v {
			return i
		}
	}
	for i, name := range s.names {
		if strings.EqualFold(name, "default") {
			return i
		}
	}
	return -1
}

func (s *switchc) run(u *user, ctx, stop context.Context) ctl {
	i := s.pick(strings.TrimSpace(s.value.Execute(&u.w.vars)))
	if i < 0 {
		return ctlNext
	}
	return s.steps[i].run(u, ctx, stop)
}

// formatNumber formats n as JMeter's DecimalFormat patterns of zeros and
// hashes do: the digits padded with zeros to the pattern's count of '0',
// the text around the pattern kept.
func formatNumber(n int64, format string) string {
	s := strconv.FormatInt(n, 10)
	if format == "" {
		return s
	}
	i := strings.IndexAny(format, "0#")
	if i < 0 {
		return format + s
	}
	j := i
	zeros := 0
	for j < len(format) && (format[j] == '0' || format[j] == '#' || format[j] == ',') {
		if format[j] == '0' {
			zeros++
		}
		j++
	}
	neg := n < 0
	if neg {
		s = s[1:]
	}
	if len(s) < zeros {
		s = strings.Repeat("0", zeros-len(s)) + s
	}
	if neg {
		s = "-" + s
	}
	return format[:i] + s + format[j:]
}

// counterState is a Counter shared by users.
type counterState struct {
	mu   sync.Mutex
	next int64
}

func (u *user) nextCount(c *Counter) int64 {
	step := func(cur int64) int64 {
		n := cur + c.Incr
		if c.Max > c.Start && n > c.Max {
			n = c.Start
		}
		return n
	}
	if c.PerUser {
		if u.ownCount == nil {
			u.ownCount = map[*Counter]int64{}
		}
		cur, ok := u.ownCount[c]
		if !ok {
			cur = c.Start
		} else {
			cur = step(cur)
		}
		u.ownCount[c] = cur
		return cur
	}
	v, _ := u.g.run.shared.LoadOrStore(c, &counterState{next: c.Start})
	st := v.(*counterState)
	st.mu.Lock()
	defer st.mu.Unlock()
	cur := st.next
	st.next = step(cur)
	return cur
}

func (u *user) random(rv *RandomVar) int64 {
	if rv.Max < rv.Min {
		return rv.Min
	}
	r := u.rng
	if rv.Seed != 0 {
		if u.randoms == nil {
			u.randoms = map[*RandomVar]*rand.Rand{}
		}
		if r = u.randoms[rv]; r == nil {
			r = rand.New(rand.NewPCG(uint64(rv.Seed), uint64(u.w.thread)))
			u.randoms[rv] = r
		}
	}
	return rv.Min + r.Int64N(rv.Max-rv.Min+1)
}

// Errors of a flow that cannot run.
var errNoGroups = errors.New("flow: no thread group with steps")

// compileFlow compiles every group of f.
func compileFlow(f *Flow, run *flowRun) ([]*flowGroup, error) {
	if len(f.Groups) == 0 {
		return nil, errNoGroups
	}
	flowData := make([]*csvSource, 0, len(f.Data))
	for i, d := range f.Data {
		src, err := loadCSV(d)
		if err != nil {
			return nil, fmt.Errorf("flow data[%d]: %w", i, err)
		}
		flowData = append(flowData, src)
	}
	var out []*flowGroup
	for gi, g := range f.Groups {
		where := fmt.Sprintf("group %d (%s)", gi+1, g.Name)
		if err := g.Workload.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if len(g.Steps) == 0 {
			return nil, fmt.Errorf("%s: no steps", where)
		}
		if err := checkWindows(g); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		fg := &flowGroup{run: run, g: g, num: gi + 1, data: append([]*csvSource(nil), flowData...)}
		for i, d := range g.Data {
			src, err := loadCSV(d)
			if err != nil {
				return nil, fmt.Errorf("%s: data[%d]: %w", where, i, err)
			}
			fg.data = append(fg.data, src)
		}
		for _, v := range append(append([]Var(nil), f.Vars...), g.Vars...) {
			t, err := compileFlowTemplate(v.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: var %s: %w", where, v.Name, err)
			}
			fg.vars = append(fg.vars, compiledVar{name: v.Name, value: t})
		}
		fg.counters = append(append(fg.counters, f.Counters...), g.Counters...)
		fg.random = append(append(fg.random, f.Random...), g.Random...)
		c := &compiler{f: f, fg: fg}
		steps, err := c.steps(g.Steps, []*Scope{&f.Scope, &g.Scope}, where)
		if err != nil {
			return nil, err
		}
		fg.steps = steps
		out = append(out, fg)
	}
	return out, nil
}

// mergeHeaders returns outer's headers with inner's replacing those of
// the same name, then inner's others.
func mergeHeaders(outer, inner []Header) []Header {
	out := make([]Header, 0, len(outer)+len(inner))
	for _, h := range outer {
		if !hasHeader(inner, h.Name) {
			out = append(out, h)
		}
	}
	return append(out, inner...)
}

type compiler struct {
	f  *Flow
	fg *flowGroup
	// timers holds each Timer compiled once: a timer in the scope of
	// several requests is one timer for all of them, as in JMeter (a
	// Constant Throughput Timer paces the samples of its scope together).
	timers map[*Timer]*ctimer
}

func (c *compiler) slot() int {
	c.fg.slots++
	return c.fg.slots - 1
}

func (c *compiler) steps(steps []Step, scopes []*Scope, where string) ([]cstep, error) {
	var out []cstep
	for i, s := range steps {
		cs, err := c.step(s, scopes, fmt.Sprintf("%s, step %d", where, i+1))
		if err != nil {
			return nil, err
		}
		out = append(out, cs)
	}
	return out, nil
}

func (c *compiler) step(s Step, scopes []*Scope, where string) (cstep, error) {
	if s == nil {
		return nil, fmt.Errorf("%s: nil step", where)
	}
	if name := s.StepName(); name != "" {
		where += " (" + name + ")"
	}
	inner := func(sc *Scope, steps []Step) ([]cstep, error) {
		for _, x := range sc.Counters {
			c.fg.counters = append(c.fg.counters, x)
		}
		for _, x := range sc.Random {
			c.fg.random = append(c.fg.random, x)
		}
		return c.steps(steps, append(scopes[:len(scopes):len(scopes)], sc), where)
	}
	cond := func(src string) (*Template, error) {
		t, err := compileFlowTemplate(src)
		if err != nil {
			return nil, fmt.Errorf("%s: condition: %w", where, err)
		}
		return t, nil
	}
	switch s := s.(type) {
	case *Request:
		return c.request(s, append(scopes[:len(scopes):len(scopes)], &s.Scope), where)
	case *Pause:
		if s.Duration < 0 {
			return nil, fmt.Errorf("%s: negative pause", where)
		}
		p := &pause{d: s.Duration}
		for _, sc := range append(scopes[:len(scopes):len(scopes)], &s.Scope) {
			for _, tm := range sc.Timers {
				ct, err := c.timer(tm)
				if err != nil {
					return nil, fmt.Errorf("%s: timer: %w", where, err)
				}
				p.timers = append(p.timers, ct)
			}
		}
		return p, nil
	case *Simple:
		steps, err := inner(&s.Scope, s.Steps)
		return &simple{steps: steps}, err
	case *Transaction:
		steps, err := inner(&s.Scope, s.Steps)
		return &transaction{tx: s, steps: steps, group: c.fg.g.Name, onErr: c.fg.g.OnSampleError}, err
	case *Loop:
		if s.Count < 0 && s.CountExpr == "" && c.fg.g.Workload.Duration <= 0 {
			// JMeter would loop until stopped by hand; a run must end.
			return nil, fmt.Errorf("%s: unbounded run refused: a loop forever needs its group's duration", where)
		}
		steps, err := inner(&s.Scope, s.Steps)
		l := &loop{count: s.Count, steps: steps}
		if s.CountExpr != "" {
			if l.countExpr, err = cond(s.CountExpr); err != nil {
				return nil, err
			}
		}
		return l, err
	case *While:
		steps, err := inner(&s.Scope, s.Steps)
		if err != nil {
			return nil, err
		}
		wh := &while{steps: steps}
		if strings.TrimSpace(s.Condition) != "" {
			if wh.cond, err = cond(s.Condition); err != nil {
				return nil, err
			}
		}
		return wh, nil
	case *ForEach:
		if s.Input == "" || s.Output == "" {
			return nil, fmt.Errorf("%s: foreach needs an input prefix and an output variable", where)
		}
		steps, err := inner(&s.Scope, s.Steps)
		return &foreach{f: s, steps: steps}, err
	case *If:
		steps, err := inner(&s.Scope, s.Steps)
		if err != nil {
			return nil, err
		}
		t, err := cond(s.Condition)
		return &ifc{cond: t, evaluateAll: s.EvaluateAll, steps: steps}, err
	case *OnceOnly:
		steps, err := inner(&s.Scope, s.Steps)
		return &onceOnly{slot: c.slot(), steps: steps}, err
	case *Runtime:
		steps, err := inner(&s.Scope, s.Steps)
		return &runtime{d: s.Duration, steps: steps}, err
	case *Throughput:
		if s.Value < 0 || (s.Percent && s.Value > 100) {
			return nil, fmt.Errorf("%s: throughput %v out of range", where, s.Value)
		}
		steps, err := inner(&s.Scope, s.Steps)
		return &throughput{t: s, slot: c.slot(), steps: steps}, err
	case *RandomChoice:
		steps, err := inner(&s.Scope, s.Steps)
		return &randomChoice{steps: steps}, err
	case *Interleave:
		steps, err := inner(&s.Scope, s.Steps)
		return &interleave{slot: c.slot(), steps: steps}, err
	case *Switch:
		steps, err := inner(&s.Scope, s.Steps)
		if err != nil {
			return nil, err
		}
		t, err := cond(s.Value)
		sw := &switchc{value: t, steps: steps}
		for _, st := range s.Steps {
			sw.names = append(sw.names, st.StepName())
		}
		return sw, err
	}
	return nil, fmt.Errorf("%s: unknown step %T", where, s)
}

func (c *compiler) request(r *Request, scopes []*Scope, where string) (cstep, error) {
	for _, x := range r.Counters {
		c.fg.counters = append(c.fg.counters, x)
	}
	for _, x := range r.Random {
		c.fg.random = append(c.fg.random, x)
	}
	u := r.URL
	if strings.HasPrefix(u, "/") && c.f.BaseURL != "" {
		u = strings.TrimSuffix(c.f.BaseURL, "/") + u
	}
	var common []Header
	for _, sc := range scopes {
		common = mergeHeaders(common, sc.Headers)
	}
	spec := RequestSpec{Name: r.Name, Method: r.Method, URL: u, Headers: r.Headers, Body: r.Body, Line: r.Line}
	t, err := compileTarget(spec, common, nil, true)
	if err != nil {
		if r.Line > 0 {
			return nil, fmt.Errorf("line %d: %s: %w", r.Line, where, err)
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	cr := &crequest{t: t, think: r.Think, group: c.fg.g.Name, onError: c.fg.g.OnSampleError}
	for _, sc := range scopes {
		for _, tm := range sc.Timers {
			ct, err := c.timer(tm)
			if err != nil {
				return nil, fmt.Errorf("%s: timer: %w", where, err)
			}
			cr.timers = append(cr.timers, ct)
		}
		for _, e := range sc.Extract {
			ce, err := compileExtract(e)
			if err != nil {
				return nil, fmt.Errorf("%s: extract %s: %w", where, e.Var, err)
			}
			cr.extract = append(cr.extract, ce)
		}
		for _, a := range sc.Assert {
			ca, err := compileAssert(a)
			if err != nil {
				return nil, fmt.Errorf("%s: assert: %w", where, err)
			}
			cr.assert = append(cr.assert, ca)
		}
	}
	if r.Embedded != nil {
		if cr.embedded, err = compileEmbedded(r.Embedded); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	cr.keep = len(cr.extract) > 0 || len(cr.assert) > 0 || cr.embedded != nil
	return cr, nil
}

// runFlow runs cfg.Flow: setUp groups, then the normal groups, then the
// tearDown groups, each phase's groups at once.
func runFlow(ctx context.Context, cfg Config, log logger) (Stats, error) {
	f := cfg.Flow
	fr := &flowRun{flow: f}
	groups, err := compileFlow(f, fr)
	if err != nil {
		return Stats{}, err
	}
	base := &runner{cfg: cfg, counts: &counts{}}
	if cfg.Client == nil {
		cc := cfg.HTTP
		if cc.Timeout == 0 && cc.Connections == 0 && !cc.DisableKeepAlive && cc.Auth.TokenURL == "" {
			cc = ClientConfig{Timeout: f.Timeout, Connections: f.Connections}
		}
		c, fast, err := newClient(ctx, cc, true)
		if err != nil {
			return Stats{}, err
		}
		base.cfg.Client, base.fast = c, fast
		defer c.CloseIdleConnections()
		if fast != nil {
			defer fast.CloseIdleConnections()
		}
	}
	if cfg.RetryAfter == RetryIgnore {
		base.cfg.RetryAfter = f.RetryAfter
	}
	if base.cfg.RetryAfter == RetryHonor {
		base.holds = newWindowHolds()
	}
	runCtx, stopNow := context.WithCancel(ctx)
	defer stopNow()
	stopCtx, stopTest := context.WithCancel(runCtx)
	defer stopTest()
	fr.stopNow, fr.stopTest = stopNow, stopTest
	start := time.Now()
	if cfg.Started != nil {
		cfg.Started(start)
	}
	phase := func(kind GroupKind, ctx, stop context.Context) {
		var wg sync.WaitGroup
		for _, fg := range groups {
			if fg.g.Kind != kind {
				continue
			}
			wg.Go(func() {
				if fg.g.Delay > 0 && !newSleeper().until(stop, time.Now().Add(fg.g.Delay)) {
					return
				}
				r := &runner{cfg: base.cfg, log: base.log, fast: base.fast, counts: base.counts, holds: base.holds, flow: fg}
				r.cfg.Workload = fg.g.Workload
				r.start = time.Now()
				if r.cfg.Workload.Open() {
					r.runOpen(ctx, stop)
				} else if len(fg.g.Windows) > 0 {
					r.runWindows(ctx, stop, fg.g.Windows)
				} else {
					r.runClosed(ctx, stop)
				}
			})
		}
		wg.Wait()
	}
	phase(GroupSetUp, runCtx, stopCtx)
	phase(GroupNormal, runCtx, stopCtx)
	// tearDown runs after a stop_test too (JMeter's default), not after
	// stop_test_now or an interrupt.
	if runCtx.Err() == nil {
		phase(GroupTearDown, runCtx, runCtx)
	}
	st := Stats{Start: start, End: time.Now(), Sent: base.sent.Load(), Dropped: base.dropped.Load(),
		Workers: int(base.workers.Load()), Interrupted: ctx.Err() != nil,
		Held: base.held.Load(), HeldFor: time.Duration(base.heldFor.Load())}
	log.Info("flow finished", "sent", st.Sent, "dropped", st.Dropped, "interrupted", st.Interrupted)
	return st, nil
}

// logger is the part of *slog.Logger a run uses.
type logger interface {
	Info(msg string, args ...any)
}

var _ http.CookieJar = (*cookiejar.Jar)(nil)

// Validate checks that f can run: every group bounded and with steps,
// every template, pattern, JSONPath and timer well formed, every CSV file
// readable. Run checks the same before the first request; Validate lets a
// caller (a translator, the CLI) fail before anything else is done. Its
// errors name the group and the step.
func (f *Flow) Validate() error {
	_, err := compileFlow(f, &flowRun{flow: f})
	return err
}

// pause is a compiled Pause: its timers, as a request's, then its own
// wait, which is not a timer's (a Transaction counts it).
type pause struct {
	d      time.Duration
	timers []*ctimer
}

func (s *pause) run(u *user, _, stop context.Context) ctl {
	if stop.Err() != nil {
		return ctlDone
	}
	if len(s.timers) > 0 {
		now := time.Now()
		var d time.Duration
		for _, t := range s.timers {
			d += t.delay(u, stop, now)
		}
		for _, tx := range u.tx {
			if tx.includeTimers {
				tx.timerTime += d
			}
		}
		if !u.sleep(stop, d) {
			return ctlDone
		}
	}
	if s.d > 0 && !u.w.sleepUntil(stop, time.Now().Add(s.d)) {
		return ctlDone
	}
	return ctlNext
}

// checkWindows checks a group's per-thread schedule.
func checkWindows(g *ThreadGroup) error {
	if len(g.Windows) == 0 {
		return nil
	}
	if g.Workload.Open() {
		return errors.New("thread windows are for threads, not for an arrival rate")
	}
	if g.Workload.Threads != len(g.Windows) {
		return fmt.Errorf("%d thread windows for %d threads", len(g.Windows), g.Workload.Threads)
	}
	for i, w := range g.Windows {
		if w.Start < 0 || w.Stop < 0 || (w.Stop > 0 && w.Stop < w.Start) {
			return fmt.Errorf("thread %d: window %v to %v", i+1, w.Start, w.Stop)
		}
		if w.Stop == 0 && g.Workload.Duration == 0 && g.Workload.Loops == 0 {
			return fmt.Errorf("thread %d: unbounded run refused: its window has no end and the group no loops or duration", i+1)
		}
	}
	return nil
}

// runWindows is runClosed with a window per thread: thread i+1 starts at
// windows[i].Start and stops at windows[i].Stop (or the group's deadline,
// whichever is first).
func (r *runner) runWindows(ctx, stop context.Context, windows []ThreadWindow) {
	w := r.cfg.Workload
	groupStop := stop
	if end, ok := r.deadline(); ok {
		var cancel context.CancelFunc
		groupStop, cancel = context.WithDeadline(stop, end)
		defer cancel()
	}
	var wg sync.WaitGroup
	for i, win := range windows {
		if !r.cfg.Segment.Has(uint64(i)) {
			continue // another segment's thread
		}
		wg.Go(func() {
			stopCtx := groupStop
			if win.Stop > 0 {
				var cancel context.CancelFunc
				stopCtx, cancel = context.WithDeadline(groupStop, r.start.Add(win.Stop))
				defer cancel()
			}
			wk := r.newWorker(ctx, i+1)
			defer wk.close()
			if !wk.sleepUntil(stopCtx, r.start.Add(win.Start)) {
				return
			}
			r.active.Add(1)
			defer r.active.Add(-1)
			for iter := 0; w.Loops == 0 || iter < w.Loops; iter++ {
				if !r.iteration(wk, ctx, stopCtx, iter, time.Time{}, 0) {
					return
				}
			}
		})
	}
	wg.Wait()
}
