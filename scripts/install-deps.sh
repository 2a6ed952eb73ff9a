#!/usr/bin/env bash
# Installs every system package the project needs to build, run and test, on
# Debian 12. Used by the README, .ci/run and the Dockerfile alike.
#   scripts/install-deps.sh            build + run + test dependencies
#   scripts/install-deps.sh --build    what building needs (the Dockerfile's build stage)
#   scripts/install-deps.sh --runtime  only what the binaries need at run time
set -euo pipefail

runtime=(libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libwslay1 libhiredis0.14
         libjansson4 libhttp-parser2.9 libssl3 libpq5 ca-certificates)
build=(build-essential cmake pkg-config clang libclang-rt-14-dev
       libevent-dev libwslay-dev libhiredis-dev libjansson-dev libhttp-parser-dev libssl-dev libpq-dev)
# haproxy and postgresql: the local stack (scripts/dev.sh) and the integration
# tests, which start their own throwaway clusters
test=(redis-server postgresql haproxy docker-compose nodejs python3 python3-yaml python3-socketio python3-websocket
      python3-requests curl procps)

if [ "${1:-}" = "--runtime" ]; then
  pkgs=("${runtime[@]}")
elif [ "${1:-}" = "--build" ]; then
  pkgs=("${runtime[@]}" "${build[@]}")
else
  pkgs=("${runtime[@]}" "${build[@]}" "${test[@]}")
fi

missing=()
# nodejs from other sources ships its own npm; Debian's npm package conflicts with it.
command -v npm >/dev/null 2>&1 || [ -n "${1:-}" ] || pkgs+=(npm)
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
