#!/usr/bin/env bash
# tokenflood.sh [BEFORE_REV] — issue 11 item 7, measured: a 10-second flood
# of POST /oauth/token with random client ids from one address (8 closed-model
# threads), while a legitimate client reads GET /api/v2/users at 10/s, against
# `ratelab serve` (SQLite, default policies) built at HEAD and at BEFORE_REV
# (default: 02a2394~1, main before the fix), in turns (before, after, before,
# after) so that both see the machine's load. Prints per run: flood
# attempts/s, how many were checked (401, one PBKDF2 hash each) and refused
# unhashed (429), the server's CPU seconds, and the legitimate p50/p99.
# Loopback only; every loop is bounded by --duration.
set -euo pipefail
before=${1:-02a2394~1}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

(cd "$root" && go build -o "$work/after" ./cmd/ratelab)
mkdir "$work/src" && git -C "$root" archive "$before" | tar -x -C "$work/src"
(cd "$work/src" && go build -o "$work/before" ./cmd/ratelab)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run() { # run NAME BINARY
	local name=$1 bin=$2 p db log
	p=$(port); db=$work/$name-$RANDOM.db; log=$work/$name.log
	"$bin" serve --addr "127.0.0.1:$p" --db "sqlite:$db" --bootstrap-client legit:s3cret 2>"$log" &
	pid=$!
	for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
	local url=http://127.0.0.1:$p
	# The legitimate client's token first: the flood comes from the same
	# address, which the fixed server then refuses token requests from.
	local tok
	tok=$(curl -s -u legit:s3cret -d grant_type=client_credentials "$url/oauth/token" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
	local c0; c0=$(ticks "$pid")
	"$bin" load --url "$url/oauth/token" -X POST -H 'Content-Type: application/x-www-form-urlencoded' \
		--body 'grant_type=client_credentials&client_id=flood-{{.Thread}}-{{.Iteration}}&client_secret=x' \
		--threads 8 --duration 10s --progress 0 --json "$work/flood.json" >/dev/null 2>&1 &
	local fl=$!
	"$bin" load --url "$url/api/v2/users" --rate 10/s --duration 10s --progress 0 \
		-H "Authorization: Bearer $tok" --json "$work/users.json" >/dev/null 2>&1
	wait "$fl" || true
	local c1; c1=$(ticks "$pid")
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
	python3 - "$name" "$work/flood.json" "$work/users.json" "$(( c1 - c0 ))" "$hz" <<'PY'
import json, sys
name, fl, us, ticks, hz = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), int(sys.argv[4]), int(sys.argv[5])
codes, n, dur = fl["status_counts"], fl["requests"], fl["duration_s"]
lat, svc = us["latency_ms"], us["service_time_ms"]
print(f"{name:6} flood {n/dur:7.0f} attempts/s  401(hashed) {codes.get('401',0):6}  429(unhashed) {codes.get('429',0):6}  "
      f"server CPU {ticks/hz:5.1f} s  users p50 {lat['p50']} ms (service {svc['p50']} ms) p99 {lat['p99']} ms  users codes {us['status_counts']}")
PY
}
uptime
for round in 1 2; do
	run before "$work/before"
	run after "$work/after"
done
