#!/usr/bin/env bash
# What tracing costs a whole stack: wrk on the example shop's /checkout
# (five services, four hops behind the gateway, one service that drops the
# trace context and opens a new connection for most calls under load),
# traced, then the same stack with x-devstack.trace.disabled (no proxy),
# interleaved, in one run. Prints requests per second and the ratio.
#
#   bench/shop.sh [rounds]     (default 3; each run is 5 s of wrk)
#
# Everything listens on 127.0.0.1 (the shop's ports 18080-18085 must be
# free); the stack is taken down after each run.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
work=$(mktemp -d)
export DEVSTACK_STATE_DIR="$work/state"
stop() { "$work/devstack" down >/dev/null 2>&1 || true; }
trap 'stop; rm -rf "$work"' EXIT
go build -o "$work/devstack" ./cmd/devstack
printf 'x-devstack:\n  trace: {disabled: true}\n' >"$work/untraced.yaml"

url='http://127.0.0.1:18080/checkout?item=sku-1&qty=1'
run() { # mode conns -> requests/s
  local files=(-f devstack.yaml)
  [ "$1" = untraced ] && files+=(-f "$work/untraced.yaml" --project-directory .)
  "$work/devstack" "${files[@]}" up -d >/dev/null 2>"$work/up.log" || { cat "$work/up.log" >&2; exit 1; }
  local threads=$(($2 < 2 ? $2 : 2))
  wrk -t"$threads" -c"$2" -d1s "$url" >/dev/null # warm-up
  wrk -t"$threads" -c"$2" -d5s "$url" | awk '/Requests\/sec/ {print $2}'
  stop
}
declare -A sum
for r in $(seq "$rounds"); do
  for c in 1 16; do
    for mode in traced untraced; do
      rps=$(run "$mode" "$c")
      echo "round $r  c$c  $mode  $rps req/s" >&2
      sum[$mode$c]=$(echo "${sum[$mode$c]:-0} + $rps" | bc -l)
    done
  done
done
for c in 1 16; do
  t=${sum[traced$c]} u=${sum[untraced$c]}
  printf 'c%-3s traced %8.0f req/s  untraced %8.0f req/s  traced/untraced %.2fx\n' \
    "$c" "$(echo "$t / $rounds" | bc -l)" "$(echo "$u / $rounds" | bc -l)" "$(echo "$t / $u" | bc -l)"
done
