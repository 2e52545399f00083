#!/usr/bin/env bash
# Hot reload on the example shop (issue 20): write → new payments code
# answering, minus the build, and 0 failed requests / p99 under a load
# loop during consecutive reloads, against the same load without.
#
#   bench/reload.sh [reloads] [connections] [backend]   (default 20 8 process)
#
# The shop's ports 18080-18085 must be free; everything is taken down after.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/devstack" ./cmd/devstack
go run ./bench/reload -devstack "$work/devstack" -shop examples/shop -n "${1:-20}" -c "${2:-8}" -backend "${3:-process}"
