#!/usr/bin/env bash
# Starts the whole system locally, in the foreground, on loopback only:
# installs the system packages, builds chat-gateway and chat-storage, then runs
#   redis-server                on 127.0.0.1:6379   (CHAT_DEV_REDIS_PORT; data in a temp dir)
#   PostgreSQL (a throwaway cluster) on 127.0.0.1:5432 (CHAT_DEV_PG_PORT; data in the temp dir)
#   chat-storage                on 127.0.0.1:3100   (CHAT_DEV_STORAGE_PORT): stores messages, /api/
#   N chat gateways (--app chat) on 127.0.0.1:3001..300N (N = CHAT_DEV_GATEWAYS, default 2)
#   HAProxy                     on 127.0.0.1:3000   (CHAT_DEV_PORT): what io(BASE_URL) points at;
#                               /api/ goes to chat-storage, everything else to the gateways
#                               (/socket.io/socket.io.js: the Socket.IO client for <script> tags,
#                               from web/client's npm package; / : web/dist once it is built)
# Redis and PostgreSQL take the next free port when theirs is in use (a
# system one) and no port was asked for. Everything is lost at exit.
# CHAT_DEV_REDIS=cluster: a local Redis Cluster instead of one redis-server,
# 3 masters and 3 replicas on 127.0.0.1:7000..7005 (CHAT_DEV_REDIS_PORT is
# then the first; scripts/redis-cluster.sh starts it in the temp dir), and
# chat-storage and the gateways get --redis redis-cluster://...; kill -9 a
# master (its pid is in the temp dir) to watch its replica take over.
# Authentication: --auth jwt when CHAT_JWT_SECRET is set (mint tokens with
# `build/bin/chat-gateway token --user ID --name NAME`), else --auth
# insecure-dev (identity from userId/firstName in the payloads, as the
# tutorials do: for development only).
# Extra arguments go to every gateway (e.g. --log-level debug).
# Ctrl-C or SIGTERM stops everything it started. Works as root or not
# (PostgreSQL refuses root: as root it runs as the postgres user).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

n="${CHAT_DEV_GATEWAYS:-2}"
lb_port="${CHAT_DEV_PORT:-3000}"
redis_mode="${CHAT_DEV_REDIS:-single}"
case "$redis_mode" in
  single) redis_port="${CHAT_DEV_REDIS_PORT:-6379}" ;;
  cluster) redis_port="${CHAT_DEV_REDIS_PORT:-7000}" ;;
  *) echo "dev.sh: CHAT_DEV_REDIS must be single or cluster, got '$redis_mode'" >&2; exit 2 ;;
esac
pg_port="${CHAT_DEV_PG_PORT:-5432}"
storage_port="${CHAT_DEV_STORAGE_PORT:-3100}"
for v in CHAT_DEV_GATEWAYS:"$n" CHAT_DEV_PORT:"$lb_port" CHAT_DEV_REDIS_PORT:"$redis_port" \
         CHAT_DEV_PG_PORT:"$pg_port" CHAT_DEV_STORAGE_PORT:"$storage_port"; do
  if ! [[ "${v#*:}" =~ ^[0-9]+$ ]] || [ "${v#*:}" -lt 1 ] || [ "${v#*:}" -gt 65535 ]; then
    echo "dev.sh: ${v%%:*} must be a number from 1 to 65535, got '${v#*:}'" >&2
    exit 2
  fi
done
[ "$n" -le 50 ] || { echo "dev.sh: CHAT_DEV_GATEWAYS at most 50" >&2; exit 2; }

scripts/install-deps.sh
# the socket.io-client bundle served at /socket.io/socket.io.js, from its lock file
if [ ! -d web/client/node_modules ] || [ web/client/package-lock.json -nt web/client/node_modules ]; then
  (cd web/client && npm ci --no-audit --no-fund --loglevel=error)
fi
client_dir="$root/web/client/node_modules/socket.io-client/dist"
# the web app (React + Vite, web/): installed from its lock file and built
# into web/dist when a source is newer than the build; served at /
scripts/build-web.sh
web_args=()
[ -f web/dist/index.html ] && web_args=(--web-root "$root/web/dist")
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target chat-gateway chat-storage

gateway_bin="$root/build/bin/chat-gateway"
storage_bin="$root/build/bin/chat-storage"
redis_bin="$(command -v redis-server || echo /usr/bin/redis-server)"
haproxy_bin="$(command -v haproxy || echo /usr/sbin/haproxy)"
# PostgreSQL's programs: $PG_BIN_DIR, else Debian's newest, else PATH
pg_bin="${PG_BIN_DIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
pg() { if [ -n "$pg_bin" ]; then echo "$pg_bin/$1"; else command -v "$1" || echo "$1"; fi; }

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Debian starts its own redis-server on 6379 and PostgreSQL on 5432 when the
# packages are installed; take the next free port then, unless a port was
# asked for. free_port VAR NAME WHAT: sets VAR.
free_port() {
  local var=$1 name=$2 what=$3 p
  p=${!var}
  in_use "$p" || return 0
  if [ -n "${!name:-}" ]; then
    echo "dev.sh: 127.0.0.1:$p ($name) is already in use" >&2
    exit 1
  fi
  local first=$p
  p=$((p + 1))
  while in_use "$p" && [ "$p" -lt $((first + 100)) ]; do p=$((p + 1)); done
  echo "dev.sh: 127.0.0.1:$first is in use (a system $what?); using $p for this stack's $what"
  printf -v "$var" '%s' "$p"
}
if [ "$redis_mode" = single ]; then
  free_port redis_port CHAT_DEV_REDIS_PORT Redis
else
  # six nodes on redis_port..+5, their cluster bus 10000 above: the next ten
  # when one is in use (a system Redis?) and no port was asked for
  cluster_in_use() { local p; for p in $(seq "$1" $(($1 + 5))); do in_use "$p" || in_use $((p + 10000)) && return 0; done; return 1; }
  if cluster_in_use "$redis_port"; then
    [ -n "${CHAT_DEV_REDIS_PORT:-}" ] && { echo "dev.sh: a port of 127.0.0.1:$redis_port..$((redis_port + 5)) (or 10000 above) is already in use" >&2; exit 1; }
    first=$redis_port
    while cluster_in_use "$redis_port" && [ "$redis_port" -lt $((first + 100)) ]; do redis_port=$((redis_port + 10)); done
    echo "dev.sh: 127.0.0.1:$first..$((first + 5)) is in use; using $redis_port..$((redis_port + 5)) for this stack's Redis Cluster"
  fi
  [ "$redis_port" -le 55530 ] || { echo "dev.sh: CHAT_DEV_REDIS_PORT at most 55530 with CHAT_DEV_REDIS=cluster" >&2; exit 2; }
fi
free_port pg_port CHAT_DEV_PG_PORT PostgreSQL
gw_ports=()
for i in $(seq 1 "$n"); do gw_ports+=($((lb_port + i))); done
for p in "$lb_port" "${gw_ports[@]}" "$storage_port"; do
  if in_use "$p"; then
    echo "dev.sh: 127.0.0.1:$p is already in use (set CHAT_DEV_PORT to move the stack)" >&2
    exit 1
  fi
done

if [ -n "${CHAT_JWT_SECRET:-}" ]; then auth=jwt; else auth=insecure-dev; fi

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/chat-dev.XXXXXX")"
mkdir -p "$run_dir/redis" "$run_dir/pg"
# PostgreSQL refuses to run as root: then its files and processes belong to
# the postgres user, who must reach them through our directory. setpriv
# (not runuser) execs the program, so the pid we keep is PostgreSQL's own.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chmod 711 "$run_dir"
  chown postgres:postgres "$run_dir/pg"
  as_pg=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
pids=()
names=()

# stop_pids SIGNAL PID...: send SIGNAL, wait up to 5 s, then SIGKILL what is left
stop_pids() {
  local sig=$1 pid i
  shift
  for pid in "$@"; do kill "-$sig" "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      for i in "${!pids[@]}"; do [ "${pids[$i]}" = "$pid" ] && echo "dev.sh: ${names[$i]} (pid $pid) did not stop; killing it" >&2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

# In reverse order of start: HAProxy, the gateways together (they drain),
# chat-storage (it finishes its batch), PostgreSQL (fast shutdown: SIGINT),
# Redis last so nobody sees it go.
stop_all() {
  trap - EXIT INT TERM
  echo
  echo "dev.sh: stopping"
  local i gws=()
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    case "${names[$i]}" in
      "chat-gateway "*) gws+=("${pids[$i]}"); continue ;;
    esac
    [ ${#gws[@]} -gt 0 ] && { stop_pids TERM "${gws[@]}"; gws=(); }
    if [ "${names[$i]}" = postgres ]; then stop_pids INT "${pids[$i]}"; else stop_pids TERM "${pids[$i]}"; fi
  done
  [ ${#gws[@]} -gt 0 ] && stop_pids TERM "${gws[@]}"
  # the cluster's nodes run in the background (pid files in its directory)
  [ "$redis_mode" = cluster ] && scripts/redis-cluster.sh stop --dir "$run_dir/redis-cluster" || true
  rm -rf "$run_dir"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# started NAME PID: remember a child to stop
started() {
  names+=("$1")
  pids+=("$2")
}
# pid_named NAME: the pid of the child started as NAME
pid_named() {
  local i
  for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && echo "${pids[$i]}"; done
}

# wait_until WHAT COMMAND...: retry for 10 s; fails with the logs on timeout
wait_until() {
  local what=$1
  shift
  for _ in $(seq 200); do
    "$@" && return 0
    for i in "${!pids[@]}"; do
      if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        echo "dev.sh: ${names[$i]} exited while waiting for $what; see $run_dir" >&2
        tail -n 30 "$run_dir"/*.log >&2 2>/dev/null || true
        exit 1
      fi
    done
    sleep 0.05
  done
  echo "dev.sh: timed out waiting for $what" >&2
  tail -n 30 "$run_dir"/*.log >&2 2>/dev/null || true
  exit 1
}

redis_ping() {
  local line
  { exec 3<>"/dev/tcp/127.0.0.1/$redis_port"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  read -r -t 1 line <&3 || true
  exec 3<&-
  [ "${line%$'\r'}" = "+PONG" ]
}

ready() { curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/readyz" 2>/dev/null; }
pg_ready() { "$(pg pg_isready)" -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -t 1; }

if [ "$redis_mode" = single ]; then
  "$redis_bin" --port "$redis_port" --bind 127.0.0.1 --dir "$run_dir/redis" \
    --save '' --appendonly yes --daemonize no --logfile '' >"$run_dir/redis.log" 2>&1 &
  started redis-server $!
  wait_until "redis-server" redis_ping
  redis_url="redis://127.0.0.1:$redis_port"
else
  # prints the redis-cluster:// URL once the cluster is ok
  redis_url=$(scripts/redis-cluster.sh start --dir "$run_dir/redis-cluster" --base-port "$redis_port")
fi

# --no-sync: a throwaway cluster, removed at exit
(cd "$run_dir/pg" && "${as_pg[@]}" "$(pg initdb)" -D "$run_dir/pg/data" -U postgres -A trust -E UTF8 \
  --locale=C --no-sync >"$run_dir/pg/initdb.log" 2>&1) \
  || { cat "$run_dir/pg/initdb.log" >&2; echo "dev.sh: initdb failed" >&2; exit 1; }
(cd "$run_dir/pg" && exec "${as_pg[@]}" "$(pg postgres)" -D "$run_dir/pg/data" -p "$pg_port" -k "$run_dir/pg" \
  -c listen_addresses=127.0.0.1) >"$run_dir/postgres.log" 2>&1 &
started postgres $!
wait_until "PostgreSQL" pg_ready
database_url="postgresql://postgres@127.0.0.1:$pg_port/postgres"

# CHAT_JWT_SECRET and CHAT_ROOM_SECRET, when set, reach it from the
# environment, as they reach the gateways
"$storage_bin" --listen "127.0.0.1:$storage_port" --auth "$auth" \
  --redis "$redis_url" --database "$database_url" \
  --cors-origin "${CHAT_CORS_ORIGIN:-*}" \
  > >(trap '' INT TERM; exec sed -u "s/^/[storage] /") 2>&1 &
started chat-storage $!
wait_until "chat-storage (/readyz)" ready "$storage_port"

i=0
for p in "${gw_ports[@]}"; do
  i=$((i + 1))
  # logs on the terminal, each line tagged with the node; the tagger ignores
  # Ctrl-C so the gateway's last lines (draining, stopped) still come through
  "$gateway_bin" --listen "127.0.0.1:$p" --app chat --auth "$auth" \
    --redis "$redis_url" --node-id "gw$i" \
    --cors-origin "${CHAT_CORS_ORIGIN:-*}" --client-dir "$client_dir" "${web_args[@]}" "$@" \
    > >(trap '' INT TERM; exec sed -u "s/^/[gw$i] /") 2>&1 &
  started "chat-gateway gw$i" $!
done
for p in "${gw_ports[@]}"; do wait_until "the gateway on port $p (/readyz)" ready "$p"; done

scripts/gen-haproxy.sh --storage "$storage_port" "$lb_port" "${gw_ports[@]}" >"$run_dir/haproxy.cfg"
"$haproxy_bin" -c -q -f "$run_dir/haproxy.cfg"
"$haproxy_bin" -db -f "$run_dir/haproxy.cfg" >"$run_dir/haproxy.log" 2>&1 &
started haproxy $!
wait_until "haproxy" in_use "$lb_port"

echo
echo "chat dev stack is up (auth: $auth)"
[ "$auth" = insecure-dev ] && echo "  WARNING: --auth insecure-dev trusts userId/firstName from clients; set CHAT_JWT_SECRET for JWT"
[ "$auth" = jwt ] && echo "  tokens: CHAT_JWT_SECRET=... $gateway_bin token --user alice --name Alice"
printf '  %-28s %s\n' "http://127.0.0.1:$lb_port" "HAProxy (pid ${pids[-1]}) -> gateways, /api/ -> chat-storage; io(BASE_URL) points here; log $run_dir/haproxy.log"
if [ ${#web_args[@]} -gt 0 ]; then
  printf '  %-28s %s\n' "http://127.0.0.1:$lb_port/" "the web app (web/dist), served by the gateways: open it in a browser"
  if [ "$auth" = insecure-dev ]; then
    printf '      %s\n' "signed in as alice, chat with bob: http://127.0.0.1:$lb_port/?user=alice&name=Alice#/chat/bob" \
      "and as bob, in another window:   http://127.0.0.1:$lb_port/?user=bob&name=Bob#/chat/alice"
  else
    printf '      %s\n' "signed in with a token:          http://127.0.0.1:$lb_port/?token=JWT#/chat/bob"
  fi
fi
printf '  %s\n      %s\n' "http://127.0.0.1:$lb_port/socket.io/socket.io.js" \
  "the Socket.IO client for <script src=\"/socket.io/socket.io.js\"></script> (also .min.js, .esm.min.js)"
i=0
for p in "${gw_ports[@]}"; do
  i=$((i + 1))
  printf '  %-28s %s\n' "http://127.0.0.1:$p" "chat-gateway gw$i (pid $(pid_named "chat-gateway gw$i"))"
done
printf '  %-28s %s\n' "http://127.0.0.1:$storage_port" "chat-storage (pid $(pid_named chat-storage)): history and groups under /api/"
printf '  %-28s %s\n' "$database_url" "PostgreSQL (pid $(pid_named postgres)); log $run_dir/postgres.log"
if [ "$redis_mode" = single ]; then
  printf '  %-28s %s\n' "$redis_url" "redis-server (pid $(pid_named redis-server)); data and log in $run_dir"
else
  printf '  %s\n      %s\n' "$redis_url" \
    "Redis Cluster, 3 masters + 3 replicas; scripts/redis-cluster.sh status --dir $run_dir/redis-cluster"
fi
echo "Ctrl-C stops everything."

# Run until one of them exits or we are told to stop.
set +e
wait -n "${pids[@]}"
status=$?
for i in "${!pids[@]}"; do
  kill -0 "${pids[$i]}" 2>/dev/null || echo "dev.sh: ${names[$i]} (pid ${pids[$i]}) exited" >&2
done
exit "$status"
