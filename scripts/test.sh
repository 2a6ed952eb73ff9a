#!/usr/bin/env bash
# Builds the project and runs every test (unit, integration, fuzz-corpus replay).
#   scripts/test.sh                 normal build in build/
#   scripts/test.sh --sanitize      ASan+UBSan build in build-asan/
# Extra arguments after the options are passed to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

builddir=build
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--sanitize" ]; then
  shift
  builddir=build-asan
  cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DCHAT_SANITIZE=ON)
fi
[ "${CI:-}" = "true" ] && cmake_args+=(-DCHAT_WERROR=ON)

scripts/install-deps.sh
# npm packages, each from its committed lock file: the test clients, and the
# socket.io-client bundle the gateway serves (the build copies its dist files
# beside the binary)
for dir in tests web/client; do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

# the web app the gateways serve at / (web/dist), built when its sources changed
scripts/build-web.sh
cmake -S . -B "$builddir" "${cmake_args[@]}" >/dev/null
cmake --build "$builddir" -j"$(nproc)"
cd "$builddir"
exec ctest --output-on-failure --timeout 300 "$@"
