// Package load is ratelab's load engine, built as composable stages in the
// manner of vegeta: a Plan of compiled request Targets (templates compiled
// once) → a pacer (the open model's Schedule, or the closed model's thread
// group with JMeter's Constant Throughput Timer emulated by
// ThroughputTimer) → an executor (Run) → a stream of Results delivered to a
// Sink (aggregators, the results-file Encoder, a JTL writer). Nothing is
// kept per request: memory stays flat over long runs.
//
// The executor's stages have a file each: executor.go schedules (Run, the
// closed model's thread group, the open model's pacer), worker.go is a
// worker's request path (build, send, read, deliver), and http1_perf.go
// the worker-driven HTTP/1.1 send path that a run takes for http://
// targets when it builds its own client (Config.HTTP).
//
// # Flows: virtual users that run a tree of steps
//
// A Flow is what a JMeter test plan describes, as values (flow.go) that
// the jmx translator builds and ParseFlow reads from YAML: ThreadGroups
// (setUp groups first, then the normal groups at once, then tearDown
// groups; each with its Workload, startup Delay and OnSampleError
// action), each of whose users runs its Steps. A Step is a *Request or a
// controller that holds steps, with JMeter's semantics:
//
//	*Simple        the children in order (Simple Controller)
//	*Transaction   a sample of its own for its children (Transaction Controller)
//	*Loop          Count passes, -1 forever (Loop Controller)
//	*While         while Condition holds (While Controller)
//	*ForEach       once per variable Input_1, Input_2, … (ForEach Controller)
//	*If            when Condition holds (If Controller)
//	*OnceOnly      on the user's first iteration (Once Only Controller)
//	*Runtime       over and over for Duration (Runtime Controller)
//	*Throughput    on a share or a number of passes (Throughput Controller)
//	*RandomChoice  one child at random (Random Controller)
//	*Interleave    one child per pass, in turn (Interleave Controller)
//	*Switch        the child Value selects (Switch Controller)
//	*Pause         its timers, then a wait; no request (Flow Control Action)
//
// The flow, every group, controller and request has a Scope: Headers
// (JMeter's Header Manager, inner ones replacing outer ones), Timers (constant,
// uniform, Gaussian, Poisson, Constant Throughput, Precise Throughput,
// synchronizing), run before each request in scope with their delays
// added up; Extract (regex, JSONPath, boundary) into the user's
// variables after it; Assert (response code and text, duration, size,
// JSON), whose failure fails the sample as JMeter counts it; Counters and
// Random variables, advanced at each iteration. Outer scopes apply before
// inner ones. A timer in the scope of several requests is one timer for
// them all, as in JMeter. Variables come from the Flow's and the group's Vars
// (JMeter's User Defined Variables), CSVData (with JMeter's sharing
// modes, recycle and stopThread), extractors, counters and ForEach; a
// template names one as {{.name}}, and a name no one has set is sent as
// JMeter sends it, ${name}. Cookies gives each user a cookie jar.
// A Request with Embedded fetches the resources of its HTML response as
// JMeter's "Retrieve All Embedded Resources" does (flowembed.go): each a
// request sent and a sub-result of the request's sample.
//
// Conditions (If, While) are templates whose text, once the variables are
// in, is a comparison: operands are "quoted strings", numbers, true or
// false; operators ==, !=, <, <=, >, >= (numbers compare as numbers),
// && || ! and parentheses. A text that is no comparison is taken as JMeter
// takes it: If runs when it is "true", While stops when it is "false" (any
// case); While with an empty condition loops until a sample in it fails,
// and with "LAST" does not start either after a failed sample.
//
// A flow of one request per iteration, with nothing in scope, runs on the
// same send path as a Plan, at the same cost per request.
//
// # Pacing without drift
//
// The open model computes the intended time of arrival i directly from the
// schedule: at rate c per period p it is t0 + i·p/c, in integer
// nanoseconds; for a stage ramping linearly from rate a to rate b over D it
// is the t that solves a·t + (b−a)·t²/(2D) = i − (arrivals of earlier
// stages). A late wake-up therefore never shifts later arrivals and a slow
// start never causes a catch-up burst.
//
// # Segments: one run from several processes
//
// Because arrival i's instant depends on i alone, a run splits exactly
// over processes (segment.go, k6's execution segments): segment K of N
// sends the arrivals i ≡ K−1 (mod N), or runs the threads t ≡ K−1, at
// their instants and with their numbers in the whole run, counted from a
// start instant the processes share (Config.StartAt). N segments together
// send the requests of one run, and report merges their streams into its
// report.
//
// # Coordinated omission
//
// A closed-loop generator that waits for a slow response before sending
// the next request stops measuring exactly while the server is slow. The
// open model keeps the schedule regardless (a pool of workers grows up to
// MaxWorkers; an arrival that finds none free is dropped and counted), and
// each Result carries both instants: latency = (Start − Intended) +
// Elapsed counts the wait for a worker, while Elapsed alone is the service
// time. When a Retry-After pause is honoured, the schedule itself shifts (a
// Schedule wrapper that workers pause and the pacer reads) and the shift is
// recorded in Result.Waited instead of counted as latency. The send lag,
// Start − Intended, is in every Result; report aggregates it.
//
// # Holds: not sending into a 429
//
// With RetryHonor a run also waits before it is told to (holds.go): a
// response, a success as much as a 429, that says a limit has nothing left
// and when it resets (in any header dialect limit.ParseHeaders reads)
// holds the requests that draw from that limit until the reset, so that
// they are not rejected. Each target learns from its responses which limit
// it draws from (the first request of a target goes alone, to learn it);
// one limit.ResetTracker per limit counts what is left, less the requests
// still in flight, and times the reset with the margins its doc gives (a
// relative reset from the response's arrival; an epoch reset plus a bound
// on the server's clock lag from the Date headers; 1 ms more). A limit
// is known by the decisive policy's name, else its quota, so a
// per-resource limit, which headers cannot tell apart, holds the senders
// of every resource it covers.
//
// Held requests are counted as Retry-After waits are: none is dropped. A
// closed-model thread or a worker sleeps, and sends the request after
// the reset with the wait in Result.Waited and its intended instant moved
// by it; the open model's pacer also pauses the schedule until the reset,
// shifting every later arrival (a run bounded by Duration lasts longer by
// the pauses, as with Retry-After). Latency counts from the shifted
// instant, so it measures the server and not the hold; Stats.Held and
// Stats.HeldFor add the waits up.
package load
