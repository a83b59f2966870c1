# setup.sh: what compare.sh and pacing.sh share, sourced after they set
# addr (the loopback address of the trivial server). It builds ratelab and
# the server into a temporary directory ($work), finds or installs vegeta
# ($vegeta), starts the server pinned to core 0 and stops it on exit.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d)
trap 'kill "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
url=http://$addr/

(cd "$root" && go build -o "$work/ratelab" ./cmd/ratelab)
(cd "$root/bench" && go build -o "$work/server" ./loadgen/server)
if ! command -v vegeta >/dev/null; then
	GOBIN="$work" go install github.com/tsenart/vegeta/v12@v12.13.0
	vegeta=$work/vegeta
else
	vegeta=$(command -v vegeta)
fi

taskset -c 0 "$work/server" -addr "$addr" &
server_pid=$!
sleep 0.5
