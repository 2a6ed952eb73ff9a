#!/usr/bin/env bash
# scripts/install-deps.sh waits while another package install holds apt's
# lock instead of failing at once (a fresh machine often runs one at boot).
# A helper process holds the lock for a few seconds while install-deps'
# apt_get runs: it must succeed, and only after the lock was released.
#   - the lists lock of `apt-get update` (apt does not wait for it by
#     itself), in a scratch lists folder with no sources: nothing is fetched;
#   - dpkg's frontend lock, as root only (the real one, held 3 s).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../../scripts/install-deps.sh
source scripts/install-deps.sh
CHAT_APT_LOCK_WAIT=60
fail=0

hold() { # LOCKFILE SECONDS: holds the fcntl lock apt uses; prints once held
  /usr/bin/python3 -c '
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o640)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))' "$1" "$2"
}

check() { # NAME LOCKFILE SECONDS APT-ARGS...
  local name=$1 lock=$2 secs=$3 start elapsed rc=0 pid
  shift 3
  coproc HOLDER { hold "$lock" "$secs"; }
  pid=$HOLDER_PID # bash unsets it when the holder exits
  read -r _ <&"${HOLDER[0]}" # the lock is held from here on
  start=$SECONDS
  apt_get "$@" >/dev/null 2>&1 || rc=$?
  elapsed=$((SECONDS - start))
  wait "$pid" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    echo "FAIL $name: apt_get failed ($rc) while the lock was held for ${secs}s"; fail=1
  elif [ "$elapsed" -lt $((secs - 1)) ]; then
    echo "FAIL $name: returned after ${elapsed}s, before the lock was released"; fail=1
  else
    echo "ok $name: waited ${elapsed}s for the lock"
  fi
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/lists/partial" "$scratch/parts"
: >"$scratch/sources.list"
check "apt-get update waits for the lists lock" "$scratch/lists/lock" 5 \
  -o Dir::State::Lists="$scratch/lists" -o Dir::Etc::sourcelist="$scratch/sources.list" \
  -o Dir::Etc::sourceparts="$scratch/parts" -o Dir::Cache="$scratch" update -qq

if [ "$(id -u)" -eq 0 ]; then
  check "apt-get install waits for dpkg's lock" /var/lib/dpkg/lock-frontend 3 \
    install -y -qq --no-install-recommends procps
else
  echo "skip apt-get install waits for dpkg's lock: not root"
fi
exit "$fail"
