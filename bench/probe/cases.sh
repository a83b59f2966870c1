#!/usr/bin/env bash
# cases.sh: every real-peer case of `ratelab probe` (probe/peer_test.go,
# serve_targets_test.go and the others: nginx, HAProxy, ratelab serve and
# our own fixed-window servers, each started by its test on a free loopback
# port), RUNS times in a row, as .ci/run's probe pass runs them (without
# -race, -parallel 4), then one Markdown row per case: what was found, as
# ranges over the runs, with requests, time and 429 share, and how many
# runs passed (bench/RESULTS.md, "Probe in the wild").
#
# Usage: bench/probe/cases.sh [RUNS] [TEST_REGEXP]   (default 5, all cases)
# Needs nginx and haproxy (Debian: nginx-light, haproxy). The full test log
# is kept in $TMPDIR and its path printed.
set -euo pipefail

runs=${1:-5}
pattern=${2:-.}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
log=$(mktemp "${TMPDIR:-/tmp}/probe-cases.XXXXXX.log")
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start=$(date +%s)
(cd "$root" && go test -count="$runs" -parallel 4 -timeout 60m -v -run "$pattern" ./probe/) >"$log" 2>&1 || true
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); $(( $(date +%s) - start )) s; log: $log" >&2
grep -E '^(--- FAIL|FAIL|ok)' "$log" >&2 || true
(cd "$root/bench" && go run ./probe/tabulate) <"$log"
