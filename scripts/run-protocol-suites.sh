#!/usr/bin/env bash
# Runs the official protocol test suites against an already built gateway.
#
#   scripts/run-protocol-suites.sh ENGINE_SUITE_DIR SOCKET_SUITE_DIR
#
# ENGINE_SUITE_DIR and SOCKET_SUITE_DIR are local checkouts of the public
# repositories socketio/engine.io-protocol and socketio/socket.io-protocol
# (they are not part of this repository). Their test-suite/ directories are
# run with mocha against build/bin/chat-gateway (override with
# CHAT_GATEWAY_BIN) on 127.0.0.1:3000, the address the suites expect:
#   engine-echo    with --ping-interval 300 --ping-timeout 200 --max-payload 1000000
#   socketio-echo  with the same plus --connect-timeout 1000 --cors-origin '*'
# Builds nothing. Exits non-zero if either suite fails.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 ENGINE_SUITE_DIR SOCKET_SUITE_DIR" >&2
  exit 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CHAT_GATEWAY_BIN:-$root/build/bin/chat-gateway}"
engine_dir="$(cd "$1" && pwd)/test-suite"
socket_dir="$(cd "$2" && pwd)/test-suite"
listen=127.0.0.1:3000
common=(--listen "$listen" --ping-interval 300 --ping-timeout 200 --max-payload 1000000)

for d in "$engine_dir" "$socket_dir"; do
  [ -f "$d/test-suite.js" ] || { echo "no test-suite.js in $d" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "no gateway binary at $bin (build it first)" >&2; exit 2; }

# The suites hard-code port 3000: refuse to run if something already listens
# there (a gateway with SO_REUSEPORT would share the port and the requests).
if (exec 3<>/dev/tcp/127.0.0.1/3000) 2>/dev/null; then
  echo "127.0.0.1:3000 is already in use; stop whatever listens there first" >&2
  exit 2
fi

gw_pid=
stop_gateway() {
  if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then
    kill -TERM "$gw_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
  fi
  gw_pid=
}
trap stop_gateway EXIT

# healthy URL -> 0 once it answers 200, 1 after 10 s
wait_healthy() {
  node -e '
    const url = process.argv[1];
    const deadline = Date.now() + 10000;
    (async () => {
      for (;;) {
        try { if ((await fetch(url)).status === 200) process.exit(0); } catch {}
        if (Date.now() > deadline) process.exit(1);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();' "$1"
}

# run_suite NAME DIR GATEWAY-ARGS... -> exit status of mocha
run_suite() {
  local name=$1 dir=$2 log status=0
  shift 2
  log="$(mktemp)"
  echo "=== $name: chat-gateway $*"
  "$bin" "$@" >"$log" 2>&1 &
  gw_pid=$!
  if ! wait_healthy "http://$listen/healthz"; then
    echo "gateway did not become healthy; its output:" >&2
    cat "$log" >&2
    stop_gateway
    rm -f "$log"
    return 1
  fi
  if [ ! -d "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  (cd "$dir" && npx mocha test-suite.js) || status=$?
  if ! kill -0 "$gw_pid" 2>/dev/null; then
    echo "gateway died during the $name suite" >&2
    status=1
  fi
  stop_gateway
  if [ "$status" -ne 0 ]; then
    echo "--- gateway output ($name) ---" >&2
    tail -n 200 "$log" >&2
  fi
  rm -f "$log"
  return "$status"
}

engine_status=0
socket_status=0
run_suite engine.io-protocol "$engine_dir" --app engine-echo "${common[@]}" || engine_status=$?
run_suite socket.io-protocol "$socket_dir" --app socketio-echo "${common[@]}" \
  --connect-timeout 1000 --cors-origin '*' || socket_status=$?

echo "engine.io-protocol suite: $([ "$engine_status" -eq 0 ] && echo passed || echo FAILED)"
echo "socket.io-protocol suite: $([ "$socket_status" -eq 0 ] && echo passed || echo FAILED)"
[ "$engine_status" -eq 0 ] && [ "$socket_status" -eq 0 ]
