// Package bench holds ratelab's side-by-side benchmarks: the limit
// package's stores against the libraries a user would pick instead
// (golang.org/x/time/rate in a map, github.com/sethvargo/go-limiter,
// github.com/go-redis/redis_rate), on the same keys, the same Zipf-like key
// sequence and the same parallelism, in one `go test -bench` run.
//
// It is a separate module (ratelab/bench) so that the peers never become
// dependencies of ratelab itself. The package has no API; everything lives
// in its _test.go files. See README.md for how to run it and RESULTS.md for
// the figures measured.
package bench
