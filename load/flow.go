package load

import (
	"time"

	"ratelab/limit"
)

// Flow is a test plan of virtual users, as JMeter's Test Plan holds it:
// thread groups that run at once, setUp groups before them and tearDown
// groups after, each of whose users runs a tree of steps. ParseFlow reads
// one from YAML; the jmx translator builds one from a .jmx plan. RunFlow
// runs it. A Flow is read-only once it runs.
type Flow struct {
	Name string
	// Vars are the plan's variables (JMeter's User Defined Variables),
	// set for every user before its first step, in order: a value may
	// refer to the variables before it.
	Vars []Var
	// Data are CSV data sets in scope of every group.
	Data []*CSVData
	// Cookies, when set, gives every user its own cookie jar (JMeter's
	// HTTP Cookie Manager).
	Cookies *Cookies
	// BaseURL prefixes request URLs that start with "/" (JMeter's HTTP
	// Request Defaults).
	BaseURL string
	// Scope holds headers, timers, extractors, assertions, counters and
	// random variables in scope of every group (elements at Test Plan
	// level).
	Scope
	Groups []*ThreadGroup
	// RetryAfter says whether a user waits when a response says
	// Retry-After.
	RetryAfter RetryAfterMode
	// Timeout bounds each request; 0 means 30 s.
	Timeout time.Duration
	// Connections caps connections to each host; 0 for no cap.
	Connections int
}

// Var is a named value, its Value a template.
type Var struct {
	Name, Value string
}

// GroupKind says when a thread group runs.
type GroupKind int

const (
	// GroupNormal runs with the other normal groups, all at once.
	GroupNormal GroupKind = iota
	// GroupSetUp runs before the normal groups (JMeter's setUp Thread
	// Group); setUp groups run at once with each other.
	GroupSetUp
	// GroupTearDown runs after the normal groups have finished.
	GroupTearDown
)

// SampleErrorAction is a thread group's on_sample_error: what a user does
// after a sample that failed (JMeter's "Action to be taken after a
// Sampler error").
type SampleErrorAction int

const (
	// ErrorContinue carries on with the next step.
	ErrorContinue SampleErrorAction = iota
	// ErrorStartNextLoop abandons the iteration and starts the next one.
	ErrorStartNextLoop
	// ErrorStopThread stops this user.
	ErrorStopThread
	// ErrorStopTest stops every user after its current sample.
	ErrorStopTest
	// ErrorStopTestNow stops every user at once, abandoning requests in
	// flight.
	ErrorStopTestNow
)

// ThreadGroup is a set of virtual users that run the same steps. Its
// Workload is the closed model (Threads, RampUp, Loops, Duration — JMeter's
// scheduler duration) or the open model (Rate or Stages: each arrival
// runs the steps once, as a plugin arrivals group does). Delay postpones
// its start (JMeter's startup delay). A group is bounded: Validate refuses
// one with neither loops nor a duration.
type ThreadGroup struct {
	Name          string
	Kind          GroupKind
	Workload      Workload
	Delay         time.Duration
	OnSampleError SampleErrorAction
	// Vars and Data are in scope of this group's users only.
	Vars []Var
	Data []*CSVData
	// Windows, when set, is a schedule per thread for the closed model
	// (the Stepping and Ultimate Thread Groups'), in place of RampUp:
	// thread i+1 starts Windows[i].Start after the group starts and
	// stops at Windows[i].Stop (no request starts after it; one in flight
	// completes), or at the group's Duration when Stop is 0. There is one
	// window per thread: Workload.Threads is len(Windows).
	Windows []ThreadWindow
	// Scope holds headers, timers, extractors and assertions that apply to
	// every request of the group.
	Scope
	Steps []Step
}

// ThreadWindow is when one thread of a group runs, from the group's
// start.
type ThreadWindow struct {
	Start, Stop time.Duration
}

// Scope is what JMeter applies to every sampler in scope of the element
// that holds it: timers run before each request (their delays add up),
// extractors after it, then assertions. Elements of an outer scope come
// before those of an inner one, and a request's own come last.
type Scope struct {
	// Headers are sent with every request in scope (JMeter's HTTP Header
	// Manager): an inner scope's header, or the request's own, replaces an
	// outer one of the same name. A Request's own headers are
	// Request.Headers, which hides this field.
	Headers []Header
	Timers  []*Timer
	Extract []*Extract
	Assert  []*Assert
	// Counters and Random are advanced at the start of every iteration of
	// the user's thread group, whatever their place in the tree.
	Counters []*Counter
	Random   []*RandomVar
}

// Step is one node of a user's tree of steps: a *Request, or a
// controller holding steps (*Simple, *Transaction, *Loop, *While, *ForEach,
// *If, *OnceOnly, *Runtime, *Throughput, *RandomChoice, *Interleave,
// *Switch), or a *Pause. Only this package's types implement it.
type Step interface {
	// StepName is the step's name: the label of a request or a
	// transaction, the name a Switch selects a child by.
	StepName() string
	step()
}

// Request sends one HTTP request: its URL, header values and body are
// templates over the user's variables ({{.name}}; see Template). A
// request's result carries its Name as its label.
type Request struct {
	Name    string
	Method  string
	URL     string
	Headers []Header
	Body    string
	// Think is a pause after the request (ratelab's own; JMeter plans use
	// timers, which run before).
	Think time.Duration
	// Embedded, when set, fetches the resources of an HTML response
	// (JMeter's "Retrieve All Embedded Resources").
	Embedded *Embedded
	Scope
	// Line is where the request was declared in a YAML file (0 when built
	// in code), for error messages.
	Line int
}

// Pause waits, sending nothing, as JMeter's Flow Control Action with
// action Pause: the timers in its scope run first, as before a request
// (their time is a timer's for a Transaction), then Duration, which a
// Transaction counts as its own time. It writes no sample.
type Pause struct {
	Name     string
	Duration time.Duration
	Scope
}

// Simple groups steps and runs them in order (JMeter's Simple Controller).
type Simple struct {
	Name string
	Scope
	Steps []Step
}

// Transaction runs its steps and writes a sample of its own for them, as
// JMeter's Transaction Controller: its elapsed time is the sum of its
// children's (with IncludeTimers, the time of the timers too), it fails
// when a child failed, and its label is Name. With Parent the children's
// results are delivered as sub-results of the transaction's (Result.Parent
// names it) rather than as samples of their own.
type Transaction struct {
	Name          string
	Parent        bool
	IncludeTimers bool
	Scope
	Steps []Step
}

// Loop runs its steps Count times (JMeter's Loop Controller); Count -1
// loops until the group ends. Count is a template when CountExpr is set.
type Loop struct {
	Name      string
	Count     int
	CountExpr string
	Scope
	Steps []Step
}

// While runs its steps while Condition holds, checked before each pass
// (JMeter's While Controller). Condition is a template; its text is an
// expression (see Cond) or, empty, "the last sample succeeded".
type While struct {
	Name      string
	Condition string
	Scope
	Steps []Step
}

// ForEach runs its steps once for each of the variables Input_1, Input_2,
// … (Input + Separator + n, from Start+1 to End, or until one is
// undefined when End is 0), with Output set to each value in turn
// (JMeter's ForEach Controller).
type ForEach struct {
	Name       string
	Input      string
	Output     string
	Start, End int
	// Separator is "_" unless NoSeparator.
	NoSeparator bool
	Scope
	Steps []Step
}

// If runs its steps when Condition holds (JMeter's If Controller, with
// "interpret condition as variable expression": the template's text is
// evaluated by Cond). With EvaluateAll the condition is checked before
// each child rather than once.
type If struct {
	Name        string
	Condition   string
	EvaluateAll bool
	Scope
	Steps []Step
}

// OnceOnly runs its steps in a user's first iteration only (JMeter's Once
// Only Controller).
type OnceOnly struct {
	Name string
	Scope
	Steps []Step
}

// Runtime runs its steps over and over for Duration (JMeter's Runtime
// Controller); a step started before the end completes.
type Runtime struct {
	Name     string
	Duration time.Duration
	Scope
	Steps []Step
}

// Throughput runs its steps on some of the passes through it (JMeter's
// Throughput Controller): with Percent, on Value % of passes (spread
// evenly: a pass runs when it brings the count of runs to at most
// Value % of passes); otherwise on the first Value passes. PerUser keeps
// the count per user; otherwise all users of the group share it.
type Throughput struct {
	Name    string
	Percent bool
	Value   float64
	PerUser bool
	Scope
	Steps []Step
}

// RandomChoice runs one of its steps, chosen at random on each pass
// (JMeter's Random Controller).
type RandomChoice struct {
	Name string
	Scope
	Steps []Step
}

// Interleave runs one of its steps on each pass, in turn (JMeter's
// Interleave Controller, per user).
type Interleave struct {
	Name string
	Scope
	Steps []Step
}

// Switch runs the one step its Value selects (JMeter's Switch
// Controller): Value, a template, is a number (the step's index from 0;
// empty or out of range selects step 0) or a step's name (case
// sensitive; failing that, a step named "default", any case; failing that,
// none).
type Switch struct {
	Name  string
	Value string
	Scope
	Steps []Step
}

// TimerKind is the kind of a Timer.
type TimerKind int

// The timers of JMeter a flow runs.
const (
	// TimerConstant waits Delay.
	TimerConstant TimerKind = iota
	// TimerUniform waits Delay plus a uniform random [0, Range).
	TimerUniform
	// TimerGaussian waits Delay plus a normal random with standard
	// deviation Range.
	TimerGaussian
	// TimerPoisson waits Delay plus a Poisson random of mean Lambda (ms).
	TimerPoisson
	// TimerConstantThroughput paces as JMeter's Constant Throughput Timer
	// (see ThroughputTimer) to Rate in mode Mode.
	TimerConstantThroughput
	// TimerPreciseThroughput paces the group's users together to Rate
	// with exponential (Poisson-process) gaps, as JMeter's Precise
	// Throughput Timer does, over a schedule shared by the group.
	TimerPreciseThroughput
	// TimerSynchronizing holds users until GroupSize of them wait (0: all
	// the group's users), then releases them together; Timeout, when set,
	// releases those waiting after it.
	TimerSynchronizing
)

// Timer is a delay before each request in its scope.
type Timer struct {
	Kind  TimerKind
	Delay time.Duration
	Range time.Duration
	// Lambda is the Poisson timer's mean, in milliseconds.
	Lambda float64
	// Rate and Mode are the throughput timers' target.
	Rate limit.Rate
	Mode ThroughputMode
	// GroupSize and Timeout configure the synchronizing timer.
	GroupSize int
	Timeout   time.Duration
}

// ExtractKind is the kind of an Extract.
type ExtractKind int

// The extractors of JMeter a flow runs.
const (
	// ExtractRegex is JMeter's Regular Expression Extractor: Expr is the
	// regular expression, Template the value built from its groups ($1$).
	ExtractRegex ExtractKind = iota
	// ExtractJSONPath is JMeter's JSON Extractor: Expr is a JSONPath
	// (RFC 9535) applied to the body parsed as JSON.
	ExtractJSONPath
	// ExtractBoundary is JMeter's Boundary Extractor: the text between
	// Left and Right.
	ExtractBoundary
)

// ExtractField is the part of a response an extractor or assertion reads.
type ExtractField int

// The fields of a response.
const (
	FieldBody ExtractField = iota
	FieldHeaders
	FieldURL
	FieldCode
	FieldMessage
)

// Extract sets variable Var from the response of each request in scope.
// Match picks the match: n ≥ 1 the nth, 0 one at random, -1 all of them as
// Var_1 … Var_n with Var_matchNr = n. When nothing matches Var is set to
// Default (and Var_matchNr to 0).
type Extract struct {
	Kind     ExtractKind
	Var      string
	Field    ExtractField
	Expr     string
	Template string
	Left     string
	Right    string
	Match    int
	Default  string
	// DefaultEmpty sets Var to "" when nothing matches (JMeter's "use empty
	// default value"); otherwise an empty Default leaves Var unchanged.
	DefaultEmpty bool
}

// AssertKind is the kind of an Assert.
type AssertKind int

// The assertions of JMeter a flow runs.
const (
	// AssertResponse is JMeter's Response Assertion: Field (the code, the
	// body, …) tested against Patterns by Match.
	AssertResponse AssertKind = iota
	// AssertDuration fails a sample slower than Duration.
	AssertDuration
	// AssertSize compares the size of the response body with Size by
	// Compare (JMeter's Size Assertion on the response body; its default,
	// the full response, also counts the headers).
	AssertSize
	// AssertJSON is JMeter's JSON Assertion: Path must exist and, with
	// Validate, its value must equal Expected (or match it as a regular
	// expression with Regex); Invert reverses the outcome.
	AssertJSON
)

// MatchRule is how a Response Assertion compares a field with a pattern.
type MatchRule int

// The rules of JMeter's Response Assertion.
const (
	MatchContains  MatchRule = iota // the field contains the regular expression
	MatchMatches                    // the whole field matches it
	MatchEquals                     // the field equals the text
	MatchSubstring                  // the field contains the text
)

// Assert checks the response of each request in scope; a failed check
// makes the sample fail (Result.Failure says why), as JMeter counts it.
type Assert struct {
	Kind     AssertKind
	Field    ExtractField
	Match    MatchRule
	Patterns []string
	// Not inverts each pattern's test; Or passes when any pattern does.
	Not, Or bool
	// IgnoreStatus makes the response status not count by itself: the
	// sample's outcome is the assertion's.
	IgnoreStatus bool

	Duration time.Duration
	Size     int64
	Compare  Comparison

	Path     string
	Validate bool
	Expected string
	Regex    bool
	Null     bool
	Invert   bool
}

// Comparison is the Size Assertion's operator.
type Comparison int

// The operators of JMeter's Size Assertion (its numbering).
const (
	CompareEqual Comparison = iota + 1
	CompareNotEqual
	CompareGreater
	CompareLess
	CompareGreaterEqual
	CompareLessEqual
)

// DataShare is how the users share a CSVData's rows (JMeter's sharing
// mode).
type DataShare int

// The sharing modes of JMeter's CSV Data Set Config.
const (
	// ShareAll: one cursor for every user of every group.
	ShareAll DataShare = iota
	// ShareGroup: one cursor per thread group.
	ShareGroup
	// ShareThread: a cursor per user.
	ShareThread
)

// CSVData is JMeter's CSV Data Set Config: each iteration a user takes
// the next row and sets Vars (or, when Vars is empty, the names of the
// file's first line) to its fields.
type CSVData struct {
	File string
	// Vars names the columns; empty means the first line names them.
	Vars []string
	// Delimiter separates fields; 0 means ','. "\t" is a tab.
	Delimiter rune
	// IgnoreFirstLine skips the first line (a header) when Vars is given.
	IgnoreFirstLine bool
	// Quoted allows quoted fields ("a,b"); otherwise a quote is data.
	Quoted bool
	// NoRecycle stops at the end of the file: then StopThread stops the
	// user, or else the variables become <EOF>.
	NoRecycle  bool
	StopThread bool
	Share      DataShare
}

// Cookies is JMeter's HTTP Cookie Manager: a cookie jar per user.
type Cookies struct {
	// ClearEachIteration empties the jar at the start of each iteration.
	ClearEachIteration bool
}

// Counter is JMeter's Counter config element: variable Var starts at
// Start and grows by Incr each iteration, wrapping past Max (when Max >
// Start) back to Start. PerUser gives each user its own count; otherwise
// the group's users share it. Format, when set, formats the value as
// JMeter's DecimalFormat patterns of zeros do ("000" pads to 3 digits).
type Counter struct {
	Var                   string
	Start, Incr, Max      int64
	Format                string
	PerUser               bool
	ResetOnGroupIteration bool
}

// RandomVar is JMeter's Random Variable config element: each iteration Var
// is a random integer in [Min, Max], formatted as Counter.Format.
type RandomVar struct {
	Var      string
	Min, Max int64
	Format   string
	// Seed, when not 0, makes each user's sequence repeatable.
	Seed int64
}

// StepName implements Step.
func (s *Request) StepName() string      { return s.Name }
func (s *Pause) StepName() string        { return s.Name }
func (s *Simple) StepName() string       { return s.Name }
func (s *Transaction) StepName() string  { return s.Name }
func (s *Loop) StepName() string         { return s.Name }
func (s *While) StepName() string        { return s.Name }
func (s *ForEach) StepName() string      { return s.Name }
func (s *If) StepName() string           { return s.Name }
func (s *OnceOnly) StepName() string     { return s.Name }
func (s *Runtime) StepName() string      { return s.Name }
func (s *Throughput) StepName() string   { return s.Name }
func (s *RandomChoice) StepName() string { return s.Name }
func (s *Interleave) StepName() string   { return s.Name }
func (s *Switch) StepName() string       { return s.Name }

func (*Request) step()      {}
func (*Pause) step()        {}
func (*Simple) step()       {}
func (*Transaction) step()  {}
func (*Loop) step()         {}
func (*While) step()        {}
func (*ForEach) step()      {}
func (*If) step()           {}
func (*OnceOnly) step()     {}
func (*Runtime) step()      {}
func (*Throughput) step()   {}
func (*RandomChoice) step() {}
func (*Interleave) step()   {}
func (*Switch) step()       {}
