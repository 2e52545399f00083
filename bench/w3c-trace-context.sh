#!/usr/bin/env bash
# The real W3C trace-context harness through devstack's proxy, at
# STRICT_LEVEL 2 (see bench/w3ctc). Nothing is fetched: give the test/
# directory of a clone of https://github.com/w3c/trace-context, and have
# aiohttp installed for python3.
#   bench/w3c-trace-context.sh /path/to/trace-context/test
set -euo pipefail
suite=${1:?usage: $0 /path/to/trace-context/test}
cd "$(dirname "$0")/.."
exec go run ./bench/w3ctc -suite "$suite"
