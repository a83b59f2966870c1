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
// # Pacing without drift
//
// The open model computes the intended time of arrival i directly from the
// schedule: at rate c per period p it is t0 + i·p/c, in integer
// nanoseconds; for a stage ramping linearly from rate a to rate b over D it
// is the t that solves a·t + (b−a)·t²/(2D) = i − (arrivals of earlier
// stages). A late wake-up therefore never shifts later arrivals and a slow
// start never causes a catch-up burst.
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
package load
