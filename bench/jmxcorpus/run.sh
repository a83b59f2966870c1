#!/usr/bin/env bash
# bench/jmxcorpus/run.sh — runs "ratelab jmx --json" on every .jmx plan of a
# directory and tabulates, per plan and in total, whether ratelab crashed,
# gave a runnable scenario, and judged it faithful.
#
# Usage: bench/jmxcorpus/run.sh [-b RATELAB] [-m MANIFEST.tsv] DIR
#
#   crash     ratelab panicked, was killed, or ran over 20 s on the plan
#   runnable  the JSON output holds a scenario (no scenario_error) — or the
#             plan was refused with a clean error: runnable = no
#   faithful  runnable and "faithful": true (every enabled element emulated)
#
# Plans from third parties are untrusted input: the script only reads them
# ("ratelab jmx" sends nothing), but run it under ../shared/tools/isolated
# anyway when the plans come from the network. Output: a Markdown table on
# stdout (plan, crash, runnable, faithful, first reason) and a totals line.
# MANIFEST.tsv (file, repo, path, commit) adds the source of each plan.
set -euo pipefail

bin=
manifest=
while getopts "b:m:" opt; do
	case $opt in
	b) bin=$OPTARG ;;
	m) manifest=$OPTARG ;;
	*) echo "usage: $0 [-b RATELAB] [-m MANIFEST.tsv] DIR" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { echo "usage: $0 [-b RATELAB] [-m MANIFEST.tsv] DIR" >&2; exit 2; }
dir=$1
if [ -z "$bin" ]; then
	root=$(cd "$(dirname "$0")/../.." && pwd)
	bin=$(mktemp -d)/ratelab
	(cd "$root" && go build -o "$bin" ./cmd/ratelab)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

total=0 crashes=0 runnable=0 faithful=0
echo "| plan | source | crash | runnable | faithful | first reason |"
echo "|---|---|---|---|---|---|"
for plan in "$dir"/*.jmx; do
	name=$(basename "$plan")
	total=$((total + 1))
	src=
	if [ -n "$manifest" ]; then
		src=$(awk -F'\t' -v f="$name" '$1 == f { print $2 ":" $3 "@" substr($4, 1, 8) }' "$manifest")
	fi
	rc=0
	timeout 20 "$bin" jmx --json "$plan" >"$work/out" 2>"$work/err" || rc=$?
	crash=no run=no faith=no reason=
	if [ "$rc" -ge 124 ] || grep -q '^panic:\|^goroutine ' "$work/err"; then
		crash=yes
		crashes=$((crashes + 1))
		reason="exit $rc: $(head -c 120 "$work/err" | tr '\n|' ' /')"
	elif [ "$rc" -ne 0 ]; then
		reason="refused: $(head -c 160 "$work/err" | tr '\n|' ' /')"
	else
		err=$(jq -r '.scenario_error // ""' "$work/out")
		if [ -z "$err" ]; then
			run=yes
			runnable=$((runnable + 1))
			if [ "$(jq -r '.faithful' "$work/out")" = true ]; then
				faith=yes
				faithful=$((faithful + 1))
			else
				reason=$(jq -r '[.warnings[] | select(.unfaithful)][0].message // ""' "$work/out" | head -c 160 | tr '\n|' ' /')
			fi
		else
			reason="no scenario: $(printf '%s' "$err" | head -c 160 | tr '\n|' ' /')"
		fi
	fi
	echo "| $name | $src | $crash | $run | $faith | $reason |"
done
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "0"; else printf "%.0f", 100 * a / b }'; }
echo
echo "Total: $total plans; $crashes crashes; $runnable runnable ($(pct "$runnable" "$total") %); $faithful faithful ($(pct "$faithful" "$total") %)."
