#!/usr/bin/env bash
# pacing.sh: pacing accuracy of ratelab load's open model against the
# trivial server on loopback (server on core 0, generator on core 1):
#   - --rate 2000/s for 10 s, RUNS times: achieved rate and send lag;
#   - --rate 5000/s for 10 s, RUNS times, and vegeta's fixed-rate mode
#     without a worker cap (-rate=5000) for comparison: does each hold it;
#   - --rate 0.5/s for 10 s: each send's offset from its intended instant.
# Only 127.0.0.1 is targeted; every run is bounded by its duration.
#
# Usage: bench/loadgen/pacing.sh [RUNS]   (default 3)
set -euo pipefail

runs=${1:-3}
addr=127.0.0.1:8098
# shellcheck source=setup.sh
source "$(dirname "$0")/setup.sh"

# rl RATE: one 10 s ratelab run at RATE on core 1; prints requests,
# achieved rate, dropped arrivals, CPU and the send-lag line.
rl() {
	/usr/bin/time -f '%U %S' -o "$work/time" taskset -c 1 "$work/ratelab" load --url "$url" --rate "$1" \
		--duration 10s --progress 0 --json "$work/sum.json" >"$work/out"
	local req ach drop
	req=$(sed -n 's/.*"requests": *\([0-9]*\).*/\1/p' "$work/sum.json" | head -1)
	ach=$(sed -n 's/.*"achieved_rps": *\([0-9.]*\).*/\1/p' "$work/sum.json" | head -1)
	drop=$(sed -n 's/.*"dropped": *\([0-9]*\).*/\1/p' "$work/sum.json" | head -1)
	read -r user sys <"$work/time"
	printf 'ratelab %-7s requests %6s  achieved %10s/s  dropped %s  cpu %.2fs  %s\n' "$1" "$req" "$ach" "$drop" \
		"$(echo "$user + $sys" | bc)" "$(sed -n 's/^Send lag *//p' "$work/out" | sed 's/ *(actual.*//')"
}

echo "# --rate 2000/s, 10 s"
for _ in $(seq "$runs"); do rl 2000/s; done
echo "# --rate 5000/s, 10 s (generator on one core)"
for _ in $(seq "$runs"); do rl 5000/s; done
echo "# vegeta -rate=5000 (no worker cap), 10 s (generator on one core)"
for _ in $(seq "$runs"); do
	echo "GET $url" | taskset -c 1 "$vegeta" attack -rate=5000 -duration=10s >"$work/v.bin"
	"$vegeta" report -type=json <"$work/v.bin" |
		sed -n 's/.*"requests":\([0-9]*\).*"rate":\([0-9.]*\),"throughput":\([0-9.]*\).*/vegeta  5000\/s  requests \1  rate \2\/s  throughput \3\/s/p'
done
echo "# --rate 0.5/s, 10 s: offset of each send from its intended instant"
taskset -c 1 "$work/ratelab" load --url "$url" --rate 0.5/s --duration 10s --progress 0 --results "$work/r.jsonl" >/dev/null
python3 - "$work/r.jsonl" <<'PY'
import json, sys
from datetime import datetime
def t(s):  # RFC 3339 with nanoseconds
    base, frac = s.rstrip("Z").split(".") if "." in s else (s.rstrip("Z"), "0")
    tz = ""
    for sep in "+-":
        if sep in frac:
            frac, tz = frac.split(sep, 1)
            tz = sep + tz
    return datetime.fromisoformat(base + tz).timestamp() + float("0." + frac)
lines = [json.loads(l) for l in open(sys.argv[1])]
start = t(lines[0]["start"])
for r in lines[1:]:
    i, s = t(r["intended"]) - start, t(r["start"]) - start
    print(f"seq {r['seq']}  intended {i*1000:10.3f} ms  sent {s*1000:10.3f} ms  lag {(s-i)*1000:6.3f} ms")
PY
