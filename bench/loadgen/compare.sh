#!/usr/bin/env bash
# compare.sh: CPU time per request and peak RSS of ratelab load, vegeta and
# wrk against one trivial Go HTTP server on loopback, in the same run.
# The server is pinned to core 0, each generator in turn to core 1; every
# generator uses 50 connections for DURATION (default 10s) at its maximum
# rate. Only 127.0.0.1 is targeted.
#
# Usage: bench/loadgen/compare.sh [DURATION_SECONDS]
set -euo pipefail

dur=${1:-10}
addr=127.0.0.1:8099
# shellcheck source=setup.sh
source "$(dirname "$0")/setup.sh"

# measure NAME REQUESTS_FILE CMD...: runs CMD under /usr/bin/time on core 1
# and prints NAME, requests, CPU µs/request and peak RSS in MiB.
measure() {
	local name=$1 reqfile=$2
	shift 2
	/usr/bin/time -f '%U %S %M' -o "$work/$name.time" taskset -c 1 "$@" >"$work/$name.out" 2>"$work/$name.err" || true
	read -r user sys rss <"$work/$name.time"
	local n
	n=$(bash -c "$reqfile" <"$work/$name.out")
	awk -v name="$name" -v n="$n" -v u="$user" -v s="$sys" -v rss="$rss" 'BEGIN {
		us = (u + s) * 1e6 / (n > 0 ? n : 1)
		printf "%-8s %10d req  %8.2f µs/req  %7.1f MiB peak RSS\n", name, n, us, rss / 1024
		printf "%s %d %f %f\n", name, n, us, rss / 1024 > "/dev/stderr"
	}' 2>>"$work/figures"
}

measure ratelab "sed -n 's/^Requests *\([0-9]*\).*/\1/p'" \
	"$work/ratelab" load --url "$url" --threads 50 --connections 50 --duration "${dur}s" --progress 0
measure vegeta "$vegeta report -type=json | sed -n 's/.*\"requests\":\([0-9]*\).*/\1/p'" \
	bash -c "echo 'GET $url' | $vegeta attack -rate=0 -max-workers=50 -connections=50 -duration=${dur}s"
measure wrk "sed -n 's/^ *\([0-9]*\) requests in.*/\1/p'" \
	wrk -t1 -c50 -d"${dur}s" "$url"

awk '{ us[$1] = $3; rss[$1] = $4 } END {
	printf "\nratelab/vegeta: CPU per request %.2f× (target ≤ 0.66), peak RSS %.2f× (target ≤ 1)\n", us["ratelab"] / us["vegeta"], rss["ratelab"] / rss["vegeta"]
	printf "ratelab/wrk:    CPU per request %.2f×, peak RSS %.2f×\n", us["ratelab"] / us["wrk"], rss["ratelab"] / rss["wrk"]
}' "$work/figures"
