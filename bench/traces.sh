#!/usr/bin/env bash
# How fast `devstack traces` answers with 100k spans stored, with the
# example shop up (the control API answers from memory) and down (the list
# comes from the summary file the span store wrote as it closed; a trace's
# page replays the log for that trace alone), against `devstack --help`,
# which is the binary's own start: hyperfine, side by side in one run.
#
#   bench/traces.sh [spans]     (default 100000, the store's default bound)
#
# The shop's ports 18080-18085 must be free; the stack is taken down at
# the end.
set -euo pipefail
cd "$(dirname "$0")/.."
spans=${1:-100000}
if ! command -v hyperfine >/dev/null; then
  apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null
fi
work=$(mktemp -d)
export DEVSTACK_STATE_DIR="$work/state"
trap '"$work/devstack" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
go build -o "$work/devstack" ./cmd/devstack
mkdir -p "$DEVSTACK_STATE_DIR/shop"
go run ./bench/tracesfill -spans "$spans" "$DEVSTACK_STATE_DIR/shop/spans"
d="$work/devstack"
"$d" up -d >/dev/null
id=$("$d" traces -n 1 --format json | sed -n 's/.*"trace_id": *"\([0-9a-f]*\)".*/\1/p' | head -1)
hyperfine -N --warmup 3 --runs 30 "$d --help" "$d traces" "$d traces --service payments --min-duration 2ms" "$d trace $id"
"$d" down >/dev/null
hyperfine -N --warmup 1 --runs 10 "$d traces" "$d traces --service payments --min-duration 2ms" "$d trace $id"
