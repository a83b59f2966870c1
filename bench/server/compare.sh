#!/usr/bin/env bash
# compare.sh: requests per second of an authenticated
# GET /api/v2/architect/scripts/{id} on `ratelab serve` (SQLite, and
# PostgreSQL when RATELAB_POSTGRES_URL is set) against the trivial server
# of bench/loadgen, in the same run, and their ratio (issue 16's target:
# at least 0.5). Each server is pinned to core 0 in turn and
# `wrk -t1 -c50` to core 1 for DURATION seconds (default 10); the trivial
# server is measured before and after the serve runs and the mean of the
# two is the peer. serve runs with never-reject.yaml: both request tiers
# are decided on every request, none rejects. Only 127.0.0.1 is targeted.
#
# With PROFILE=DIR, a CPU profile of each serve process is written to
# DIR/serve-BACKEND.pprof (serve --cpuprofile: the whole run, wrk's
# DURATION seconds nearly all of it).
#
# Usage: bench/server/compare.sh [DURATION_SECONDS]
set -euo pipefail

dur=${1:-10}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/bench/server
work=$(mktemp -d)
pids=()
pgdb=""
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ -n $pgdb ]]; then psql -q "$RATELAB_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1 || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/ratelab" ./cmd/ratelab)
(cd "$root/bench" && go build -o "$work/trivial" ./loadgen/server)

# freeport prints a free loopback TCP port.
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# waitup URL: waits up to 10 s for URL to answer.
waitup() {
	for _ in $(seq 100); do
		curl -fs -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "compare.sh: $1 did not come up" >&2
	return 1
}

# cputicks PID: the process's user+system CPU time in clock ticks.
cputicks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# rate NAME PID URL [wrk args...]: runs wrk on core 1 against the server
# PID and records NAME's req/s and the server's CPU µs per request (a
# figure that the other processes of a shared machine disturb less).
rate() {
	local name=$1 pid=$2 url=$3
	shift 3
	local t0 t1
	t0=$(cputicks "$pid")
	taskset -c 1 wrk -t1 -c50 -d"${dur}s" "$@" "$url" >"$work/$name.wrk"
	t1=$(cputicks "$pid")
	local rps n
	rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$work/$name.wrk")
	n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$work/$name.wrk")
	if grep -q 'Non-2xx' "$work/$name.wrk"; then
		echo "compare.sh: $name answered non-2xx responses:" >&2
		cat "$work/$name.wrk" >&2
		return 1
	fi
	local us
	us=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.1f", t / hz * 1e6 / (n > 0 ? n : 1) }')
	printf '%-16s %8.0f req/s  %6.1f µs of server CPU per request\n' "$name" "$rps" "$us"
	echo "$name $rps $us" >>"$work/figures"
}

trivial() {
	local port
	port=$(freeport)
	taskset -c 0 "$work/trivial" -addr "127.0.0.1:$port" &
	local pid=$!
	pids+=("$pid")
	waitup "http://127.0.0.1:$port/"
	rate "$1" "$pid" "http://127.0.0.1:$port/"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
}

# serve NAME DBSPEC: starts serve on core 0, creates a script, measures the GET.
serve() {
	local name=$1 db=$2 port
	port=$(freeport)
	local base=http://127.0.0.1:$port
	local prof=()
	if [[ -n ${PROFILE:-} ]]; then
		mkdir -p "$PROFILE"
		prof=(--cpuprofile "$PROFILE/$name.pprof")
	fi
	taskset -c 0 "$work/ratelab" serve "${prof[@]}" --addr "127.0.0.1:$port" --db "$db" \
		--policies "$here/never-reject.yaml" --bootstrap-client bench:bench-secret-0123456789 \
		2>"$work/$name.log" &
	local pid=$!
	pids+=("$pid")
	waitup "$base/healthz"
	local token
	token=$(curl -fs -u bench:bench-secret-0123456789 -d grant_type=client_credentials "$base/oauth/token" |
		sed 's/.*"access_token":"\([^"]*\)".*/\1/')
	curl -fs -o /dev/null -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
		-d '{"name":"greeting","text":"hello, world"}' "$base/api/v2/architect/scripts/s1"
	rate "$name" "$pid" "$base/api/v2/architect/scripts/s1" -H "Authorization: Bearer $token"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
}

uptime
trivial trivial-before
serve serve-sqlite "sqlite:$work/bench.db"
if [[ -n ${RATELAB_POSTGRES_URL:-} ]]; then
	pgdb=ratelab_bench_$$
	psql -q "$RATELAB_POSTGRES_URL" -c "CREATE DATABASE $pgdb" >/dev/null
	pgurl=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$RATELAB_POSTGRES_URL" "$pgdb")
	serve serve-postgres "$pgurl"
fi
trivial trivial-after
uptime

awk '{ r[$1] = $2; us[$1] = $3 } END {
	peer = (r["trivial-before"] + r["trivial-after"]) / 2
	peerus = (us["trivial-before"] + us["trivial-after"]) / 2
	printf "\ntrivial server (mean of before and after): %.0f req/s, %.1f µs CPU/request\n", peer, peerus
	printf "serve/trivial, SQLite:     %.2f× req/s, %.2f× by CPU per request (target ≥ 0.5)\n", r["serve-sqlite"] / peer, peerus / us["serve-sqlite"]
	if ("serve-postgres" in r) printf "serve/trivial, PostgreSQL: %.2f× req/s, %.2f× by CPU per request (target ≥ 0.5)\n", r["serve-postgres"] / peer, peerus / us["serve-postgres"]
}' "$work/figures"
