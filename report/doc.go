// Package report turns a stream of load.Result values into the figures a
// load test is judged by, and writes them out: a live progress line, a text
// summary, a JSON summary, JMeter's JTL CSV and a self-contained HTML page
// with charts. It also parses and checks pass/fail thresholds, and joins a
// run's sinks into one (Fanout): the Aggregator, load.Encoder and
// JTLWriter are each safe for concurrent use, so a run's workers feed
// them directly.
//
// The Aggregator is the metrics stage of the pipeline (executor → result
// stream → aggregators → reporters). It keeps no per-request record: every
// figure is a counter, an extremum or an HDR histogram, so its memory grows
// with the number of seconds the test ran (one small sparse histogram per
// second of timeline) and never with the number of requests. Histograms
// merge without loss of precision, so aggregators fed on several machines,
// or from several results files, merge into one report.
//
// # Definitions
//
// Latency is measured from the intended send time (load.Result.Latency), so
// a request that waited for a free worker counts the wait: the figure does
// not suffer from coordinated omission. Service time is the uncorrected
// figure, from the actual send to the end of the body (Result.Elapsed).
// Latencies are recorded in microseconds with three significant digits
// (timeline seconds: two) and reported in float milliseconds.
//
// A network error (no HTTP response, Result.Status 0) is counted under the
// status key "error" and in Summary.Errors. Status class "4xx" includes
// 429; the 429 column counts those separately.
//
// Recovery after a 429: an episode starts at the receipt of a 429 when no
// episode is open; it ends at the receipt of the first success (status
// below 400) of a request sent after the episode started. The recovery time
// is the time between the two. Episodes are followed in the order results
// reach the aggregator, which is their completion order.
package report
