#!/usr/bin/env bash
# Proxy benchmark: devstack's proxy vs a direct connection, nginx and
# httputil.ReverseProxy, side by side in one run (see bench/proxybench).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
fi
go run ./bench/proxybench "$@"
