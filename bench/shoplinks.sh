#!/usr/bin/env bash
# How honest devstack's inferred links are in the example shop under load:
# 50 concurrent checkouts (200 in all) through orders, which drops the
# trace context; the shop's own answers say which trace each service was
# in, so the count of calls put in another checkout's trace, and of those
# shown as certain, needs nothing from devstack's side.
#
#   bench/shoplinks.sh [concurrency] [checkouts]     (default 50 200)
#
# Not a timing benchmark: run it any time. The shop's ports 18080-18085
# must be free; the stack is taken down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
c=${1:-50}
n=${2:-200}
work=$(mktemp -d)
export DEVSTACK_STATE_DIR="$work/state"
trap '(cd "$root/examples/shop" && "$work/devstack" down >/dev/null 2>&1) || true; rm -rf "$work"' EXIT
go build -o "$work/devstack" ./cmd/devstack
go build -o "$work/shoplinks" ./bench/shoplinks
cd examples/shop
"$work/devstack" up -d >/dev/null
"$work/shoplinks" -c "$c" -n "$n" -devstack "$work/devstack" -dir .
