#!/usr/bin/env bash
# A local Redis Cluster for development and tests: 3 masters and 3 replicas
# (one replica per master) on 127.0.0.1.
#
#   scripts/redis-cluster.sh start  [--dir DIR] [--base-port P]
#   scripts/redis-cluster.sh stop   [--dir DIR]
#   scripts/redis-cluster.sh status [--dir DIR]
#
# start runs six redis-server processes on ports P..P+5 (default 7000;
# CHAT_REDIS_CLUSTER_PORT), each in the background with its pid file,
# nodes.conf, append-only file and log in DIR/PORT (default
# ${TMPDIR:-/tmp}/chat-redis-cluster; CHAT_REDIS_CLUSTER_DIR), joins them
# with `redis-cli --cluster create --cluster-replicas 1`, waits for
# cluster_state:ok on every node and prints the URL for --redis / CHAT_REDIS_URL:
#   redis-cluster://127.0.0.1:P,127.0.0.1:P+1,...
# (only the URL on stdout; progress on stderr). A DIR whose nodes already
# formed a cluster is started again as it was (same nodes, same data).
# cluster-node-timeout is 2000 ms (CHAT_REDIS_CLUSTER_TIMEOUT_MS): a dead
# master's replica takes over within a few seconds, which suits development
# and tests, not a network with pauses.
# Without --base-port, a DIR used before keeps its ports (DIR/base-port).
# stop shuts the nodes down (SIGTERM: they finish their append-only files)
# and keeps DIR; status prints each node's role and the cluster state, and
# exits 1 unless the cluster is up and ok. Works as root or not.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status [--dir DIR] [--base-port P]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
cmd=$1
shift
dir="${CHAT_REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/chat-redis-cluster}"
base=
timeout_ms="${CHAT_REDIS_CLUSTER_TIMEOUT_MS:-2000}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
    --dir=*) dir=${1#--dir=}; shift ;;
    --base-port) [ $# -ge 2 ] || usage; base=$2; shift 2 ;;
    --base-port=*) base=${1#--base-port=}; shift ;;
    -h|--help) usage ;;
    *) echo "redis-cluster.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
# a DIR used before keeps its base port
if [ -z "$base" ] && [ -s "$dir/base-port" ]; then base=$(cat "$dir/base-port"); fi
[ -n "$base" ] || base="${CHAT_REDIS_CLUSTER_PORT:-7000}"
if ! [[ "$base" =~ ^[0-9]+$ ]] || [ "$base" -lt 1 ] || [ "$base" -gt 55530 ]; then
  # a node's cluster bus listens on its port + 10000
  echo "redis-cluster.sh: the base port must be a number from 1 to 55530, got '$base'" >&2
  exit 2
fi
[[ "$timeout_ms" =~ ^[0-9]+$ ]] || { echo "redis-cluster.sh: CHAT_REDIS_CLUSTER_TIMEOUT_MS must be a number" >&2; exit 2; }

redis_server="$(command -v redis-server || echo /usr/bin/redis-server)"
redis_cli="$(command -v redis-cli || echo /usr/bin/redis-cli)"
ports=()
for i in 0 1 2 3 4 5; do ports+=($((base + i))); done
url="redis-cluster://$(printf '127.0.0.1:%s,' "${ports[@]}")"
url=${url%,}

cli() { "$redis_cli" -h 127.0.0.1 -p "$1" "${@:2}"; }
pid_of() { [ -s "$dir/$1/redis.pid" ] && cat "$dir/$1/redis.pid"; }
alive() { local pid; pid=$(pid_of "$1") && kill -0 "$pid" 2>/dev/null; }
state_ok() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | grep -qx 'cluster_state:ok'; }

# wait_for SECONDS WHAT COMMAND...: retry every 0.1 s
wait_for() {
  local n=$(($1 * 10)) what=$2
  shift 2
  for _ in $(seq "$n"); do
    "$@" && return 0
    sleep 0.1
  done
  echo "redis-cluster.sh: timed out waiting for $what (logs in $dir/*/redis.log)" >&2
  return 1
}
all_ok() { local p; for p in "${ports[@]}"; do state_ok "$p" || return 1; done; }

start() {
  mkdir -p "$dir"
  echo "$base" >"$dir/base-port"
  local p
  for p in "${ports[@]}"; do
    if alive "$p"; then
      echo "redis-cluster.sh: node $p already runs (pid $(pid_of "$p"))" >&2
      continue
    fi
    if cli "$p" ping >/dev/null 2>&1; then
      echo "redis-cluster.sh: 127.0.0.1:$p is in use by another program (use --base-port)" >&2
      exit 1
    fi
    mkdir -p "$dir/$p"
    # absolute paths: redis-server changes into --dir
    "$redis_server" --port "$p" --bind 127.0.0.1 --dir "$(cd "$dir/$p" && pwd)" \
      --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout "$timeout_ms" \
      --appendonly yes --save '' --repl-diskless-sync-delay 0 \
      --daemonize yes --pidfile "$(cd "$dir/$p" && pwd)/redis.pid" \
      --logfile "$(cd "$dir/$p" && pwd)/redis.log"
  done
  for p in "${ports[@]}"; do wait_for 10 "node $p" cli "$p" ping >/dev/null; done
  # a node that knows only itself has never joined: create the cluster
  local known
  known=$(cli "${ports[0]}" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')
  if [ "$known" = 1 ]; then
    echo "redis-cluster.sh: creating the cluster (3 masters, 3 replicas)" >&2
    "$redis_cli" --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") \
      --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
      || { cat "$dir/create.log" >&2; exit 1; }
  fi
  wait_for 30 "cluster_state:ok on every node" all_ok
  # every master has its replica, synced (the replicas learn their role last)
  wait_for 30 "three replicas" replicas_up
  echo "redis-cluster.sh: up; data and logs in $dir" >&2
  echo "$url"
}

replicas_up() {
  cli "${ports[0]}" cluster nodes | awk '
    $3 !~ /fail/ && $3 ~ /(^|,)master/ && NF > 8 { m++ }
    $3 !~ /fail/ && $3 ~ /(^|,)slave/ && $8 == "connected" { r++ }
    END { exit !(m == 3 && r == 3) }' || return 1
  # a replica that has not synced yet could not take over
  local p
  for p in "${ports[@]}"; do
    # a replica's ROLE: slave, host, port, state (connected once synced), offset
    cli "$p" role | awk 'NR == 1 { r = $1 } NR == 4 { s = $1 } END { exit !(r == "master" || s == "connected") }' \
      || return 1
  done
}

stop() {
  local p pid stopped=()
  for p in "${ports[@]}"; do
    if alive "$p"; then
      pid=$(pid_of "$p")
      kill -TERM "$pid"
      stopped+=("$pid")
    fi
  done
  for pid in "${stopped[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "redis-cluster.sh: pid $pid did not stop in 10 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  echo "redis-cluster.sh: stopped ${#stopped[@]} node(s); data kept in $dir" >&2
}

status() {
  local p up=0
  for p in "${ports[@]}"; do
    if alive "$p"; then
      up=$((up + 1))
      printf '127.0.0.1:%s pid %s %s\n' "$p" "$(pid_of "$p")" \
        "$(cli "$p" role 2>/dev/null | head -n 1)"
    else
      printf '127.0.0.1:%s down\n' "$p"
    fi
  done
  if [ "$up" -gt 0 ] && all_ok; then
    echo "cluster_state:ok $url"
    return 0
  fi
  echo "cluster not ok ($up of ${#ports[@]} nodes up)"
  return 1
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
