#!/usr/bin/env bash
# Fault injection side by side with Toxiproxy, in one run (issue 19):
# added latency over 100 ms injected at 1 and 32 keep-alive connections
# (p50/p99), an abort at probability 0.2 over 10,000 keep-alive requests,
# and the proxy's throughput with the fault plugin loaded and no fault
# against no plugin (and with a fault on another service).
#
#   bench/fault.sh [faultbench flags]     e.g. -n 5000 -rounds 5 -duration 10s
#
# Builds Toxiproxy v2.5.0 from the Go module proxy if missing. Everything
# listens on 127.0.0.1 on free ports; both stacks are taken down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
tp="$(go env GOPATH)/bin/server"
if [ ! -x "$tp" ]; then
  go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/devstack" ./cmd/devstack
go build -o "$work/faultbench" ./bench/faultbench
"$work/faultbench" -devstack "$work/devstack" -toxiproxy "$tp" "$@"
