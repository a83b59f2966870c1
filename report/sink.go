package report

import "ratelab/load"

// Fanout returns a load.Sink that hands every result to each of sinks in
// turn; nil sinks are skipped. It adds no lock of its own: like any
// load.Sink, each of sinks must be safe for concurrent use (the
// Aggregator, load.Encoder and JTLWriter are), and the fan-out then is
// too. Sinks that can fail keep their error for their Flush, so a failing
// file never stops the run or the other sinks.
func Fanout(sinks ...load.Sink) load.Sink {
	var live []load.Sink
	for _, s := range sinks {
		if s != nil {
			live = append(live, s)
		}
	}
	if len(live) == 1 {
		return live[0]
	}
	return func(r *load.Result) {
		for _, s := range live {
			s(r)
		}
	}
}
