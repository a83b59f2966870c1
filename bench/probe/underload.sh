#!/usr/bin/env bash
# underload.sh: probe cases on a loaded machine. Starts HOGS busy loops
# (each stopped after at most 15 minutes), runs the probe tests matching
# REGEXP RUNS times in a row (without -race), stops the loops, and prints
# how many runs passed with the load average before and after.
#
# Usage: bench/probe/underload.sh RUNS HOGS REGEXP [PACKAGE_DIR]
#   bench/probe/underload.sh 15 5 'TestProbeRatelabAccuracy/500'
# PACKAGE_DIR (default: this checkout's probe/) lets the same load run
# against another checkout, e.g. a worktree of an older commit.
set -euo pipefail

runs=${1:?runs}
hogs=${2:?hogs}
pattern=${3:?test regexp}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=${4:-$root/probe}
bin=$(mktemp "${TMPDIR:-/tmp}/probe-underload.XXXXXX")
log=$bin.log
(cd "$dir" && go test -c -o "$bin" .)
pids=()
for _ in $(seq "$hogs"); do
	timeout 900 sh -c 'while :; do :; done' &
	pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -f "$bin"' EXIT
sleep 1
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($hogs busy loops)"
(cd "$dir" && "$bin" -test.run "$pattern" -test.count="$runs" -test.v) >"$log" 2>&1 || true
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); log: $log"
# A pattern that names a subtest counts subtests, else top-level tests.
indent=""
[[ $pattern == */* ]] && indent="    "
pass=$(grep -c "^$indent--- PASS" "$log" || true)
fail=$(grep -c "^$indent--- FAIL" "$log" || true)
echo "passed $pass of $((pass + fail))"
grep -E "RESULT|stopped:|want" "$log" | sed 's/^ *//' | cut -c1-220 || true
