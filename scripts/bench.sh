#!/usr/bin/env bash
# Builds the project (build/, RelWithDebInfo) and runs the side-by-side
# benchmarks against the Node.js reference servers (tests/bench/bench.mjs).
#   scripts/bench.sh                  every workload, 3 rounds (about 35 minutes)
#   scripts/bench.sh --workloads W4   the durable path alone (issue 13; about 15 minutes)
#   scripts/bench.sh --quick          a 2-3 minute sanity run
#   scripts/bench.sh --scale [...]    the durable path on one Redis vs a 3-master Redis
#                                     Cluster, one vs two storage replicas (bench/scale.mjs;
#                                     about 20 minutes)
#   scripts/bench.sh --help           every option
# Arguments go to bench.mjs; a relative --json FILE is relative to the
# directory this is run from.
set -euo pipefail
export CHAT_BENCH_CWD="$PWD"
cd "$(dirname "$0")/.."

scripts/install-deps.sh
for dir in tests tests/bench/node-ref; do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

# W1 holds 10,000 connections: raise the open-file limit as far as allowed
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cd tests
if [ "${1:-}" = --scale ]; then
  shift
  exec node bench/scale.mjs "$@"
fi
exec node bench/bench.mjs "$@"
