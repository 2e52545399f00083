#!/usr/bin/env bash
# devstack vs docker-compose: up -d (until healthy) and down wall times on
# the same compose files and the same FROM scratch image, side by side in
# one run (see bench/compose). Needs a Docker Engine and docker-compose;
# builds devstack from this checkout unless -devstack PATH is given.
#
#   bench/compose.sh                 # 3 timed runs per tool and stack
#   bench/compose.sh -n 5 -only wide
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker >/dev/null || { echo "bench/compose.sh: docker CLI not found" >&2; exit 1; }
command -v docker-compose >/dev/null || { echo "bench/compose.sh: docker-compose not found (apt-get install docker-compose)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "bench/compose.sh: the docker engine does not answer" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/compose-bench" ./bench/compose
# The program bounds itself (-timeout, default 30m) and cleans up on the
# way out; timeout is the backstop, with a grace period for that cleanup.
timeout -k 30s 35m "$bin/compose-bench" -repo . "$@"
