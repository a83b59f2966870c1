package jmx

import _ "embed"

// ReferencePlan is the JMeter plan of ratelab's reference scenario: 20
// threads, ramp-up 0, 100 loops, every thread PUTting one script under a
// Constant Throughput Timer of 600 samples/minute in its default mode. Its
// properties are host, port and accessToken (-J). "ratelab demo" runs it.
//
//go:embed testdata/script-updates.jmx
var ReferencePlan []byte
