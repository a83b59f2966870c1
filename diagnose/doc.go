// Package diagnose explains load runs against rate limits: what rate a
// workload aims at and how reports name its model, how many script updates
// a run applied per second, which advertised limit binds a script and how
// long buckets take to refill, and the demo's diagnosis, which joins a
// JMeter plan's analysis (jmx.Analyze) with what four runs of it measured.
//
// Everything here is a pure function of its arguments: no clock, no
// network, no output. The commands that send the load (cmd/ratelab) wire
// these functions to real runs; the tests here walk fixed summaries.
package diagnose
