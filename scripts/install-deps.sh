#!/usr/bin/env bash
# Installs every system package the project needs to build, run and test, on
# Debian 12. Used by the README, .ci/run and the Dockerfile alike.
#   scripts/install-deps.sh            build + run + test dependencies
#   scripts/install-deps.sh --build    what building needs (the Dockerfile's build stage)
#   scripts/install-deps.sh --runtime  only what the binaries need at run time
set -euo pipefail

runtime=(libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libwslay1 libhiredis0.14
         libjansson4 libhttp-parser2.9 libssl3 libpq5 ca-certificates)
# nodejs (and npm, below): the socket.io-client bundle the gateway serves is
# installed from npm at build time
build=(build-essential cmake pkg-config clang libclang-rt-14-dev nodejs
       libevent-dev libwslay-dev libhiredis-dev libjansson-dev libhttp-parser-dev libssl-dev libpq-dev)
# haproxy and postgresql: the local stack (scripts/dev.sh) and the integration
# tests, which start their own throwaway clusters; chromium: the browser tests
# (tests/browser/, driven by playwright-core from npm, which downloads no browser)
test=(redis-server postgresql haproxy docker-compose nodejs python3 python3-yaml python3-socketio python3-websocket
      python3-requests curl procps chromium)

if [ "${1:-}" = "--runtime" ]; then
  pkgs=("${runtime[@]}")
elif [ "${1:-}" = "--build" ]; then
  pkgs=("${runtime[@]}" "${build[@]}")
else
  pkgs=("${runtime[@]}" "${build[@]}" "${test[@]}")
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# apt-get that waits while another package install holds apt's or dpkg's
# lock (a fresh machine often runs one at boot) instead of failing at once:
# dpkg's lock is waited for by apt itself (DPkg::Lock::Timeout); the lists
# lock of `apt-get update` is not, so a refusal naming a lock is retried.
# Gives up after CHAT_APT_LOCK_WAIT seconds (default 1800).
apt_get() {
  local log rc deadline=$((SECONDS + ${CHAT_APT_LOCK_WAIT:-1800}))
  log=$(mktemp)
  while :; do
    rc=0
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=60 "$@" 2> >(tee "$log" >&2) || rc=$?
    wait # for tee
    if [ "$rc" -ne 0 ] && [ "$SECONDS" -lt "$deadline" ] &&
       grep -qiE 'could not get lock|unable to (acquire|lock)' "$log"; then
      echo "install-deps: another package install holds the lock; waiting" >&2
      sleep 2
      continue
    fi
    rm -f "$log"
    return "$rc"
  done
}

# Sourced (the lock test): define apt_get only.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

missing=()
# nodejs from other sources ships its own npm; Debian's npm package conflicts with it.
command -v npm >/dev/null 2>&1 || [ "${1:-}" = "--runtime" ] || pkgs+=(npm)
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends "${missing[@]}"
fi
