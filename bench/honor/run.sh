#!/usr/bin/env bash
# run.sh: `ratelab load` against `ratelab serve` with a fixed window of 20
# per 5 s (window.yaml) in each header dialect that says when a spent
# window resets (github: epoch x-ratelimit-reset; ietf: draft-11 RateLimit;
# inin: inin-ratelimit-*), naive (--retry-after ignore) and honouring
# (--retry-after honor), for DURATION seconds (default 60):
#
#   naive   open model, --rate 10/s: 429s as the window arithmetic says,
#           the requests beyond the 20 of each window
#   honor   the same schedule honoured: 0 × 429; the schedule pauses at
#           each spent window, so the run lasts longer than DURATION
#   closed  4 threads as fast as the windows let them for DURATION: 0 × 429
#
# Every run has its own server (all on 127.0.0.1), and the nine run at
# once. Prints one line per run: requests, 429s, the window arithmetic's
# 429s for the naive run (requests less 20 per window the run touched),
# what the senders were held, and the run's wall time.
#
# Usage: bench/honor/run.sh [DURATION_SECONDS]
set -euo pipefail

dur=${1:-60}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

(cd "$root" && go build -o "$work/ratelab" ./cmd/ratelab)

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

waitup() {
	for _ in $(seq 100); do
		curl -fs -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "run.sh: $1 did not come up" >&2
	return 1
}

# one DIALECT MODE: a server and one load run against it.
one() {
	local dialect=$1 mode=$2 port dir
	port=$(freeport)
	dir=$work/$dialect-$mode
	mkdir -p "$dir"
	"$work/ratelab" serve --addr "127.0.0.1:$port" --db "sqlite:$dir/r.db" --policies "$root/bench/honor/window.yaml" \
		--headers "$dialect" --bootstrap-client demo:s3cret 2>"$dir/serve.log" &
	local spid=$!
	waitup "http://127.0.0.1:$port/healthz"
	local flags
	case $mode in
	naive) flags=(--rate 10/s --duration "${dur}s" --retry-after ignore) ;;
	honor) flags=(--rate 10/s --duration "${dur}s" --retry-after honor) ;;
	closed) flags=(--threads 4 --duration "${dur}s" --retry-after honor) ;;
	esac
	local t0 t1
	t0=$(date +%s.%N)
	"$work/ratelab" load --url "http://127.0.0.1:$port/api/v2/users" \
		--token-url "http://127.0.0.1:$port/oauth/token" --client-id demo --client-secret s3cret \
		--progress 0 --json "$dir/s.json" "${flags[@]}" >"$dir/out.txt" 2>"$dir/err.txt"
	t1=$(date +%s.%N)
	kill "$spid" 2>/dev/null || true
	local n r held windows predicted
	n=$(jq .requests "$dir/s.json")
	r=$(jq .rate_limit.count_429 "$dir/s.json")
	held=$(sed -n 's/^held: \([0-9]*\) requests waited \([^ ]*\) .*/\1 held, \2/p' "$dir/out.txt")
	# The 5-s windows from the first request to the last.
	windows=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", int(b / 5) - int(a / 5) + 1 }')
	predicted=$((n - 20 * windows))
	local arith=""
	if [[ $mode == naive ]]; then
		arith="(the window arithmetic: $((predicted > 0 ? predicted : 0)), for $windows windows)"
	fi
	printf '%-7s %-6s %6d requests %6d × 429 %s  %s  wall %.1f s\n' \
		"$dialect" "$mode" "$n" "$r" "$arith" "${held:-0 held}" "$(echo "$t1 - $t0" | bc)"
}

for d in github ietf inin; do
	for m in naive honor closed; do
		one "$d" "$m" >"$work/line-$d-$m" &
		pids+=($!)
	done
done
wait "${pids[@]}"
pids=()
cat "$work"/line-*
uptime
